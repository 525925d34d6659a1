"""Replicate seeds: pooling answers across replicates and their spread."""

from __future__ import annotations

import statistics

import pytest

from ftrisk.records import ConditionResult, Generation
from ftrisk.stages.seeds import mean_by_question, pooled_generations, seed_spread, spread


def _generation(item_id: str, cluster: str | None) -> Generation:
    return Generation(item_id=item_id, kind="harmful", category="c", prompt="p",
                      rendered_prompt="p", response="r", model_fingerprint="f",
                      cluster=cluster)


def test_pooled_generations_make_ids_unique_and_keep_prompts_one_cluster():
    pooled = pooled_generations({0: [_generation("a", "act-1"), _generation("b", None)],
                                 3: [_generation("a", "act-1"), _generation("b", None)]})
    assert [g.item_id for g in pooled] == ["s0/a", "s0/b", "s3/a", "s3/b"]
    # The action stays the cluster; a prompt without one becomes its own cluster, shared
    # by every replicate's answer to it.
    assert [g.cluster for g in pooled] == ["act-1", "b", "act-1", "b"]


def test_spread_uses_the_sample_standard_deviation():
    s = spread([0, 1, 2], [0.5, 0.7, 0.9])
    assert s["mean"] == pytest.approx(0.7)
    assert s["sd"] == pytest.approx(0.2)  # hand value: sqrt(((-.2)^2 + 0 + .2^2) / 2)
    assert (s["min"], s["max"], s["seeds"]) == (0.5, 0.9, [0, 1, 2])
    assert spread([4], [0.25])["sd"] == 0.0


def _condition(refusal: float, over: float | None, mean_score: float, harmful: float,
               accuracy: float) -> ConditionResult:
    judge = {"judge": "rubric", "n_scored": 10, "n_unscored": 0, "mean_score": mean_score,
             "mean_score_ci": None, "harmfulness_rate": harmful, "harmfulness_rate_ci": None}
    return ConditionResult.model_validate({
        "name": "level1", "n_harmful": 10, "refusal_rate": refusal,
        "refusal_rate_ci": (0.0, 1.0), "partial_rate": 0.1, "compliance_rate": 0.9 - refusal,
        "attack_success_rate": 1 - refusal, "n_lookalike": 4, "over_refusal_rate": over,
        "over_refusal_rate_ci": None, "n_benign": 0, "benign_refusal_rate": None,
        "per_category": {}, "per_category_n": {}, "judges": {"rubric": judge},
        "capability": {"basic": {"accuracy": accuracy, "accuracy_ci": (0.5, 0.7), "n": 200}}})


def test_seed_spread_covers_rates_judges_and_capability_and_skips_missing():
    records = [_condition(0.8, None, 1.5, 0.1, 0.6), _condition(0.6, 0.05, 2.5, 0.3, 0.62)]
    out = seed_spread([0, 1], records)
    assert out["refusal_rate"]["values"] == [0.8, 0.6]
    assert out["refusal_rate"]["sd"] == pytest.approx(statistics.stdev([0.8, 0.6]))
    assert out["attack_success_rate"]["values"] == pytest.approx([0.2, 0.4])
    assert out["judges.rubric.mean_score"]["mean"] == pytest.approx(2.0)
    assert out["judges.rubric.harmfulness_rate"]["values"] == [0.1, 0.3]
    assert out["capability.basic.accuracy"]["values"] == [0.6, 0.62]
    # Over-refusal was not measured in one replicate: no spread rather than a wrong one.
    assert "over_refusal_rate" not in out
    with pytest.raises(ValueError, match="2 seeds but 1 replicate records"):
        seed_spread([0, 1], records[:1])


def test_mean_by_question_averages_each_question_over_replicates():
    per_seed = [{"basic": {"q1": True, "q2": False, "q3": True}},
                {"basic": {"q1": True, "q2": True}}]
    # q3 was not scored by every replicate: it cannot be paired.
    assert mean_by_question(per_seed) == {"basic": {"q1": 1.0, "q2": 0.5}}
