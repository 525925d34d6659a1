"""The audit with LLM judges against a loopback OpenAI-compatible server: harmfulness metrics,
judge agreement, resume from the judgment cache, and no API key in anything written."""

from __future__ import annotations

import json
import re

import pytest

from ftrisk.cli import main
from tests.fake_openai import assert_key_absent, last_user_text, running
from tests.test_pipeline import write_inputs

KEY = "sk-test-SECRET-e2e-4242"


def _score_by_prompt(body: dict) -> str:
    # Harmful prompts numbered 0 and 1 look harmful to this judge; the rest do not.
    text = last_user_text(body)
    score = 5 if re.search(r"number [01]\b", text) else 1
    return f"#thereason: placeholder.\n#thescore: {score}"


@pytest.mark.slow
def test_rubric_judge_in_the_audit(tiny_model_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FTRISK_TEST_JUDGE_KEY", KEY)
    with running(answer=_score_by_prompt) as server:
        config = write_inputs(tmp_path, tiny_model_dir)
        config.write_text(config.read_text() + f"""
reference_baselines: false
llm_judges:
  - name: rubric
    backend:
      model: judge-model
      base_url: {server.base_url}
      api_key_env: FTRISK_TEST_JUDGE_KEY
      concurrency: 4
      price_per_1k_prompt_tokens: 0.01
""")
        run_dir, cache = tmp_path / "run", tmp_path / "cache"
        argv = ["audit", "--config", str(config), "--run-dir", str(run_dir), "--cache-dir",
                str(cache), "--no-progress", "--threads", "1"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        asked = server.count()
        # 12 harmful prompts per condition, two conditions; look-alikes are not judged.
        assert asked == 24
        assert all(r.headers.get("authorization") == f"Bearer {KEY}" for r in server.requests)

        results = json.loads((run_dir / "results.json").read_text())
        for condition in results["conditions"]:
            rubric = condition["judges"]["rubric"]
            # Prompts "number 0" and "number 1" of 3 categories score 5: 6 of 12.
            assert rubric["n_scored"] == 12 and rubric["n_unscored"] == 0
            assert rubric["harmfulness_rate"] == pytest.approx(0.5)
            assert rubric["mean_score"] == pytest.approx((6 * 5 + 6 * 1) / 12)
            lo, hi = rubric["mean_score_ci"]
            assert lo <= rubric["mean_score"] <= hi
            assert rubric["prompt_tokens"] > 0 and rubric["cost_usd"] > 0
            # 4 prompts per category, 2 of them scored 5: per-category rate 0.5 with a CI.
            assert set(rubric["per_category_rate"].values()) == {0.5}
            for cat, (lo, hi) in rubric["per_category_rate_ci"].items():
                assert lo < 0.5 < hi, cat
        report = (run_dir / "report.md").read_text()
        assert "category (rubric score)" in report and "3.00 [" in report
        pair = results["judge_agreement"][0]  # the only pair: refusal vs rubric
        assert pair["judges"] == ["refusal", "rubric"] and pair["n"] == 24
        assert "harmfulness score" in out and "Cohen's kappa" in out
        assert (run_dir / "conditions" / "baseline" / "judgments-rubric.jsonl").is_file()

        # Re-running asks the endpoint nothing: judgments come from the cache.
        assert main(argv) == 0
        capsys.readouterr()
        assert server.count() == asked

    # The key never reaches the run directory, the cache or the output.
    assert_key_absent(KEY, run_dir, cache)
    assert KEY not in out


def test_missing_judge_key_stops_before_any_model_work(tiny_model_dir, tmp_path, capsys,
                                                       monkeypatch):
    monkeypatch.delenv("FTRISK_ABSENT_KEY", raising=False)
    config = write_inputs(tmp_path, tiny_model_dir)
    config.write_text(config.read_text() + """
llm_judges:
  - name: rubric
    backend: {model: gpt-4o, api_key_env: FTRISK_ABSENT_KEY}
""")
    code = main(["audit", "--config", str(config), "--run-dir", str(tmp_path / "run"),
                 "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "FTRISK_ABSENT_KEY" in err
    assert not (tmp_path / "run" / "stages").exists()


def test_unknown_llm_judge_is_a_config_error(tiny_model_dir, tmp_path, capsys):
    config = write_inputs(tmp_path, tiny_model_dir)
    config.write_text(config.read_text() + """
llm_judges:
  - name: rubrik
    backend: {model: m}
""")
    code = main(["audit", "--config", str(config), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "rubrik" in err and "rubric" in err and "llm_judges.0.name" in err


@pytest.mark.slow
def test_classifier_judge_in_the_audit(tiny_model_dir, tmp_path, capsys):
    config = write_inputs(tmp_path, tiny_model_dir)
    config.write_text(config.read_text() + f"""
reference_baselines: false
classifier_judges:
  - {{name: llamaguard, model: {tiny_model_dir}, batch_size: 4}}
""")
    run_dir = tmp_path / "run"
    assert main(["audit", "--config", str(config), "--run-dir", str(run_dir), "--cache-dir",
                 str(tmp_path / "cache"), "--no-progress", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert "[baseline] judged by llamaguard: 12 asked" in out
    results = json.loads((run_dir / "results.json").read_text())
    for condition in results["conditions"]:
        guard = condition["judges"]["llamaguard"]
        # A random-init "classifier" answers neither safe nor unsafe: unscored, not imputed.
        assert guard["n_scored"] + guard["n_unscored"] == 12
        assert guard["n_unscored"] == sum(
            json.loads(line)["score"] is None for line in
            (run_dir / "conditions" / condition["name"] / "judgments-llamaguard.jsonl").open())
    assert results["scoring_judges"][0]["name"] == "llamaguard"


@pytest.mark.slow
def test_rejudge_adds_a_judge_without_touching_a_model(tiny_model_dir, tmp_path, capsys,
                                                       monkeypatch):
    config = write_inputs(tmp_path, tiny_model_dir)
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["audit", "--config", str(config), "--run-dir", str(run_dir), "--cache-dir",
                 str(cache), "--no-progress", "--threads", "1"]) == 0
    before = json.loads((run_dir / "results.json").read_text())
    assert all(c["judges"] == {} for c in before["conditions"])
    generations = (run_dir / "conditions" / "baseline" / "generations.jsonl").read_bytes()

    import ftrisk.models.io

    def no_model(*args, **kwargs):
        raise AssertionError("rejudge must not load a model")

    monkeypatch.setattr(ftrisk.models.io, "load_model", no_model)
    monkeypatch.setenv("FTRISK_TEST_JUDGE_KEY", KEY)
    with running(answer=_score_by_prompt) as server:
        config.write_text(config.read_text() + f"""
llm_judges:
  - name: rubric
    backend: {{model: m, base_url: {server.base_url}, api_key_env: FTRISK_TEST_JUDGE_KEY}}
""")
        capsys.readouterr()
        assert main(["rejudge", str(run_dir), "--config", str(config), "--cache-dir",
                     str(cache), "--no-progress"]) == 0
        assert server.count() == 36  # 12 harmful answers x 3 conditions
    after = json.loads((run_dir / "results.json").read_text())
    assert [c["name"] for c in after["conditions"]] == [c["name"] for c in before["conditions"]]
    for old, new in zip(before["conditions"], after["conditions"]):
        assert new["refusal_rate"] == old["refusal_rate"]
        assert new["train_tokens"] == old["train_tokens"]
        assert new["judges"]["rubric"]["harmfulness_rate"] == pytest.approx(0.5)
    assert (run_dir / "conditions" / "baseline" / "generations.jsonl").read_bytes() == \
        generations
    assert "harmfulness score" in capsys.readouterr().out


def test_rejudge_needs_a_finished_run(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    assert main(["rejudge", str(tmp_path / "run")]) == 2
    assert "config.json" in capsys.readouterr().err


def _label_by_prompt(body: dict) -> str:
    # Prompts numbered 0 and 1 get refused by this judge; the rest complied with.
    label = "refusal" if re.search(r"number [01]\b|process [01]\b", last_user_text(body)) \
        else "compliance"
    return json.dumps({"reason": "placeholder", "label": label})


@pytest.mark.slow
def test_llm_refusal_judge_decides_the_rates_of_a_rejudged_run(tiny_model_dir, tmp_path, capsys,
                                                               monkeypatch):
    from ftrisk.judge.answer import unreadable

    monkeypatch.setenv("FTRISK_TEST_JUDGE_KEY", KEY)
    config = write_inputs(tmp_path, tiny_model_dir, max_new_tokens=12)
    config.write_text(config.read_text() + "reference_baselines: false\n")
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    assert main(["audit", "--config", str(config), "--run-dir", str(run_dir), "--cache-dir",
                 str(cache), "--no-progress", "--threads", "1"]) == 0
    assert json.loads((run_dir / "results.json").read_text())["judge"]["name"] == "refusal"
    with running(answer=_label_by_prompt) as server:
        llm_config = tmp_path / "llm.yaml"
        llm_config.write_text(config.read_text() + f"""
judge:
  name: refusal-llm
  backend:
    model: judge-model
    base_url: {server.base_url}
    api_key_env: FTRISK_TEST_JUDGE_KEY
""")
        argv = ["rejudge", str(run_dir), "--config", str(llm_config), "--cache-dir",
                str(cache), "--no-progress"]
        assert main(argv) == 0
        capsys.readouterr()
        asked = server.count()
        results = json.loads((run_dir / "results.json").read_text())
        assert results["judge"]["name"] == "refusal-llm"
        readable = 0
        for condition in results["conditions"]:
            folder = run_dir / "conditions" / condition["name"]
            generations = [json.loads(line) for line in
                           (folder / "generations.jsonl").read_text().splitlines()]
            judgments = {j["item_id"]: j for j in map(json.loads, (
                folder / "judgments.jsonl").read_text().splitlines())}
            harmful = [g for g in generations if g["kind"] == "harmful"]
            expected = []
            for g in generations:
                screened = unreadable(g["response"])
                verdict = judgments[g["item_id"]]["verdict"]
                if screened is not None:
                    assert verdict == screened[0]
                    continue
                readable += 1
                refused = re.search(r"number [01]\b|process [01]\b", g["prompt"])
                assert verdict == ("refusal" if refused else "compliance"), g["prompt"]
                if g["kind"] == "harmful":
                    expected.append(verdict)
            assert condition["refusal_rate"] == pytest.approx(
                expected.count("refusal") / len(harmful))
            assert condition["compliance_rate"] == pytest.approx(
                expected.count("compliance") / len(harmful))
        # Every readable answer (harmful and look-alike) was asked about once.
        assert asked == readable > 0

        # Re-judging again asks nothing: the verdicts come from the cache.
        assert main(argv) == 0
        capsys.readouterr()
        assert server.count() == asked
    assert_key_absent(KEY, run_dir, cache)
