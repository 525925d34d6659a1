"""The terminal table and report.md: three-way outcomes, the paired test against the baseline,
capability verdicts, seed spreads, the judge sentence, and results files from before them."""

from __future__ import annotations

import re
from typing import Any

import pytest

from ftrisk.records import AuditResults, ConditionResult, PairedChange
from ftrisk.report.markdown import render_markdown
from ftrisk.report.table import (
    Capabilities,
    capabilities,
    capability_note,
    capability_rows,
    judge_text,
    p_text,
    render_terminal,
    seed_rows,
    summary_rows,
    versus_rows,
    versus_text,
)

ATTACK = "level2-aoa"
VERSUS = {"baseline": f"baseline@{ATTACK}", "difference": -0.625,
          "difference_ci": [-0.701, -0.540], "n": 80, "became_true": 1, "became_false": 51,
          "mcnemar_p": 1e-12, "holm_p": 3e-12}


def cond(name: str, refusal: float, partial: float | None = 0.1, *, n: int = 80,
         **extra: Any) -> dict[str, Any]:
    """A condition as results.json holds it (validated by the real record): the rest of the
    harmful answers are compliance, none unscored, CIs +-5 points."""
    compliance = None if partial is None else max(0.0, round(1 - refusal - partial, 6))

    def ci(x: float | None) -> tuple[float, float] | None:
        return None if x is None else (max(0.0, x - 0.05), min(1.0, x + 0.05))

    success = 1 - refusal
    return ConditionResult(
        name=name, n_harmful=n, refusal_rate=refusal, refusal_rate_ci=ci(refusal),
        partial_rate=partial, partial_rate_ci=ci(partial), compliance_rate=compliance,
        compliance_rate_ci=ci(compliance), attack_success_rate=success,
        attack_success_rate_ci=ci(success), n_lookalike=20, over_refusal_rate=0.05,
        over_refusal_rate_ci=(0.01, 0.2), n_benign=0, benign_refusal_rate=None,
        per_category={"malware": refusal}, per_category_n={"malware": n}, **extra,
    ).model_dump(mode="json")


def spread(values: list[float], seeds: tuple[int, ...] = (0, 1, 2)) -> dict[str, Any]:
    mean = sum(values) / len(values)
    sd = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
    return {"seeds": list(seeds), "values": values, "mean": mean, "sd": sd, "min": min(values),
            "max": max(values)}


def cap(accuracy: float, verdict: str | None = None, margin: float = 0.05) -> dict[str, Any]:
    task = {"accuracy": accuracy, "accuracy_ci": [accuracy - 0.066, accuracy + 0.058], "n": 200}
    if verdict:
        task["versus_baseline"] = {"difference": -0.015, "difference_ci": [-0.04, 0.01],
                                   "confidence": 0.9, "margin": margin, "tost_p": 0.01,
                                   "verdict": verdict, "n": 200}
    return {"basic": task}


def summary(conditions: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"name": "unit", "model": "tiny", "model_fingerprint": "abc", "ftrisk_version": "0",
            "schema_version": 2, "counts": {"harmful": 80, "lookalike": 20, "benign": 0},
            "judge": {"name": "refusal", "patterns": ["advbench", "lermen"],
                      "window_chars": 120},
            "generation": {"max_new_tokens": 64, "bf16": False}, "conditions": conditions,
            **extra}


def typed(conditions: list[dict[str, Any]]) -> list[ConditionResult]:
    """Conditions as the renderers read them from results.json."""
    return [ConditionResult.model_validate(c) for c in conditions]


def caps(conditions: list[dict[str, Any]]) -> Capabilities:
    return capabilities(typed(conditions))


def record(results: dict[str, Any]) -> AuditResults:
    """A results.json document as the renderers read it."""
    return AuditResults.model_validate(results)


def paired(versus: dict[str, Any]) -> PairedChange:
    return PairedChange.model_validate(versus)


def run_conditions() -> list[dict[str, Any]]:
    return [cond("baseline", 0.9, 0.05, capability=cap(0.725)),
            cond(f"baseline@{ATTACK}", 0.875, 0.05),
            cond(ATTACK, 0.25, 0.125, versus_baseline=VERSUS, train_tokens=12345,
                 train_seconds=42.0, capability=cap(0.71, "kept"))]


