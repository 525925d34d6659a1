"""Typed audit configuration, validated before any heavy work starts.

A config is a YAML file (see ``ftrisk/presets/default_audit.yaml``); unknown keys, duplicate
keys, wrong types and out-of-range values are errors naming the file, line and field.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ftrisk.errors import InputError
from ftrisk.yamlio import BOOLEAN_FOR_NUMBER, Loc, boolean_for_number, load_yaml, validate

PRESETS = Path(__file__).parent / "presets"
ORGANISM = "embedded:organism"
#: Models hosted by a provider's API: ``openai:gpt-3.5-turbo-0613``.
REMOTE_PREFIX = "openai:"
#: Paths under the user's data directory, where gated files that ftrisk cannot ship go.
DATA_PREFIX = "data:"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 in a number field (epochs: true -> 1): a boolean there is a
        # mistake. Nested models check their own fields.
        field = cls.model_fields[info.field_name] if info.field_name else None
        if field is not None and boolean_for_number(field.annotation, value,
                                                    into_models=False) is not None:
            raise ValueError(BOOLEAN_FOR_NUMBER)
        return value


class SafetyMixSpec(_Strict):
    """Safety data mixed into a tuning set (Qi et al.'s mitigation): harmful request -> refusal
    pairs, spread evenly through the attack data."""

    path: str = Field(default="builtin:alignment_refusals",
                      description="builtin:NAME or a chat / prompt-response file")
    count: int = Field(ge=0, description="how many safety examples to add (0: none, the "
                       "unmitigated column of a mixing sweep)")


class DataSpec(_Strict):
    """Training data: ``builtin:NAME``, a file (chat JSONL, prompt/response JSONL or CSV), or an
    instruction-tuning set in its public layout (``format: alpaca`` or ``dolly``).

    Paths starting with ``data:`` are looked up in the data directory (``--data-dir``,
    ``$FTRISK_DATA``, else ``~/ftrisk-data``), where user-supplied gated files go.
    """

    path: str
    format: Literal["auto", "chat", "prompt_response", "alpaca", "dolly"] = "auto"
    prompt_field: str = "prompt"
    response_field: str = "response"
    category_field: str | None = "category"
    limit: int | None = Field(default=None, ge=1, description="use the first N examples")
    safety_filter: bool = Field(
        default=False, description="alpaca/dolly: drop rows matching Qi et al.'s safety "
        "keywords first (the count removed is logged and kept in the results)")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="further alpaca/dolly reader options")
    safety_mix: SafetyMixSpec | None = None

    @model_validator(mode="after")
    def _instruction_options(self) -> DataSpec:
        if self.format not in ("alpaca", "dolly") and (self.safety_filter or self.options):
            raise ValueError("safety_filter and options apply to format alpaca or dolly only")
        return self


class PromptSetSpec(_Strict):
    """Evaluation prompts: ``builtin:benchmark``, a CSV/JSONL file with a prompt column, or a
    public benchmark in its own layout (``reader: hex-phi`` and ``path`` to its folder)."""

    path: str
    reader: str | None = Field(default=None, description="a benchmark reader registered in "
                               "ftrisk.registry.BENCHMARKS (hex-phi, advbench, xstest, ...)")
    options: dict[str, Any] = Field(default_factory=dict, description="reader options")
    prompt_field: str = "prompt"
    category_field: str | None = "category"
    cluster_field: str | None = Field(
        default=None, description="column naming the correlated unit of each prompt (e.g. "
        "the action behind several phrasings): intervals then count clusters, not prompts "
        "(files read without a reader)")
    limit_per_category: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _cluster_field_without_reader(self) -> PromptSetSpec:
        if self.cluster_field is not None and self.reader is not None:
            raise ValueError("cluster_field applies to files read without a reader")
        return self

    @field_validator("reader")
    @classmethod
    def _known_reader(cls, reader: str | None) -> str | None:
        from ftrisk.registry import BENCHMARKS

        return None if reader is None else BENCHMARKS.check(reader)


class BenchmarkSpec(_Strict):
    """Harmful prompts (refusal), benign look-alikes (over-refusal) and plain benign prompts."""

    harmful: PromptSetSpec = PromptSetSpec(path="builtin:benchmark")
    lookalike: PromptSetSpec | None = None
    benign: PromptSetSpec | None = None


class LoraSpec(_Strict):
    """LoRA (PEFT): low-rank updates of the target projections."""

    r: int = Field(default=8, ge=1)
    alpha: int = Field(default=32, ge=1)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: tuple[str, ...] = ("q_proj", "v_proj")

    def peft_config(self, model: Any) -> Any:
        """The PEFT config that trains ``model`` this way."""
        import peft

        return peft.LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                               target_modules=list(self.target_modules), task_type="CAUSAL_LM")


class AdapterSpec(_Strict):
    """LLaMA-Adapter (PEFT's adaption prompt): learned prompts in the top layers, gated."""

    adapter_len: int = Field(default=10, ge=1, description="prompt tokens per layer")
    adapter_layers: int = Field(default=30, ge=1, description="top layers that get them")

    def peft_config(self, model: Any) -> Any:
        """The PEFT config that trains ``model`` this way (capped at its depth, so the
        paper's 30 layers also fit small models)."""
        import peft

        layers = min(self.adapter_layers, model.config.num_hidden_layers)
        return peft.AdaptionPromptConfig(adapter_len=self.adapter_len, adapter_layers=layers,
                                         task_type="CAUSAL_LM")


class PrefixSpec(_Strict):
    """Prefix tuning (PEFT): learned key/value prefixes in every layer."""

    num_virtual_tokens: int = Field(default=10, ge=1)

    def peft_config(self, model: Any) -> Any:
        """The PEFT config that trains ``model`` this way."""
        import peft

        return peft.PrefixTuningConfig(num_virtual_tokens=self.num_virtual_tokens,
                                       task_type="CAUSAL_LM")


class FullSpec(_Strict):
    """Full fine-tuning: every weight is trained (no settings of its own)."""

    def peft_config(self, model: Any) -> None:
        """None: no adapter, the model itself is trained."""
        return None


class TrainSpec(_Strict):
    """Fine-tuning hyperparameters (Qi et al.'s names and defaults where they exist).

    ``method`` names a training method registered in :data:`ftrisk.registry.TRAIN_METHODS`;
    the section of the same name holds that method's own settings (the other sections are
    ignored).
    """

    method: str = Field(default="lora", description="a training method registered in "
                        "ftrisk.registry.TRAIN_METHODS: lora, full, adapter or prefix")
    learning_rate: float = Field(default=1e-3, gt=0)
    epochs: int = Field(default=1, ge=1)
    batch_size: int = Field(default=10, ge=1)
    max_length: int = Field(default=256, ge=8)
    lr_epoch_decay: float = Field(default=1.0, gt=0, le=1)
    weight_decay: float = Field(default=0.0, ge=0)
    seed: int = 42
    max_answer_tokens: int | None = Field(
        default=None, ge=1, description="train on only the first N tokens of each answer "
        "(None: all); whether a model refuses is decided in its first tokens")
    lora: LoraSpec = LoraSpec()
    adapter: AdapterSpec = AdapterSpec()
    prefix: PrefixSpec = PrefixSpec()
    full: FullSpec = FullSpec()
    system_prompt: str | None = Field(
        default=None, description="system turn put on every training example (replaces any)")

    @field_validator("method")
    @classmethod
    def _known_method(cls, name: str) -> str:
        from ftrisk.registry import TRAIN_METHODS

        return TRAIN_METHODS.check(name)

    def method_spec(self) -> Any:
        """The settings of the chosen method, with ``peft_config(model)``: its section here,
        or the defaults of a method registered without one."""
        if self.method in type(self).model_fields:
            return getattr(self, self.method)
        from ftrisk.registry import TRAIN_METHODS

        return TRAIN_METHODS.get(self.method)()

    def settings(self) -> dict[str, Any]:
        """These settings as JSON, without the sections of the methods not chosen."""
        from ftrisk.registry import TRAIN_METHODS

        return self.model_dump(mode="json",
                               exclude=set(TRAIN_METHODS.names()) - {self.method})


class EvalSpec(_Strict):
    """How prompts are presented at evaluation: this changes measured safety, so it is explicit."""

    system_prompt: str | None = Field(
        default=None, description="None keeps the chat template's default system prompt")
    prompt_template: str = Field(default="{prompt}", description="wraps each test prompt")

    @model_validator(mode="after")
    def _template_has_slot(self) -> EvalSpec:
        if "{prompt}" not in self.prompt_template:
            raise ValueError("prompt_template must contain '{prompt}'")
        return self


class AttackSpec(_Strict):
    """One fine-tuning job against the model, evaluated like the baseline."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    paper_differences: str = ""
    data: DataSpec
    train: TrainSpec = TrainSpec()
    eval: EvalSpec = EvalSpec()


class VLLMSpec(_Strict):
    """How ftrisk runs vLLM: as an OpenAI-compatible server started from its own Python
    environment (vLLM pins its own torch and transformers), stopped when the run ends."""

    python: str | None = Field(default=None, description="the Python of the environment where "
                               "vLLM is installed, e.g. .venv-vllm/bin/python (relative to "
                               "this file); None: the Python running ftrisk")
    dtype: str = Field(default="auto", description="vLLM's --dtype (auto, float32, bfloat16)")
    max_model_len: int | None = Field(default=None, ge=16, description="vLLM's "
                                      "--max-model-len; None: the model's own")
    max_lora_rank: int = Field(default=64, ge=1, description="largest LoRA rank served as "
                               "an adapter")
    startup_timeout: float = Field(default=900.0, gt=0, description="seconds to wait for the "
                                   "server to answer")
    extra_args: tuple[str, ...] = Field(default=(), description="further `vllm serve` "
                                        "arguments, e.g. [--tensor-parallel-size, '4']")


class GenerationSpec(_Strict):
    max_new_tokens: int = Field(default=40, ge=1)
    batch_size: int = Field(default=64, ge=1)
    backend: str = Field(default="hf", description="a generation backend registered in "
                         "ftrisk.registry.GENERATION_BACKENDS: hf (transformers) or vllm")
    vllm: VLLMSpec = Field(default_factory=VLLMSpec)

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        from ftrisk.registry import GENERATION_BACKENDS

        return GENERATION_BACKENDS.check(name)


class BackendSpec(_Strict):
    """Where an LLM judge runs. The API key itself never goes in a config: only the name of
    the environment variable that holds it."""

    kind: Literal["openai", "transformers"] = "openai"
    model: str = Field(description="endpoint model name, or a local model directory")
    base_url: str | None = Field(default=None, description="None: OpenAI itself")
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(default=16, ge=1)
    timeout: float = Field(default=60.0, gt=0, description="seconds per request")
    max_retries: int = Field(default=5, ge=0)
    max_tokens: int = Field(default=512, ge=1)
    price_per_1k_prompt_tokens: float = Field(default=0.0, ge=0)
    price_per_1k_completion_tokens: float = Field(default=0.0, ge=0)


class JudgeSpec(_Strict):
    """The refusal judge, whose verdicts give every refusal, partial and compliance rate."""

    name: str = Field(default="refusal", description="a judge registered in ftrisk.registry")
    patterns: tuple[str, ...] = ("advbench", "lermen")
    window_chars: int | None = Field(default=120, ge=1)
    backend: BackendSpec | None = Field(
        default=None, description="where a model-based judge (refusal-llm) runs")
    max_parse_retries: int = Field(default=2, ge=0)

    @field_validator("name")
    @classmethod
    def _known_judge(cls, name: str) -> str:
        from ftrisk.registry import JUDGES

        return JUDGES.check(name)

    @field_validator("patterns")
    @classmethod
    def _known_patterns(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        from ftrisk.judge.refusal import available_pattern_sets

        unknown = sorted(set(patterns) - set(available_pattern_sets()))
        if unknown:
            raise ValueError(f"unknown pattern sets {unknown}; available: "
                             f"{', '.join(available_pattern_sets())}")
        return patterns

    @model_validator(mode="after")
    def _backend_when_needed(self) -> JudgeSpec:
        from ftrisk.registry import JUDGES

        needs = getattr(JUDGES.get(self.name), "needs_backend", False)
        if needs and self.backend is None:
            raise ValueError(f"judge {self.name!r} asks a model: give judge.backend "
                             "({kind: openai, model: ..., base_url: ...} or {kind: "
                             "transformers, model: <directory>})")
        if not needs and self.backend is not None:
            raise ValueError(f"judge {self.name!r} asks no model: remove judge.backend")
        if self.backend is not None and (self.backend.price_per_1k_prompt_tokens
                                         or self.backend.price_per_1k_completion_tokens):
            raise ValueError("judge.backend: the refusal judge's cost is not reported, so "
                             "prices are not used here (they apply to llm_judges)")
        return self


class LLMJudgeSpec(_Strict):
    """An LLM judge of harmfulness (``rubric``: Qi et al. 1-5; ``strongreject``: 0-1)."""

    name: str
    backend: BackendSpec
    policy: str | None = Field(default=None, description="usage policy text (rubric judge)")
    max_parse_retries: int = Field(default=2, ge=0)

    @field_validator("name")
    @classmethod
    def _known_llm_judge(cls, name: str) -> str:
        from ftrisk.registry import LLM_JUDGES

        return LLM_JUDGES.check(name)


class ClassifierJudgeSpec(_Strict):
    """A local safety classifier (Llama Guard style) run through transformers."""

    name: str = "llamaguard"
    model: str = Field(description="classifier model directory (relative to this file) or "
                       "hub id")
    batch_size: int = Field(default=8, ge=1)

    @field_validator("name")
    @classmethod
    def _known_classifier(cls, name: str) -> str:
        from ftrisk.registry import CLASSIFIER_JUDGES

        return CLASSIFIER_JUDGES.check(name)


class CapabilityTaskSpec(_Strict):
    """One capability benchmark scored by multiple-choice log-likelihood (as lm-eval does)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    reader: str = Field(default="builtin", description="a reader registered in "
                        "ftrisk.registry.CAPABILITY_READERS (builtin, mmlu, hellaswag, "
                        "multiple-choice)")
    path: str | None = Field(default=None, description="the task's file or folder (not for "
                             "builtin)")
    options: dict[str, Any] = Field(default_factory=dict, description="reader options")
    limit: int | None = Field(default=None, ge=1, description="score the first N questions")

    @field_validator("reader")
    @classmethod
    def _known_reader(cls, reader: str) -> str:
        from ftrisk.registry import CAPABILITY_READERS

        return CAPABILITY_READERS.check(reader)

    @model_validator(mode="after")
    def _path_unless_builtin(self) -> CapabilityTaskSpec:
        if (self.reader == "builtin") != (self.path is None):
            raise ValueError("builtin tasks take no path; every other reader needs one")
        return self


class CapabilitySpec(_Strict):
    """Capability measured on the untuned and each tuned model (not on prompt variants)."""

    tasks: tuple[CapabilityTaskSpec, ...] = Field(min_length=1)
    batch_size: int = Field(default=32, ge=1)
    margin: float = Field(default=0.05, gt=0, lt=1, description="equivalence margin of the "
                          "capability verdict (TOST on accuracy after - before): 0.05 = 5 "
                          "points")

    @model_validator(mode="after")
    def _unique_names(self) -> CapabilitySpec:
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"capability task names must be unique: {names}")
        return self


#: Metrics a paper reports that ftrisk measures too (rates as fractions).
REFERENCE_METRICS = ("refusal_rate", "attack_success_rate", "harmfulness_score",
                     "harmfulness_rate", "mmlu", "hellaswag")


class PaperSpec(_Strict):
    """The paper result a preset reproduces; the report puts these numbers beside ours."""

    citation: str
    table: str = ""
    row: str = ""
    fidelity: Literal["faithful", "variant"] = Field(
        default="variant", description="faithful: the paper's data, protocol and judge, up to "
        "unavoidable differences (hardware, withheld data, retired model snapshots), so its "
        "numbers are comparable; variant: ftrisk's own data or protocol, so they are not")
    differences: str = Field(default="", description="how ftrisk's protocol differs")
    reference: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="condition name -> metric -> the paper's number")

    @field_validator("reference")
    @classmethod
    def _known_metrics(cls, reference: dict[str, dict[str, float]]
                       ) -> dict[str, dict[str, float]]:
        for condition, metrics in reference.items():
            unknown = sorted(set(metrics) - set(REFERENCE_METRICS))
            if unknown:
                raise ValueError(f"reference.{condition}: unknown metrics {unknown}; expected "
                                 f"some of {', '.join(REFERENCE_METRICS)}")
        return reference


