"""Process-level settings for CPU work: thread count, dtype support, cache location."""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "FTRISK_CACHE"
DATA_ENV = "FTRISK_DATA"


def cache_dir(override: str | Path | None = None, *, create: bool = True) -> Path:
    """ftrisk's cache: the override, else $FTRISK_CACHE, else ~/.cache/ftrisk (XDG aware);
    created unless ``create`` is False."""
    if override:
        path = Path(override)
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "ftrisk"
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if err.filename is None:
                err.filename = str(path)
            raise
    return path


def data_dir(override: str | Path | None = None) -> Path:
    """Where user-supplied (gated) data files go: the override, else $FTRISK_DATA, else
    ~/ftrisk-data. Not created: ftrisk only reads from it."""
    if override:
        return Path(override).expanduser().resolve()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser().resolve()
    return Path.home() / "ftrisk-data"


THREADS_ENV = "FTRISK_THREADS"


def all_cores() -> int:
    """The cores this process may run on (its affinity mask), else the machine's core count."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def resolve_threads(threads: int | None = None) -> int:
    """The CPU thread count to compute with: ``threads`` (config or ``--threads``), else
    ``$FTRISK_THREADS``, else every core this process may use.

    Never chosen from how busy the machine is: CPU results depend on how sums are split across
    threads, so the count is an input of every CPU stage and must not drift between runs.
    """
    if threads is not None:
        return threads
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            from ftrisk.errors import InputError

            raise InputError(f"expected a positive integer, got {env!r}", field=THREADS_ENV)
        return int(env)
    return all_cores()


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to :func:`resolve_threads` of ``threads``; returns it."""
    import torch

    count = resolve_threads(threads)
    torch.set_num_threads(count)
    return count


def native_bf16() -> bool:
    """Whether local models should compute under bf16 autocast on this machine: a GPU that
    supports it, else a CPU with native bf16 (emulated bf16 on other CPUs is several times
    slower than fp32)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return cpu_supports_bf16()


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX), where autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