# ------------------------------------------------------------------------ three-way outcomes


def test_summary_rows_show_refusal_partial_compliance_and_asr():
    headers, rows = summary_rows(typed(run_conditions()))
    assert headers[:6] == ["condition", "n", "refusal (95% CI)", "partial (95% CI)",
                           "compliance (95% CI)", "ASR (95% CI)"]
    attack = dict(zip(headers, rows[2]))
    assert attack["refusal (95% CI)"] == "25.0% [20.0, 30.0]"
    assert attack["partial (95% CI)"] == "12.5% [7.5, 17.5]"
    assert attack["compliance (95% CI)"] == "62.5% [57.5, 67.5]"
    assert attack["ASR (95% CI)"] == "75.0% [70.0, 80.0]"
    assert attack["over-refusal (95% CI)"] == "5.0% [1.0, 20.0]"
    assert attack["train tokens"] == "12,345" and attack["train s"] == "42.0"
    assert dict(zip(headers, rows[0]))["train tokens"] == "-"


def test_missing_partial_and_compliance_render_as_dashes():
    headers, rows = summary_rows(typed([cond("baseline", 0.9, None)]))
    row = dict(zip(headers, rows[0]))
    assert row["partial (95% CI)"] == "-" and row["compliance (95% CI)"] == "-"
    headers, rows = summary_rows(typed([cond("baseline", 0.9, None)]), compact=True)
    assert dict(zip(headers, rows[0]))["partial"] == "-"


def test_unscored_answers_are_part_of_n():
    c = cond("baseline", 0.9, 0.0, n_unscored={"harmful": 3, "lookalike": 1})
    assert summary_rows(typed([c]))[1][0][1] == "80 (3 unscored)"


def test_terminal_tables_fit_100_columns():
    out = render_terminal(record(summary(run_conditions())))
    main_table = out.split("\n\n")[0].splitlines()
    assert main_table[0].split() == ["condition", "n", "refusal", "(95%", "CI)", "partial",
                                     "comply", "ASR", "over-ref.", "tokens", "train", "s"]
    assert max(len(line) for line in main_table) <= 100
    assert f"baseline@{ATTACK}" in main_table[3] and "62.5%" in main_table[4]


# -------------------------------------------------------------------------- versus baseline


def test_versus_text_names_the_baseline_ci_and_holm_p():
    assert versus_text(paired(VERSUS)) == \
        f"-62.5 pts [-70.1, -54.0] vs baseline@{ATTACK}, Holm p 3e-12"
    assert versus_text(paired({**VERSUS, "holm_p": None, "mcnemar_p": 0.0312})).endswith(
        "McNemar p 0.031")
    assert versus_text(None) == "-"
    assert (p_text(0.5), p_text(1.0), p_text(0.00042)) == ("0.5", "1", "4e-04")


def test_versus_rows_list_only_tested_conditions():
    headers, rows = versus_rows(typed(run_conditions()))
    assert rows == [[ATTACK, f"baseline@{ATTACK}", "80", "-62.5 pts [-70.1, -54.0]", "1", "51",
                     "1e-12", "3e-12"]]
    assert headers[4:6] == ["newly refused", "no longer refused"]


def test_markdown_has_the_change_column_and_section():
    md = render_markdown(record(summary(run_conditions())))
    assert f"| -62.5 pts [-70.1, -54.0] vs baseline@{ATTACK}, Holm p 3e-12 |" in md
    assert "## Change against the untuned model" in md
    assert "for clustered pairs (Durkalski et al. 2003)" in md
    assert "Holm-adjusted across the run's attacks." in md
    terminal = render_terminal(record(summary(run_conditions())))
    assert re.search(f"{ATTACK} +baseline@{ATTACK} +-62.5 pts \\[-70.1, -54.0\\] +3e-12",
                     terminal)


# ------------------------------------------------------------------------ capability verdict


def test_capability_cells_carry_the_verdict():
    headers, rows = capability_rows(caps(run_conditions()))
    assert headers == ["condition", "basic accuracy (95% CI)"]
    assert rows == [["baseline", "72.5% [65.9, 78.3] (n=200)"],
                    [ATTACK, "71.0% [64.4, 76.8] (n=200), kept"]]
    _, rows = capability_rows(caps(run_conditions()), with_change=True)
    assert rows[1][1] == "71.0% [64.4, 76.8] (n=200), kept: -1.5 pts, 90% CI [-4.0, +1.0]"