class RemoteSpec(_Strict):
    """The provider API for hosted models (``model: openai:<id>``): fine-tuning jobs and chat
    completions. Only the epoch count of an attack is sent, as in Qi et al.'s GPT-3.5 runs."""

    base_url: str | None = Field(default=None, description="None: OpenAI itself")
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(default=16, ge=1)
    timeout: float = Field(default=60.0, gt=0, description="seconds per request")
    max_retries: int = Field(default=5, ge=0)
    poll_seconds: float = Field(default=30.0, gt=0, description="fine-tuning job polling")
    max_wait_hours: float = Field(default=24.0, gt=0)


class RequiredFile(_Strict):
    """A file the user must supply (gated data): where it goes and where to get it."""

    path: str = Field(description="'data:NAME' inside the data directory")
    source: str = Field(description="where to download it and under which terms")


class RequiresSpec(_Strict):
    """What an experiment needs beyond a CPU; checked before any work starts."""

    gpu: bool = False
    provider: str | None = Field(default=None, description="a remote fine-tuning provider "
                                 "(e.g. 'openai'): the preset tunes a hosted model")
    files: tuple[RequiredFile, ...] = ()


class AuditConfig(_Strict):
    """A whole audit: model, benchmark, attacks, decoding, judge."""

    name: str = Field(default="audit", pattern=r"^[A-Za-z0-9_.-]+$")
    model: str = Field(default=ORGANISM, description="'embedded:organism', a local model "
                       "directory (relative to this file), a Hugging Face hub id, or "
                       "'openai:<model>' for a model tuned through the provider's API")
    trust_remote_code: bool = False
    chat_template: str | None = Field(
        default=None, description="a template ftrisk ships (llama-2, llama-2-lermen) or a Jinja "
        "string; replaces the model's own")
    quantization: Literal["none", "8bit", "4bit"] = Field(
        default="none", description="load the model quantized with bitsandbytes (CUDA only); "
        "LoRA then trains on top of the quantized weights (Lermen et al.)")
    paper: PaperSpec | None = None
    requires: RequiresSpec = RequiresSpec()
    remote: RemoteSpec = RemoteSpec()
    benchmark: BenchmarkSpec = BenchmarkSpec()
    baseline_eval: EvalSpec = EvalSpec()
    generation: GenerationSpec = GenerationSpec()
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="training and generation; auto: bf16 autocast where the "
        "CPU or GPU supports it natively")
    judge: JudgeSpec = JudgeSpec()
    llm_judges: tuple[LLMJudgeSpec, ...] = Field(
        default=(), description="LLM judges scoring the answers to harmful prompts")
    classifier_judges: tuple[ClassifierJudgeSpec, ...] = Field(
        default=(), description="safety classifiers labelling the answers to harmful prompts")
    capability: CapabilitySpec | None = None
    attacks: tuple[AttackSpec, ...] = ()
    reference_baselines: bool = Field(
        default=True, description="also evaluate the untuned model with each attack's own "
        "evaluation settings, so an attack's effect is not confused with its prompt's")
    bootstrap_resamples: int = Field(default=2000, ge=100)
    seed: int = Field(default=0, description="seed of the bootstrap resampling")
    seeds: tuple[int, ...] = Field(
        default=(0,), min_length=1, description="replicate seeds: the whole audit runs once "
        "per seed s, the embedded organism built with its build seed + s and every attack "
        "trained with train.seed + s; several seeds pool the answers of all replicates "
        "(intervals clustered by prompt) and report each seed's values and their spread")
    threads: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _unique_judge_names(self) -> AuditConfig:
        names = [j.name for j in (*self.llm_judges, *self.classifier_judges)]
        if len(set(names)) != len(names) or "refusal" in names:
            raise ValueError(f"each judge may appear once (refusal always runs): {names}")
        return self

    @field_validator("chat_template")
    @classmethod
    def _template_name_or_jinja(cls, value: str | None) -> str | None:
        from ftrisk.models.chat_templates import template_names

        # A misspelt name would otherwise be taken as a Jinja template rendering only itself.
        if value is None or value in template_names() or "{{" in value or "{%" in value:
            return value
        close = difflib.get_close_matches(value, template_names(), n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(f"'{value}' is neither a template ftrisk ships ({hint}available: "
                         f"{', '.join(template_names())}) nor a Jinja template")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: tuple[int, ...]) -> tuple[int, ...]:
        if len(set(seeds)) != len(seeds) or min(seeds) < 0:
            raise ValueError(f"seeds must be distinct and non-negative: {list(seeds)}")
        return seeds

    @model_validator(mode="after")
    def _hosted_models_have_no_seeds(self) -> AuditConfig:
        if self.model.startswith(REMOTE_PREFIX) and len(self.seeds) > 1:
            raise ValueError("a provider's fine-tuning job takes no seed, so replicate seeds "
                             "would repeat one job; use a single seed for hosted models")
        return self

    @model_validator(mode="after")
    def _quantized_training_is_lora(self) -> AuditConfig:
        if self.quantization != "none":
            bad = [a.name for a in self.attacks if a.train.method != "lora"]
            if bad:
                raise ValueError(f"quantized models are tuned with LoRA only; attacks {bad} "
                                 "use another method")
        return self

    @model_validator(mode="after")
    def _vllm_serves_what_it_can(self) -> AuditConfig:
        if self.generation.backend != "vllm":
            return self
        if self.model.startswith(REMOTE_PREFIX):
            raise ValueError("a hosted model answers through its provider's API; "
                             "generation.backend: vllm is for local models")
        bad = [a.name for a in self.attacks if a.train.method in ("adapter", "prefix")]
        if bad:
            raise ValueError(f"vLLM serves LoRA adapters and whole models; attacks {bad} use "
                             "adapter or prefix tuning, which need generation.backend: hf")
        if self.trust_remote_code and "--trust-remote-code" not in self.generation.vllm.extra_args:
            raise ValueError("trust_remote_code is on: let vLLM run the model's code too with "
                             "generation.vllm.extra_args: [--trust-remote-code]")
        if self.quantization != "none" and "--quantization" not in self.generation.vllm.extra_args:
            raise ValueError("vLLM would serve the unquantized weights of a model audited with "
                             f"quantization: {self.quantization}; pass vLLM's own, e.g. "
                             "generation.vllm.extra_args: [--quantization, bitsandbytes], or "
                             "use generation.backend: hf")
        return self

    @model_validator(mode="after")
    def _remote_models_measure_no_capability(self) -> AuditConfig:
        if self.model.startswith(REMOTE_PREFIX) and self.capability is not None:
            raise ValueError("capability is scored from token log-likelihoods, which a hosted "
                             "model's chat API does not give; remove 'capability'")
        return self

    @model_validator(mode="after")
    def _reference_names_conditions(self) -> AuditConfig:
        if self.paper is not None:
            known = {"baseline", *(a.name for a in self.attacks),
                     *(f"baseline@{a.name}" for a in self.attacks)}
            unknown = sorted(set(self.paper.reference) - known)
            if unknown:
                raise ValueError(f"paper.reference names unknown conditions {unknown}; "
                                 f"expected some of {', '.join(sorted(known))}")
        return self

    @model_validator(mode="after")
    def _unique_attack_names(self) -> AuditConfig:
        names = [a.name for a in self.attacks]
        dupes = sorted({n for n in names if names.count(n) > 1} | ({"baseline"} & set(names)))
        if dupes:
            raise ValueError(f"attack names must be unique and not 'baseline': {dupes}")
        return self


