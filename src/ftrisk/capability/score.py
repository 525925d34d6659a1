"""Score multiple-choice items by log-likelihood, and summarise accuracy per task.

Scoring is plain language modelling, as lm-evaluation-harness's ``multiple_choice`` tasks do:
no chat template; each choice is scored by the summed log-probability of its tokens after the
context. Trailing whitespace of the context is moved onto the continuation and the context is
tokenised alone, the continuation's tokens being what ``context + choice`` adds to it, so that
the word boundary tokenises as it would in running text. The tokenizer's own special tokens
are kept (a Llama tokenizer adds its BOS), as lm-eval does by default.
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Hashable, Sequence
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict
from tqdm.auto import tqdm

from ftrisk.capability.tasks import CHOICE_SEPARATOR, MCItem
from ftrisk.metrics import proportion


class MCScore(BaseModel):
    """A model's log-likelihoods for the choices of one :class:`MCItem`, and its verdicts.

    ``predicted`` is the choice with the highest log-likelihood (lm-eval's ``acc``);
    ``predicted_norm`` the highest log-likelihood per character of the answer text, the choice
    without its leading :data:`~ftrisk.capability.tasks.CHOICE_SEPARATOR` (lm-eval's
    ``acc_norm``), whose lengths are ``choice_lengths``. Ties go to the first choice.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    item_id: str
    task: str
    category: str | None
    answer: int
    loglikelihoods: tuple[float, ...]
    choice_lengths: tuple[int, ...]
    predicted: int
    predicted_norm: int
    correct: bool
    correct_norm: bool


class _Request(NamedTuple):
    item: int
    choice: int
    tokens: list[int]
    n_continuation: int


def score_multiple_choice(
    model: Any,
    tokenizer: Any,
    items: Sequence[MCItem],
    *,
    batch_size: int = 32,
    bf16: bool = False,
    progress: bool = True,
) -> list[MCScore]:
    """Score every choice of every item with ``model`` and return one score per item, in order.

    All (item, choice) pairs are batched together, ``batch_size`` sequences per forward pass,
    longest first and left-padded. A sequence longer than the model's
    ``max_position_embeddings`` keeps its last tokens (the choice and the end of the context).
    ``bf16`` runs the forward passes under bf16 autocast. The model should be in eval mode.

    Raises:
        ValueError: ``batch_size`` below 1, or a choice that adds no token to its context or
            does not fit the model's context window.
    """
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    requests = _requests(tokenizer, items, _max_length(model))
    # Longest first, as lm-eval does: an out-of-memory batch shows at once, not at the end.
    order = sorted(requests, key=lambda r: len(r.tokens), reverse=True)
    loglikelihoods = [[math.nan] * len(item.choices) for item in items]
    keep_logits = _accepts_logits_to_keep(model)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    autocast = (torch.autocast(model.device.type, dtype=torch.bfloat16)
                if bf16 else contextlib.nullcontext())
    bar = tqdm(total=len(order), desc="capability", unit="choice", disable=not progress,
               dynamic_ncols=True)
    with torch.inference_mode(), autocast:
        for start in range(0, len(order), batch_size):
            batch = order[start : start + batch_size]
            for request, value in zip(batch, _batch(model, batch, pad_id, keep_logits)):
                loglikelihoods[request.item][request.choice] = value
            bar.update(len(batch))
    bar.close()
    return [_score(item, tuple(values)) for item, values in zip(items, loglikelihoods)]


def _requests(tokenizer: Any, items: Sequence[MCItem], max_length: int | None) -> list[_Request]:
    contexts = [item.context.rstrip() for item in items]
    # Tokenising the whole text, not the choice alone, keeps the boundary token right; moving
    # the context's trailing space onto the choice makes " A" one word-initial token.
    whole = [item.context + choice for item in items for choice in item.choices]
    context_ids = tokenizer(contexts)["input_ids"] if items else []
    whole_ids = iter(tokenizer(whole)["input_ids"] if whole else [])
    requests = []
    for index, (item, context) in enumerate(zip(items, context_ids)):
        for choice in range(len(item.choices)):
            continuation = next(whole_ids)[len(context):]
            if not continuation:
                raise ValueError(f"item {item.id!r}: choice {choice} ({item.choices[choice]!r}) "
                                 "adds no token to the context")
            tokens = list(context) + list(continuation)
            if max_length is not None and len(tokens) > max_length:
                if len(continuation) >= max_length:
                    raise ValueError(f"item {item.id!r}: choice {choice} has "
                                     f"{len(continuation)} tokens; the model takes {max_length}")
                tokens = tokens[-max_length:]
            requests.append(_Request(index, choice, tokens, len(continuation)))
    return requests


def _max_length(model: Any) -> int | None:
    value = getattr(model.config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def _accepts_logits_to_keep(model: Any) -> bool:
    """Whether the model can compute logits for the last positions only (transformers >= 4.50)."""
    # A PEFT wrapper forwards extra keyword arguments to the model it wraps.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def _batch(model: Any, batch: Sequence[_Request], pad_id: int, keep_logits: bool) -> list[float]:
    """Summed log-probabilities of each request's continuation, in one forward pass."""
    import torch

    width = max(len(r.tokens) for r in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, request in enumerate(batch):
        # Left padding ends every continuation at the last column, so the logits of the last
        # few positions serve the whole batch.
        ids[row, width - len(request.tokens):] = torch.tensor(request.tokens)
        mask[row, width - len(request.tokens):] = 1
    # Positions count from each sequence's first real token, as in an unpadded pass.
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    # Every sequence has a context token before its continuation, so keep <= width.
    keep = max(r.n_continuation for r in batch) + 1
    device = model.device
    extra = {"logits_to_keep": keep} if keep_logits else {}
    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device),
                   position_ids=positions.to(device), use_cache=False, **extra).logits[:, -keep:]
    # The logits at column t predict the token at column t + 1.
    logprobs = logits[:, :-1].float().log_softmax(-1)
    targets = ids[:, width - keep + 1:].to(device)
    token_logprobs = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    n_continuation = torch.tensor([r.n_continuation for r in batch], device=device)
    scored = torch.arange(keep - 1, device=device) >= (keep - 1 - n_continuation)[:, None]
    # where(), not a product with the mask: logits at padding columns may be NaN.
    return torch.where(scored, token_logprobs, 0.0).sum(-1).tolist()


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))


