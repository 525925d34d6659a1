"""The embedded model, where behaviour matters: GGUF -> safetensors, and safety tuning works;
and the organism cache: concurrent builds, damaged entries, the thread count in its key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftrisk import rundir
from ftrisk.models.io import embedded_base_dir, embedded_gguf_path, fingerprint_path
from ftrisk.rundir import stage_fingerprint
from ftrisk.runtime import cpu_supports_bf16
from ftrisk.stages import organism as organism_module
from ftrisk.stages.organism import OrganismSpec, ensure_organism, organism_dir
from ftrisk.store import Store


def _refusal_rate(path: str, fingerprint: str, store: Store) -> float:
    """Refusal rate on every 6th held-out harmful prompt of the built-in benchmark."""
    from ftrisk.data.builtin import get_builtin
    from ftrisk.generate.cached import Generator
    from ftrisk.generate.hf import HFBackend
    from ftrisk.judge.refusal import RefusalJudge
    from ftrisk.models.io import load_model, load_tokenizer

    items = [c for c in get_builtin("benchmark") if c.kind == "harmful"][::6]
    backend = HFBackend(load_model(path), load_tokenizer(path), max_new_tokens=24,
                        batch_size=64)
    gens = Generator(backend, fingerprint=fingerprint, store=store,
                     progress=False).generate(items)
    verdicts = [j.refused for j in RefusalJudge().judge(gens)]
    return sum(bool(v) for v in verdicts) / len(verdicts)


@pytest.mark.slow
def test_small_organism_refuses_far_more_than_its_base(tmp_path_factory):
    from ftrisk.models.io import load_tokenizer

    cache = tmp_path_factory.mktemp("cache")
    store = Store(cache / "store.sqlite")
    base = embedded_base_dir(cache)
    assert (base / "model.safetensors").is_file() and (base / "config.json").is_file()
    assert load_tokenizer(str(base)).chat_template  # SmolLM2's own template survives

    base_rate = _refusal_rate(str(base), fingerprint_path(base), store)
    spec = OrganismSpec(refusal_examples=60, benign_examples=40, lookalike_repeats=1, epochs=1)
    # As an audit with `precision: auto` would: bf16 autocast only where the CPU has it
    # (emulated bf16 on a plain AVX2 CPU is many times slower than fp32).
    bf16 = cpu_supports_bf16()
    organism = ensure_organism(
        cache, store, spec=spec, bf16=bf16, progress=False, log=lambda _: None,
        evaluate=lambda path, fp: {"refusal_rate": _refusal_rate(path, fp, store)})
    assert [p.name for p in (cache / "models").glob("organism-*") if p.is_dir()] == \
        [organism_dir(cache, spec, bf16=bf16).name]
    assert not list((cache / "models").glob(".organism-*"))  # no scratch left behind
    assert not (Path(organism.path) / "adapter").exists()
    # SmolLM2-135M-Instruct is not aligned; even a small safety tune makes it refuse.
    assert base_rate < 0.3
    assert organism.metrics["refusal_rate"] >= base_rate + 0.3
    assert organism.metrics["train"]["examples"] > 60

    # Built once: the second call verifies the cached organism without any model work.
    start = time.perf_counter()
    again = ensure_organism(cache, store, spec=spec, bf16=bf16, log=lambda _: None)
    assert time.perf_counter() - start < 2
    assert again.fingerprint == organism.fingerprint == fingerprint_path(again.path)


# -- the cache, with a stand-in for the (minutes-long) safety tuning ---------------------------

def fake_tune(out: Path, *, cache: Path, **_: object) -> dict[str, object]:
    """Stands in for ``organism._safety_tune``: writes a tiny model folder and records which
    process built it in ``cache/builds``. With $FAKE_TUNE_GATE set it signals ``started`` there
    and waits (up to 60 s) for ``release``, so a test can start a rival meanwhile."""
    import numpy as np
    from safetensors.numpy import save_file

    builds = cache / "builds"
    builds.mkdir(exist_ok=True)
    (builds / f"{os.getpid()}-{time.monotonic_ns()}").touch()
    if gate := os.environ.get("FAKE_TUNE_GATE"):
        (Path(gate) / "started").touch()
        deadline = time.monotonic() + 60
        while not (Path(gate) / "release").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    save_file({"weight": np.arange(4096, dtype=np.float32)}, str(out / "model.safetensors"))
    (out / "config.json").write_text('{"model_type": "fake"}')
    return {"fake": True}


_RACER = """
import sys
from pathlib import Path

