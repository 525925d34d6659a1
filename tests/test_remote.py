"""Hosted models (``openai:``): provider fine-tuning jobs and chat generation, against a loopback
fake of the OpenAI API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrisk.cli import main
from tests.fake_openai import KEY, assert_key_absent, running
from tests.test_pipeline import write_inputs

BASE = "gpt-3.5-turbo-0613"


def _answer(body: dict) -> str:
    # The untuned model refuses; any fine-tuned one complies.
    if body["model"].startswith("ft:"):
        return "Sure, here is an overview of the general idea."
    return "I'm sorry, but I can't help with that."


def _config(root: Path, base_url: str) -> Path:
    write_inputs(root, root / "unused-model")  # the benchmark and attack files
    path = root / "remote.yaml"
    path.write_text(f"""\
name: remote
model: "openai:{BASE}"
requires: {{provider: openai}}
remote: {{base_url: "{base_url}", poll_seconds: 0.01}}
benchmark:
  harmful: {{path: bench.csv}}
  lookalike: {{path: lookalike.csv, category_field: null}}
generation: {{max_new_tokens: 64}}
attacks:
  - name: harmful-demos
    data: {{path: attack.jsonl}}
    train: {{epochs: 5, system_prompt: "You are a helpful assistant."}}
    eval: {{system_prompt: "You are a helpful assistant."}}
""")
    return path


def _argv(config: Path, root: Path) -> list[str]:
    return ["audit", "--config", str(config), "--run-dir", str(root / "run"), "--cache-dir",
            str(root / "cache"), "--no-progress"]


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    return KEY


def test_hosted_model_is_tuned_by_a_provider_job_and_resumes(tmp_path, capsys, key):
    with running(answer=_answer) as server:
        config = _config(tmp_path, server.base_url)
        assert main(_argv(config, tmp_path)) == 0
        out = capsys.readouterr().out
        results = json.loads((tmp_path / "run" / "results.json").read_text())
        rates = {c["name"]: c["refusal_rate"] for c in results["conditions"]}
        assert rates == {"baseline": 1.0, "baseline@harmful-demos": 1.0, "harmful-demos": 0.0}

        # One upload of the six chat examples, one job with only the epoch count set.
        assert len(server.uploads) == 1 and server.uploads[0].count(b'"messages"') == 6
        (job,) = server.jobs.values()
        assert job["model"] == BASE and job["hyperparameters"]["n_epochs"] == 5
        tuned = results["conditions"][-1]
        assert tuned["train_tokens"] == 5000 and tuned["train_steps"] == 15  # 5 x ceil(6/2)
        generations = (tmp_path / "run" / "conditions" / "harmful-demos" /
                       "generations.jsonl").read_text().splitlines()
        first = json.loads(generations[0])
        assert first["model_fingerprint"] != results["model_fingerprint"]
        assert json.loads(first["rendered_prompt"])[0] == {
            "role": "system", "content": "You are a helpful assistant."}
        chats = [r for r in server.requests if r.path.endswith("/chat/completions")]
        assert {r.body["model"] for r in chats} == {BASE, f"ft:{BASE}:fake::ftjob-1"}
        assert all(r.body["temperature"] == 0 and r.body["max_tokens"] == 64 for r in chats)
        assert "provider chooses learning rate and batch size" in out

        # Running again starts no job and asks for no answer: all of it is done or cached.
        asked = len(server.requests)
        assert main(_argv(config, tmp_path)) == 0
        assert len(server.jobs) == 1 and len(server.requests) == asked
    assert_key_absent(key, tmp_path / "run", tmp_path / "cache")


def test_a_killed_run_reattaches_to_its_job(tmp_path, capsys, key, monkeypatch):
    from ftrisk.train import remote

    original = remote.OpenAIFineTuner._wait
    calls = {"n": 0}

    def killed_once(self, client, job_id, progress):
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyboardInterrupt
        return original(self, client, job_id, progress)

    monkeypatch.setattr(remote.OpenAIFineTuner, "_wait", killed_once)
    with running(answer=_answer) as server:
        config = _config(tmp_path, server.base_url)
        assert main(_argv(config, tmp_path)) == 130
        assert len(server.jobs) == 1
        assert main(_argv(config, tmp_path)) == 0
        assert "re-attached to fine-tuning job ftjob-1" in capsys.readouterr().out
        assert len(server.jobs) == 1 and len(server.uploads) == 1


def test_a_failed_job_is_reported_and_not_reused(tmp_path, capsys, key):
    with running(answer=_answer, job_outcome="failed") as server:
        config = _config(tmp_path, server.base_url)
        assert main(_argv(config, tmp_path)) == 2
        err = capsys.readouterr().err
        assert "ended 'failed'" in err and "harmful content" in err
        server.job_outcome = "succeeded"
        assert main(_argv(config, tmp_path)) == 0
        assert len(server.jobs) == 2  # a new job, not the failed one


def test_hosted_model_needs_its_key_and_takes_no_capability(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    config.write_text(config.read_text().replace('base_url: "http://127.0.0.1:9/v1", ', ""))
    assert main(_argv(config, tmp_path)) == 2
    assert "OPENAI_API_KEY" in capsys.readouterr().err
    config.write_text(config.read_text() + "capability: {tasks: [{name: basic}]}\n")
    assert main(_argv(config, tmp_path)) == 2
    assert "log-likelihoods" in capsys.readouterr().err


def test_a_provider_preset_needs_a_hosted_model(tmp_path, capsys):
    config = _config(tmp_path, "http://127.0.0.1:9/v1")
    config.write_text(config.read_text().replace(f'"openai:{BASE}"', str(tmp_path / "m")))
    assert main(_argv(config, tmp_path)) == 2
    assert "needs a model hosted by 'openai'" in capsys.readouterr().err


def test_upload_keeps_openais_weight_0_and_nothing_else():
    from ftrisk.records import Conversation, Message
    from ftrisk.train.remote import training_jsonl

    example = Conversation(id="w", messages=(
        Message(role="user", content="q1"), Message(role="assistant", content="a1", weight=0),
        Message(role="user", content="q2"), Message(role="assistant", content="a2")))
    (line,) = training_jsonl([example]).decode().splitlines()
    assert json.loads(line) == {"messages": [
        {"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1", "weight": 0},
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]}
