"""Batched generation with transformers: length-sorted batches, left padding, greedy decoding.

Every generation stores the exact rendered prompt (system prompt and chat template included):
the evaluation template changes measured safety, so it must be visible.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from tqdm.auto import tqdm

from ftrisk.records import Conversation, Generation
from ftrisk.store import Store, content_key


def render_prompt(tokenizer: Any, conversation: Conversation) -> str:
    """The text the model sees: the chat template applied, with the assistant header appended."""
    messages = [m.chat() for m in conversation.messages]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class HFGenerator:
    """Generate answers with a loaded transformers model, caching each batch in the store."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        fingerprint: str,
        max_new_tokens: int = 64,
        batch_size: int = 32,
        bf16: bool = False,
        store: Store | None = None,
        progress: bool = True,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.fingerprint = fingerprint
        self.batch_size = batch_size
        self.bf16 = bf16
        self.store = store
        self.progress = progress
        self.last_cached = 0  # cache hits of the latest generate() call, for logs and tests
        # Decoding settings are part of the cache key; bf16 results vary with batch composition.
        self.decoding: dict[str, object] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": False,
            "dtype": "bf16-autocast" if bf16 else str(model.dtype).removeprefix("torch."),
        }
        device = getattr(getattr(model, "device", None), "type", "cpu")
        if device == "cpu":  # CPU sums depend on how work is split across threads
            import torch

            self.decoding["threads"] = torch.get_num_threads()

    def _key(self, rendered: str) -> str:
        return content_key(self.fingerprint, rendered, self.decoding)

    def generate(self, items: Sequence[Conversation], desc: str = "generate") -> list[Generation]:
        """Answer every conversation; cached answers are reused, new ones cached per batch."""
        rendered = [render_prompt(self.tokenizer, item) for item in items]
        keys = [self._key(text) for text in rendered]
        answers: dict[str, str] = {}
        if self.store is not None:
            answers.update(self.store.get_many("generation", keys))  # type: ignore[arg-type]
        todo = sorted({k: t for k, t in zip(keys, rendered) if k not in answers}.items(),
                      key=lambda kv: len(kv[1]))
        self.last_cached = len(items) - len(todo)
        bar = tqdm(total=len(items), initial=self.last_cached, desc=desc, unit="prompt",
                   disable=not self.progress, dynamic_ncols=True)
        for start in range(0, len(todo), self.batch_size):
            batch = todo[start : start + self.batch_size]
            outputs = self._generate_batch([text for _, text in batch])
            new = {key: out for (key, _), out in zip(batch, outputs)}
            answers.update(new)
            if self.store is not None:
                self.store.put_many("generation", new)
            bar.update(len(batch))
        bar.close()
        return [
            Generation(
                item_id=item.id, kind=item.kind, category=item.category, prompt=item.prompt,
                rendered_prompt=text, response=answers[key], model_fingerprint=self.fingerprint,
                decoding=self.decoding,
            )
            for item, text, key in zip(items, rendered, keys)
        ]

    def _generate_batch(self, texts: list[str]) -> list[str]:
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"  # decoder-only models continue from the right edge
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        autocast = (
            torch.autocast(self.model.device.type, dtype=torch.bfloat16)
            if self.bf16 else contextlib.nullcontext()
        )
        with torch.inference_mode(), autocast:
            out = self.model.generate(
                **enc,
                max_new_tokens=self.decoding["max_new_tokens"],
                do_sample=False,
                pad_token_id=tok.pad_token_id,
                temperature=None, top_p=None, top_k=None,
            )
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        return [t.strip() for t in tok.batch_decode(new_tokens, skip_special_tokens=True)]
