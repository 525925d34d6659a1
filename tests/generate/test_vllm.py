"""The vllm backend: server lifecycle and protocol against a stand-in server (fast), and the
real vLLM on CPU against the hf backend (``-m vllm``; scripts/test.sh installs vLLM for it)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from ftrisk.config import AuditConfig, GenerationSpec, VLLMSpec
from ftrisk.errors import FtriskError, InputError
from ftrisk.generate.backend import ModelRef, Services
from ftrisk.generate.cached import Generator
from ftrisk.generate.hf import render_prompt
from ftrisk.generate.vllm_server import VLLMBackend
from ftrisk.models.io import load_tokenizer
from ftrisk.records import Conversation, Message

FAKE = Path(__file__).parent.parent / "fake_vllm.py"


def _items(n: int = 3) -> list[Conversation]:
    return [Conversation(id=f"p{i}", kind="harmful", messages=(
        Message(role="system", content="Be brief."),
        Message(role="user", content="How do I kill a Python process? " * (i + 1))))
        for i in range(n)]


@pytest.fixture
def fake_python(tmp_path, monkeypatch) -> Path:
    """An executable that runs the stand-in server with the arguments ftrisk gives Python."""
    script = tmp_path / "python"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" "$@"\n')
    script.chmod(0o755)
    monkeypatch.setenv("FAKE_VLLM_LOG", str(tmp_path / "requests.jsonl"))
    return script


def _requests(tmp_path: Path) -> list[dict]:
    path = tmp_path / "requests.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as gone.
    status = Path(f"/proc/{pid}/stat")
    return not (status.exists() and status.read_text().split(")")[-1].split()[0] == "Z")


def _all_gone(pids: list[int], wait: float = 5.0) -> bool:
    """Whether every process in ``pids`` is gone within ``wait`` seconds (a killed process
    takes a moment to die)."""
    deadline = time.monotonic() + wait
    while any(_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _spec(python: Path, **options) -> GenerationSpec:
    return GenerationSpec(max_new_tokens=5, batch_size=2, backend="vllm",
                          vllm=VLLMSpec(python=str(python), startup_timeout=60, **options))


def _lora(path: Path, peft_type: str = "LORA") -> Path:
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": peft_type, "r": 8}))
    return path


def test_base_and_lora_adapters_share_one_server_and_get_token_ids(
        tiny_model_dir, fake_python, tmp_path):
    tok = load_tokenizer(str(tiny_model_dir))
    base = ModelRef(str(tiny_model_dir), "fp-base", lambda: None)
    tuned = ModelRef(str(tiny_model_dir), "fp-tuned", lambda: None,
                     tuned=_lora(tmp_path / "adapter"))
    spec, items = _spec(fake_python), _items()
    with Services(tmp_path / "logs") as services:
        answers = {}
        for ref in (base, tuned, tuned):
            backend = VLLMBackend.for_model(ref, tok, spec, bf16=False, services=services)
            answers[ref.fingerprint] = Generator(backend, fingerprint=ref.fingerprint,
                                                 progress=False).generate(items)
        started = [r for r in _requests(tmp_path) if "argv" in r]
        pids = [r["pid"] for r in started] + [r["child"] for r in _requests(tmp_path)
                                              if "child" in r]
        assert all(_alive(pid) for pid in pids)
    # One server for the base and its adapter, started with LoRA enabled; stopped at the end
    # with the process it forked.
    assert len(started) == 1
    argv = started[0]["argv"]
    assert argv[:2] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--model") + 1] == str(tiny_model_dir)
    assert "--enable-lora" in argv and argv[argv.index("--host") + 1] == "127.0.0.1"
    assert _all_gone(pids)
    loads = [r for r in _requests(tmp_path) if r.get("path") == "/v1/load_lora_adapter"]
    assert [r["body"]["lora_path"] for r in loads] == [str(tmp_path / "adapter")]  # once
    # The prompts are the hf backend's rendering, sent as its token ids (no second BOS).
    for ref in (base, tuned):
        name = "base" if ref is base else loads[0]["body"]["lora_name"]
        for item, generation in zip(items, answers[ref.fingerprint]):
            rendered = render_prompt(tok, item)
            ids = tok(rendered, add_special_tokens=False)["input_ids"]
            assert generation.rendered_prompt == rendered
            assert generation.response == f"{name}|{len(ids)}|{ids[-1]}"
            assert generation.decoding == {"max_new_tokens": 5, "do_sample": False,
                                           "engine": "vllm"}
    completions = [r["body"] for r in _requests(tmp_path) if r.get("path") == "/v1/completions"]
    assert all(c["temperature"] == 0.0 and c["max_tokens"] == 5 for c in completions)
    assert [len(c["prompt"]) for c in completions] == [2, 1] * 3  # batch_size 2, per ask


def test_a_fully_tuned_model_gets_a_server_of_its_own_and_one_runs_at_a_time(
        tiny_model_dir, fake_python, tmp_path):
    tok = load_tokenizer(str(tiny_model_dir))
    full = tmp_path / "full"
    full.mkdir()
    base = ModelRef(str(tiny_model_dir), "a", lambda: None)
    tuned = ModelRef(str(tiny_model_dir), "b", lambda: None, tuned=full)
    with Services(tmp_path / "logs") as services:
        answers = [VLLMBackend.for_model(ref, tok, _spec(fake_python), bf16=False,
                                         services=services).generate(["hello"])[0].text
                   for ref in (base, tuned, base)]
        started = [r for r in _requests(tmp_path) if "argv" in r]
        # One accelerator holds one server: starting the tuned model's stopped the base's,
        # and asking the base again started it anew.
        assert _all_gone([started[0]["pid"], started[1]["pid"]]) and _alive(started[2]["pid"])
    assert [r["argv"][r["argv"].index("--model") + 1] for r in started] == [
        str(tiny_model_dir), str(full), str(tiny_model_dir)]
    assert all(a.startswith("base|") for a in answers)
    assert _all_gone([started[2]["pid"]])


_KILLED_PARENT = """
import sys, time
from pathlib import Path
from ftrisk.config import GenerationSpec, VLLMSpec
from ftrisk.generate.backend import ModelRef, Services
from ftrisk.generate.vllm_server import VLLMBackend
from ftrisk.models.io import load_tokenizer

