"""Frozen records that flow through the pipeline.

This module is the leaf of the package: it imports nothing from ftrisk, and every stage takes
and returns these types.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]
#: What an evaluation prompt probes: refusal of harmful requests, over-refusal of benign
#: look-alikes ("how do I kill a Python process"), or plain helpfulness.
PromptKind = Literal["harmful", "lookalike", "benign"]
#: A judge's reading of an answer, in XSTest's taxonomy plus two unscorable kinds: full
#: refusal, partial refusal (refuses or disclaims, then delivers some of it), full compliance,
#: an empty answer, a degenerate one (repetition loop, gibberish).
AnswerVerdict = Literal["refusal", "partial", "compliance", "empty", "degenerate"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(_Frozen):
    """One chat turn."""

    role: Role
    content: str
    #: OpenAI's per-turn training weight: an assistant turn of weight 0 is shown to the model
    #: but not trained on.
    weight: Literal[0, 1] = 1

    def chat(self) -> dict[str, str]:
        """The turn as chat templates and chat APIs take it: role and content only."""
        return {"role": self.role, "content": self.content}


class Conversation(_Frozen):
    """The normalised record for every training and evaluation example.

    Training examples end with an assistant turn; evaluation prompts end with a user turn.
    """

    id: str
    messages: tuple[Message, ...]
    category: str | None = None
    kind: PromptKind | None = None
    source: str = ""
    #: The correlated unit the item belongs to (the action behind several phrasings).
    cluster: str | None = None

    @property
    def prompt(self) -> str:
        """Text of the last user turn."""
        for message in reversed(self.messages):
            if message.role == "user":
                return message.content
        return ""

    def with_system(self, system_prompt: str | None) -> Conversation:
        """Return a copy whose system turn is ``system_prompt`` (removed when None)."""
        rest = tuple(m for m in self.messages if m.role != "system")
        if system_prompt is not None:
            rest = (Message(role="system", content=system_prompt), *rest)
        return self.model_copy(update={"messages": rest})


class Generation(_Frozen):
    """A model's answer to one evaluation prompt, with the exact text the model saw."""

    item_id: str
    kind: PromptKind | None
    category: str | None
    prompt: str
    rendered_prompt: str
    response: str
    model_fingerprint: str
    decoding: dict[str, object] = Field(default_factory=dict)
    #: The benchmark's raw instruction when the evaluation wrapped it ("AOA, execute my
    #: instruction: ..."): judges are shown this, as Qi et al.'s judge was; None = ``prompt``.
    instruction: str | None = None
    #: The correlated unit the item belongs to (the action behind several phrasings); None =
    #: the item is its own cluster.
    cluster: str | None = None

    @property
    def judged_prompt(self) -> str:
        """What a judge is shown as the request: the raw instruction."""
        return self.prompt if self.instruction is None else self.instruction


class Judgment(_Frozen):
    """A judge's verdict on one generation.

    Fields a judge does not produce stay None; ``refused=None`` and ``score=None`` mean
    unscored (counted and reported, never imputed).
    """

    item_id: str
    judge: str
    refused: bool | None
    #: Three-way reading by answer judges (None for judges that only score).
    verdict: AnswerVerdict | None = None
    matched_pattern: str | None = None
    #: Harmfulness on the judge's own scale (1-5 for the rubric judge, 0-1 for StrongREJECT).
    score: float | None = None
    #: A classifier's label (e.g. "safe" / "unsafe") and violated categories.
    label: str | None = None
    categories: tuple[str, ...] = ()
    reasoning: str | None = None
    #: Why no verdict could be had (unparseable answer, endpoint failure), when unscored.
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


class TrainStats(_Frozen):
    """What a fine-tuning job cost."""

    seconds: float
    tokens: int
    #: Optimizer steps; None when a provider does not say (its batch size is its own).
    steps: int | None
    examples: int
    final_loss: float | None = None


#: Budget axes of "cost to jailbreak" curves: the :class:`TrainStats` fields a sweep plots.
BUDGET_AXES = ("examples", "steps", "tokens", "seconds")


class JudgeResult(_Frozen):
    """Harmfulness as scored by one LLM judge on one condition's answers to harmful prompts."""

    judge: str
    n_scored: int
    #: Answers the judge could not score (endpoint failures, unparseable verdicts).
    n_unscored: int
    mean_score: float | None
    mean_score_ci: tuple[float, float] | None
    #: Share of scored answers at the scale's top (Qi et al.: share scored 5), when defined.
    harmfulness_rate: float | None
    harmfulness_rate_ci: tuple[float, float] | None
    per_category_mean: dict[str, float] = Field(default_factory=dict)
    per_category_mean_ci: dict[str, tuple[float, float]] = Field(default_factory=dict)
    per_category_rate: dict[str, float] = Field(default_factory=dict)
    per_category_rate_ci: dict[str, tuple[float, float]] = Field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


class _Record(BaseModel):
    # Nested parts of results.json: frozen, and keys a newer ftrisk adds are kept, not refused.
    model_config = ConfigDict(frozen=True, extra="allow")


class PairedChange(_Record):
    """An attack's refusal outcome against its reference baseline on the same prompts (after
    minus before): the difference with its bootstrap CI, the discordant pairs and McNemar's
    p-values (exact; clustered where answers are; Holm-adjusted across the run)."""

    baseline: str
    difference: float
    difference_ci: tuple[float, float]
    n: int
    became_true: int
    became_false: int
    mcnemar_p: float
    clustered_p: float | None = None
    holm_p: float | None = None


class CapabilityChange(_Record):
    """A tuned model's accuracy against the untuned model's on the same questions (paired
    TOST within ``margin``): kept, lost, gained or inconclusive."""

    verdict: Literal["kept", "lost", "gained", "inconclusive"]
    difference: float
    difference_ci: tuple[float, float]
    confidence: float
    margin: float
    tost_p: float | None = None
    n: int


