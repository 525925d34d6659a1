"""The fine-tuning stage: one attack's training data applied to the audited model, locally
(LoRA, full, adapter or prefix tuning) or through a provider's fine-tuning API."""

from __future__ import annotations

import json
import re
from typing import Any

from ftrisk.config import AttackSpec
from ftrisk.generate.backend import ModelRef
from ftrisk.records import Conversation, TrainStats
from ftrisk.rundir import stage_fingerprint
from ftrisk.stages.context import Context, Made
from ftrisk.store import content_key


def hosted() -> Any:
    """The loader of a hosted model, which has no local weights."""
    raise AssertionError("a hosted model has no local weights to load")


def train_settings(attack: AttackSpec, seed_offset: int) -> dict[str, Any]:
    """The attack's training settings, without the sections of methods it does not use, and
    with the seed this replicate trains with."""
    return {**attack.train.settings(), "seed": attack.train.seed + seed_offset}


def train(ctx: Context, attack: AttackSpec, base: ModelRef, examples: list[Conversation]
          ) -> tuple[ModelRef, TrainStats]:
    """Fine-tuning stage of one attack (skipped when done with the same inputs): the tuned
    model and its training statistics."""
    if base.remote is not None:
        return _train_hosted(ctx, attack, base, examples)
    from ftrisk.models.io import fingerprint_path
    from ftrisk.train.lora import load_tuned
    from ftrisk.train.lora import train as fine_tune

    bf16, tokenizer = ctx.bf16(), ctx.tokenizer(base.path)
    # What training sees: the messages (not ids or file names), the template, the settings.
    fingerprint = stage_fingerprint(
        base.fingerprint, [[m.model_dump() for m in e.messages] for e in examples],
        tokenizer.chat_template, train_settings(attack, ctx.seed_offset), bf16,
        ctx.cpu_threads())
    out = ctx.run.path("conditions", attack.name, "model")

    def make() -> Made[TrainStats]:
        t = attack.train
        ctx.log(f"[{attack.name}] fine-tuning on {len(examples)} examples "
                f"({t.method}, {t.epochs} epochs, lr {t.learning_rate:g})")
        stats = fine_tune(base.load(), tokenizer, examples,
                          t.model_copy(update={"seed": t.seed + ctx.seed_offset}), out,
                          bf16=bf16, progress=ctx.progress)
        return Made(stats, [out.relative_to(ctx.run.root)], {"threads": ctx.threads})

    stats = ctx.stage(attack.name, "training", f"{attack.name}/train", fingerprint,
                      read=lambda: TrainStats.model_validate_json(
                          (out / "train_stats.json").read_text(encoding="utf-8")),
                      make=make)
    config = ctx.config
    tuned = ModelRef(
        base.path, content_key(base.fingerprint, fingerprint_path(out))[:16],
        lambda: load_tuned(base.path, out, trust_remote_code=config.trust_remote_code,
                           quantization=config.quantization), tuned=out, dtype=base.dtype)
    return tuned, stats


def _train_hosted(ctx: Context, attack: AttackSpec, base: ModelRef,
                  examples: list[Conversation]) -> tuple[ModelRef, TrainStats]:
    """Fine-tuning through the provider's API (a killed run re-attaches to its job)."""
    from ftrisk.train.remote import OpenAIFineTuner

    # What the provider is sent: the messages and the epoch count (nothing else is set).
    # The job is recognised without the code version: a finished or running paid job
    # stays reusable across ftrisk updates.
    job_key = content_key(base.fingerprint,
                          [[m.model_dump() for m in e.messages] for e in examples],
                          attack.train.epochs)[:16]
    out = ctx.run.path("conditions", attack.name, "model")

    def read() -> tuple[TrainStats, str]:
        return (TrainStats.model_validate_json((out / "train_stats.json").read_text()),
                json.loads((out / "remote_model.json").read_text())["model"])

    def make() -> Made[tuple[TrainStats, str]]:
        r = ctx.config.remote
        ctx.log(f"[{attack.name}] fine-tuning {base.remote} through the provider on "
                f"{len(examples)} examples, {attack.train.epochs} epochs (the provider "
                "chooses learning rate and batch size)")
        tuner = OpenAIFineTuner(base.remote or "", base_url=r.base_url,
                                api_key_env=r.api_key_env, poll_seconds=r.poll_seconds,
                                max_wait_seconds=r.max_wait_hours * 3600, timeout=r.timeout)
        out.mkdir(parents=True, exist_ok=True)
        model_id, stats = tuner.train(
            examples, attack.train.epochs, out / "job.json", fingerprint=job_key,
            suffix=re.sub(r"[^A-Za-z0-9-]", "-", attack.name)[:40],
            progress=ctx.progress, log=ctx.log)
        written = [ctx.run.write_json(f"conditions/{attack.name}/model/remote_model.json",
                                      {"model": model_id, "base": base.remote}),
                   ctx.run.write_json(f"conditions/{attack.name}/model/train_stats.json",
                                      stats)]
        return Made((stats, model_id), [p.relative_to(ctx.run.root) for p in written])

    stats, model_id = ctx.stage(attack.name, "training", f"{attack.name}/train",
                                stage_fingerprint(job_key), read=read, make=make)
    return ModelRef(base.path, content_key(base.fingerprint, model_id)[:16], hosted,
                    model_id), stats
