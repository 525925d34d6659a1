"""The capability stage: multiple-choice accuracy per task, scored by log-likelihood (always
through the ``hf`` backend: vLLM and hosted APIs are asked for answers only), and the paired
equivalence test of a tuned model against the untuned one."""

from __future__ import annotations

import json
from typing import Any

from ftrisk.config import AuditConfig
from ftrisk.errors import InputError
from ftrisk.generate.backend import ModelRef
from ftrisk.rundir import stage_fingerprint
from ftrisk.stages.context import Context, Made
from ftrisk.store import Memo, content_key

#: task -> question id -> answered right (or the share of seeds that did).
Correct = dict[str, dict[str, float]]


def capability_items(config: AuditConfig) -> list[Any]:
    """Every capability question of the config, read (and checked) now."""
    if config.capability is None:
        return []
    from ftrisk.registry import CAPABILITY_READERS

    items = []
    for i, task in enumerate(config.capability.tasks):
        reader = CAPABILITY_READERS.get(task.reader)
        try:
            read = reader(**task.options) if task.path is None else reader(task.path,
                                                                             **task.options)
        except TypeError as err:
            raise InputError(f"bad options for capability reader '{task.reader}': {err}",
                             field=f"capability.tasks.{i}.options") from None
        # Scores are reported under the config's task name, whatever the reader calls it.
        items += [item.model_copy(update={"task": task.name}) for item in read[: task.limit]]
    return items


def correct_by_task(scores: list[Any]) -> Correct:
    """Capability scores as task -> question id -> answered right."""
    by_task: Correct = {}
    for score in scores:
        by_task.setdefault(score.task, {})[score.item_id] = score.correct
    return by_task


def capability(ctx: Context, name: str, model: ModelRef, items: list[Any]
               ) -> tuple[dict[str, dict[str, Any]], list[Any]]:
    """Capability stage of condition ``name``: per-task metrics and every question's score
    (skipped when done with the same inputs; empty without a ``capability`` section)."""
    spec = ctx.config.capability
    if spec is None:
        return {}, []
    from ftrisk.capability.score import MCScore, capability_metrics, score_multiple_choice
    from ftrisk.generate.hf import HFBackend

    threads, bf16 = ctx.cpu_threads(), ctx.bf16()
    fingerprint = stage_fingerprint(
        model.fingerprint, [i.model_dump() for i in items], spec.batch_size, bf16, threads)
    out = f"conditions/{name}/capability.json"

    def read() -> tuple[dict[str, Any], list[Any]]:
        stored = json.loads(ctx.run.path(out).read_text(encoding="utf-8"))
        return stored["metrics"], [MCScore.model_validate(x) for x in stored["scores"]]

    def make() -> Made[tuple[dict[str, Any], list[Any]]]:
        # Scores are cached by content too: sweep cells share the untuned model's.
        keys = [content_key("capability", model.fingerprint, i.model_dump(), bf16,
                            *([] if threads is None else [threads])) for i in items]
        memo = Memo(ctx.store, "capability", zip(keys, items))
        if memo.pending:  # one batch: the scorer batches by length across all questions itself
            backend = HFBackend(model.load, ctx.tokenizer(model.path),
                                fingerprint=model.fingerprint, dtype=model.dtype,
                                batch_size=spec.batch_size, bf16=bf16)
            fresh = score_multiple_choice(backend, [i for _, i in memo.pending],
                                          progress=ctx.progress)
            memo.save({k: score.model_dump(mode="json")
                       for (k, _), score in zip(memo.pending, fresh)})
        scores = [MCScore.model_validate(memo.values[k]) for k in keys]
        metrics = capability_metrics(scores)
        ctx.log(f"[{name}] capability: " + ", ".join(
            f"{task} {m['accuracy']:.1%} of {m['n']}" for task, m in metrics.items()))
        ctx.run.write_json(out, {"metrics": metrics, "scores": [s.model_dump() for s in scores]})
        return Made((metrics, scores), [out], {"n": len(scores), "threads": ctx.threads})

    return ctx.stage(name, "capability", f"{name}/capability", fingerprint, read=read,
                     make=make)


def verdicts(metrics: dict[str, dict[str, Any]], before: Correct, after: Correct,
             margin: float | None) -> dict[str, dict[str, Any]]:
    """``metrics`` of a tuned model with, per task, the paired TOST against the untuned
    model's answers to the same questions (``versus_baseline``: kept / lost / gained /
    inconclusive within ``margin``; None without a margin)."""
    from ftrisk.stats import equivalence

    out = {}
    for task, values in metrics.items():
        shared = [i for i in after.get(task, {}) if i in before.get(task, {})]
        versus = None if not shared or margin is None else equivalence(
            [after[task][i] for i in shared], [before[task][i] for i in shared], margin=margin)
        out[task] = {**values, "versus_baseline": versus}
    return out