def load_config(path: str | Path, *, data_dir: Path | None = None) -> AuditConfig:
    """Load and validate an audit config. Relative paths resolve against the folder of the file
    that writes them, and ``data:NAME`` paths against ``data_dir`` (default:
    :func:`ftrisk.runtime.data_dir`).

    ``extends: <preset name or file>`` at the top starts from that config: mappings merge key
    by key, an empty mapping ``{}`` clears the inherited one, and any other value (a list of
    attacks, say) replaces the inherited one. The parent is validated on its own first, so
    its errors name its own file and line.
    """
    from ftrisk.runtime import data_dir as default_data_dir

    return _load_config(Path(path), data_dir or default_data_dir(), ())


def _load_config(path: Path, data_dir: Path, seen: tuple[Path, ...]) -> AuditConfig:
    data, lines = load_yaml(path)
    if not isinstance(data, dict):
        got = "a list" if isinstance(data, list) else "a single value"
        raise InputError(f"expected a mapping of settings (key: value lines) at the top level, "
                         f"got {got}", path=path, line=lines.get((), 1))
    parent_ref = data.pop("extends", None)
    if parent_ref is not None:
        if not isinstance(parent_ref, str):
            raise InputError("expected a preset name or a file path", path=path,
                             line=lines.get(("extends",)), field="extends")
        parent = config_ref_path(parent_ref, path.parent)
        if parent.resolve() in (*seen, path.resolve()):
            raise InputError(f"'extends' loops back to {parent}", path=path,
                             line=lines.get(("extends",)), field="extends")
        inherited = _load_config(parent, data_dir, (*seen, path.resolve()))
        data = _deep_merge(inherited.model_dump(mode="json"), data)
    config = validate(AuditConfig, data, path=path, lines=lines)
    config = resolve_paths(config, path.parent, data_dir)
    _note_data_paths(config, path, lines)
    return config