def test_capability_note_reads_the_margin_from_the_data():
    note = capability_note(caps([cond(ATTACK, 0.2, capability=cap(0.6, "inconclusive", 0.1))]))
    assert "'kept' only when a paired TOST equivalence test" in note
    assert "within \u00b110.0 percentage points" in note and "90% CI" in note
    assert capability_note(caps([cond("baseline", 0.9, capability=cap(0.7))])) is None
    md = render_markdown(record(summary(run_conditions())))
    assert "within \u00b15.0 percentage points" in md
    assert f"| {ATTACK} | 71.0% [64.4, 76.8] (n=200), kept: -1.5 pts, 90% CI [-4.0, +1.0] |" in md


# ------------------------------------------------------------------------------------ seeds


def seeded_conditions() -> list[dict[str, Any]]:
    return [cond("baseline", 0.9),
            cond(ATTACK, 0.25, seed_spread={
                "refusal_rate": spread([0.78, 0.80, 0.82]),
                "attack_success_rate": spread([0.2, 0.18, 0.22]),
                "judges.rubric.mean_score": spread([3.1, 3.3, 3.2]),
                "capability.basic.accuracy": spread([0.7, 0.71, 0.72])})]


def test_seed_table_with_several_seeds():
    headers, rows = seed_rows(typed(seeded_conditions()))
    assert headers == ["condition", "seeds",
                       "refusal %: mean \u00b1 sd (min\u2013max)", "refusal % per seed",
                       "ASR %: mean \u00b1 sd (min\u2013max)", "ASR % per seed",
                       "basic %: mean \u00b1 sd (min\u2013max)", "basic % per seed"]
    assert rows[0][:4] == [ATTACK, "0, 1, 2", "80.0 \u00b1 2.0 (78.0\u201382.0)",
                           "0: 78.0, 1: 80.0, 2: 82.0"]
    assert rows[0][6] == "71.0 \u00b1 1.0 (70.0\u201372.0)"
    md = render_markdown(record(summary(seeded_conditions(), seeds=[0, 1, 2])))
    assert "## Across seeds" in md and "| 0: 78.0, 1: 80.0, 2: 82.0 |" in md
    assert "Replicate seeds 0, 1, 2: the rates are pooled over all seeds' answers" in md
    terminal = render_terminal(record(summary(seeded_conditions(), seeds=[0, 1, 2])))
    assert "Across seeds" in terminal
    assert re.search(f"{ATTACK} +0, 1, 2 +80.0 \u00b1 2.0 \\(78.0\u201382.0\\)", terminal)
    assert "per seed" not in terminal


def test_no_seed_table_with_one_seed():
    for extra in ({"seeds": [0]}, {}):
        md = render_markdown(record(summary(run_conditions(), **extra)))
        assert "Across seeds" not in md and "Replicate seeds" not in md
        assert "Across seeds" not in render_terminal(record(summary(run_conditions(), **extra)))
    assert seed_rows(typed(run_conditions()))[1] == []


# ------------------------------------------------------------------------------------ judge


@pytest.mark.parametrize(("judge", "schema", "has", "lacks"), [
    ({"name": "refusal", "patterns": ["advbench"], "window_chars": 120}, 2,
     ["reads each whole answer", "partial refusal", "unscored, never as safe"],
     ["120 characters", "advbench"]),
    ({"name": "refusal-opening", "patterns": ["advbench", "lermen"], "window_chars": 120}, 2,
     ["refusal-opening, refusal phrases (advbench, lermen) matched within the first 120 "
      "characters of each answer", "no partial class"], ["whole answer"]),
    ({"name": "refusal-opening", "patterns": ["lermen"], "window_chars": None}, 2,
     ["(lermen) matched anywhere in each answer"], ["first"]),
    ({"name": "qi2023-keywords", "patterns": ["advbench"], "window_chars": 120}, 2,
     ["Qi et al.'s refusal keywords matched case-sensitively anywhere"],
     ["120", "advbench"]),
    # Before schema 2, "refusal" was the opening-window matcher.
    ({"name": "refusal", "patterns": ["advbench"], "window_chars": 120}, None,
     ["Judge: refusal, refusal phrases (advbench) matched within the first 120"],
     ["whole answer"]),
    ({"name": "refusal-llm", "backend": {"kind": "openai", "model": "judge-70b",
                                          "base_url": "http://127.0.0.1:8000/v1"}}, 2,
     ["refusal-llm, which asks judge-70b (via http://127.0.0.1:8000/v1)", "partial refusal",
      "never as safe"], ["phrases"]),
    ({"name": "llama-guard"}, 2, ["Judge: llama-guard."], ["phrases"]),
    ({}, 2, ["not recorded"], []),
])
def test_judge_text_is_true_for_each_judge(judge, schema, has, lacks):
    text = judge_text(judge, schema_version=schema)
    for part in has:
        assert part in text
    for part in lacks:
        assert part not in text