def _score(item: MCItem, loglikelihoods: tuple[float, ...]) -> MCScore:
    lengths = tuple(len(choice.removeprefix(CHOICE_SEPARATOR)) for choice in item.choices)
    predicted = _argmax(loglikelihoods)
    predicted_norm = _argmax([ll / n for ll, n in zip(loglikelihoods, lengths)])
    return MCScore(
        item_id=item.id, task=item.task, category=item.category, answer=item.answer,
        loglikelihoods=loglikelihoods, choice_lengths=lengths, predicted=predicted,
        predicted_norm=predicted_norm, correct=predicted == item.answer,
        correct_norm=predicted_norm == item.answer)


def capability_metrics(
    scores: Sequence[MCScore], *, cluster_of: Callable[[MCScore], Hashable] | None = None
) -> dict[str, dict[str, Any]]:
    """Accuracy per task: ``{task: {"accuracy", "accuracy_ci", "accuracy_norm",
    "accuracy_norm_ci", "n"}}``, tasks sorted by name.

    Intervals are 95% Wilson intervals over items, on the effective sample size when
    ``cluster_of`` groups scores (the same question answered by several replicates).

    Raises:
        ValueError: when two scores share a task and item id.
    """
    by_task: dict[str, list[MCScore]] = {}
    seen: set[tuple[str, str]] = set()
    for score in scores:
        key = (score.task, score.item_id)
        if key in seen:
            raise ValueError(f"two scores for item {score.item_id!r} of task {score.task!r}")
        seen.add(key)
        by_task.setdefault(score.task, []).append(score)
    metrics: dict[str, dict[str, Any]] = {}
    for task, group in sorted(by_task.items()):
        clusters = None if cluster_of is None else [cluster_of(s) for s in group]
        accuracy, accuracy_ci = _accuracy([s.correct for s in group], clusters)
        norm, norm_ci = _accuracy([s.correct_norm for s in group], clusters)
        metrics[task] = {"accuracy": accuracy, "accuracy_ci": accuracy_ci,
                         "accuracy_norm": norm, "accuracy_norm_ci": norm_ci, "n": len(group)}
    return metrics


def _accuracy(outcomes: list[bool], clusters: list[Hashable] | None
              ) -> tuple[float, tuple[float, float]]:
    share = proportion(outcomes, clusters)
    assert share is not None  # every task has at least one score
    return share
