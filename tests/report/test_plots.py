"""The report's PNG plots: sizes, what is drawn, left out without data, deterministic bytes."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from ftrisk.records import ConditionResult, JudgeAgreement
from ftrisk.report import plots
from tests.report.test_html import FAILED, PNG, capability, condition, sweep_cell, sweep_results

RED, ORANGE, BLUE, GOLD = "#d62728", "#ff7f0e", "#6baed6", "gold"


def size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data.startswith(PNG)
    return struct.unpack(">II", data[16:24])


def has_colour(path: Path, colour: str) -> bool:
    """Whether some pixel is (almost exactly) ``colour``: the series drawn in it is there."""
    import matplotlib.colors
    import matplotlib.image

    pixels = matplotlib.image.imread(path)[..., :3]
    target = np.array(matplotlib.colors.to_rgb(colour))
    return bool((np.abs(pixels - target).max(axis=-1) < 0.02).any())


@pytest.fixture
def conditions() -> list[dict]:
    return [condition("baseline", 0.95, cap=capability(0.46)),
            condition("baseline@attack", 0.97),
            condition("attack", 0.25, trained=True, cap=capability(0.41))]


def typed(conditions: list[dict]) -> list[ConditionResult]:
    """The conditions as the report reads them from results.json."""
    return [ConditionResult.model_validate(c) for c in conditions]


def points(conditions: list[dict]) -> list[plots.SafetyPoint]:
    return [plots.SafetyPoint(c.name, c.refusal_rate, c.refusal_rate_ci, c.capability)
            for c in typed(conditions)]


def test_refusal_rates(conditions, tmp_path):
    path = plots.refusal_rates(typed(conditions), tmp_path / "refusal.png")
    assert path == tmp_path / "refusal.png"
    assert size(path) == (800, 270)  # 8 in x (1.2 + 0.5 per condition) in at 100 dpi
    assert has_colour(path, RED) and has_colour(path, ORANGE)
    for c in conditions:
        c["over_refusal_rate"] = c["over_refusal_rate_ci"] = None
    assert not has_colour(plots.refusal_rates(typed(conditions), tmp_path / "r2.png"), ORANGE)
    assert plots.refusal_rates([], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_category_refusal_panels_per_attack(conditions, tmp_path):
    second = condition("attack-2", 0.5, trained=True)
    path = plots.category_refusal(typed([*conditions, second]), tmp_path / "categories.png")
    assert size(path) == (990, 236)  # two panels; three categories
    assert has_colour(path, BLUE) and has_colour(path, RED)
    # Without a reference baseline the panel compares the baseline and the attack only.
    without = plots.category_refusal(typed([conditions[0], conditions[2]]), tmp_path / "c2.png")
    assert not has_colour(without, BLUE)
    assert plots.category_refusal(typed(conditions[:2]), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_safety_vs_capability_one_panel_per_task(conditions, tmp_path):
    conditions[2]["capability"]["hellaswag"] = {"accuracy": 0.3, "accuracy_ci": [0.2, 0.4],
                                                "n": 50}
    path = plots.safety_vs_capability(points(conditions), tmp_path / "capability.png")
    assert size(path) == (980, 420)
    for c in conditions:
        c["capability"] = {}
    assert plots.safety_vs_capability(points(conditions), tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()


def test_judge_agreement(tmp_path):
    agreement = [{"judges": ["refusal", "rubric"], "n": 30, "cohen_kappa": 0.6, "spearman": None},
                 {"judges": ["rubric", "strongreject"], "n": 30, "cohen_kappa": -0.2,
                  "spearman": 0.8}]
    path = plots.judge_agreement([JudgeAgreement.model_validate(a) for a in agreement],
                                 tmp_path / "agreement.png")
    assert size(path) == (660, 360)
    assert has_colour(path, RED) and has_colour(path, BLUE)
    assert plots.judge_agreement([], tmp_path / "none.png") is None


def test_budget_curves_skip_failed_cells_and_empty_axes(tmp_path):
    sweep = sweep_results()
    kwargs = {"threshold": 0.5, "baseline_refusal": 0.9, "budgets": sweep["budgets"]}
    path = plots.budget_curves(sweep["cells"], tmp_path / "budget.png", **kwargs)
    assert size(path) == (1050, 720)  # 2 x 2 panels: examples, steps, tokens, seconds
    assert has_colour(path, RED) and has_colour(path, BLUE)  # cells; smallest budget line
    for cell in sweep["cells"]:
        cell["budget"].update(steps=None, tokens=None, seconds=None)
    assert size(plots.budget_curves(sweep["cells"], tmp_path / "b2.png", **kwargs)) == (550, 360)
    failed = [sweep_cell(*FAILED, with_capability=False)]
    assert plots.budget_curves(failed, tmp_path / "none.png", **kwargs) is None
    assert not (tmp_path / "none.png").exists()


def test_search_history_marks_the_best_trial(tmp_path):
    search = sweep_results()["search"]
    path = plots.search_history(search, tmp_path / "search.png")
    assert size(path) == (700, 380)
    assert has_colour(path, GOLD) and has_colour(path, RED)
    search["best"] = None
    assert not has_colour(plots.search_history(search, tmp_path / "s2.png"), GOLD)
    for trial in search["trials"]:
        trial["value"] = trial["refusal_rate"] = None
    assert plots.search_history(search, tmp_path / "none.png") is None


def test_plots_are_deterministic(conditions, tmp_path):
    first = plots.category_refusal(typed(conditions), tmp_path / "a.png").read_bytes()
    assert plots.category_refusal(typed(conditions), tmp_path / "b.png").read_bytes() == first
    assert b"matplotlib" not in first.lower()  # no software version in the PNG's metadata
