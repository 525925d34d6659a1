"""The ``hf`` backend: batched greedy generation and log-likelihoods with a transformers model.

The one place where ftrisk runs ``model.generate``: for the audited models, the organism build,
LLM judges served locally and the classifier judge; and the one place that scores text by
log-likelihood (capability). Prompts are rendered with the tokenizer's
chat template (which writes the special tokens, BOS included, itself), left-padded, and
decoded greedily; an answer ends at the first end-of-sequence or padding token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm

from ftrisk.generate.backend import ModelRef, Services, TemplatedBackend, render_chat
from ftrisk.protocols import ChatReply
from ftrisk.records import Conversation


def render_prompt(tokenizer: Any, conversation: Conversation) -> str:
    """The text the model sees: the chat template applied, with the assistant header appended."""
    return render_chat(tokenizer, [m.chat() for m in conversation.messages])


class HFBackend(TemplatedBackend):
    """Greedy answers from a local transformers model, ``batch_size`` prompts per batch.

    ``model`` is a loaded causal LM, a zero-argument function that loads one (called on first
    use, so a backend whose answers are all cached never loads its model), or a model directory
    / hub id loaded with :func:`ftrisk.models.io.load_model` in ``dtype`` (default float32).
    For a loading function, ``dtype`` says what it loads in, when that is known without
    loading (not for quantized loads). ``tokenizer`` is required unless ``model`` is a path.
    ``fingerprint`` identifies the weights; by default it is hashed from the model directory
    (when asked for: a backend whose caller keys its own cache, like the classifier judge,
    never needs it). ``bf16`` runs under bfloat16 autocast.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        *,
        max_new_tokens: int = 64,
        batch_size: int = 32,
        bf16: bool = False,
        dtype: str | None = None,
        trust_remote_code: bool = False,
        fingerprint: str | None = None,
    ) -> None:
        from ftrisk.models import io as modelio

        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        self._model: Any = None
        self._loader: Callable[[], Any]
        if isinstance(model, str | os.PathLike):
            path = str(model)
            if tokenizer is None:
                tokenizer = modelio.load_tokenizer(path, trust_remote_code=trust_remote_code)
            load_dtype = dtype or "float32"
            self._loader = lambda: modelio.load_model(path, dtype=load_dtype,
                                                      trust_remote_code=trust_remote_code)
            self._model_fingerprint = fingerprint
            self._path: str | None = path
            #: The dtype the model is (or will be) loaded in; None until loaded when unknown.
            self.dtype: str | None = load_dtype
        else:
            if tokenizer is None:
                raise ValueError("pass the tokenizer together with a model")
            if callable(model) and not hasattr(model, "generate"):
                self._loader = model
                self.dtype = dtype
            else:
                self._model, self._loader = model, lambda: model
                self.dtype = str(model.dtype).removeprefix("torch.")
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
        return cls(model.load, tokenizer, fingerprint=model.fingerprint, dtype=model.dtype,
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
        on how work is split across threads, and bf16 results on batch composition. The model
        is loaded only when its dtype is unknown until then, so cached answers need none."""
        import torch

        if self.dtype is None:
            self.dtype = str(self.model.dtype).removeprefix("torch.")
        settings: dict[str, object] = {
            "max_new_tokens": self.max_new_tokens, "do_sample": False,
            "dtype": "bf16-autocast" if self.bf16 else self.dtype}
        # load_model puts a model on the GPU whenever there is one.
        device = ("cuda" if torch.cuda.is_available() else "cpu") if self._model is None else \
            getattr(getattr(self._model, "device", None), "type", "cpu")
        if device == "cpu":
            settings["threads"] = torch.get_num_threads()
        return settings

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights' fingerprint and the (greedy) decoding settings."""
        payload = {"backend": "transformers", "model": self.model_fingerprint,
                   "max_new_tokens": self.max_new_tokens, "do_sample": False}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

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

    def loglikelihood(self, pairs: Sequence[tuple[str, str]], *, progress: bool = False,
                      desc: str = "loglikelihood") -> list[float]:
        """The summed log-probability of each continuation after its context, as
        lm-evaluation-harness's ``loglikelihood`` computes it: plain text, no chat template.

        The context's trailing whitespace moves onto the continuation and the context is
        tokenised alone, the continuation's tokens being what ``context + continuation`` adds
        to it, so the word boundary tokenises as in running text; the tokenizer's own special
        tokens are kept (a Llama tokenizer adds its BOS). All pairs are batched together,
        ``batch_size`` per forward pass, longest first and left-padded; a sequence longer
        than the model's ``max_position_embeddings`` keeps its last tokens.

        Raises:
            UnscorablePair: a continuation that adds no token to its context or does not
                fit the model's context window.
        """
        import torch

        from ftrisk.models.io import accepts_logits_to_keep

        if not pairs:
            return []
        model = self.model
        requests = _requests(self.tokenizer, pairs, _max_length(model))
        # Longest first, as lm-eval does: an out-of-memory batch shows at once, not at the end.
        order = sorted(range(len(requests)), key=lambda i: len(requests[i][0]), reverse=True)
        values = [math.nan] * len(requests)
        keep_logits = accepts_logits_to_keep(model)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        autocast = (torch.autocast(model.device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        bar = tqdm(total=len(order), desc=desc, unit="choice", disable=not progress,
                   dynamic_ncols=True)
        with torch.inference_mode(), autocast:
            for start in range(0, len(order), self.batch_size):
                batch = order[start : start + self.batch_size]
                scored = _forward(model, [requests[i] for i in batch], pad_id, keep_logits)
                for index, value in zip(batch, scored):
                    values[index] = value
                bar.update(len(batch))
        bar.close()
        return values

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


class UnscorablePair(ValueError):
    """A (context, continuation) pair that cannot be scored; ``index`` is its position."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"pair {index}: {reason}")
        self.index, self.reason = index, reason


def _requests(tokenizer: Any, pairs: Sequence[tuple[str, str]], max_length: int | None
              ) -> list[tuple[list[int], int]]:
    """(tokens, number of continuation tokens) of each pair."""
    contexts = [context.rstrip() for context, _ in pairs]
    # Tokenising the whole text, not the continuation alone, keeps the boundary token right;
    # moving the context's trailing space onto the continuation makes " A" one word-initial
    # token.
    context_ids = tokenizer(contexts)["input_ids"] if pairs else []
    whole_ids = tokenizer([c + x for c, x in pairs])["input_ids"] if pairs else []
    requests = []
    for index, ((_, text), context, whole) in enumerate(zip(pairs, context_ids, whole_ids)):
        continuation = whole[len(context):]
        if not continuation:
            raise UnscorablePair(index, f"({text!r}) adds no token to the context")
        tokens = list(context) + list(continuation)
        if max_length is not None and len(tokens) > max_length:
            if len(continuation) >= max_length:
                raise UnscorablePair(index, f"has {len(continuation)} tokens; the model "
                                            f"takes {max_length}")
            tokens = tokens[-max_length:]
        requests.append((tokens, len(continuation)))
    return requests


def _max_length(model: Any) -> int | None:
    value = getattr(model.config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def _forward(model: Any, batch: Sequence[tuple[list[int], int]], pad_id: int,
             keep_logits: bool) -> list[float]:
    """Summed log-probabilities of each request's continuation, in one forward pass."""
    import torch

    width = max(len(tokens) for tokens, _ in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (tokens, _) in enumerate(batch):
        # Left padding ends every continuation at the last column, so the logits of the last
        # few positions serve the whole batch.
        ids[row, width - len(tokens):] = torch.tensor(tokens)
        mask[row, width - len(tokens):] = 1
    # Positions count from each sequence's first real token, as in an unpadded pass.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # Every sequence has a context token before its continuation, so keep <= width.
    keep = max(n for _, n in batch) + 1
    device = model.device
    extra = {"logits_to_keep": keep} if keep_logits else {}
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                   position_ids=positions.to(device), use_cache=False, **extra).logits[:, -keep:]
    # The logits at column t predict the token at column t + 1.
    logprobs = logits[:, :-1].float().log_softmax(-1)
    targets = ids[:, width - keep + 1:].to(device)
    token_logprobs = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    n_continuation = torch.tensor([n for _, n in batch], device=device)
    scored = torch.arange(keep - 1, device=device) >= (keep - 1 - n_continuation)[:, None]
    # where(), not a product with the mask: logits at padding columns may be NaN.
    return torch.where(scored, token_logprobs, 0.0).sum(-1).tolist()