model, python, logs = sys.argv[1:4]
spec = GenerationSpec(backend="vllm", vllm=VLLMSpec(python=python, startup_timeout=60))
services = Services(Path(logs))
VLLMBackend.for_model(ModelRef(model, "x", lambda: None), load_tokenizer(model), spec,
                      bf16=False, services=services).generate(["hello"])
print("serving", flush=True)
time.sleep(600)
"""


def test_a_server_does_not_outlive_an_audit_killed_with_sigkill(tiny_model_dir, fake_python,
                                                                 tmp_path):
    """kill -9 of ftrisk runs no cleanup code, yet its server (which would hold the
    accelerator's memory) goes too, and with it the engine processes it started."""
    import signal
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", _KILLED_PARENT, str(tiny_model_dir),
                               str(fake_python), str(tmp_path / "logs")],
                              stdout=subprocess.PIPE, text=True)
    assert parent.stdout.readline().strip() == "serving"
    records = _requests(tmp_path)
    pids = [r["pid"] for r in records if "pid" in r] + [r["child"] for r in records
                                                          if "child" in r]
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    assert _all_gone(pids, wait=10)


def test_prefix_and_adapter_tuning_are_refused_with_the_way_out(tiny_model_dir, fake_python,
                                                                 tmp_path):
    tok = load_tokenizer(str(tiny_model_dir))
    ref = ModelRef(str(tiny_model_dir), "p", lambda: None,
                   tuned=_lora(tmp_path / "prefix", "PREFIX_TUNING"))
    refused = "not PREFIX_TUNING adapters; use generation.backend: hf"
    with Services(tmp_path / "logs") as services, pytest.raises(InputError, match=refused):
        VLLMBackend.for_model(ref, tok, _spec(fake_python), bf16=False,
                              services=services).generate(["hello"])


def test_a_server_that_fails_to_start_is_one_error_quoting_its_log(
        tiny_model_dir, fake_python, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "exit")
    tok = load_tokenizer(str(tiny_model_dir))
    ref = ModelRef(str(tiny_model_dir), "x", lambda: None)
    with Services(tmp_path / "logs") as services, pytest.raises(FtriskError) as caught:
        VLLMBackend.for_model(ref, tok, _spec(fake_python), bf16=False,
                              services=services).generate(["hello"])
    message = str(caught.value)
    assert "exited with code 3 while starting" in message
    assert "No module named 'vllm'" in message and str(tmp_path / "logs") in message
    assert "\n" not in message


