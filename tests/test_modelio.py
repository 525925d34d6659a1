"""Model fingerprints (every byte, digests cached by file identity, size and mtime), weight-file
checks, and builds of cache folders that are safe to race."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from ftrisk.models import io as modelio
from ftrisk.models.io import cached_build, fingerprint_path, model_dir_problem, safetensors_problem

MiB = 1 << 20


def _count_hashes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the name of every file whose bytes are hashed."""
    hashed: list[str] = []
    real = modelio._hash_file

    def counting(file: Path) -> str:
        hashed.append(file.name)
        return real(file)

    monkeypatch.setattr(modelio, "_hash_file", counting)
    return hashed


def test_zeroing_the_middle_of_a_large_weight_file_changes_the_fingerprint(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    weights = model / "model.safetensors"
    with weights.open("wb") as handle:  # 65 MiB (sparse): over the old 64 MiB head+tail limit
        handle.truncate(65 * MiB)
        handle.seek(32 * MiB)
        handle.write(b"\x01" * MiB)
    before = fingerprint_path(model, cache=tmp_path / "cache")
    with weights.open("r+b") as handle:  # zero it again: same size, same first and last MiB
        handle.seek(32 * MiB)
        handle.write(bytes(MiB))
    assert weights.stat().st_size == 65 * MiB
    after = fingerprint_path(model, cache=tmp_path / "cache")
    assert after != before
    assert after == fingerprint_path(model, cache=tmp_path / "other-cache")  # not the cache's doing


def test_digests_are_cached_by_size_and_mtime(tmp_path, monkeypatch):
    model, cache = tmp_path / "model", tmp_path / "cache"
    model.mkdir()
    weights = model / "model.safetensors"
    weights.write_bytes(os.urandom(2 * MiB))
    (model / "config.json").write_text("{}")
    (model / "notes.txt").write_text("not part of the model")
    hashed = _count_hashes(monkeypatch)

    first = fingerprint_path(model, cache=cache)
    assert sorted(hashed) == ["config.json", "model.safetensors"]  # small files: not cached
    assert (cache / "fingerprints.sqlite").is_file()
    hashed.clear()
    assert fingerprint_path(model, cache=cache) == first
    assert hashed == ["config.json"]  # the 2 MiB file came from the cache

    # Renamed into place (as builds are): same inode, size and mtime -> still cached.
    moved = model.rename(tmp_path / "moved")
    hashed.clear()
    assert fingerprint_path(moved, cache=cache) == first
    assert "model.safetensors" not in hashed

    # A new mtime means it may have changed: hashed again (same bytes, same fingerprint).
    stat = (moved / "model.safetensors").stat()
    os.utime(moved / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    hashed.clear()
    assert fingerprint_path(moved, cache=cache) == first
    assert "model.safetensors" in hashed

    # Same mtime, another size: hashed again, and the fingerprint changes.
    with (moved / "model.safetensors").open("ab") as handle:
        handle.write(b"\0")
    os.utime(moved / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    hashed.clear()
    assert fingerprint_path(moved, cache=cache) != first
    assert "model.safetensors" in hashed


def test_a_corrupt_digest_cache_is_ignored_and_replaced(tmp_path):
    model, cache = tmp_path / "model", tmp_path / "cache"
    model.mkdir()
    (model / "model.safetensors").write_bytes(os.urandom(2 * MiB))
    expected = fingerprint_path(model, cache=tmp_path / "fresh")
    cache.mkdir()
    (cache / "fingerprints.sqlite").write_bytes(b"this is not a database" * 100)
    assert fingerprint_path(model, cache=cache) == expected  # works without the cache...
    assert fingerprint_path(model, cache=cache) == expected  # ...which is rebuilt
    assert (cache / "fingerprints.sqlite").read_bytes().startswith(b"SQLite format 3")


def test_a_hub_id_is_fingerprinted_by_name(tmp_path):
    assert fingerprint_path("org/model") == fingerprint_path("org/model") != \
        fingerprint_path("org/other")


def _tiny_model(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"w": np.arange(256, dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"model_type": "llama"}')
    return folder


def test_model_dir_problem_names_the_faulty_file(tmp_path):
    model = _tiny_model(tmp_path / "m")
    weights = model / "model.safetensors"
    assert model_dir_problem(model) is None and safetensors_problem(weights) is None

    os.truncate(weights, weights.stat().st_size - 1)
    assert "truncated" in model_dir_problem(model) and str(weights) in model_dir_problem(model)
    weights.write_bytes(b"\xff" * 64)
    assert safetensors_problem(weights).startswith("truncated or not a safetensors file")
    weights.write_bytes(b"")
    assert safetensors_problem(weights) is not None
    weights.unlink()
    assert "no *.safetensors" in model_dir_problem(model)
    (model / "config.json").write_text("{")
    assert "config.json: unreadable" in model_dir_problem(model)


def test_cached_build_cleans_up_after_a_failed_build_and_stale_scratch(tmp_path):
    target = tmp_path / "models" / "thing-abc"
    stale = target.with_name(f".{target.name}.424242.build")
    (stale / "sub").mkdir(parents=True)
    neighbour = target.with_name(".thing-abcd.424242.build")  # another entry's: left alone
    neighbour.mkdir()
    logs: list[str] = []

    def broken(out: Path) -> None:
        (out / "config.json").write_text("{}")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError):
        cached_build(target, broken, problem=model_dir_problem, what="the thing", log=logs.append)
    assert not target.exists() and not stale.exists() and neighbour.exists()
    left = {p.name for p in target.parent.iterdir()} - {"thing-abc.lock"}
    assert left == {neighbour.name}  # no scratch of the failed build

    # The lock was released: the next call builds; a later one reuses without building.
    assert cached_build(target, _tiny_model, problem=model_dir_problem, what="the thing",
                        log=logs.append) == target
    assert model_dir_problem(target) is None and logs == []
    cached_build(target, broken, problem=model_dir_problem, what="the thing", log=logs.append)

    # A damaged folder is replaced, with one line saying why.
    os.truncate(target / "model.safetensors", 10)
    cached_build(target, _tiny_model, problem=model_dir_problem, what="the thing",
                 log=logs.append)
    assert model_dir_problem(target) is None
    assert len(logs) == 1 and "model.safetensors: truncated" in logs[0], logs
    assert "rebuilding the thing" in logs[0]
