"""The ``hf`` backend: batched greedy generation with a transformers model.

The one place where ftrisk runs ``model.generate``: for the audited models, the organism build,
LLM judges served locally and the classifier judge. Prompts are rendered with the tokenizer's
chat template (which writes the special tokens, BOS included, itself), left-padded, and
decoded greedily; an answer ends at the first end-of-sequence or padding token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from ftrisk.generate.backend import (
    ChatReply,
    Messages,
    ModelRef,
    Services,
    complete_in_batches,
)
from ftrisk.records import Conversation


def render_prompt(tokenizer: Any, conversation: Conversation) -> str:
    """The text the model sees: the chat template applied, with the assistant header appended."""
    messages = [m.chat() for m in conversation.messages]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


class HFBackend:
    """Greedy answers from a local transformers model, ``batch_size`` prompts per batch.

    ``model`` is a loaded causal LM, a zero-argument function that loads one (called on first
    use, so a backend whose answers are all cached never loads its model), or a model directory
    / hub id loaded with :func:`ftrisk.models.io.load_model` in ``dtype``. ``tokenizer`` is
    required unless ``model`` is a path. ``fingerprint`` identifies the weights; by default it
    is hashed from the model directory (when asked for: a backend whose caller keys its own
    cache, like the classifier judge, never needs it). ``bf16`` runs under bfloat16 autocast.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        *,
        max_new_tokens: int = 64,
        batch_size: int = 32,
        bf16: bool = False,
        dtype: str = "float32",
        trust_remote_code: bool = False,
        fingerprint: str | None = None,
    ) -> None:
        from ftrisk.models import io as modelio

        self._model: Any = None
        self._loader: Callable[[], Any]
        if isinstance(model, str | os.PathLike):
            path = str(model)
            if tokenizer is None:
                tokenizer = modelio.load_tokenizer(path, trust_remote_code=trust_remote_code)
            self._loader = lambda: modelio.load_model(path, dtype=dtype,
                                                      trust_remote_code=trust_remote_code)
            self._model_fingerprint = fingerprint
            self._path: str | None = path
        else:
            if tokenizer is None:
                raise ValueError("pass the tokenizer together with a model")
            if callable(model) and not hasattr(model, "generate"):
                self._loader = model
            else:
                self._model, self._loader = model, lambda: model
            source = getattr(model, "name_or_path", "")
            self._model_fingerprint = fingerprint
            self._path = source if source and os.path.isdir(source) else None
        if tokenizer.pad_token_id is None:  # Llama tokenizers have no pad token
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.bf16 = bf16

    @classmethod
    def for_model(cls, model: ModelRef, tokenizer: Any, spec: Any, *, bf16: bool,
                  services: Services) -> HFBackend:
        """The backend an audit uses for ``model`` with its ``generation`` settings."""
        return cls(model.load, tokenizer, fingerprint=model.fingerprint,
                   max_new_tokens=spec.max_new_tokens, batch_size=spec.batch_size, bf16=bf16)

    def __repr__(self) -> str:
        return f"HFBackend(model={self._path!r}, max_new_tokens={self.max_new_tokens})"

    @property
    def model(self) -> Any:
        """The model, loaded on first use."""
        if self._model is None:
            self._model = self._loader()
        return self._model

    @property
    def model_fingerprint(self) -> str:
        """The weights' fingerprint (given, or hashed from the model directory)."""
        if self._model_fingerprint is None:
            from ftrisk.models.io import fingerprint_path

            if self._path is None:
                raise ValueError("pass fingerprint= for a model not loaded from a directory")
            self._model_fingerprint = fingerprint_path(self._path)
        return self._model_fingerprint

    @property
    def decoding(self) -> dict[str, object]:
        """Greedy settings, the compute dtype and, on a CPU, the thread count: CPU sums depend
        on how work is split across threads, and bf16 results on batch composition."""
        model = self.model
        settings: dict[str, object] = {
            "max_new_tokens": self.max_new_tokens, "do_sample": False,
            "dtype": "bf16-autocast" if self.bf16 else str(model.dtype).removeprefix("torch.")}
        if getattr(getattr(model, "device", None), "type", "cpu") == "cpu":
            import torch

            settings["threads"] = torch.get_num_threads()
        return settings

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights' fingerprint and the (greedy) decoding settings."""
        payload = {"backend": "transformers", "model": self.model_fingerprint,
                   "max_new_tokens": self.max_new_tokens, "do_sample": False}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def render(self, messages: Messages) -> str:
        """The chat template applied to ``messages``, with the assistant header appended."""
        return self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True)

    def complete(self, conversations: Sequence[Messages]) -> list[ChatReply]:
        """Answer every conversation greedily, in input order; a failed batch gives errors."""
        return complete_in_batches(self, conversations)

    def generate(self, rendered: Sequence[str]) -> list[ChatReply]:
        """Answer rendered prompts as one left-padded batch, greedily."""
        import torch

        model, tok = self.model, self.tokenizer
        side, tok.padding_side = tok.padding_side, "left"  # continue from the right edge
        try:
            enc = tok(list(rendered), return_tensors="pt", padding=True,
                      add_special_tokens=False)
        finally:
            tok.padding_side = side
        enc = {k: v.to(model.device) for k, v in enc.items()}
        autocast = (torch.autocast(model.device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            out = model.generate(**enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                                 pad_token_id=tok.pad_token_id, temperature=None, top_p=None,
                                 top_k=None)
        new_tokens = out[:, enc["input_ids"].shape[1]:].tolist()
        stops = self._stop_ids(model)
        replies = []
        for prompt_mask, tokens in zip(enc["attention_mask"], new_tokens):
            used = next((i + 1 for i, t in enumerate(tokens) if t in stops), len(tokens))
            text = tok.decode(tokens[:used], skip_special_tokens=True).strip()
            replies.append(ChatReply(text=text, prompt_tokens=int(prompt_mask.sum()),
                                     completion_tokens=used))
        return replies

    def _stop_ids(self, model: Any) -> set[int]:
        """Token ids that end an answer: the tokenizer's end and padding tokens and the
        model's own end tokens (Llama 3 has several)."""
        ids: set[int] = set()
        for value in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id,
                      getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(v for v in value if isinstance(v, int))
        return ids
