"""Thread count (fixed by config or environment, never by load) and cache location."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from ftrisk.errors import InputError
from ftrisk.runtime import all_cores, cache_dir, configure_threads, resolve_threads


def test_all_cores_is_the_affinity_set():
    assert all_cores() == len(os.sched_getaffinity(0))


def test_threads_from_argument_then_environment_then_all_cores(monkeypatch):
    import torch

    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("FTRISK_THREADS", raising=False)
        assert configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert resolve_threads() == all_cores()
        monkeypatch.setenv("FTRISK_THREADS", "2")
        assert configure_threads() == 2 and torch.get_num_threads() == 2
        assert resolve_threads(3) == 3  # config / --threads win over the environment
        for bad in ("many", "0", "-1", "1.5"):
            monkeypatch.setenv("FTRISK_THREADS", bad)
            with pytest.raises(InputError, match="FTRISK_THREADS"):
                configure_threads()
    finally:
        torch.set_num_threads(before)


def test_default_thread_count_ignores_busy_cores(monkeypatch):
    # The old default counted idle cores, so a run beside a busy process got fewer threads
    # (and slightly different sums). Now the count is the same however busy the machine is.
    monkeypatch.delenv("FTRISK_THREADS", raising=False)
    idle = resolve_threads()
    spin = "import time\nend = time.time() + 5\nwhile time.time() < end: pass\n"
    busy = [subprocess.Popen([sys.executable, "-c", spin]) for _ in range(all_cores())]
    try:
        time.sleep(0.5)
        assert resolve_threads() == idle == all_cores()
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()


def test_cache_dir_override_then_environment(tmp_path, monkeypatch):
    assert cache_dir(tmp_path / "a") == tmp_path / "a" and (tmp_path / "a").is_dir()
    monkeypatch.setenv("FTRISK_CACHE", str(tmp_path / "b"))
    assert cache_dir() == tmp_path / "b"
    monkeypatch.delenv("FTRISK_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "ftrisk"
    assert cache_dir(tmp_path / "c", create=False) == tmp_path / "c"
    assert not (tmp_path / "c").exists()