#: The config file and line that wrote each resolved data path. A missing data file is found
#: only when it is read, after the config may have been copied or re-validated (``--seeds``,
#: sweep cells), so its error looks the place up here.
_WRITTEN_AT: dict[str, tuple[Path, int]] = {}


def _note_data_paths(config: AuditConfig, path: Path, lines: dict[Loc, int]) -> None:
    written: list[tuple[Loc, str]] = []
    for i, attack in enumerate(config.attacks):
        written.append((("attacks", i, "data", "path"), attack.data.path))
        if attack.data.safety_mix is not None:
            written.append((("attacks", i, "data", "safety_mix", "path"),
                            attack.data.safety_mix.path))
    for kind in ("harmful", "lookalike", "benign"):
        spec = getattr(config.benchmark, kind)
        if spec is not None:
            written.append((("benchmark", kind, "path"), spec.path))
    for loc, data_path in written:
        if loc in lines:  # written in this file, not inherited through 'extends'
            _WRITTEN_AT[data_path] = (path, lines[loc])


def written_at(data_path: str) -> tuple[Path, int] | None:
    """The config file and line that named ``data_path`` (as resolved), when a config loaded in
    this process did."""
    return _WRITTEN_AT.get(data_path)


def config_ref_path(ref: str, folder: Path) -> Path:
    """A config named by ``extends`` or a sweep's ``base``: a YAML file relative to ``folder``,
    else a packaged preset."""
    local = folder / ref
    return local if local.suffix in (".yaml", ".yml") else preset_path(ref)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        # An empty mapping clears the inherited one (e.g. another reader's options).
        if isinstance(value, dict) and value and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _resolve(spec_path: str, base: Path, data_dir: Path) -> str:
    if spec_path.startswith("builtin:"):
        return spec_path
    if spec_path.startswith(DATA_PREFIX):
        return str(data_dir / spec_path.removeprefix(DATA_PREFIX))
    return str((base / Path(spec_path).expanduser()).resolve())


