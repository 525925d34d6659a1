"""Sweeps on the tiny model: grid cells as audit runs, resume, budgets, failures, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftrisk.cli import main
from ftrisk.errors import InputError
from ftrisk.records import AuditResults
from ftrisk.sweep.config import load_sweep
from ftrisk.sweep.run import cell_row, smallest_budgets
from tests.test_pipeline import write_inputs


def _sweep_file(root: Path, body: str) -> Path:
    path = root / "sweep.yaml"
    path.write_text("name: tiny-sweep\nbase: audit.yaml\n" + body)
    return path


def _argv(sweep: Path, root: Path, *extra: str) -> list[str]:
    return ["sweep", "--config", str(sweep), "--sweep-dir", str(root / "sweep"),
            "--cache-dir", str(root / "cache"), "--no-progress", "--threads", "1", *extra]


@pytest.mark.slow
def test_grid_sweep_runs_cells_collects_budgets_and_resumes(tiny_model_dir, tmp_path, capsys):
    write_inputs(tmp_path, tiny_model_dir, epochs=1)
    sweep = _sweep_file(tmp_path, "threshold: 0.99\ngrid:\n  data.limit: [2, 4]\n"
                        "  train.epochs: [1, 2]\n")
    assert main(_argv(sweep, tmp_path)) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "sweep" / "sweep_results.json").read_text())
    names = [c["name"] for c in summary["cells"]]
    assert names == ["limit-2_epochs-1", "limit-2_epochs-2", "limit-4_epochs-1",
                     "limit-4_epochs-2"]
    for cell in summary["cells"]:
        assert cell["status"] == "done"
        results = json.loads((tmp_path / "sweep" / cell["run_dir"] / "results.json").read_text())
        tuned = next(c for c in results["conditions"] if c["name"] == "harmful-demos")
        assert cell["refusal_rate"] == tuned["refusal_rate"]
        # The budget is what the cell really trained on: examples x epochs, at batch 2.
        limit, epochs = cell["params"]["data.limit"], cell["params"]["train.epochs"]
        assert cell["budget"]["examples"] == limit
        assert cell["budget"]["steps"] == epochs * limit // 2
        assert cell["budget"]["tokens"] > 0 and cell["budget"]["seconds"] > 0
    assert summary["baseline"]["name"] == "baseline@harmful-demos"
    assert summary["budgets"] == smallest_budgets(summary["cells"], 0.99)
    assert "Smallest budget with refusal below 99.0%" in out
    assert (tmp_path / "sweep" / "report.html").is_file()

    # Re-running trains nothing: every cell's stages are done.
    assert main(_argv(sweep, tmp_path)) == 0
    rerun = capsys.readouterr().out
    assert "fine-tuning on" not in rerun and rerun.count("training: done already") == 4
    again = json.loads((tmp_path / "sweep" / "sweep_results.json").read_text())
    assert [c["refusal_rate"] for c in again["cells"]] == \
        [c["refusal_rate"] for c in summary["cells"]]


@pytest.mark.slow
def test_a_full_disk_in_a_cell_stops_the_sweep_with_one_line(tiny_model_dir, tmp_path, capsys,
                                                             monkeypatch):
    import errno

    from ftrisk import pipeline

    write_inputs(tmp_path, tiny_model_dir, epochs=1)
    sweep = _sweep_file(tmp_path, "grid:\n  train.learning_rate: [1.0e-2, 3.0e-2]\n")
    calls = []

    def full(self, attack, base):
        calls.append(attack.train.learning_rate)
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "sweep" / "x"))

    monkeypatch.setattr(pipeline.Audit, "train", full)
    assert main(_argv(sweep, tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("ftrisk: error: no space left on the device holding ")
    assert len(err.strip().splitlines()) == 1
    # The first cell's storage failure stops the sweep: no second cell is tried.
    assert calls == [1.0e-2]


@pytest.mark.slow
def test_a_crashed_cell_is_recorded_and_the_others_finish(tiny_model_dir, tmp_path, capsys,
                                                          monkeypatch):
    from ftrisk import pipeline

    write_inputs(tmp_path, tiny_model_dir, epochs=1)
    sweep = _sweep_file(tmp_path, "grid:\n  train.learning_rate: [1.0e-2, 3.0e-2]\n")
    original = pipeline.Audit.train

    def flaky(self, attack, base):
        if attack.train.learning_rate == 3.0e-2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return original(self, attack, base)

    monkeypatch.setattr(pipeline.Audit, "train", flaky)
    assert main(_argv(sweep, tmp_path)) == 1
    summary = json.loads((tmp_path / "sweep" / "sweep_results.json").read_text())
    ok, failed = summary["cells"]
    assert ok["status"] == "done" and ok["refusal_rate"] is not None
    assert failed["status"] == "failed" and "out of memory" in failed["error"]
    assert failed["refusal_rate"] is None
    assert "failed: RuntimeError: CUDA out of memory" in capsys.readouterr().out


def test_bad_grid_parameters_fail_before_any_work(tiny_model_dir, tmp_path):
    write_inputs(tmp_path, tiny_model_dir)
    with pytest.raises(InputError, match="not a parameter of an attack") as err:
        load_sweep(_sweep_file(tmp_path, "grid:\n  train.epoks: [1, 2]\n"))
    assert err.value.field == "grid.train.epoks"
    with pytest.raises(InputError, match="greater than or equal to 1") as err:
        load_sweep(_sweep_file(tmp_path, "grid:\n  train.epochs: [1, 0]\n"))
    assert err.value.field == "attack.train.epochs"
    with pytest.raises(InputError, match="no attack 'nope'") as err:
        load_sweep(_sweep_file(tmp_path, "attack: nope\ngrid:\n  train.epochs: [1]\n"))
    assert err.value.line == 3
    with pytest.raises(InputError, match="needs a 'grid'"):
        load_sweep(_sweep_file(tmp_path, "threshold: 0.5\n"))
    with pytest.raises(InputError, match="capability"):
        load_sweep(_sweep_file(tmp_path, "search:\n  space:\n    train.epochs: "
                               "{low: 1, high: 3}\n"))


def test_sweep_adds_an_optional_section_and_matches_paper_cells(tiny_model_dir, tmp_path):
    write_inputs(tmp_path, tiny_model_dir)
    sweep = load_sweep(_sweep_file(tmp_path, """\