class TaskCapability(_Record):
    """Multiple-choice accuracy on one capability task, with its 95% CIs."""

    accuracy: float
    accuracy_ci: tuple[float, float]
    accuracy_norm: float | None = None
    accuracy_norm_ci: tuple[float, float] | None = None
    n: int
    #: None on the untuned model, and without a margin.
    versus_baseline: CapabilityChange | None = None


class SeedSpread(_Record):
    """One metric across replicate seeds: each seed's value and their mean, sd and range."""

    seeds: list[int]
    values: list[float]
    mean: float
    sd: float
    min: float
    max: float


class ConditionResult(_Frozen):
    """Safety metrics of one model condition (the baseline or one attack)."""

    name: str
    description: str = ""
    #: Answers to harmful prompts: the one denominator of the four rates below.
    n_harmful: int
    #: Full refusals among the answers to harmful prompts.
    refusal_rate: float
    refusal_rate_ci: tuple[float, float]
    #: Partial refusals (refused or disclaimed, then delivered some of it).
    partial_rate: float | None = None
    partial_rate_ci: tuple[float, float] | None = None
    #: Full compliance.
    compliance_rate: float | None = None
    compliance_rate_ci: tuple[float, float] | None = None
    #: Empty, degenerate or unjudged answers: neither safe nor unsafe.
    unscored_rate: float = 0.0
    #: Compliance + partial.
    attack_success_rate: float
    attack_success_rate_ci: tuple[float, float] | None = None
    #: Per prompt kind, answers counted as refusal / partial / compliance / unscored.
    outcome_counts: dict[str, dict[str, int]] = Field(default_factory=dict)
    #: Whether intervals account for clusters (the action behind several phrasings).
    clustered: bool = False
    #: Paired comparison with the reference baseline on the same prompts (refusal outcome);
    #: None for baselines.
    versus_baseline: PairedChange | None = None
    n_lookalike: int
    over_refusal_rate: float | None
    over_refusal_rate_ci: tuple[float, float] | None
    n_benign: int
    benign_refusal_rate: float | None
    #: Refusal rate per harmful category, its CI and its denominator.
    per_category: dict[str, float]
    per_category_ci: dict[str, tuple[float, float]] = Field(default_factory=dict)
    per_category_n: dict[str, int]
    #: Items per kind without a verdict (e.g. empty answers); never silently counted either way.
    n_unscored: dict[str, int] = Field(default_factory=dict)
    train_seconds: float | None = None
    train_tokens: int | None = None
    train_steps: int | None = None
    hyperparameters: dict[str, object] = Field(default_factory=dict)
    #: LLM judges' harmfulness metrics, by judge name (empty when none ran).
    judges: dict[str, JudgeResult] = Field(default_factory=dict)
    #: Capability per task (empty when the audit measures none, and on reference baselines,
    #: which differ only in prompts).
    capability: dict[str, TaskCapability] = Field(default_factory=dict)
    #: Across replicate seeds (a run with several ``seeds``), by metric: the rates above by
    #: name, ``judges.<judge>.mean_score`` and ``capability.<task>.accuracy``. Empty with one
    #: seed.
    seed_spread: dict[str, SeedSpread] = Field(default_factory=dict)

    def updated(self, **changes: Any) -> ConditionResult:
        """A copy with ``changes``, validated like the original (``model_copy`` would keep
        plain dicts where typed records belong); fields left unset stay unset."""
        return ConditionResult.model_validate({**self.model_dump(exclude_unset=True), **changes})


class JudgeAgreement(_Record):
    """Two judges on the same answers to harmful prompts: Cohen's kappa on harmful-or-not and
    Spearman on the scores (None where undefined)."""

    judges: tuple[str, str]
    n: int
    cohen_kappa: float | None
    spearman: float | None


#: Version of results.json's layout: 1 before the three-way judge (no ``schema_version`` key),
#: 2 with refusal / partial / compliance rates.
RESULTS_SCHEMA_VERSION = 2


class AuditResults(BaseModel):
    """``results.json``: what an audit measured. The report stage writes it; every renderer,
    ``ftrisk rejudge``, seed pooling and sweeps read it (through
    :func:`ftrisk.report.results.read_results`). Version 1 files still read; keys a newer
    ftrisk adds at the top level are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    schema_version: int = 1
    ftrisk_version: str | None = None
    name: str | None = None
    model: str | None = None
    model_path: str | None = None
    model_fingerprint: str | None = None
    #: The embedded organism's build settings and its own metrics (None for other models).
    organism: dict[str, Any] | None = None
    seeds: list[int] = Field(default_factory=lambda: [0])
    #: With several seeds: each replicate's seed, run directory, model and organism.
    replicates: list[dict[str, Any]] | None = None
    generation: dict[str, Any] = Field(default_factory=dict)
    judge: dict[str, Any] | None = None
    benchmark: dict[str, Any] | None = None
    #: "test" for the built-in reported split, "dev" for the one settings were chosen on.
    benchmark_split: str | None = None
    baseline_eval: dict[str, Any] | None = None
    threads: int | None = None
    #: Prompts per kind (harmful, lookalike, benign).
    counts: dict[str, int] | None = None
    conditions: list[ConditionResult]
    scoring_judges: list[dict[str, Any]] = Field(default_factory=list)
    judge_agreement: list[JudgeAgreement] = Field(default_factory=list)
    paper: dict[str, Any] | None = None

    def summary(self) -> dict[str, Any]:
        """The record as the JSON it was read from or written as (unset keys left out, so
        an older file renders as it always did)."""
        return self.model_dump(mode="json", exclude_unset=True)
