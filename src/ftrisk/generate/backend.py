"""What backends share: the model reference they serve, the run's long-lived services, and the
chat-template rendering and batching of the local backends.

A backend (:class:`ftrisk.protocols.ChatBackend`) turns a conversation into the exact text (or
request) the model is sent (``render``) and answers a batch of those (``generate``), one
:class:`~ftrisk.protocols.ChatReply` per prompt, in order; ``complete`` answers any number of
conversations. Backends are registered by name in
:data:`ftrisk.registry.GENERATION_BACKENDS` (``hf``, ``openai``, ``vllm``); the audit, the
LLM and classifier judges and the organism build are all given one, and none of them loads a
model or owns a transport. :class:`ftrisk.generate.cached.Generator` adds the content-keyed
cache around any backend. Capability is scored by log-likelihood, which only the ``hf``
backend gives (:meth:`ftrisk.generate.hf.HFBackend.loglikelihood`, lm-eval's request type).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ftrisk.protocols import ChatReply, Messages

T = TypeVar("T")


@dataclass(frozen=True)
class ModelRef:
    """A model to ask, loaded (or served) only when a stage actually needs it."""

    #: The base weights: a local directory (or, for hosted models, the config's model name).
    path: str
    #: Identifies the weights, adapters included (part of every answer's cache key).
    fingerprint: str
    #: Loads it with transformers (the base with its tuned adapter applied, if any).
    load: Callable[[], Any]
    #: The provider's model id when the model is hosted (``openai:`` models), else None.
    remote: str | None = None
    #: Where fine-tuning wrote it: a PEFT adapter over ``path``, or a whole tuned model.
    tuned: Path | None = None
    #: The dtype ``load`` gives, when known without loading (None for quantized loads).
    dtype: str | None = None


class Services:
    """Long-lived helpers of a run (model servers), shared by its stages and stopped when the
    run ends, however it ends. ``log_dir`` receives their logs."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self._running: dict[tuple[str, ...], tuple[contextlib.AbstractContextManager[Any],
                                                   Any]] = {}

    def shared(self, key: tuple[str, ...],
               start: Callable[[], contextlib.AbstractContextManager[T]], *,
               alone: bool = False) -> T:
        """The helper started for ``key`` (entered on first request, reused after). With
        ``alone``, the running helpers of the same kind (``key[0]``) are stopped first: one
        accelerator holds one model server at a time."""
        if key in self._running:
            return self._running[key][1]
        if alone:
            for other in [k for k in self._running if k[0] == key[0]]:
                self._stop(other)
        manager = start()
        self._running[key] = (manager, manager.__enter__())
        return self._running[key][1]

    def _stop(self, key: tuple[str, ...]) -> None:
        manager, _ = self._running.pop(key)
        manager.__exit__(None, None, None)

    def close(self) -> None:
        """Stop every helper, the last started first."""
        for key in reversed(list(self._running)):
            self._stop(key)

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def render_chat(tokenizer: Any, messages: Messages) -> str:
    """The text a local model sees: its chat template applied to ``messages``, with the
    assistant header appended (the template writes the special tokens, BOS included)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class TemplatedBackend(abc.ABC):
    """What the local backends (``hf``, ``vllm``) share: prompts rendered with ``tokenizer``'s
    chat template, answered ``batch_size`` at a time by the subclass's ``generate``."""

    tokenizer: Any
    batch_size: int

    @abc.abstractmethod
    def generate(self, rendered: Sequence[str]) -> list[ChatReply]:
        """Answer prompts made by :meth:`render`, as one batch, in order."""

    def render(self, messages: Messages) -> str:
        """The chat template applied to ``messages``, with the assistant header appended."""
        return render_chat(self.tokenizer, messages)

    def complete(self, conversations: Sequence[Messages]) -> list[ChatReply]:
        """Answer every conversation greedily, in input order.

        Prompts are sorted by length (less padding, and answers that do not depend on input
        order) and sent in batches of ``batch_size``; a batch that raises (out of memory,
        say) gives every prompt in it an error reply and does not lose the other batches.
        """
        rendered = [self.render(list(c)) for c in conversations]
        replies: list[ChatReply | None] = [None] * len(rendered)
        order = sorted(range(len(rendered)), key=lambda i: (len(rendered[i]), rendered[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            try:
                outputs = self.generate([rendered[i] for i in batch])
            except Exception as err:  # one failed batch must not lose the rest
                from ftrisk.endpoints import short

                outputs = [ChatReply(text=None, error=f"generation: {type(err).__name__}: "
                                                      f"{short(err)}")] * len(batch)
            for index, reply in zip(batch, outputs):
                replies[index] = reply
        return [r for r in replies if r is not None]
