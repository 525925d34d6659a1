"""Process-level settings for CPU work: thread count, dtype support, cache location."""

from __future__ import annotations

import os
import time
from pathlib import Path

CACHE_ENV = "FTRISK_CACHE"
DATA_ENV = "FTRISK_DATA"


def cache_dir(override: str | Path | None = None) -> Path:
    """ftrisk's cache: the override, else $FTRISK_CACHE, else ~/.cache/ftrisk (XDG aware)."""
    if override:
        path = Path(override)
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV])
    else:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        path = Path(base) / "ftrisk"
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir(override: str | Path | None = None) -> Path:
    """Where user-supplied (gated) data files go: the override, else $FTRISK_DATA, else
    ~/ftrisk-data. Not created: ftrisk only reads from it."""
    if override:
        return Path(override).expanduser().resolve()
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV]).expanduser().resolve()
    return Path.home() / "ftrisk-data"


def _cpu_times(cores: set[int]) -> list[tuple[int, int]]:
    """(busy, total) jiffies of each of ``cores`` from /proc/stat."""
    times = []
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("cpu") and line[3].isdigit() and int(line.split()[0][3:]) in cores:
                fields = [int(x) for x in line.split()[1:]]
                idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
                times.append((sum(fields) - idle, sum(fields)))
    return times


def free_cores(sample_seconds: float = 0.2) -> int:
    """Cores not busy with other work, sampled from /proc/stat (falls back to the affinity count).

    Oversubscribing a busy core makes CPU matmuls 5-60x slower, so we size torch's pool to the
    cores that are actually idle right now.
    """
    if not hasattr(os, "sched_getaffinity"):
        return os.cpu_count() or 1
    cores = os.sched_getaffinity(0)  # only the cores this process may run on
    allowed = len(cores)
    try:
        before = _cpu_times(cores)
        time.sleep(sample_seconds)
        after = _cpu_times(cores)
    except (OSError, ValueError, IndexError):
        return allowed
    busy = sum((b1 - b0) / max(1, t1 - t0) for (b0, t0), (b1, t1) in zip(before, after))
    return max(1, min(allowed, round(len(after) - busy)))


def configure_threads(threads: int | None = None) -> int:
    """Set torch's intra-op threads to ``threads`` or to the free cores; returns the count."""
    import torch

    env = os.environ.get("FTRISK_THREADS", "")
    if env and not env.isdigit():
        from ftrisk.errors import InputError

        raise InputError(f"expected a positive integer, got {env!r}", field="FTRISK_THREADS")
    count = threads or int(env or 0) or free_cores()
    torch.set_num_threads(count)
    return count


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 dot products (AVX512-BF16 or AMX), where autocast pays."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
