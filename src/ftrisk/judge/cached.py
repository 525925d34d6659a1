"""Judging with a content-keyed cache, shared by the model-backed judges (LLM, classifier).

Verdicts are keyed by (judge fingerprint, prompt, response). Scored verdicts are stored batch
by batch as they arrive, so a killed run resumes without asking again; unscored ones are not
stored, so a later run retries them. Identical (prompt, response) pairs are judged once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ftrisk.records import Generation, Judgment
from ftrisk.store import Store, content_key

#: Store namespace of cached judgments.
NAMESPACE = "judgment"


def judge_cached(
    generations: Sequence[Generation],
    *,
    name: str,
    fingerprint: str,
    store: Store | None,
    batch_size: int,
    compute: Callable[[list[Generation]], list[dict[str, Any]]],
    order: Callable[[Generation], Any] | None = None,
    progress: bool = False,
) -> tuple[list[Judgment], int]:
    """Judgments for ``generations`` in order, and how many came from the cache.

    ``compute`` turns a batch of generations into Judgment fields (all but item_id and judge),
    in order; ``order`` sorts the uncached items before batching (e.g. by length).
    """
    keys = [content_key(fingerprint, g.judged_prompt, g.response) for g in generations]
    results: dict[str, dict[str, Any]] = {}
    if store is not None:
        results.update(store.get_many(NAMESPACE, set(keys)))  # type: ignore[arg-type]
    todo: dict[str, Generation] = {}
    for key, generation in zip(keys, generations):
        if key not in results:
            todo.setdefault(key, generation)
    cached = sum(1 for key in keys if key in results)
    pending = list(todo.items())
    if order is not None:
        pending.sort(key=lambda kv: order(kv[1]))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pending), desc=f"judge {name}", unit="item", dynamic_ncols=True)
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        new = {key: fields for (key, _), fields in
               zip(batch, compute([generation for _, generation in batch]))}
        results.update(new)
        if store is not None:
            scored = {k: v for k, v in new.items() if v["score"] is not None}
            if scored:
                store.put_many(NAMESPACE, scored)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    judgments = [Judgment(item_id=g.item_id, judge=name, **results[key])
                 for g, key in zip(generations, keys)]
    return judgments, cached