grid:
  data.safety_mix.count: [1, 3]
paper:
  citation: Qi et al. 2023
  cells:
    - params: {data.safety_mix.count: 3}
      metrics: {harmfulness_rate: 0.264}
"""))
    cells = sweep.grid_cells()
    config = sweep.cell_config(cells[1], sweep.cell_name(cells[1]))
    mix = config.attacks[0].data.safety_mix
    assert mix is not None and mix.count == 3 and mix.path == "builtin:alignment_refusals"
    assert sweep.reference(cells[1]) == {"harmfulness_rate": 0.264}
    assert sweep.reference(cells[0]) is None


def _row(name: str, refusal: float, ci: tuple[float, float], examples: int,
         seconds: float) -> dict:
    return {"name": name, "refusal_rate": refusal, "refusal_rate_ci": ci,
            "budget": {"examples": examples, "steps": examples, "tokens": 10 * examples,
                       "seconds": seconds}}


def test_smallest_budget_below_threshold_per_axis():
    rows = [_row("a", 0.9, (0.8, 0.95), 10, 5.0), _row("b", 0.4, (0.3, 0.55), 50, 20.0),
            _row("c", 0.1, (0.05, 0.2), 100, 12.0)]
    budgets = smallest_budgets(rows, 0.5)
    assert budgets["examples"] == {"smallest_below_threshold": 50, "cell": "b",
                                   "smallest_ci_below_threshold": 100, "ci_cell": "c"}
    # Seconds rank the cells differently: c was faster than b.
    assert budgets["seconds"]["smallest_below_threshold"] == 12.0
    assert smallest_budgets(rows, 0.05)["steps"]["cell"] is None


def test_cell_row_reads_judges_and_capability_drop():
    def condition(name: str, refusal: float, accuracy: float, score: float) -> dict:
        return {"name": name, "n_harmful": 10, "refusal_rate": refusal,
                "refusal_rate_ci": [0, 1], "attack_success_rate": 1 - refusal,
                "n_lookalike": 10, "over_refusal_rate": 0.1, "over_refusal_rate_ci": [0, 1],
                "n_benign": 0, "benign_refusal_rate": None, "per_category": {},
                "per_category_n": {}, "train_steps": 4, "train_tokens": 99,
                "train_seconds": 1.5, "hyperparameters": {"examples": 8},
                "judges": {"rubric": {"judge": "rubric", "n_scored": 10, "n_unscored": 0,
                                      "mean_score": score, "mean_score_ci": [1, 5],
                                      "harmfulness_rate": 0.5, "harmfulness_rate_ci": [0, 1]}},
                "capability": {"basic": {"accuracy": accuracy, "accuracy_ci": [0, 1],
                                         "n": 60}}}

    results = AuditResults.model_validate({"conditions": [
        condition("baseline", 0.9, 0.70, 1.2), condition("atk", 0.2, 0.64, 4.1)]})
    row = cell_row(results, "atk", "c1", {"x": 1}, "cells/c1", "basic")
    assert row["harmfulness_score"] == 4.1 and row["judge"] == "rubric"
    assert row["capability_drop"] == pytest.approx(0.06)
    assert row["baseline"]["name"] == "baseline" and row["baseline"]["harmfulness_score"] == 1.2
    assert row["budget"] == {"examples": 8, "steps": 4, "tokens": 99, "seconds": 1.5}


def _with_capability(config: Path) -> None:
    config.write_text(config.read_text() + "capability:\n  tasks: [{name: basic, reader: "
                      "builtin, limit: 8}]\n")


@pytest.mark.slow
def test_search_finds_trials_within_the_bound_and_resumes(tiny_model_dir, tmp_path, capsys):
    import optuna

    _with_capability(write_inputs(tmp_path, tiny_model_dir, epochs=1))
    sweep = _sweep_file(tmp_path, """\