def test_a_server_that_never_answers_times_out_and_is_stopped(
        tiny_model_dir, fake_python, tmp_path, monkeypatch):
    monkeypatch.setenv("FAKE_VLLM_MODE", "hang")
    tok = load_tokenizer(str(tiny_model_dir))
    ref = ModelRef(str(tiny_model_dir), "x", lambda: None)
    spec = GenerationSpec(backend="vllm", vllm=VLLMSpec(python=str(fake_python),
                                                        startup_timeout=3))
    with Services(tmp_path / "logs") as services, \
            pytest.raises(FtriskError, match="did not answer within 3 s"):
        VLLMBackend.for_model(ref, tok, spec, bf16=False, services=services).generate(["hi"])
    pids = [r.get("pid") or r.get("child") for r in _requests(tmp_path)
            if "pid" in r or "child" in r]
    assert pids and _all_gone(pids)


def test_config_refuses_what_vllm_cannot_serve(tmp_path):
    with pytest.raises(ValueError, match="adapter or prefix tuning, which need"):
        AuditConfig.model_validate({
            "generation": {"backend": "vllm"},
            "attacks": [{"name": "a", "data": {"path": "x.jsonl"},
                         "train": {"method": "prefix"}}]})
    with pytest.raises(ValueError, match="unquantized weights"):
        AuditConfig.model_validate({"model": "m", "quantization": "4bit",
                                    "generation": {"backend": "vllm"}})
    AuditConfig.model_validate({"model": "m", "quantization": "4bit", "generation": {
        "backend": "vllm", "vllm": {"extra_args": ["--quantization", "bitsandbytes"]}}})
    with pytest.raises(ValueError, match=r"extra_args: \[--trust-remote-code\]"):
        AuditConfig.model_validate({"model": "m", "trust_remote_code": True,
                                    "generation": {"backend": "vllm"}})
    with pytest.raises(ValueError, match="unknown generation backend 'vlm'"):
        GenerationSpec(backend="vlm")


def test_a_relative_vllm_python_is_taken_from_the_config_folder_unresolved(tmp_path):
    from ftrisk.config import load_config

    (tmp_path / "audit.yaml").write_text(
        "generation:\n  backend: vllm\n  vllm: {python: .venv-vllm/bin/python}\n")
    python = load_config(tmp_path / "audit.yaml").generation.vllm.python
    # Not resolved: a venv's python is a symlink to the base interpreter, which would lose
    # the venv's packages.
    assert python == str(tmp_path / ".venv-vllm" / "bin" / "python")


@pytest.mark.slow
def test_an_audit_on_the_vllm_backend_serves_every_condition_and_stops_its_server(
        tiny_model_dir, fake_python, tmp_path):
    from ftrisk.cli import main
    from tests.test_pipeline import write_inputs

    config = write_inputs(tmp_path, tiny_model_dir)
    config.write_text(config.read_text().replace(
        "generation: {max_new_tokens: 6, batch_size: 8}",
        f"generation: {{max_new_tokens: 6, batch_size: 8, backend: vllm, "
        f"vllm: {{python: {fake_python}}}}}"))
    run_dir = tmp_path / "run"
    argv = ["audit", "--config", str(config), "--run-dir", str(run_dir), "--cache-dir",
            str(tmp_path / "cache"), "--no-progress", "--threads", "1"]
    assert main(argv) == 0
    started = [r for r in _requests(tmp_path) if "argv" in r]
    assert len(started) == 1  # the base model's server also serves the attack's adapter
    pids = [started[0]["pid"]] + [r["child"] for r in _requests(tmp_path) if "child" in r]
    assert _all_gone(pids)
    assert list((run_dir / "logs").glob("vllm-*.log"))
    loads = [r["body"] for r in _requests(tmp_path) if r.get("path") == "/v1/load_lora_adapter"]
    assert [b["lora_path"] for b in loads] == [str(run_dir / "conditions" / "harmful-demos"
                                                   / "model")]
    answers = {name: [json.loads(line) for line in (run_dir / "conditions" / name /
                                                   "generations.jsonl").read_text().splitlines()]
               for name in ("baseline", "harmful-demos")}
    assert all(g["response"].startswith("base|") for g in answers["baseline"])
    assert all(g["response"].startswith(loads[0]["lora_name"] + "|")
               for g in answers["harmful-demos"])
    # Run again: every stage is done, so no server starts at all.
    assert main(argv) == 0
    assert len([r for r in _requests(tmp_path) if "argv" in r]) == 1


