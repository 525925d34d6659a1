"""Generation through an OpenAI-compatible chat endpoint (hosted or fine-tuned-by-provider models).

The endpoint applies its own chat format, so the "rendered prompt" stored with each answer is the
exact message list sent, as JSON. Answers are cached per prompt as they arrive; a prompt the
endpoint keeps failing stops the stage with the endpoint's error, and a re-run asks only for the
answers still missing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from tqdm.auto import tqdm

from ftrisk.errors import FtriskError
from ftrisk.judge.backends import OpenAICompatBackend
from ftrisk.records import Conversation, Generation
from ftrisk.store import Store, content_key


def render_messages(conversation: Conversation) -> str:
    """The request's messages as canonical JSON: what the endpoint is sent."""
    return json.dumps([m.chat() for m in conversation.messages], ensure_ascii=False)


class RemoteGenerator:
    """Greedy (temperature 0) answers from ``backend``, cached in ``store`` by content."""

    def __init__(self, backend: OpenAICompatBackend, *, fingerprint: str,
                 store: Store | None = None, progress: bool = True, chunk: int = 64) -> None:
        self.backend = backend
        self.fingerprint = fingerprint
        self.store = store
        self.progress = progress
        self.chunk = chunk  # answers cached every chunk, so a killed run keeps them
        self.last_cached = 0
        self.decoding: dict[str, object] = {"max_new_tokens": backend.max_tokens,
                                            "temperature": backend.temperature,
                                            "endpoint": backend.fingerprint[:16]}

    def generate(self, items: Sequence[Conversation], desc: str = "generate") -> list[Generation]:
        """Answer every conversation; cached answers are reused."""
        rendered = [render_messages(item) for item in items]
        keys = [content_key(self.fingerprint, text, self.decoding) for text in rendered]
        answers: dict[str, str] = {}
        if self.store is not None:
            answers.update(self.store.get_many("generation", keys))  # type: ignore[arg-type]
        todo = list({k: i for i, k in enumerate(keys) if k not in answers}.items())
        self.last_cached = len(items) - len(todo)
        bar = tqdm(total=len(items), initial=self.last_cached, desc=desc, unit="prompt",
                   disable=not self.progress, dynamic_ncols=True)
        try:
            for start in range(0, len(todo), self.chunk):
                batch = todo[start : start + self.chunk]
                replies = self.backend.complete(
                    [[m.chat() for m in items[i].messages] for _, i in batch])
                new = {key: reply.text for (key, _), reply in zip(batch, replies)
                       if reply.text is not None}
                answers.update(new)
                if self.store is not None and new:
                    self.store.put_many("generation", new)
                bar.update(len(batch))
                failed = [(items[i].id, r.error) for (_, i), r in zip(batch, replies)
                          if r.text is None]
                if failed:
                    raise FtriskError(self.backend.redact(
                        f"{len(failed)} prompts got no answer from {self.backend.model} (first: "
                        f"{failed[0][0]}: {failed[0][1]}); the {len(answers)} answers so far are "
                        "cached: run the same command again to resume"))
        finally:
            bar.close()
        return [
            Generation(item_id=item.id, kind=item.kind, category=item.category,
                       prompt=item.prompt, rendered_prompt=text, response=answers[key].strip(),
                       model_fingerprint=self.fingerprint, decoding=self.decoding)
            for item, text, key in zip(items, rendered, keys)
        ]
