"""The batch protocols every part agrees on: what a generation backend answers and how.

Declared here, beside nothing of ours, so that judges can be *given* a backend without
importing ``generate/`` (the backends live there, in :mod:`ftrisk.generate`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: A chat conversation as sent to a model: ``[{"role": ..., "content": ...}, ...]``.
Messages = list[dict[str, Any]]


@dataclass(frozen=True)
class ChatReply:
    """A backend's answer to one prompt.

    ``text`` is None exactly when the request failed; ``error`` then says why. Token counts are
    those of the successful attempt (0 when unknown); ``attempts`` counts every request sent
    for this prompt, retries included.
    """

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    attempts: int = 1


class ChatBackend(Protocol):
    """What every generation backend provides."""

    #: Prompts per :meth:`generate` call: the unit of batching and of caching progress.
    batch_size: int

    @property
    def fingerprint(self) -> str:
        """Identifies the model and decoding settings (part of judges' cache keys)."""

    @property
    def decoding(self) -> dict[str, object]:
        """The decoding settings, stored with each generation and part of its cache key."""

    def render(self, messages: Messages) -> str:
        """The exact prompt the model is sent for ``messages``, as text."""

    def generate(self, rendered: Sequence[str]) -> list[ChatReply]:
        """Answer prompts made by :meth:`render`, as one batch, in order."""

    def complete(self, conversations: Sequence[Messages]) -> list[ChatReply]:
        """Answer every conversation, in input order (a failed prompt gets an error reply)."""