sys.path.insert(0, {tests!r})
import test_organism
from ftrisk import rundir
from ftrisk.stages import organism
from ftrisk.store import Store

cache = Path(sys.argv[1])
organism._safety_tune = test_organism.fake_tune
rundir.code_version = lambda: "racer"  # others may be editing ftrisk while the test runs
built = organism.ensure_organism(cache, Store(cache / "store.sqlite"),
                                 log=lambda line: print("log:", line, flush=True))
print("fingerprint:", built.fingerprint, flush=True)
"""


def _racer(cache: Path, **env: str) -> subprocess.Popen[str]:
    script = _RACER.format(tests=str(Path(__file__).parent))
    return subprocess.Popen([sys.executable, "-c", script, str(cache)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "FTRISK_CACHE": str(cache), **env})


def _wait_for(path: Path, proc: subprocess.Popen[str], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _fingerprint_line(output: str) -> str:
    return next(line for line in output.splitlines() if line.startswith("fingerprint:"))


def test_two_processes_build_the_organism_once_and_both_succeed(tmp_path, monkeypatch):
    monkeypatch.setattr(rundir, "code_version", lambda: "racer")  # the racers' key
    cache, gate = tmp_path / "cache", tmp_path / "gate"
    gate.mkdir()
    target = organism_dir(cache)
    # Scratch left by killed builds (this version's and the old shared one) is cleaned up.
    stale = [target.with_name(f".{target.name}.999999.build"),
             target.with_name(target.name + ".work")]
    for folder in stale:
        (folder / "model").mkdir(parents=True)

    first = _racer(cache, FAKE_TUNE_GATE=str(gate))
    _wait_for(gate / "started", first)  # the first process is mid-build, holding the lock
    second = _racer(cache)
    assert second.stdout is not None
    seen = []
    for line in second.stdout:  # the second one says it waits rather than building too
        seen.append(line)
        if "waiting" in line:
            break
    else:
        pytest.fail(f"the second process never waited: {''.join(seen)}")
    (gate / "release").touch()
    out_first, _ = first.communicate(timeout=120)
    out_second = "".join(seen) + second.communicate(timeout=120)[0]
    assert first.returncode == 0, out_first
    assert second.returncode == 0, out_second

    assert len(list((cache / "builds").iterdir())) == 1  # exactly one build
    assert "Building" not in out_second and "rebuilding" not in out_first + out_second
    assert _fingerprint_line(out_first) == _fingerprint_line(out_second)
    assert (target / "model.safetensors").is_file() and (target / "organism.json").is_file()
    assert not any(folder.exists() for folder in stale)

    # A third run reuses the cache: no build, no log line, the same organism.
    monkeypatch.setattr(organism_module, "_safety_tune", _no_build)
    logs: list[str] = []
    third = ensure_organism(cache, Store(cache / "store.sqlite"), log=logs.append)
    assert logs == []
    assert f"fingerprint: {third.fingerprint}" == _fingerprint_line(out_first)


def _no_build(*_: object, **__: object) -> dict[str, object]:
    raise AssertionError("the organism was built again")


def _truncate(folder: Path) -> str:
    weights = folder / "model.safetensors"
    os.truncate(weights, weights.stat().st_size - 100)
    return "model.safetensors"


def _zero_middle(folder: Path) -> str:
    weights = folder / "model.safetensors"
    size = weights.stat().st_size
    with weights.open("r+b") as handle:  # same size: only a content hash can tell
        handle.seek(size // 2)
        handle.write(bytes(1024))
    return "organism.json"  # the recorded fingerprint no longer matches


def _corrupt_json(folder: Path) -> str:
    (folder / "organism.json").write_text('{"path": "x", "fingerp')
    return "organism.json"


def _drop_weights(folder: Path) -> str:  # what two racing builds used to leave behind
    (folder / "model.safetensors").unlink()
    return "weight files"


@pytest.mark.parametrize("damage", [_truncate, _zero_middle, _corrupt_json, _drop_weights])
def test_a_damaged_cached_organism_is_rebuilt_with_one_line_saying_why(tmp_path, monkeypatch,
                                                                       damage):
    cache = tmp_path / "cache"
    store = Store(cache / "store.sqlite")
    monkeypatch.setattr(organism_module, "_safety_tune", fake_tune)
    built = ensure_organism(cache, store, log=lambda _: None)
    named = damage(Path(built.path))

    logs: list[str] = []
    rebuilt = ensure_organism(cache, store, log=logs.append)
    assert len(list((cache / "builds").iterdir())) == 2
    assert len(logs) == 1 and named in logs[0] and "rebuilding the organism" in logs[0], logs
    assert rebuilt.fingerprint == built.fingerprint == fingerprint_path(rebuilt.path)

    monkeypatch.setattr(organism_module, "_safety_tune", _no_build)
    logs.clear()
    assert ensure_organism(cache, store, log=logs.append).fingerprint == built.fingerprint
    assert logs == []


def test_thread_count_is_part_of_the_organism_key_when_given(tmp_path):
    spec = OrganismSpec()
    today = stage_fingerprint(spec.model_dump(), organism_module._alignment_data_hash(spec.seed),
                              True, embedded_gguf_path().stat().st_size)
    # threads=None: the key used before the thread count was part of it.
    assert organism_dir(tmp_path, spec, bf16=True).name == f"organism-{today}"
    keys = {organism_dir(tmp_path, spec, threads=n).name for n in (None, 1, 2, 16)}
    assert len(keys) == 4
    assert organism_dir(tmp_path, spec, bf16=False, threads=2) != \
        organism_dir(tmp_path, spec, bf16=True, threads=2)
    with pytest.raises(ValueError, match="threads"):
        organism_dir(tmp_path, spec, threads=0)


def test_threads_are_recorded_in_the_organism_metrics(tmp_path, monkeypatch):
    monkeypatch.setattr(organism_module, "_safety_tune", fake_tune)
    built = ensure_organism(tmp_path, Store(tmp_path / "store.sqlite"), threads=3,
                            log=lambda _: None)
    assert built.metrics["threads"] == 3
    assert Path(built.path) == organism_dir(tmp_path, threads=3)
    assert json.loads((Path(built.path) / "organism.json").read_text())["metrics"]["threads"] == 3


@pytest.mark.parametrize("native", [True, False])
def test_the_organism_trains_in_bf16_only_where_the_machine_has_it(tmp_path, monkeypatch,
                                                                   native):
    # Emulated bf16 on an AVX2-only CPU is several times slower than fp32: unless the caller
    # says otherwise, the organism follows the hardware, like an audit's precision: auto.
    from ftrisk import runtime

    monkeypatch.setattr(runtime, "native_bf16", lambda: native)
    cache = tmp_path / "cache"
    assert organism_dir(cache) == organism_dir(cache, bf16=native) != \
        organism_dir(cache, bf16=not native)
    seen: dict[str, object] = {}

    def tune(out: Path, **settings: object) -> dict[str, object]:
        seen.update(settings)
        return fake_tune(out, **settings)

    monkeypatch.setattr(organism_module, "_safety_tune", tune)
    built = ensure_organism(cache, Store(cache / "store.sqlite"), log=lambda _: None)
    assert seen["bf16"] is native and Path(built.path) == organism_dir(cache, bf16=native)