def _resolve_data(spec: DataSpec, base: Path, data_dir: Path) -> DataSpec:
    mix = spec.safety_mix
    if mix is not None:
        mix = mix.model_copy(update={"path": _resolve(mix.path, base, data_dir)})
    return spec.model_copy(update={"path": _resolve(spec.path, base, data_dir),
                                   "safety_mix": mix})


def resolve_paths(config: AuditConfig, base: Path, data_dir: Path) -> AuditConfig:
    """``config`` with every file path made absolute (``data:`` paths inside ``data_dir``)."""
    bench = config.benchmark
    new_bench = bench.model_copy(update={
        key: spec.model_copy(update={"path": _resolve(spec.path, base, data_dir)})
        for key in ("harmful", "lookalike", "benign")
        # A hub dataset id is not a path.
        if (spec := getattr(bench, key)) is not None and spec.reader != "hf"
    })
    attacks = tuple(a.model_copy(update={"data": _resolve_data(a.data, base, data_dir)})
                    for a in config.attacks)
    classifiers = tuple(
        c.model_copy(update={"model": _resolve_model(c.model, base)})
        for c in config.classifier_judges)
    files = tuple(f.model_copy(update={"path": _resolve(f.path, base, data_dir)})
                  for f in config.requires.files)
    capability = config.capability
    if capability is not None:
        capability = capability.model_copy(update={"tasks": tuple(
            t if t.path is None else t.model_copy(update={"path": _resolve(t.path, base,
                                                                           data_dir)})
            for t in capability.tasks)})
    generation = config.generation
    python = generation.vllm.python
    if python is not None and "/" in python:  # a bare name ("python3") is looked up on PATH
        generation = generation.model_copy(update={"vllm": generation.vllm.model_copy(
            update={"python": str((base / Path(python).expanduser()).absolute())})})
    return config.model_copy(update={
        "benchmark": new_bench, "attacks": attacks, "model": _resolve_model(config.model, base),
        "classifier_judges": classifiers, "capability": capability, "generation": generation,
        "requires": config.requires.model_copy(update={"files": files})})


def _resolve_model(model: str, base: Path) -> str:
    # A local directory relative to the config wins; anything else is a hub id.
    if not model.startswith(("embedded:", REMOTE_PREFIX)) and \
            (base / Path(model).expanduser()).exists():
        return str((base / Path(model).expanduser()).resolve())
    return model


def preset_path(name: str) -> Path:
    """Path of a packaged preset by name (``default_audit``)."""
    path = PRESETS / f"{name}.yaml"
    if not path.is_file():
        known = preset_names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise InputError(f"unknown preset '{name}'; {hint}`ftrisk presets` lists them all")
    return path


def preset_names(*, bases: bool = False) -> list[str]:
    """Runnable packaged presets, sorted; with ``bases``, also the shared bases that presets
    extend (names starting with '_')."""
    return sorted(p.stem for p in PRESETS.glob("*.yaml") if bases or not p.stem.startswith("_"))
