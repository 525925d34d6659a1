"""The judging stage: the refusal judge plus any LLM and classifier judges, on one condition's
generations.

A :class:`JudgePanel` judges stored generations only (it never touches the audited model),
writes each judge's verdicts into the run directory, turns them into metrics, and keeps the
verdicts on harmful prompts to measure how far the judges agree.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from typing import Any

from ftrisk.config import AuditConfig
from ftrisk.errors import InputError
from ftrisk.metrics import condition_result, judge_result
from ftrisk.records import ConditionResult, Generation, JudgeResult, Judgment, TrainStats
from ftrisk.rundir import RunDir
from ftrisk.stats import cohen_kappa, paired_difference, spearman
from ftrisk.store import Store

#: A judgment as (harmful?, score) for agreement, or None when unscored.
Verdict = Callable[[Judgment], tuple[bool, float] | None]


def _judge_backend(spec: Any) -> Any:
    """The generation backend an LLM judge's ``backend`` section describes."""
    if spec.kind == "transformers":
        from ftrisk.generate.hf import HFBackend

        return HFBackend(spec.model, max_new_tokens=spec.max_tokens, batch_size=8)
    from ftrisk.generate.openai_api import OpenAIBackend

    return OpenAIBackend(
        spec.model, base_url=spec.base_url, api_key_env=spec.api_key_env,
        concurrency=spec.concurrency, timeout=spec.timeout, max_retries=spec.max_retries,
        max_tokens=spec.max_tokens)


def classifier_backend(path: str, *, batch_size: int = 8, max_new_tokens: int = 20,
                       trust_remote_code: bool = False, dtype: str = "auto") -> Any:
    """The hf backend that runs a Llama Guard style classifier at ``path`` (a model
    directory or hub id). Its tokenizer is loaded now, so a missing one fails at once; the
    model on first use, in ``dtype`` ("auto": bfloat16 on a GPU, float32 otherwise)."""
    from transformers import AutoTokenizer

    from ftrisk.generate.hf import HFBackend

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise InputError(f"cannot load the classifier's tokenizer: {err}".splitlines()[0],
                         path=path) from err
    if dtype == "auto":
        import torch

        dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    return HFBackend(str(path), tokenizer, max_new_tokens=max_new_tokens,
                     batch_size=batch_size, dtype=dtype, trust_remote_code=trust_remote_code)


def refusal_judge(spec: Any, store: Store | None = None, *, progress: bool = False) -> Any:
    """The refusal judge a config's ``judge`` section names; a model-based one gets the
    backend its ``backend`` section describes."""
    from ftrisk.registry import JUDGES

    judge = JUDGES.get(spec.name)
    if spec.backend is None:
        return judge.from_spec(spec)
    return judge.from_spec(spec, _judge_backend(spec.backend), store=store, progress=progress)


