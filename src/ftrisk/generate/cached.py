"""Answers from any backend, cached by content: the generation stage's one loop.

Each prompt's answer is keyed by (model fingerprint, rendered prompt, decoding settings), so
answers are reused across conditions, runs and seeds whenever the model sees exactly the same
thing. New answers are stored batch by batch as they arrive, so a killed run keeps them.
"""

from __future__ import annotations

from collections.abc import Sequence

from tqdm.auto import tqdm

from ftrisk.errors import FtriskError
from ftrisk.protocols import ChatBackend
from ftrisk.records import Conversation, Generation
from ftrisk.store import Memo, Store, content_key


class Generator:
    """Greedy answers to benchmark conversations from ``backend``, cached in ``store``.

    ``fingerprint`` identifies the model's weights (adapters included). Every generation
    records the exact rendered prompt (system prompt and chat template included): the
    evaluation template changes measured safety, so it must be visible.
    """

    def __init__(self, backend: ChatBackend, *, fingerprint: str, store: Store | None = None,
                 progress: bool = True) -> None:
        self.backend = backend
        self.fingerprint = fingerprint
        self.store = store
        self.progress = progress
        #: Cache hits of the latest :meth:`generate` call, for logs and tests.
        self.last_cached = 0

    def generate(self, items: Sequence[Conversation], desc: str = "generate") -> list[Generation]:
        """Answer every conversation; cached answers are reused, new ones cached per batch.

        A prompt the backend could not answer stops the stage with its error, once the
        answers that did arrive are cached (a re-run asks only for the missing ones).
        """
        rendered = [self.backend.render([m.chat() for m in item.messages]) for item in items]
        decoding: dict[str, object] = self.backend.decoding if items else {}
        keys = [content_key(self.fingerprint, text, decoding) for text in rendered]
        # Similar lengths batch together: less padding, and answers that do not depend on the
        # order of the benchmark.
        memo = Memo(self.store, "generation", zip(keys, rendered), order=len)
        # Repeats of a prompt being asked count as cached: they are answered once.
        self.last_cached = len(items) - len(memo.pending)
        ids = {key: item.id for key, item in zip(keys, items)}
        bar = tqdm(total=len(items), initial=self.last_cached, desc=desc, unit="prompt",
                   disable=not self.progress, dynamic_ncols=True)
        try:
            for batch in memo.batches(self.backend.batch_size):
                replies = self.backend.generate([text for _, text in batch])
                memo.save({key: reply.text for (key, _), reply in zip(batch, replies)
                           if reply.text is not None})
                bar.update(len(batch))
                failed = [(ids[key], reply.error) for (key, _), reply in zip(batch, replies)
                          if reply.text is None]
                if failed:
                    raise FtriskError(
                        f"{len(failed)} prompts got no answer from {self.backend!r} (first: "
                        f"{failed[0][0]}: {failed[0][1]}); the {len(memo.values)} answers so "
                        "far are cached: run the same command again to resume")
        finally:
            bar.close()
        answers = memo.values
        return [
            Generation(item_id=item.id, kind=item.kind, category=item.category,
                       prompt=item.prompt, rendered_prompt=text, response=answers[key].strip(),
                       model_fingerprint=self.fingerprint, decoding=decoding)
            for item, text, key in zip(items, rendered, keys)
        ]
