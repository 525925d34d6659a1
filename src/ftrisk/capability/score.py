"""Score multiple-choice items by log-likelihood, and summarise accuracy per task.

Scoring is plain language modelling, as lm-evaluation-harness's ``multiple_choice`` tasks do:
no chat template; each choice is scored by the summed log-probability of its tokens after the
context, computed by the ``hf`` generation backend
(:meth:`ftrisk.generate.hf.HFBackend.loglikelihood`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from ftrisk.capability.tasks import CHOICE_SEPARATOR, MCItem
from ftrisk.metrics import proportion

if TYPE_CHECKING:
    from ftrisk.generate.hf import HFBackend


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


def score_multiple_choice(backend: HFBackend, items: Sequence[MCItem], *,
                          progress: bool = True) -> list[MCScore]:
    """Score every choice of every item by its log-likelihood after the item's context
    (:meth:`HFBackend.loglikelihood <ftrisk.generate.hf.HFBackend.loglikelihood>`: all choices
    batched together, ``backend.batch_size`` per forward pass) and return one score per item,
    in order. The model should be in eval mode.

    Raises:
        ValueError: a choice that adds no token to its context or does not fit the model's
            context window, naming the item and the choice.
    """
    from ftrisk.generate.hf import UnscorablePair

    pairs = [(item, choice) for item in items for choice in range(len(item.choices))]
    try:
        values = backend.loglikelihood([(item.context, item.choices[choice])
                                        for item, choice in pairs],
                                       progress=progress, desc="capability")
    except UnscorablePair as err:
        item, choice = pairs[err.index]
        raise ValueError(f"item {item.id!r}: choice {choice} {err.reason}") from None
    scores, position = [], 0
    for item in items:
        scores.append(_score(item, tuple(values[position : position + len(item.choices)])))
        position += len(item.choices)
    return scores


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
