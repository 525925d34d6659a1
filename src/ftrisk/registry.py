"""A small lazy registry: name -> "module:attribute", imported on first use.

Adding a judge (or any other extension) is one class plus one line here; nothing heavy is
imported until the name is looked up.
"""

from __future__ import annotations

import importlib
from typing import Any

from ftrisk.errors import InputError


class Registry:
    """Names of one kind of extension mapped to import paths."""

    def __init__(self, kind: str, entries: dict[str, str]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def register(self, name: str, target: str) -> None:
        """Add an entry, e.g. ``JUDGES.register("mine", "my_pkg.judges:MyJudge")``."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is already registered")
        self._entries[name] = target

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def check(self, name: str) -> str:
        """``name`` if registered, else ValueError listing the known names (for validators)."""
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} '{name}'; available: {', '.join(self.names())}")
        return name

    def get(self, name: str) -> Any:
        """Import and return the registered object; unknown names list the known ones."""
        try:
            self.check(name)
        except ValueError as err:
            raise InputError(str(err)) from None
        module, _, attribute = self._entries[name].partition(":")
        return getattr(importlib.import_module(module), attribute)


JUDGES = Registry("judge", {
    # Three-way (refusal / partial / compliance) over the whole answer: the default.
    "refusal": "ftrisk.judge.answer:AnswerJudge",
    # The earlier matcher that reads only the opening of an answer, kept for comparison.
    "refusal-opening": "ftrisk.judge.refusal:RefusalJudge",
    # Qi et al. 2023's AdvBench keywords, matched case-sensitively anywhere in the answer.
    "qi2023-keywords": "ftrisk.judge.keywords:KeywordJudge",
    # The same three-way question asked of an LLM (needs judge.backend).
    "refusal-llm": "ftrisk.judge.refusal_llm:LLMRefusalJudge",
})
LLM_JUDGES = Registry("LLM judge", {
    "rubric": "ftrisk.judge.rubric:RubricJudge",
    "strongreject": "ftrisk.judge.strongreject:StrongRejectJudge",
})

#: Benchmark readers: ``BENCHMARKS.get(name)(path, **options) -> list[Conversation]``.
BENCHMARKS = Registry("benchmark", {
    "hex-phi": "ftrisk.data.benchmarks:hex_phi",
    "advbench": "ftrisk.data.benchmarks:advbench",
    "qi2023-csv": "ftrisk.data.benchmarks:qi2023_csv",
    "harmbench": "ftrisk.data.benchmarks:harmbench",
    "strongreject": "ftrisk.data.benchmarks:strongreject",
    "xstest": "ftrisk.data.benchmarks:xstest",
    "refusalbench": "ftrisk.data.benchmarks:refusalbench",
    "generic": "ftrisk.data.benchmarks:generic",
    "hf": "ftrisk.data.benchmarks:hf_dataset",
})
CLASSIFIER_JUDGES = Registry("classifier judge", {
    "llamaguard": "ftrisk.judge.classifier:ClassifierJudge",
})
#: Capability task readers: ``CAPABILITY_READERS.get(name)(path, **options) -> list[MCItem]``
#: (``builtin`` takes a task name instead of a path).
CAPABILITY_READERS = Registry("capability reader", {
    "builtin": "ftrisk.capability.tasks:builtin",
    "mmlu": "ftrisk.capability.tasks:mmlu",
    "hellaswag": "ftrisk.capability.tasks:hellaswag",
    "multiple-choice": "ftrisk.capability.tasks:multiple_choice",
})
#: Generation backends for local models (``generation.backend``): each class follows
#: :class:`ftrisk.generate.backend.ChatBackend` and is built by its ``for_model`` classmethod.
#: Hosted models (``model: openai:<id>``) are asked through ``ftrisk.generate.openai_api``.
GENERATION_BACKENDS = Registry("generation backend", {
    "hf": "ftrisk.generate.hf:HFBackend",
    "vllm": "ftrisk.generate.vllm_server:VLLMBackend",
})
#: Training methods (``train.method``): each is a settings class of the same-named section of
#: :class:`ftrisk.config.TrainSpec`, whose ``peft_config(model)`` gives the PEFT config (None:
#: full fine-tuning).
TRAIN_METHODS = Registry("training method", {
    "lora": "ftrisk.config:LoraSpec",
    "full": "ftrisk.config:FullSpec",
    "adapter": "ftrisk.config:AdapterSpec",
    "prefix": "ftrisk.config:PrefixSpec",
})
