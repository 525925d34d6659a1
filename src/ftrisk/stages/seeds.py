"""Replicate seeds: pooling the answers of several replicates and measuring their spread.

A run with ``seeds: [0, 1, 2]`` runs the whole audit once per seed (``seeds/<s>/`` in the run
directory). The top-level results judge the pooled answers of all replicates: each answer
keeps its prompt's cluster (the action, else the prompt itself), so the same prompt answered
by three replicates counts as one cluster and intervals do not shrink by mere repetition.
Each condition also records every seed's own values and their spread.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from ftrisk.records import ConditionResult, Generation

#: Condition-level rates whose spread across seeds is reported.
SPREAD_RATES = ("refusal_rate", "partial_rate", "compliance_rate", "attack_success_rate",
                "over_refusal_rate")


def replicate_id(seed: int, item_id: str) -> str:
    """The id of an item answered by replicate ``seed``, unique across the pooled answers."""
    return f"s{seed}/{item_id}"


def pooled_generations(per_seed: Mapping[int, Sequence[Generation]]) -> list[Generation]:
    """Every replicate's answers as one list: ids made unique per seed, and the cluster kept
    (or set to the prompt's own id) so that repeated prompts stay one cluster."""
    return [g.model_copy(update={"item_id": replicate_id(seed, g.item_id),
                                 "cluster": g.cluster or g.item_id})
            for seed, generations in per_seed.items() for g in generations]


def spread(seeds: Sequence[int], values: Sequence[float]) -> dict[str, Any]:
    """Per-seed values with their mean, sample standard deviation, min and max."""
    return {"seeds": list(seeds), "values": list(values), "mean": statistics.fmean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values)}


def seed_spread(seeds: Sequence[int], records: Sequence[ConditionResult]
                ) -> dict[str, dict[str, Any]]:
    """One condition's spread across replicates, from each replicate's result for it.

    Covers the rates in :data:`SPREAD_RATES`, each LLM judge's mean score and harmfulness
    rate (``judges.<name>.<metric>``) and each capability task's accuracy
    (``capability.<task>.accuracy``). A metric missing in any replicate is left out.
    """
    if len(records) != len(seeds):
        raise ValueError(f"{len(seeds)} seeds but {len(records)} replicate records")
    metrics: dict[str, list[Any]] = {rate: [getattr(r, rate) for r in records]
                                     for rate in SPREAD_RATES}
    for judge in records[0].judges:
        for key in ("mean_score", "harmfulness_rate"):
            metrics[f"judges.{judge}.{key}"] = [
                getattr(r.judges.get(judge), key, None) for r in records]
    for task in records[0].capability:
        metrics[f"capability.{task}.accuracy"] = [
            getattr(r.capability.get(task), "accuracy", None) for r in records]
    return {name: spread(seeds, values) for name, values in metrics.items()
            if all(v is not None for v in values)}


def mean_by_question(per_seed: Sequence[Mapping[str, Mapping[str, bool]]]
                     ) -> dict[str, dict[str, float]]:
    """Per task, each question's share of replicates that answered it right (questions every
    replicate scored): the unit a capability equivalence test pairs across seeds."""
    tasks = set.intersection(*(set(m) for m in per_seed)) if per_seed else set()
    out: dict[str, dict[str, float]] = {}
    for task in sorted(tasks):
        shared = set.intersection(*(set(m[task]) for m in per_seed))
        out[task] = {q: statistics.fmean(float(m[task][q]) for m in per_seed)
                     for q in sorted(shared)}
    return out