class JudgePanel:
    """Every judge an audit config names, built up front (a missing API key fails early)."""

    def __init__(self, config: AuditConfig, run: RunDir, store: Store, *, progress: bool = True,
                 log: Callable[[str], None] = print) -> None:
        self.config, self.run, self.log = config, run, log
        self.primary = refusal_judge(config.judge, store, progress=progress)
        #: Scoring judges: (name, judge, (USD per 1k prompt, completion tokens) or None).
        self.scorers: list[tuple[str, Any, tuple[float, float] | None]] = []
        if config.llm_judges:
            from ftrisk.registry import LLM_JUDGES

            self.scorers += [
                (spec.name, LLM_JUDGES.get(spec.name).from_spec(
                    spec, _judge_backend(spec.backend), store=store, progress=progress),
                 (spec.backend.price_per_1k_prompt_tokens,
                  spec.backend.price_per_1k_completion_tokens))
                for spec in config.llm_judges]
        if config.classifier_judges:
            from ftrisk.registry import CLASSIFIER_JUDGES

            self.scorers += [
                (spec.name, CLASSIFIER_JUDGES.get(spec.name)(
                    classifier_backend(spec.model, batch_size=spec.batch_size,
                                       trust_remote_code=config.trust_remote_code),
                    model_path=spec.model, name=spec.name, store=store, progress=progress),
                 None)
                for spec in config.classifier_judges]
        # judge -> "condition/item" -> (harmful?, score), over answers to harmful prompts.
        self._verdicts: dict[str, dict[str, tuple[bool, float]]] = {}
        # condition -> item -> (refused by the primary judge, or None; cluster), harmful only.
        self._refused: dict[str, dict[str, tuple[bool | None, str | None]]] = {}

    def score(self, name: str, generations: list[Generation], *, description: str = "",
              train: TrainStats | None = None,
              hyperparameters: dict | None = None) -> ConditionResult:
        """Judge one condition's generations and compute its metrics."""
        judgments = self.primary.judge(generations)
        self.run.write_jsonl(f"conditions/{name}/judgments.jsonl", judgments)
        by_id = {j.item_id: j for j in judgments}
        self._refused[name] = {g.item_id: (by_id[g.item_id].refused, g.cluster)
                               for g in generations if g.kind == "harmful"}
        self._remember(self.primary.name, name, generations, judgments,
                       lambda j: None if j.refused is None else
                       (not j.refused, float(not j.refused)))
        result = condition_result(name, generations, judgments, description=description,
                                  train=train, hyperparameters=hyperparameters)
        if self.scorers:
            result = result.updated(judges=self._score(name, generations))
        return result

    def _score(self, name: str, generations: list[Generation]) -> dict[str, JudgeResult]:
        harmful = [g for g in generations if g.kind == "harmful"]
        results = {}
        for judge_name, judge, price in self.scorers:
            judgments = judge.judge(harmful)
            unscored = sum(j.score is None for j in judgments)
            self.log(f"[{name}] judged by {judge_name}: {len(judgments) - judge.last_cached} "
                     f"asked, {judge.last_cached} from cache, {unscored} unscored")
            self.run.write_jsonl(f"conditions/{name}/judgments-{judge_name}.jsonl", judgments)
            threshold = type(judge).harmful_above
            self._remember(judge_name, name, harmful, judgments,
                           lambda j, t=threshold: None if j.score is None else
                           (j.score > t, float(j.score)))
            results[judge_name] = judge_result(
                judge_name, harmful, judgments, top_score=type(judge).top_score,
                scale=type(judge).scale,
                price_per_1k=price, seed=self.config.seed,
                n_resamples=self.config.bootstrap_resamples)
        return results

    def _remember(self, judge: str, condition: str, generations: list[Generation],
                  judgments: list[Judgment], verdict: Verdict) -> None:
        harmful = {g.item_id for g in generations if g.kind == "harmful"}
        seen = self._verdicts.setdefault(judge, {})
        for judgment in judgments:
            v = verdict(judgment)
            if v is not None and judgment.item_id in harmful:
                seen[f"{condition}/{judgment.item_id}"] = v

    def versus(self, condition: str, baseline: str) -> dict[str, Any] | None:
        """``condition`` against ``baseline`` on the harmful prompts both answered with a
        verdict: the paired difference in full-refusal rate with its CI and the exact McNemar
        p-value (None when they share no scored prompt)."""
        mine, theirs = self._refused.get(condition, {}), self._refused.get(baseline, {})
        shared = [i for i in mine if i in theirs and mine[i][0] is not None
                  and theirs[i][0] is not None]
        if not shared:
            return None
        clusters = None if all(mine[i][1] is None for i in shared) else [
            mine[i][1] or f"item:{i}" for i in shared]
        result = paired_difference([bool(mine[i][0]) for i in shared],
                                   [bool(theirs[i][0]) for i in shared], clusters,
                                   seed=self.config.seed,
                                   n_resamples=self.config.bootstrap_resamples)
        return {"baseline": baseline, **result}

    def compared(self, conditions: list[ConditionResult]) -> list[ConditionResult]:
        """Each attack against its reference baseline (``baseline@<attack>`` when evaluated,
        else ``baseline``) on the same prompts, with Holm-adjusted p-values across the run."""
        from ftrisk.stats import holm

        names = {c.name for c in conditions}
        tests: dict[str, dict[str, Any]] = {}
        for c in conditions:
            if c.name == "baseline" or c.name.startswith("baseline@"):
                continue
            reference = f"baseline@{c.name}" if f"baseline@{c.name}" in names else "baseline"
            versus = self.versus(c.name, reference)
            if versus is not None:
                tests[c.name] = versus
        # Where answers are clustered, the clustered test is the valid one to adjust.
        adjusted = dict(zip(tests, holm([t.get("clustered_p", t["mcnemar_p"])
                                         for t in tests.values()])))
        return [c.updated(versus_baseline={**tests[c.name], "holm_p": adjusted[c.name]})
                if c.name in tests else c for c in conditions]

    def agreement(self) -> list[dict[str, Any]]:
        """Every pair of judges on the same answers to harmful prompts: Cohen's kappa on
        harmful-or-not, Spearman on the scores (empty with a single judge)."""
        out = []
        for a, b in combinations(sorted(self._verdicts), 2):
            shared = sorted(set(self._verdicts[a]) & set(self._verdicts[b]))
            va = [self._verdicts[a][k] for k in shared]
            vb = [self._verdicts[b][k] for k in shared]
            out.append({"judges": [a, b], "n": len(shared),
                        "cohen_kappa": cohen_kappa([x[0] for x in va], [x[0] for x in vb]),
                        "spearman": spearman([x[1] for x in va], [x[1] for x in vb])})
        return out

    def describe(self) -> list[dict[str, str]]:
        """The scoring judges for results.json: name, fingerprint and what runs them (an
        endpoint's repr never holds its key)."""
        return [{"name": name, "fingerprint": judge.fingerprint,
                 "backend": repr(getattr(judge, "backend", judge))}
                for name, judge, _ in self.scorers]
