"""Judging with a content-keyed cache, shared by the model-backed judges (LLM, classifier).

Verdicts are keyed by (judge fingerprint, prompt, response). Verdicts are stored batch by batch
as they arrive, so a killed run resumes without asking again; those with an ``error``
(unparseable, endpoint failure) are not stored, so a later run retries them. Identical
(prompt, response) pairs are judged once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ftrisk.records import Generation, Judgment
from ftrisk.store import Memo, Store, content_key

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
    memo = Memo(store, NAMESPACE, zip(keys, generations), order=order)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(memo.pending), desc=f"judge {name}", unit="item",
                   dynamic_ncols=True)
    for batch in memo.batches(batch_size):
        memo.save(dict(zip([key for key, _ in batch],
                           compute([generation for _, generation in batch]))),
                  storable=lambda fields: fields.get("error") is None)
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    results = memo.values
    judgments = [Judgment(item_id=g.item_id, judge=name, **results[key])
                 for g, key in zip(generations, keys)]
    return judgments, memo.cached
