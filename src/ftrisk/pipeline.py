"""The audit pipeline: the list of stages, run for the baseline and for each attack.

    model (stages/organism)
    -> baseline: generate, judge, capability
    -> per attack: [baseline@attack: generate, judge], train, generate, capability, judge
    -> report (each attack against its baseline; results.json, report.md, report.html)

Every expensive stage writes into the run directory and records the fingerprint of its inputs
and what it wrote (:meth:`ftrisk.stages.context.Context.stage`); running the same command again
skips finished stages whose outputs are intact, so a killed audit resumes, and a damaged output
is redone with one line saying why.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftrisk.config import REMOTE_PREFIX, AttackSpec, AuditConfig, EvalSpec
from ftrisk.data.sources import benchmark_items, training_data
from ftrisk.errors import InputError
from ftrisk.generate.backend import ModelRef, Services
from ftrisk.records import AuditResults, ConditionResult, Generation, TrainStats
from ftrisk.rundir import RunDir, remove_stale_scratch
from ftrisk.stages.capability import capability, capability_items, correct_by_task, verdicts
from ftrisk.stages.context import Context
from ftrisk.stages.generate import generate
from ftrisk.stages.judge import JudgePanel
from ftrisk.stages.organism import base_model
from ftrisk.stages.report import write_results
from ftrisk.stages.train import hosted, train, train_settings
from ftrisk.store import content_key

Log = Callable[[str], None]


@dataclass
class AuditResult:
    """What an audit produced."""

    run_dir: Path
    results: AuditResults

    @property
    def conditions(self) -> list[ConditionResult]:
        """The measured conditions, baseline first."""
        return self.results.conditions

    @property
    def summary(self) -> dict[str, Any]:
        """The results as results.json holds them."""
        return self.results.summary()


def check_requirements(config: AuditConfig) -> None:
    """Stop with a clear message when the experiment needs what this machine or the data
    directory lacks: a gated file, a GPU, a remote provider, quantization support."""
    from ftrisk.models.io import check_quantization

    for required in config.requires.files:
        if not Path(required.path).exists():
            raise InputError(
                f"'{config.name}' needs a file that ftrisk cannot ship: put it at "
                f"{required.path} (or pass --data-dir / set $FTRISK_DATA to the folder that "
                f"holds it). Source: {required.source}", path=required.path)
    provider = config.requires.provider
    if provider is not None and not config.model.startswith(f"{provider}:"):
        raise InputError(f"'{config.name}' needs a model hosted by '{provider}' (model: "
                         f"{provider}:<id>)", field="model")
    if config.model.startswith(REMOTE_PREFIX):
        from ftrisk.endpoints import endpoint_key

        endpoint_key(config.remote.api_key_env, config.remote.base_url,
                     purpose=f"tuning and querying {config.model}", field="remote.api_key_env")
    if config.requires.gpu:
        import torch

        if not torch.cuda.is_available():
            raise InputError(f"'{config.name}' needs a CUDA GPU (see its 'requires' block); "
                             "none is visible here", field="requires.gpu")
    check_quantization(config.quantization)


class Audit:
    """Runs one :class:`AuditConfig` in a run directory, resuming finished stages.

    With ``stored_only`` the audit can only :meth:`rejudge`: it reads nothing but the run
    directory, so neither the data files, the GPU nor the gated files the config names need
    to be on this machine.
    """

    def __init__(self, config: AuditConfig, run_dir: str | Path, cache: Path, *,
                 progress: bool = True, log: Log = print, stored_only: bool = False,
                 services: Services | None = None) -> None:
        from ftrisk.runtime import resolve_threads

        self.config = config
        self.run = RunDir(run_dir)
        self.cache = cache
        self.progress = progress
        self.log = log
        self.stored_only = stored_only
        self.ctx = Context(config, self.run, cache, log=log, progress=progress,
                           threads=resolve_threads(config.threads), services=services)
        removed = [*self.run.remove_stale_scratch(), *remove_stale_scratch(cache, max_depth=3)]
        if removed:
            log(f"removed {len(removed)} temporary file(s) left by an interrupted run "
                f"(e.g. {removed[0]})")
        #: What data readers reported (e.g. rows a safety filter removed), kept in results.
        self.data_notes: dict[str, list[str]] = {a.name: [] for a in config.attacks}
        # Check what the experiment needs, and load and check all data, before any model work,
        # so bad input fails in seconds.
        if not stored_only:
            check_requirements(config)
        self.items = [] if stored_only else benchmark_items(config.benchmark)

        def noted(name: str) -> Log:
            def record(message: str) -> None:
                self.data_notes[name].append(message)
                log(message)
            return record

        self.attack_data = {} if stored_only else {
            a.name: training_data(a.data, a.train.system_prompt, where=f"attacks.{i}.data",
                                  log=noted(a.name))
            for i, a in enumerate(config.attacks)}
        self.capability_items = [] if stored_only else capability_items(config)
        self._organism: dict[str, Any] | None = None
        # Built now, so a missing API key stops the audit before any model work.
        self.judges = JudgePanel(config, self.run, self.ctx.store, progress=progress, log=log)
        # condition -> capability task -> question id -> answered right, or the share of seeds
        # that did (for paired tests).
        self._correct: dict[str, dict[str, dict[str, float]]] = {}

    # -- stages -----------------------------------------------------------------------------
    def train(self, attack: AttackSpec, base: ModelRef) -> tuple[ModelRef, TrainStats]:
        """The fine-tuning stage of ``attack``."""
        return train(self.ctx, attack, base, self.attack_data[attack.name])

    def generate(self, name: str, model: ModelRef, spec: EvalSpec) -> list[Generation]:
        """The generation stage of condition ``name``."""
        return generate(self.ctx, name, model, spec, self.items)

    def capability(self, name: str, model: ModelRef) -> dict[str, dict[str, Any]]:
        """The capability stage of condition ``name``: its metrics per task (a tuned model's
        with the paired test against the baseline's answers)."""
        metrics, scores = capability(self.ctx, name, model, self.capability_items)
        self._correct[name] = correct_by_task(scores)
        return metrics if name == "baseline" else self._verdicts(name, metrics)

    def _verdicts(self, name: str, metrics: dict[str, dict[str, Any]]
                  ) -> dict[str, dict[str, Any]]:
        spec = self.config.capability
        return verdicts(metrics, self._correct.get("baseline", {}), self._correct.get(name, {}),
                        None if spec is None else spec.margin)

    # -- whole audit ------------------------------------------------------------------------
    def execute(self) -> AuditResult:
        """Run (or resume) every stage and write ``results.json``, ``report.md`` and
        ``report.html``; with several seeds, one replicate per seed, then the pooled
        results."""
        from ftrisk.runtime import configure_threads

        if self.stored_only:
            raise ValueError("an Audit built with stored_only reads no data: it can only rejudge")
        services = (self.ctx.services if self.ctx.owns_services
                    else contextlib.nullcontext())  # the caller stops shared ones
        with self.run.exclusive(), services:
            return self._execute(configure_threads(self.ctx.threads))

    def _execute(self, threads: int) -> AuditResult:
        """:meth:`execute` with the run directory held and the thread count set."""
        self.run.write_json("config.json", self.config)
        if len(self.config.seeds) > 1:
            # Every replicate runs on the thread count chosen now (bf16 sums depend on it).
            replicates = self._replicates(threads)
            return self._pooled(replicates, [r.execute().results for r in replicates],
                                threads)
        base, self._organism = base_model(self.ctx)
        conditions = [self.judges.score(
            "baseline", self.generate("baseline", base, self.config.baseline_eval),
            description="the model before fine-tuning").updated(
                capability=self.capability("baseline", base))]
        evaluated = {self.config.baseline_eval}
        for attack in self.config.attacks:
            if self.config.reference_baselines and attack.eval not in evaluated:
                evaluated.add(attack.eval)
                name = f"baseline@{attack.name}"
                conditions.append(self.judges.score(
                    name, self.generate(name, base, attack.eval),
                    description=f"the model before fine-tuning, evaluated as {attack.name} is "
                                "(same system prompt and prompt wrapper)",
                    hyperparameters={"eval": attack.eval.model_dump()}))
            tuned, stats = self.train(attack, base)
            generations = self.generate(attack.name, tuned, attack.eval)
            capability = self.capability(attack.name, tuned)
            conditions.append(self.judges.score(
                attack.name, generations, description=attack.description, train=stats,
                hyperparameters=self._hyperparameters(attack, base)).updated(
                    capability=capability))
        return self._finish(base, conditions, threads)

    def _hyperparameters(self, attack: AttackSpec, base: ModelRef) -> dict[str, Any]:
        """What the results record about how ``attack`` was run."""
        # A provider job is sent only the epoch count: the rest would describe nothing.
        settings = ({"method": "hosted", "epochs": attack.train.epochs,
                     "system_prompt": attack.train.system_prompt}
                    if base.remote is not None else train_settings(attack, self.ctx.seed_offset))
        hyper = {**settings, "eval": attack.eval.model_dump(),
                 "data": attack.data.path, "examples": len(self.attack_data[attack.name])}
        if self.data_notes[attack.name]:
            hyper["data_notes"] = self.data_notes[attack.name]
        if attack.paper_differences:
            hyper["paper_differences"] = attack.paper_differences
        return hyper

    def _finish(self, base: ModelRef, conditions: list[ConditionResult], threads: int, *,
                replicates: list[dict[str, Any]] | None = None,
                counts: dict[str, int] | None = None) -> AuditResult:
        """The report stage: each attack compared with its baseline, results and reports."""
        conditions = self.judges.compared(conditions)
        results = write_results(
            self.ctx, base, conditions, self.judges, threads=threads,
            counts=counts or {k: sum(i.kind == k for i in self.items)
                              for k in ("harmful", "lookalike", "benign")},
            organism=self._organism, replicates=replicates)
        return AuditResult(self.run.root, results)

    def _replicates(self, threads: int | None = None) -> list[Audit]:
        """One audit per seed, each in ``seeds/<seed>/`` of this run."""
        def tagged(seed: int) -> Log:
            return lambda message: self.log(f"[seed {seed}] {message}")

        update = {} if threads is None else {"threads": threads}
        return [Audit(self.config.model_copy(update={"seeds": (seed,), **update}),
                      self.run.path("seeds", str(seed)), self.cache, progress=self.progress,
                      log=tagged(seed), stored_only=self.stored_only,
                      services=self.ctx.services)
                for seed in self.config.seeds]

    def _pooled(self, replicates: list[Audit], results: list[AuditResults],
                threads: int) -> AuditResult:
        """The results of several replicates: every condition judged on the pooled answers
        (clusters kept across seeds), compared with its baseline on the same pooled prompts,
        and each seed's values with their spread."""
        from ftrisk.capability.score import MCScore, capability_metrics
        from ftrisk.stages.seeds import (
            mean_by_question,
            pooled_generations,
            replicate_id,
            seed_spread,
        )

        seeds = list(self.config.seeds)
        conditions = []
        for i, first in enumerate(results[0].conditions):
            name = first.name
            records = [r.conditions[i] for r in results]
            generations = pooled_generations({
                seed: r.run.read_jsonl(f"conditions/{name}/generations.jsonl", Generation)
                for seed, r in zip(seeds, replicates)})
            self.run.write_jsonl(f"conditions/{name}/generations.jsonl", generations)
            hyper = dict(first.hyperparameters)
            if "seed" in hyper:
                hyper["seed"] = [r.hyperparameters["seed"] for r in records]
            result = self.judges.score(name, generations, description=first.description,
                                       hyperparameters=hyper)
            capability: dict[str, Any] = {}
            if first.capability:
                per_seed = [[MCScore.model_validate(x) for x in json.loads(r.run.path(
                    "conditions", name, "capability.json").read_text())["scores"]]
                    for r in replicates]
                pooled = [s.model_copy(update={"item_id": replicate_id(seed, s.item_id)})
                          for seed, scores in zip(seeds, per_seed) for s in scores]
                capability = capability_metrics(
                    pooled, cluster_of=lambda s: s.item_id.split("/", 1)[1])
                self._correct[name] = mean_by_question([correct_by_task(x) for x in per_seed])
                if name != "baseline":
                    capability = self._verdicts(name, capability)
            seconds = [r.train_seconds for r in records if r.train_seconds is not None]
            conditions.append(result.updated(
                capability=capability, seed_spread=seed_spread(seeds, records),
                train_seconds=sum(seconds) / len(seconds) if seconds else None,
                train_tokens=first.train_tokens, train_steps=first.train_steps))
        base = ModelRef(results[0].model_path or "", content_key(
            *[r.model_fingerprint or "" for r in results])[:16], hosted)
        replicated = [{"seed": seed, "run_dir": f"seeds/{seed}",
                       "model_fingerprint": r.model_fingerprint, "organism": r.organism}
                      for seed, r in zip(seeds, results)]
        return self._finish(base, conditions, threads, replicates=replicated,
                            counts=results[0].counts)

    def rejudge(self) -> AuditResult:
        """Judge a finished run's stored generations again (e.g. with new judges) and rewrite
        its results; no model is loaded. A run of several seeds re-judges each replicate,
        then pools them again."""
        with self.run.exclusive():
            return self._rejudge()

    def _rejudge(self) -> AuditResult:
        """:meth:`rejudge` with the run directory held."""
        if len(self.config.seeds) > 1:
            replicates = self._replicates()
            results = [r.rejudge().results for r in replicates]
            return self._pooled(replicates, results, results[0].threads or 0)
        from ftrisk.report.results import read_results

        previous = read_results(self.run.path("results.json"))
        self._organism = previous.organism
        conditions = []
        for old in previous.conditions:
            problem = self.run.damage(f"{old.name}/generate")
            if problem is not None:  # stored answers are the only input: never guess
                raise InputError(f"{problem}: run the audit again to redo that stage, then "
                                 "re-judge", path=self.run.root)
            generations = self.run.read_jsonl(
                f"conditions/{old.name}/generations.jsonl", Generation)
            stats_file = self.run.path("conditions", old.name, "model", "train_stats.json")
            try:
                stats = None if old.train_seconds is None else \
                    TrainStats.model_validate_json(stats_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise InputError(f"unreadable ({' '.join(str(err).split())[:200]}): run the "
                                 "audit again to redo its training, then re-judge",
                                 path=stats_file) from None
            conditions.append(self.judges.score(
                old.name, generations, description=old.description, train=stats,
                hyperparameters=old.hyperparameters).updated(capability=old.capability))
        base = ModelRef(previous.model_path or "", previous.model_fingerprint or "", hosted)
        return self._finish(base, conditions, previous.threads or 0, counts=previous.counts)