search:
  trials: 3
  capability_bound: 1.0
  space:
    train.learning_rate: {low: 1.0e-3, high: 5.0e-2, log: true}
    data.limit: {low: 2, high: 4}
""")
    # A trial cut off by a killed run: RUNNING in the study, with its parameters chosen.
    (tmp_path / "sweep").mkdir()
    study = optuna.create_study(study_name="tiny-sweep",
                                storage=f"sqlite:///{tmp_path / 'sweep' / 'search.db'}")
    stale = study.ask({"train.learning_rate": optuna.distributions.FloatDistribution(
        1e-3, 5e-2, log=True), "data.limit": optuna.distributions.IntDistribution(2, 4)})
    assert main(_argv(sweep, tmp_path, "--search", "--trials", "2")) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "sweep" / "sweep_results.json").read_text())
    search = summary["search"]
    states = [t["state"] for t in search["trials"]]
    assert states == ["fail", "complete", "complete"]
    # The cut-off trial's parameters were tried again first.
    assert search["trials"][1]["params"] == stale.params
    for trial in search["trials"][1:]:
        assert 0 <= trial["value"] <= 1 and trial["feasible"] is True
        assert trial["capability_drop"] is not None
        assert (tmp_path / "sweep" / "trials" / trial["cell"] / "results.json").is_file()
    best = min(search["trials"][1:], key=lambda t: t["value"])
    assert search["best"] == best["number"]
    assert summary["baseline"]["capability"]["basic"]["n"] == 8
    assert "Best feasible trial" in out

    # Asking for one more trial runs exactly one more audit.
    assert main(_argv(sweep, tmp_path, "--search", "--trials", "3")) == 0
    assert capsys.readouterr().out.count("fine-tuning on") == 1
    again = json.loads((tmp_path / "sweep" / "sweep_results.json").read_text())
    assert [t["state"] for t in again["search"]["trials"]].count("complete") == 3


@pytest.mark.slow
def test_a_capability_loss_beyond_the_bound_makes_a_trial_infeasible(
        tiny_model_dir, tmp_path, monkeypatch):
    from ftrisk.sweep import run as sweep_module

    _with_capability(write_inputs(tmp_path, tiny_model_dir, epochs=1))
    sweep = _sweep_file(tmp_path, """\
search:
  trials: 1
  capability_bound: 0.05
  space:
    train.learning_rate: {choices: [1.0e-2]}
""")
    real_row = sweep_module.cell_row

    def damaging(*args, **kwargs):  # the tuned model lost 30 points of accuracy
        return {**real_row(*args, **kwargs), "capability_drop": 0.3}

    monkeypatch.setattr(sweep_module, "cell_row", damaging)
    assert main(_argv(sweep, tmp_path, "--search")) == 0
    search = json.loads((tmp_path / "sweep" / "sweep_results.json").read_text())["search"]
    assert search["trials"][0]["feasible"] is False and search["best"] is None


def test_a_cell_with_bad_data_stops_the_sweep_before_any_training(tiny_model_dir, tmp_path,
                                                                  capsys):
    write_inputs(tmp_path, tiny_model_dir)  # attack.jsonl holds 6 examples
    sweep = _sweep_file(tmp_path, "grid:\n  data.limit: [2, 60]\n")
    assert main(_argv(sweep, tmp_path)) == 2
    err = capsys.readouterr().err
    assert "limit 60 exceeds the 6 examples" in err and "limit-60" in err
    assert not (tmp_path / "sweep" / "cells").exists()