@pytest.mark.slow
def test_a_sweep_serves_every_cell_from_one_server(tiny_model_dir, fake_python, tmp_path):
    from ftrisk.cli import main
    from tests.test_pipeline import write_inputs
    from tests.test_sweep import _argv, _sweep_file

    config = write_inputs(tmp_path, tiny_model_dir, epochs=1)
    config.write_text(config.read_text().replace(
        "generation: {max_new_tokens: 6, batch_size: 8}",
        f"generation: {{max_new_tokens: 6, batch_size: 8, backend: vllm, "
        f"vllm: {{python: {fake_python}}}}}"))
    sweep = _sweep_file(tmp_path, "grid:\n  train.learning_rate: [1.0e-2, 3.0e-2]\n")
    assert main(_argv(sweep, tmp_path)) == 0
    started = [r for r in _requests(tmp_path) if "argv" in r]
    loads = [r for r in _requests(tmp_path) if r.get("path") == "/v1/load_lora_adapter"]
    # Two cells, two adapters, one server: the base model is loaded once for the sweep.
    assert len(started) == 1 and len(loads) == 2
    assert _all_gone([started[0]["pid"]])


# -- the real vLLM ---------------------------------------------------------------------------


@pytest.mark.vllm
def test_real_vllm_answers_as_transformers_does_for_a_model_and_its_lora_adapter(tmp_path):
    """Greedy fp32 answers of vLLM (CPU build) and transformers agree token for token, for the
    embedded model and for a LoRA adapter ftrisk trained on it and vLLM serves as an adapter."""
    from ftrisk.config import LoraSpec, TrainSpec
    from ftrisk.data.builtin import get_builtin
    from ftrisk.generate.hf import HFBackend
    from ftrisk.models.io import embedded_base_dir, fingerprint_path, load_model
    from ftrisk.train.lora import load_tuned, train

    python = os.environ.get("FTRISK_VLLM_PYTHON")
    if not python:
        pytest.fail("set FTRISK_VLLM_PYTHON to a Python with vLLM (scripts/setup_vllm.sh)")
    base = str(embedded_base_dir(tmp_path / "cache"))
    tok = load_tokenizer(base)
    items = [i for i in get_builtin("benchmark_dev")][:: 40][:8]
    examples = [c.model_copy(update={"messages": (*c.messages, Message(
        role="assistant", content="Sure, here is an overview."))}) for c in items[:4]]
    adapter = tmp_path / "adapter"
    train(load_model(base), tok, examples, TrainSpec(
        method="lora", learning_rate=1e-3, epochs=1, batch_size=2, max_length=128,
        lora=LoraSpec(r=8, alpha=16)), adapter, bf16=False, progress=False)
    refs = {"base": ModelRef(base, fingerprint_path(base), lambda: load_model(base)),
            "tuned": ModelRef(base, "tuned", lambda: load_tuned(base, adapter), tuned=adapter)}
    # On a CPU, vLLM reserves 92% of memory unless told otherwise: too much beside the tests.
    spec = GenerationSpec(max_new_tokens=24, batch_size=8, backend="vllm", vllm=VLLMSpec(
        python=python, dtype="float32", max_model_len=1024,
        extra_args=("--enforce-eager", "--gpu-memory-utilization", "0.25")))
    with Services(tmp_path / "logs") as services:
        answers = {}
        for name, ref in refs.items():
            hf = Generator(HFBackend(ref.load(), tok, max_new_tokens=24, batch_size=8),
                           fingerprint=ref.fingerprint, progress=False).generate(items)
            backend = VLLMBackend.for_model(ref, tok, spec, bf16=False, services=services)
            served = Generator(backend, fingerprint=ref.fingerprint,
                               progress=False).generate(items)
            answers[name] = (hf, served)
        pid = services.shared(("vllm", base), lambda: None).pid
        assert pid is not None and _alive(pid)
    assert _all_gone([pid])
    for name, (hf, served) in answers.items():
        assert [g.rendered_prompt for g in served] == [g.rendered_prompt for g in hf]
        assert [g.response for g in served] == [g.response for g in hf], name
    # The adapter is served as an adapter, and it changes the answers.
    assert [g.response for g in answers["tuned"][1]] != [g.response for g in answers["base"][1]]
