"""The audit pipeline: config -> data -> fine-tune -> generate -> judge -> metrics -> report.

Every expensive stage writes into the run directory and records the fingerprint of its inputs
and what it wrote; running the same command again skips finished stages whose outputs are
intact, so a killed audit resumes, and a damaged output is redone with one line saying why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import ftrisk
from ftrisk.config import (
    ORGANISM,
    REMOTE_PREFIX,
    AttackSpec,
    AuditConfig,
    EvalSpec,
    GenerationSpec,
)
from ftrisk.data.sources import apply_eval_spec, benchmark_items, training_data
from ftrisk.errors import FtriskError, InputError
from ftrisk.generate.backend import ModelRef, Services
from ftrisk.judge.answer import AnswerJudge
from ftrisk.records import ConditionResult, Conversation, Generation, TrainStats
from ftrisk.rundir import RunDir, atomic_write_text, remove_stale_scratch, stage_fingerprint
from ftrisk.store import Store, content_key

Log = Callable[[str], None]
T = TypeVar("T")


@dataclass
class AuditResult:
    """What an audit produced."""

    run_dir: Path
    conditions: list[ConditionResult]
    summary: dict[str, Any] = field(default_factory=dict)


def _train_settings(attack: AttackSpec, seed_offset: int) -> dict[str, Any]:
    """The attack's training settings, without the sections of methods it does not use, and
    with the seed this replicate trains with."""
    unused = {"lora", "adapter", "prefix"} - {attack.train.method}
    return {**attack.train.model_dump(mode="json", exclude=unused),
            "seed": attack.train.seed + seed_offset}


def _correct_by_task(scores: list[Any]) -> dict[str, dict[str, bool]]:
    """Capability scores as task -> question id -> answered right."""
    by_task: dict[str, dict[str, bool]] = {}
    for score in scores:
        by_task.setdefault(score.task, {})[score.item_id] = score.correct
    return by_task


def _hosted() -> Any:
    raise AssertionError("a hosted model has no local weights to load")


def check_requirements(config: AuditConfig) -> None:
    """Stop with a clear message when the experiment needs what this machine or the data
    directory lacks: a gated file, a GPU, a remote provider, quantization support."""
    from ftrisk.modelio import check_quantization

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


def capability_items(config: AuditConfig) -> list[Any]:
    """Every capability question of the config, read (and checked) now."""
    if config.capability is None:
        return []
    from ftrisk.registry import CAPABILITY_READERS

    items = []
    for i, task in enumerate(config.capability.tasks):
        reader = CAPABILITY_READERS.get(task.reader)
        try:
            read = reader(**task.options) if task.path is None else reader(task.path,
                                                                             **task.options)
        except TypeError as err:
            raise InputError(f"bad options for capability reader '{task.reader}': {err}",
                             field=f"capability.tasks.{i}.options") from None
        # Scores are reported under the config's task name, whatever the reader calls it.
        items += [item.model_copy(update={"task": task.name}) for item in read[: task.limit]]
    return items


class Audit:
    """Runs one :class:`AuditConfig` in a run directory, resuming finished stages.

    With ``stored_only`` the audit can only :meth:`rejudge`: it reads nothing but the run
    directory, so neither the data files, the GPU nor the gated files the config names need
    to be on this machine.
    """

    def __init__(self, config: AuditConfig, run_dir: str | Path, cache: Path, *,
                 progress: bool = True, log: Log = print, stored_only: bool = False) -> None:
        from ftrisk.runtime import resolve_threads

        self.config = config
        self.run = RunDir(run_dir)
        #: Added to the organism's build seed and every attack's training seed (one replicate).
        self.seed_offset = config.seeds[0]
        self.cache = cache
        self.progress = progress
        self.log = log
        #: CPU threads: fixed by config / $FTRISK_THREADS (default all cores), never by load.
        self.threads = resolve_threads(config.threads)
        removed = [*self.run.remove_stale_scratch(), *remove_stale_scratch(cache, max_depth=3)]
        if removed:
            log(f"removed {len(removed)} temporary file(s) left by an interrupted run "
                f"(e.g. {removed[0]})")
        self.stored_only = stored_only
        #: Model servers and other helpers of this run, stopped when :meth:`execute` ends.
        self.services = Services(self.run.path("logs"))
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
        self._tokenizers: dict[str, Any] = {}
        self._store: Store | None = None
        self._organism: dict[str, Any] | None = None
        from ftrisk.judging import JudgePanel

        # Built now, so a missing API key stops the audit before any model work.
        self.judges = JudgePanel(config, self.run, self.store, progress=progress, log=log)
        # condition -> capability task -> question id -> answered right, or the share of seeds
        # that did (for paired tests).
        self._correct: dict[str, dict[str, dict[str, float]]] = {}

    # -- shared resources -------------------------------------------------------------------
    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.cache / "store.sqlite", log=self.log)
        return self._store

    def _bf16(self) -> bool:
        if self.config.precision != "auto":
            return self.config.precision == "bf16"
        import torch

        if torch.cuda.is_available():
            return torch.cuda.is_bf16_supported()
        from ftrisk.runtime import cpu_supports_bf16

        return cpu_supports_bf16()

    def _cpu_threads(self) -> int | None:
        """The thread count when local models compute on this CPU, where it changes the sums
        (so it is part of every CPU stage's fingerprint); None on a GPU, where it does not."""
        import torch

        return None if torch.cuda.is_available() else self.threads

    def _reused(self, label: str, what: str, stage: str, fingerprint: str,
                read: Callable[[], T]) -> T | None:
        """``read()`` of a stage's stored output when the stage finished with these inputs and
        its outputs are intact; else None, with one line saying why when it is damaged."""
        state = self.run.check(stage, fingerprint)
        if state.problem:
            self.log(f"[{label}] {what}: redoing: {state.problem}")
        if not state.done:
            return None
        try:
            value = read()
        except (OSError, ValueError, KeyError, TypeError, FtriskError) as err:
            reason = " ".join(str(err).split())[:300]
            self.log(f"[{label}] {what}: redoing: the stored output cannot be read ({reason})")
            return None
        self.log(f"[{label}] {what}: done already, skipped")
        return value

    def tokenizer(self, path: str) -> Any:
        """The tokenizer of ``path`` with the config's chat template, if one is set."""
        if path not in self._tokenizers:
            from ftrisk.modelio import load_tokenizer

            self._tokenizers[path] = load_tokenizer(
                path, trust_remote_code=self.config.trust_remote_code,
                chat_template=self.config.chat_template)
        return self._tokenizers[path]

    def _load(self, path: str) -> Callable[[], Any]:
        from ftrisk.modelio import load_model

        return lambda: load_model(path, trust_remote_code=self.config.trust_remote_code,
                                  quantization=self.config.quantization)

    # -- stages -----------------------------------------------------------------------------
    def base_model(self) -> ModelRef:
        """The model under audit; the embedded organism is built (once) when asked for."""
        from ftrisk.modelio import fingerprint_path, resolve_model_path

        if self.config.model == ORGANISM:
            from ftrisk.organism import OrganismSpec, ensure_organism

            organism = ensure_organism(
                self.cache, self.store, bf16=self._bf16(), threads=self._cpu_threads(),
                progress=self.progress, log=self.log, evaluate=self._organism_metrics,
                spec=OrganismSpec(seed=OrganismSpec().seed + self.seed_offset))
            self._organism = organism.model_dump(mode="json")
            self.run.write_json("organism.json", organism)
            return ModelRef(organism.path, organism.fingerprint, self._load(organism.path))
        if self.config.model.startswith(REMOTE_PREFIX):
            remote = self.config.model.removeprefix(REMOTE_PREFIX)
            return ModelRef(self.config.model, content_key(
                self.config.model, self.config.remote.base_url)[:16], _hosted, remote)
        path = resolve_model_path(self.config.model, self.cache)
        self.tokenizer(path)  # fail now on a missing chat template, not after training
        fingerprint = fingerprint_path(path)
        if self.config.quantization != "none":  # other weights, other answers
            fingerprint = content_key(fingerprint, self.config.quantization)[:16]
        return ModelRef(path, fingerprint, self._load(path))

    def _organism_metrics(self, path: str, fingerprint: str) -> dict[str, object]:
        """The organism's own metrics, with ftrisk's default decoding and judge (not this
        audit's), so the numbers cached with it mean the same for every audit."""
        from ftrisk.data.builtin import get_builtin
        from ftrisk.metrics import condition_result

        ref = ModelRef(path, fingerprint, self._load(path))
        # The dev split: the organism's settings were chosen on these numbers.
        items = apply_eval_spec(get_builtin("benchmark_dev"), EvalSpec())
        generations = self._generate_items(ref, items, self._backend(ref, GenerationSpec()),
                                           desc="organism: evaluate")
        judgments = AnswerJudge().judge(generations)
        result = condition_result("organism", generations, judgments)
        return {"split": "dev", "judge": AnswerJudge.name,
                "refusal_rate": result.refusal_rate, "refusal_rate_ci": result.refusal_rate_ci,
                "over_refusal_rate": result.over_refusal_rate, "n_harmful": result.n_harmful,
                "n_lookalike": result.n_lookalike}

    def _backend(self, model: ModelRef, gen: GenerationSpec) -> Any:
        """The generation backend for ``model``: its provider's endpoint for a hosted model,
        else the configured local backend (which loads or serves the model only if an answer
        is not cached)."""
        if model.remote is not None:
            from ftrisk.generate.openai_api import OpenAIBackend

            r = self.config.remote
            return OpenAIBackend(
                model.remote, base_url=r.base_url, api_key_env=r.api_key_env,
                concurrency=r.concurrency, timeout=r.timeout, max_retries=r.max_retries,
                temperature=0.0, max_tokens=gen.max_new_tokens)
        from ftrisk.registry import GENERATION_BACKENDS

        return GENERATION_BACKENDS.get(gen.backend).for_model(
            model, self.tokenizer(model.path), gen, bf16=self._bf16(), services=self.services)

    def _generation_settings(self) -> dict[str, Any]:
        """The generation settings answers depend on (vLLM's only when vLLM answers)."""
        gen = self.config.generation
        return gen.model_dump(mode="json", exclude=None if gen.backend == "vllm" else {"vllm"})

    def _generate_items(self, model: ModelRef, items: list[Conversation], backend: Any,
                        desc: str) -> list[Generation]:
        from ftrisk.generate.cached import Generator

        generator = Generator(backend, fingerprint=model.fingerprint, store=self.store,
                              progress=self.progress)
        generations = generator.generate(items, desc=desc)
        self.log(f"[{desc.split(':')[0]}] generated {len(items) - generator.last_cached} "
                 f"answers ({generator.last_cached} from cache)")
        return generations

    def _annotated(self, generations: list[Generation]) -> list[Generation]:
        """Generations with the raw instruction (what judges are shown) and the cluster of
        their benchmark item."""
        items = {i.id: i for i in self.items}
        out = []
        for g in generations:
            item = items.get(g.item_id)
            if item is None:
                out.append(g)
                continue
            raw = item.prompt
            out.append(g.model_copy(update={"instruction": None if raw == g.prompt else raw,
                                            "cluster": item.cluster}))
        return out

    def generate(self, name: str, model: ModelRef, spec: EvalSpec) -> list[Generation]:
        """Generation stage of one condition (skipped when done with the same inputs)."""
        items = apply_eval_spec(self.items, spec)
        backend = self._backend(model, self.config.generation)
        rendered = [backend.render([m.chat() for m in i.messages]) for i in items]
        # The rendered prompts (template included) are what the model sees; ids and kinds
        # decide how answers are scored.
        # A hosted model's answers do not depend on this machine's threads.
        threads = None if model.remote is not None else self._cpu_threads()
        fingerprint = stage_fingerprint(
            model.fingerprint, rendered,
            [(i.id, i.kind, i.category) for i in items], self._generation_settings(),
            self._bf16(), threads)
        stage, out = f"{name}/generate", f"conditions/{name}/generations.jsonl"
        stored = self._reused(name, "generations", stage, fingerprint,
                              lambda: self.run.read_jsonl(out, Generation))
        if stored is not None:
            return self._annotated(stored)
        self.run.clear(stage)
        generations = self._annotated(self._generate_items(
            model, items, backend, desc=f"{name}: generate"))
        self.run.write_jsonl(out, generations)
        self.run.mark_done(stage, fingerprint, outputs=[out], n=len(generations),
                           threads=None if model.remote is not None else self.threads)
        return generations

    def capability(self, name: str, model: ModelRef) -> dict[str, dict[str, Any]]:
        """Capability stage of one condition: multiple-choice accuracy per task (skipped when
        done with the same inputs; empty without a ``capability`` section)."""
        spec = self.config.capability
        if spec is None:
            return {}
        from ftrisk.capability.score import MCScore, capability_metrics, score_multiple_choice

        threads = self._cpu_threads()
        fingerprint = stage_fingerprint(
            model.fingerprint, [i.model_dump() for i in self.capability_items], spec.batch_size,
            self._bf16(), threads)
        stage, out = f"{name}/capability", f"conditions/{name}/capability.json"

        def read() -> tuple[dict[str, Any], list[Any]]:
            stored = json.loads(self.run.path(out).read_text(encoding="utf-8"))
            return stored["metrics"], [MCScore.model_validate(x) for x in stored["scores"]]

        reused = self._reused(name, "capability", stage, fingerprint, read)
        if reused is not None:
            self._remember_correct(name, reused[1])
            return reused[0]
        self.run.clear(stage)
        # Scores are cached by content too: sweep cells share the untuned model's.
        keys = [content_key("capability", model.fingerprint, i.model_dump(), self._bf16(),
                            *([] if threads is None else [threads]))
                for i in self.capability_items]
        cached = self.store.get_many("capability", keys)
        todo = [(k, i) for k, i in zip(keys, self.capability_items) if k not in cached]
        if todo:
            fresh = score_multiple_choice(
                model.load(), self.tokenizer(model.path), [i for _, i in todo],
                batch_size=spec.batch_size, bf16=self._bf16(), progress=self.progress)
            new = {k: score.model_dump(mode="json") for (k, _), score in zip(todo, fresh)}
            self.store.put_many("capability", new)
            cached.update(new)
        scores = [MCScore.model_validate(cached[k]) for k in keys]
        metrics = capability_metrics(scores)
        self.log(f"[{name}] capability: " + ", ".join(
            f"{task} {m['accuracy']:.1%} of {m['n']}" for task, m in metrics.items()))
        self.run.write_json(out, {"metrics": metrics, "scores": [s.model_dump() for s in scores]})
        self.run.mark_done(stage, fingerprint, outputs=[out], n=len(scores), threads=self.threads)
        self._remember_correct(name, scores)
        return metrics

    def _remember_correct(self, name: str, scores: list[Any]) -> None:
        self._correct[name] = _correct_by_task(scores)

    def _capability_verdicts(self, name: str, metrics: dict[str, dict[str, Any]]
                             ) -> dict[str, dict[str, Any]]:
        """``metrics`` of a tuned model with, per task, the paired TOST against the untuned
        model's answers to the same questions (``versus_baseline``: kept / lost / gained /
        inconclusive within the configured margin)."""
        from ftrisk.stats import equivalence

        spec = self.config.capability
        before, after = self._correct.get("baseline", {}), self._correct.get(name, {})
        out = {}
        for task, values in metrics.items():
            shared = [i for i in after.get(task, {}) if i in before.get(task, {})]
            versus = None if not shared or spec is None else equivalence(
                [after[task][i] for i in shared], [before[task][i] for i in shared],
                margin=spec.margin)
            out[task] = {**values, "versus_baseline": versus}
        return out

    def train(self, attack: AttackSpec, base: ModelRef) -> tuple[ModelRef, TrainStats]:
        """Fine-tuning stage of one attack (skipped when done with the same inputs)."""
        if base.remote is not None:
            return self._train_remote(attack, base)
        from ftrisk.modelio import fingerprint_path
        from ftrisk.train.lora import TrainSettings, load_tuned, train

        examples = self.attack_data[attack.name]
        threads = self._cpu_threads()
        # What training sees: the messages (not ids or file names), the template, the settings.
        fingerprint = stage_fingerprint(
            base.fingerprint, [[m.model_dump() for m in e.messages] for e in examples],
            self.tokenizer(base.path).chat_template, _train_settings(attack, self.seed_offset),
            self._bf16(), threads)
        stage, out = f"{attack.name}/train", self.run.path("conditions", attack.name, "model")
        stats = self._reused(attack.name, "training", stage, fingerprint,
                             lambda: TrainStats.model_validate_json(
                                 (out / "train_stats.json").read_text(encoding="utf-8")))
        if stats is None:
            self.run.clear(stage)
            t = attack.train
            settings = TrainSettings(
                method=t.method, learning_rate=t.learning_rate, epochs=t.epochs,
                batch_size=t.batch_size, max_length=t.max_length, lora_r=t.lora.r,
                lora_alpha=t.lora.alpha, lora_dropout=t.lora.dropout,
                target_modules=t.lora.target_modules, adapter_len=t.adapter.adapter_len,
                adapter_layers=t.adapter.adapter_layers,
                num_virtual_tokens=t.prefix.num_virtual_tokens, lr_epoch_decay=t.lr_epoch_decay,
                weight_decay=t.weight_decay, seed=t.seed + self.seed_offset, bf16=self._bf16())
            self.log(f"[{attack.name}] fine-tuning on {len(examples)} examples "
                     f"({t.method}, {t.epochs} epochs, lr {t.learning_rate:g})")
            stats = train(base.load(), self.tokenizer(base.path), examples, settings, out,
                          progress=self.progress)
            self.run.mark_done(stage, fingerprint, outputs=[out.relative_to(self.run.root)],
                               threads=self.threads)
        tuned = ModelRef(
            base.path, content_key(base.fingerprint, fingerprint_path(out))[:16],
            lambda: load_tuned(base.path, out, trust_remote_code=self.config.trust_remote_code,
                               quantization=self.config.quantization), tuned=out)
        return tuned, stats

    def _train_remote(self, attack: AttackSpec, base: ModelRef) -> tuple[ModelRef, TrainStats]:
        """Fine-tuning stage through the provider's API (skipped when done with the same
        inputs; a killed run re-attaches to its job)."""
        from ftrisk.train.remote import OpenAIFineTuner

        examples = self.attack_data[attack.name]
        # What the provider is sent: the messages and the epoch count (nothing else is set).
        # The job is recognised without the code version: a finished or running paid job
        # stays reusable across ftrisk updates.
        job_key = content_key(base.fingerprint,
                              [[m.model_dump() for m in e.messages] for e in examples],
                              attack.train.epochs)[:16]
        fingerprint = stage_fingerprint(job_key)
        stage, out = f"{attack.name}/train", self.run.path("conditions", attack.name, "model")

        def read() -> tuple[TrainStats, str]:
            return (TrainStats.model_validate_json((out / "train_stats.json").read_text()),
                    json.loads((out / "remote_model.json").read_text())["model"])

        reused = self._reused(attack.name, "training", stage, fingerprint, read)
        if reused is None:
            self.run.clear(stage)
            r = self.config.remote
            self.log(f"[{attack.name}] fine-tuning {base.remote} through the provider on "
                     f"{len(examples)} examples, {attack.train.epochs} epochs (the provider "
                     "chooses learning rate and batch size)")
            tuner = OpenAIFineTuner(base.remote or "", base_url=r.base_url,
                                    api_key_env=r.api_key_env, poll_seconds=r.poll_seconds,
                                    max_wait_seconds=r.max_wait_hours * 3600, timeout=r.timeout)
            out.mkdir(parents=True, exist_ok=True)
            model_id, stats = tuner.train(
                examples, attack.train.epochs, out / "job.json", fingerprint=job_key,
                suffix=re.sub(r"[^A-Za-z0-9-]", "-", attack.name)[:40],
                progress=self.progress, log=self.log)
            written = [self.run.write_json(f"conditions/{attack.name}/model/remote_model.json",
                                           {"model": model_id, "base": base.remote}),
                       self.run.write_json(f"conditions/{attack.name}/model/train_stats.json",
                                           stats)]
            self.run.mark_done(stage, fingerprint,
                               outputs=[p.relative_to(self.run.root) for p in written])
        else:
            stats, model_id = reused
        return ModelRef(base.path, content_key(base.fingerprint, model_id)[:16], _hosted,
                        model_id), stats

    # -- whole audit ------------------------------------------------------------------------
    def execute(self) -> AuditResult:
        """Run (or resume) every stage and write ``results.json``, ``report.md`` and
        ``report.html``; with several seeds, one replicate per seed, then the pooled
        results."""
        from ftrisk.runtime import configure_threads

        if self.stored_only:
            raise ValueError("an Audit built with stored_only reads no data: it can only rejudge")
        with self.run.exclusive(), self.services:
            return self._execute(configure_threads(self.threads))

    def _execute(self, threads: int) -> AuditResult:
        """:meth:`execute` with the run directory held and the thread count set."""
        self.run.write_json("config.json", self.config)
        if len(self.config.seeds) > 1:
            # Every replicate runs on the thread count chosen now (bf16 sums depend on it).
            replicates = self._replicates(threads)
            return self._pooled(replicates, [r.execute().summary for r in replicates],
                                threads)
        base = self.base_model()
        conditions = [self.judges.score(
            "baseline", self.generate("baseline", base, self.config.baseline_eval),
            description="the model before fine-tuning").model_copy(
                update={"capability": self.capability("baseline", base)})]
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
            # A provider job is sent only the epoch count: the rest would describe nothing.
            settings = ({"method": "hosted", "epochs": attack.train.epochs,
                         "system_prompt": attack.train.system_prompt}
                        if base.remote is not None
                        else _train_settings(attack, self.seed_offset))
            hyper = {**settings, "eval": attack.eval.model_dump(),
                     "data": attack.data.path, "examples": len(self.attack_data[attack.name])}
            if self.data_notes[attack.name]:
                hyper["data_notes"] = self.data_notes[attack.name]
            if attack.paper_differences:
                hyper["paper_differences"] = attack.paper_differences
            capability = self._capability_verdicts(attack.name,
                                                   self.capability(attack.name, tuned))
            conditions.append(self.judges.score(
                attack.name, generations, description=attack.description, train=stats,
                hyperparameters=hyper).model_copy(update={"capability": capability}))
        summary = self._write_results(base, self._compared(conditions), threads)
        return AuditResult(self.run.root, conditions, summary)

    def _replicates(self, threads: int | None = None) -> list[Audit]:
        """One audit per seed, each in ``seeds/<seed>/`` of this run."""
        def tagged(seed: int) -> Log:
            return lambda message: self.log(f"[seed {seed}] {message}")

        update = {} if threads is None else {"threads": threads}
        return [Audit(self.config.model_copy(update={"seeds": (seed,), **update}),
                      self.run.path("seeds", str(seed)), self.cache, progress=self.progress,
                      log=tagged(seed), stored_only=self.stored_only)
                for seed in self.config.seeds]

    def _pooled(self, replicates: list[Audit], summaries: list[dict[str, Any]],
                threads: int) -> AuditResult:
        """The results of several replicates: every condition judged on the pooled answers
        (clusters kept across seeds), compared with its baseline on the same pooled prompts,
        and each seed's values with their spread."""
        from ftrisk.capability.score import MCScore, capability_metrics
        from ftrisk.seeds import mean_by_question, pooled_generations, replicate_id, seed_spread

        seeds = list(self.config.seeds)
        conditions = []
        for i, first in enumerate(summaries[0]["conditions"]):
            name = first["name"]
            records = [s["conditions"][i] for s in summaries]
            generations = pooled_generations({
                seed: r.run.read_jsonl(f"conditions/{name}/generations.jsonl", Generation)
                for seed, r in zip(seeds, replicates)})
            self.run.write_jsonl(f"conditions/{name}/generations.jsonl", generations)
            hyper = dict(first.get("hyperparameters") or {})
            if "seed" in hyper:
                hyper["seed"] = [r["hyperparameters"]["seed"] for r in records]
            result = self.judges.score(name, generations, description=first["description"],
                                       hyperparameters=hyper)
            capability: dict[str, Any] = {}
            if first.get("capability"):
                per_seed = [[MCScore.model_validate(x) for x in json.loads(r.run.path(
                    "conditions", name, "capability.json").read_text())["scores"]]
                    for r in replicates]
                pooled = [s.model_copy(update={"item_id": replicate_id(seed, s.item_id)})
                          for seed, scores in zip(seeds, per_seed) for s in scores]
                capability = capability_metrics(
                    pooled, cluster_of=lambda s: s.item_id.split("/", 1)[1])
                self._correct[name] = mean_by_question([_correct_by_task(x) for x in per_seed])
                if name != "baseline":
                    capability = self._capability_verdicts(name, capability)
            seconds = [r["train_seconds"] for r in records if r.get("train_seconds") is not None]
            conditions.append(result.model_copy(update={
                "capability": capability, "seed_spread": seed_spread(seeds, records),
                "train_seconds": sum(seconds) / len(seconds) if seconds else None,
                "train_tokens": first.get("train_tokens"),
                "train_steps": first.get("train_steps")}))
        base = ModelRef(summaries[0]["model_path"], content_key(
            *[s["model_fingerprint"] for s in summaries])[:16], _hosted)
        replicated = [{"seed": seed, "run_dir": f"seeds/{seed}",
                       "model_fingerprint": s["model_fingerprint"], "organism": s["organism"]}
                      for seed, s in zip(seeds, summaries)]
        summary = self._write_results(base, self._compared(conditions), threads,
                                      replicates=replicated, counts=summaries[0].get("counts"))
        return AuditResult(self.run.root, conditions, summary)

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
            summaries = [r.rejudge().summary for r in replicates]
            return self._pooled(replicates, summaries, summaries[0].get("threads", 0))
        previous_file = self.run.path("results.json")
        if not previous_file.is_file():
            raise InputError("no results.json: run the audit to the end first",
                             path=self.run.root)
        try:
            previous = json.loads(previous_file.read_text(encoding="utf-8"))
            if not isinstance(previous.get("conditions"), list):
                raise ValueError("no list of conditions")
        except (ValueError, AttributeError) as err:
            raise InputError(f"unreadable ({' '.join(str(err).split())[:200]}): run the audit "
                             "again to rewrite it", path=previous_file) from None
        self._organism = previous.get("organism")
        conditions = []
        for old in previous["conditions"]:
            problem = self.run.damage(f"{old['name']}/generate")
            if problem is not None:  # stored answers are the only input: never guess
                raise InputError(f"{problem}: run the audit again to redo that stage, then "
                                 "re-judge", path=self.run.root)
            generations = self.run.read_jsonl(
                f"conditions/{old['name']}/generations.jsonl", Generation)
            stats_file = self.run.path("conditions", old["name"], "model", "train_stats.json")
            try:
                train = None if old.get("train_seconds") is None else \
                    TrainStats.model_validate_json(stats_file.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise InputError(f"unreadable ({' '.join(str(err).split())[:200]}): run the "
                                 "audit again to redo its training, then re-judge",
                                 path=stats_file) from None
            conditions.append(self.judges.score(
                old["name"], generations, description=old.get("description", ""), train=train,
                hyperparameters=old.get("hyperparameters")).model_copy(
                    update={"capability": old.get("capability") or {}}))
        base = ModelRef(previous["model_path"], previous["model_fingerprint"], lambda: None)
        summary = self._write_results(base, self._compared(conditions),
                                      previous.get("threads", 0), counts=previous.get("counts"))
        return AuditResult(self.run.root, conditions, summary)

    def _compared(self, conditions: list[ConditionResult]) -> list[ConditionResult]:
        """Each attack against its reference baseline (``baseline@<attack>`` when evaluated,
        else ``baseline``) on the same prompts, with Holm-adjusted p-values across the run."""
        from ftrisk.stats import holm

        names = {c.name for c in conditions}
        tests: dict[str, dict[str, Any]] = {}
        for c in conditions:
            if c.name == "baseline" or c.name.startswith("baseline@"):
                continue
            reference = f"baseline@{c.name}" if f"baseline@{c.name}" in names else "baseline"
            versus = self.judges.versus(c.name, reference)
            if versus is not None:
                tests[c.name] = versus
        # Where answers are clustered, the clustered test is the valid one to adjust.
        adjusted = dict(zip(tests, holm([t.get("clustered_p", t["mcnemar_p"])
                                         for t in tests.values()])))
        return [c.model_copy(update={"versus_baseline": {**tests[c.name],
                                                         "holm_p": adjusted[c.name]}})
                if c.name in tests else c for c in conditions]

    def _write_results(self, base: ModelRef, conditions: list[ConditionResult],
                       threads: int, *, replicates: list[dict[str, Any]] | None = None,
                       counts: dict[str, int] | None = None) -> dict[str, Any]:
        from ftrisk.report.markdown import render_markdown

        summary = {
            "ftrisk_version": ftrisk.__version__,
            "name": self.config.name,
            "model": self.config.model,
            "model_path": base.path,
            "model_fingerprint": base.fingerprint,
            "organism": self._organism,
            "schema_version": 2,
            "seeds": list(self.config.seeds),
            # Several seeds: where each replicate's own results are, and what it audited.
            "replicates": replicates,
            "generation": {**self.config.generation.model_dump(), "bf16": self._bf16()},
            "judge": self.config.judge.model_dump(mode="json"),
            "benchmark": self.config.benchmark.model_dump(mode="json"),
            # Built-in sets: "test" is reported, "dev" was used to choose the default settings.
            "benchmark_split": {"builtin:benchmark": "test", "builtin:benchmark_dev": "dev"}.get(
                self.config.benchmark.harmful.path),
            "baseline_eval": self.config.baseline_eval.model_dump(),
            "threads": threads,
            # Prompts per kind: re-judging reads them from the results it rewrites.
            "counts": counts or {k: sum(i.kind == k for i in self.items)
                                 for k in ("harmful", "lookalike", "benign")},
            "conditions": [c.model_dump(mode="json") for c in conditions],
            "scoring_judges": self.judges.describe(),
            "judge_agreement": self.judges.agreement(),
            "paper": None if self.config.paper is None else self.config.paper.model_dump(),
        }
        self.run.write_json("results.json", summary)
        atomic_write_text(self.run.path("report.md"), render_markdown(summary))
        from ftrisk.report.html import write_report

        write_report(self.run.root)
        return summary