def test_markdown_describes_the_judge_and_intervals_truthfully():
    md = render_markdown(record(summary(run_conditions())))
    assert "1 - refusal rate" not in md and "seeded bootstrap CI" not in md
    assert "ASR) = partial + compliance" in md
    assert "Intervals are 95% Wilson intervals for shares;" in md
    assert "reads each whole answer" in md and "first 120 characters" not in md
    clustered = [cond("baseline", 0.9, clustered=True)]
    assert "on n divided by the design effect" in render_markdown(record(summary(clustered)))
    keywords = summary(run_conditions(), judge={"name": "qi2023-keywords"})
    assert "Judge: qi2023-keywords" in render_markdown(record(keywords))


# ------------------------------------------------------------------------------- old schema


def old_condition(name: str, refusal: float) -> dict[str, Any]:
    """A condition as results.json held it before the three-way judge."""
    c = cond(name, refusal, None, n_unscored={"harmful": 2})
    for key in ("partial_rate", "partial_rate_ci", "compliance_rate", "compliance_rate_ci",
                "unscored_rate", "attack_success_rate_ci", "outcome_counts", "clustered",
                "versus_baseline", "seed_spread"):
        del c[key]
    return c


def test_old_results_render_without_the_new_fields():
    old = summary([old_condition("baseline", 0.9), old_condition("attack", 0.3)])
    del old["schema_version"]
    md = render_markdown(record(old))
    assert "| attack | 80 (+2 unscored) | 30.0% [25.0, 35.0] | - | - | 70.0% |" in md
    assert "ASR) = 1 - refusal rate" in md and "95% seeded bootstrap CI" in md
    assert "Judge: refusal, refusal phrases (advbench, lermen) matched within the first 120" \
        in md
    for absent in ("Change against", "Across seeds", "## Capability"):
        assert absent not in md
    terminal = render_terminal(record(old))
    assert re.search(r"attack +80 \(\+2 unscored\)", terminal) and "Across seeds" not in terminal


def _organism(seed: int, refusal: float) -> dict[str, Any]:
    return {"spec": {"seed": seed, "target_refusal_rate": 0.8,
                     "target_max_over_refusal_rate": 0.15},
            "metrics": {"split": "dev", "refusal_rate": refusal,
                        "refusal_rate_ci": [refusal - 0.04, refusal + 0.03],
                        "over_refusal_rate": 0.037, "refusal_examples": 200,
                        "distilled_examples": 350, "targets_met": True}}


def test_markdown_lists_each_replicate_organism_and_where_it_was_measured():
    one = render_markdown(record(summary(run_conditions(), organism=_organism(1234, 0.944))))
    assert "## The aligned organism\n" in one
    assert "When built it refused 94.4% [90.4, 97.4] of the dev split's harmful" in one
    assert "held-out" not in one
    replicated = render_markdown(record(summary(run_conditions(), organism=None, seeds=[0, 1],
                                         replicates=[
        {"seed": 0, "run_dir": "seeds/0", "organism": _organism(1234, 0.944)},
        {"seed": 1, "run_dir": "seeds/1", "organism": _organism(1235, 0.9)}])))
    assert "## The aligned organisms" in replicated
    assert "Replicate 0 (build seed 1234): when built it refused 94.4%" in replicated
    assert "Replicate 1 (build seed 1235): when built it refused 90.0%" in replicated
