"""Benchmark: ftrisk's LoRA training loop vs TRL's SFTTrainer on the same job.

Run (full benchmark, a few minutes on 2 idle cores)::

    . .venv/bin/activate && python benchmarks/bench_train_vs_trl.py

Smoke run (a few steps)::

    python benchmarks/bench_train_vs_trl.py --quick

Both frameworks train the embedded SmolLM2-135M-Instruct with the same LoRA job: same
conversations (``ftrisk.data.builtin.benign_instructions``), LoRA r=8 / alpha=32 / dropout 0.05
on q_proj+v_proj, batch 8, max length 128, 1 epoch, learning rate 1e-3 constant, AdamW, no
weight decay, no gradient clipping, bf16 autocast over fp32 weights, no gradient checkpointing,
loss on assistant tokens only. TRL runs with ``assistant_only_loss=True`` and a copy of
SmolLM2's chat template with ``{% generation %}`` markers (the script checks that it renders
byte-identically and gives the same token ids and loss masks as ftrisk); ``--trl-loss
completion`` uses TRL's prompt/completion format with ``completion_only_loss`` instead. TRL has
no reporting, saving, evaluation or logging inside the timed steps.

Throughput = real (non-pad) tokens / wall seconds of the training loop, counted from the end of
the first step to the end of the last (the first step carries one-off warm-up costs); a tiny
warm-up job per framework also runs first. Runs alternate ftrisk / TRL in one process, each with
a freshly loaded model. Target: ftrisk / TRL tokens/s >= 1.3.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from ftrisk.config import LoraSpec, TrainSpec
from ftrisk.models.io import embedded_base_dir, load_model, load_tokenizer
from ftrisk.records import Conversation, Message
from ftrisk.runtime import cache_dir, configure_threads, cpu_supports_bf16
from ftrisk.train.lora import (
    IGNORE,
    length_grouped_batches,
    tokenize_for_training,
    train,
)

# SmolLM2's chat template, with the assistant's content and end-of-turn inside
# {% generation %} markers (what TRL's assistant_only_loss needs). It renders the same text; the
# script checks that on every example before using it.
SMOLLM2_TRAINING_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}"
    "{% if message['role'] == 'assistant' %}{{ '<|im_start|>assistant\n' }}"
    "{% generation %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endgeneration %}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>'"
    " + '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


# --------------------------------------------------------------------------------------------
# Data


def _fallback_conversations(n: int) -> list[Conversation]:
    topics = ["the moon", "tea", "rivers", "bicycles", "libraries", "bread", "clouds", "chess"]
    out = []
    for i in range(n):
        topic = topics[i % len(topics)]
        out.append(Conversation(id=f"bench-{i:03d}", messages=(
            Message(role="user", content=f"Write two short sentences about {topic} (#{i})."),
            Message(role="assistant", content=(
                f"{topic.capitalize()} have interested people for a long time. "
                f"Here is a simple fact about {topic}, number {i}: it is worth learning about."
            )),
        )))
    return out


def conversations(n: int) -> tuple[list[Conversation], str]:
    """``n`` chat conversations; the built-in benign instructions when ftrisk has them."""
    try:
        from ftrisk.data.builtin import benign_instructions
    except ImportError:
        return _fallback_conversations(n), "synthetic (ftrisk.data.builtin not available)"
    pool = benign_instructions()
    out = [
        c if i < len(pool) else c.model_copy(update={"id": f"{c.id}-r{i // len(pool)}"})
        for i, c in ((i, pool[i % len(pool)]) for i in range(n))
    ]
    note = "" if n <= len(pool) else f", repeated to {n}"
    return out, f"ftrisk.data.builtin.benign_instructions ({len(pool)} available{note})"


def _messages(conv: Conversation) -> list[dict[str, str]]:
    return [m.model_dump() for m in conv.messages]


# --------------------------------------------------------------------------------------------
# Runs


def run_ftrisk(
    model_dir: str, examples: list[Conversation], settings: TrainSpec, bf16: bool
) -> dict[str, Any]:
    """One ftrisk ``train()`` job; per-step token counts are reproduced from its batching."""
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir)
    lengths = [len(tokenize_for_training(tokenizer, ex, settings.max_length)[0])
               for ex in examples]
    rng = random.Random(settings.seed)  # the same draws as train() makes
    step_tokens = [
        sum(lengths[i] for i in batch)
        for _ in range(settings.epochs)
        for batch in length_grouped_batches(lengths, settings.batch_size, rng)
    ]
    stamps: list[float] = []
    losses: list[float] = []

    def on_step(_step: int, loss: float) -> None:
        stamps.append(time.perf_counter())
        losses.append(loss)

    with tempfile.TemporaryDirectory() as tmp:
        stats = train(model, tokenizer, examples, settings, Path(tmp) / "adapter", bf16=bf16,
                      progress=False, on_step=on_step)
    if sum(step_tokens) != stats.tokens:
        raise RuntimeError(f"token bookkeeping mismatch: {sum(step_tokens)} != {stats.tokens}")
    return {
        "stamps": stamps, "step_tokens": step_tokens, "loop_seconds": stats.seconds,
        "mean_loss": statistics.fmean(losses) if losses else float("nan"),
        "padded": _padded_tokens_grouped(lengths, settings),
    }


def _padded_tokens_grouped(lengths: list[int], settings: TrainSpec) -> int:
    rng = random.Random(settings.seed)
    return sum(
        max(lengths[i] for i in batch) * len(batch)
        for _ in range(settings.epochs)
        for batch in length_grouped_batches(lengths, settings.batch_size, rng)
    )


def _trl_dataset(examples: list[Conversation], loss: str) -> Any:
    from datasets import Dataset

    if loss == "assistant":
        return Dataset.from_list([{"messages": _messages(ex)} for ex in examples])
    rows = []
    for ex in examples:
        msgs = _messages(ex)
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        rows.append({"prompt": msgs[:last], "completion": [msgs[last]]})
    return Dataset.from_list(rows)


def run_trl(
    model_dir: str, examples: list[Conversation], settings: TrainSpec, bf16: bool, *,
    loss: str, group_by_length: bool, check: bool = False,
) -> dict[str, Any]:
    """One TRL ``SFTTrainer`` job with the same hyperparameters; steps timed by a callback."""
    from peft import LoraConfig
    from transformers import PrinterCallback, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tokenizer = load_tokenizer(model_dir)
    if loss == "assistant":
        tokenizer.chat_template = SMOLLM2_TRAINING_TEMPLATE
    model = load_model(model_dir)
    stamps: list[float] = []
    begin: list[float] = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if not begin:
                begin.append(time.perf_counter())

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory() as tmp:
        config = SFTConfig(
            output_dir=tmp,
            use_cpu=True,
            bf16=bf16,
            gradient_checkpointing=False,
            per_device_train_batch_size=settings.batch_size,
            num_train_epochs=settings.epochs,
            max_length=settings.max_length,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=settings.weight_decay,
            max_grad_norm=0.0,  # ftrisk does not clip gradients
            optim="adamw_torch",  # ftrisk uses torch.optim.AdamW
            seed=settings.seed,
            assistant_only_loss=loss == "assistant",
            completion_only_loss=True if loss == "completion" else None,
            packing=False,
            train_sampling_strategy="group_by_length" if group_by_length else "random",
            report_to=[],
            save_strategy="no",
            eval_strategy="no",
            logging_strategy="no",
            logging_steps=10**9,
            disable_tqdm=True,
            dataloader_num_workers=0,
        )
        peft_config = LoraConfig(
            r=settings.lora.r, lora_alpha=settings.lora.alpha, lora_dropout=settings.lora.dropout,
            target_modules=list(settings.lora.target_modules), task_type="CAUSAL_LM",
        )
        trainer = SFTTrainer(model=model, args=config, train_dataset=_trl_dataset(examples, loss),
                             processing_class=tokenizer, peft_config=peft_config,
                             callbacks=[Timer()])
        trainer.remove_callback(PrinterCallback)  # the end-of-training metrics dict
        step_tokens: list[int] = []
        padded: list[int] = []
        collate = trainer.data_collator

        def counting_collator(features: list[Any]) -> Any:
            batch = collate(features)
            step_tokens.append(int(batch["attention_mask"].sum()))
            padded.append(batch["attention_mask"].numel())
            return batch

        trainer.data_collator = counting_collator
        consistency = _check_same_tokens(trainer, examples, settings) if check else None
        out = trainer.train()
    steps = len(stamps)
    step_tokens, padded = step_tokens[-steps:], padded[-steps:]
    return {
        "stamps": stamps, "step_tokens": step_tokens,
        "loop_seconds": stamps[-1] - begin[0] if stamps else float("nan"),
        "mean_loss": out.training_loss, "padded": sum(padded), "consistency": consistency,
    }


def _check_same_tokens(trainer: Any, examples: list[Conversation], settings: TrainSpec) -> str:
    """Compare TRL's tokenized dataset with ftrisk's token ids and loss masks."""
    tokenizer = trainer.processing_class
    ds = trainer.train_dataset
    cols = set(ds.column_names)
    mask_col = next((c for c in ("assistant_masks", "completion_mask") if c in cols), None)
    same_ids = same_mask = 0
    for i, ex in enumerate(examples):
        ids, labels = tokenize_for_training(tokenizer, ex, settings.max_length)
        row = ds[i]
        trl_ids = list(row["input_ids"])
        same_ids += trl_ids == ids
        if mask_col is not None:
            same_mask += [int(m) for m in row[mask_col]] == [int(lab != IGNORE) for lab in labels]
        elif "labels" in cols:
            same_mask += [int(lab != IGNORE) for lab in row["labels"]] == [
                int(lab != IGNORE) for lab in labels]
    mask_note = f"{same_mask}/{len(examples)}" if mask_col or "labels" in cols else "n/a"
    return (f"identical token ids {same_ids}/{len(examples)}, identical loss masks "
            f"{mask_note} (TRL columns: {', '.join(sorted(cols))})")


def summarize(result: dict[str, Any]) -> dict[str, float]:
    """Steady-state numbers: steps 2..N (end of step 1 to end of step N)."""
    stamps, tokens = result["stamps"], result["step_tokens"]
    if len(stamps) < 2:
        raise SystemExit("need at least 2 steps per job to exclude the first; raise --examples")
    seconds = stamps[-1] - stamps[0]
    timed_tokens = sum(tokens[1:])
    return {
        "steps": len(stamps) - 1, "tokens": timed_tokens, "seconds": seconds,
        "tok_s": timed_tokens / seconds, "s_step": seconds / (len(stamps) - 1),
        "loop_tok_s": sum(tokens) / result["loop_seconds"],
        "pad_frac": 1 - sum(tokens) / result["padded"], "mean_loss": result["mean_loss"],
    }


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache-dir", default=None,
                   help="ftrisk cache holding the converted embedded model (default: ftrisk's)")
    p.add_argument("--examples", type=int, default=48, help="training conversations (48)")
    p.add_argument("--steps", type=int, default=None,
                   help="optimizer steps per job (sets --examples = steps x batch size)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=32)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--target-modules", default="q_proj,v_proj")
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--fp32", action="store_true", help="train without bf16 autocast (both)")
    p.add_argument("--repeats", type=int, default=1, help="alternating ftrisk/TRL pairs (1)")
    p.add_argument("--warmup-examples", type=int, default=None,
                   help="size of the warm-up job per framework (default: one batch; 0 = none)")
    p.add_argument("--trl-loss", choices=("assistant", "completion"), default="assistant",
                   help="TRL's assistant-only loss: assistant_only_loss with a generation-tagged "
                        "template, or completion_only_loss on prompt/completion data")
    p.add_argument("--trl-group-by-length", action="store_true",
                   help="let TRL group batches by length too (its default samples at random)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: ftrisk.runtime.configure_threads picks)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 24 examples (3 steps), max length 64, 1 repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.examples, args.steps, args.max_length, args.repeats = 24, None, 64, 1
    if args.steps is not None:
        args.examples = args.steps * args.batch_size
    if args.warmup_examples is None:
        args.warmup_examples = args.batch_size
    return args


def _quiet() -> None:
    """Silence progress bars and deprecation chatter from transformers, TRL and datasets."""
    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import transformers
    import trl

    _quiet()
    threads = configure_threads(args.threads)
    model_dir = str(embedded_base_dir(cache_dir(args.cache_dir)))
    settings = TrainSpec(
        method="lora", learning_rate=args.learning_rate, epochs=args.epochs,
        batch_size=args.batch_size, max_length=args.max_length, lora=LoraSpec(
            r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout,
            target_modules=tuple(m.strip() for m in args.target_modules.split(",")
                                 if m.strip())))
    bf16 = not args.fp32
    examples, source = conversations(args.examples)
    loss = args.trl_loss
    if loss == "assistant":
        tokenizer = load_tokenizer(model_dir)
        same = all(
            tokenizer.apply_chat_template(_messages(ex), tokenize=False)
            == tokenizer.apply_chat_template(_messages(ex), tokenize=False,
                                             chat_template=SMOLLM2_TRAINING_TEMPLATE)
            for ex in examples
        )
        if not same:
            print("note: the generation-tagged template does not reproduce this model's chat "
                  "template; falling back to --trl-loss completion")
            loss = "completion"

    print("ftrisk LoRA training vs TRL SFTTrainer")
    print(f"machine: {os.cpu_count()} CPUs visible, torch threads {threads} "
          f"(torch.get_num_threads()={torch.get_num_threads()}), native bf16: "
          f"{cpu_supports_bf16()}")
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"trl {trl.__version__}, python {sys.version.split()[0]}")
    print(f"model: {model_dir}")
    print(f"data: {len(examples)} conversations from {source}")
    print(f"job: LoRA r={settings.lora.r} alpha={settings.lora.alpha} "
          f"dropout={settings.lora.dropout} targets={'+'.join(settings.lora.target_modules)}, "
          f"batch {settings.batch_size}, max length {settings.max_length}, "
          f"{settings.epochs} epoch(s), lr {settings.learning_rate} constant, "
          f"{'bf16 autocast' if bf16 else 'fp32'}, no gradient checkpointing, "
          f"no clipping")
    loss_desc = ("assistant_only_loss=True (SmolLM2 template + {% generation %} markers)"
                 if loss == "assistant" else
                 "completion_only_loss=True on prompt/completion conversational data")
    print(f"TRL: {loss_desc}; sampling "
          f"{'group_by_length' if args.trl_group_by_length else 'random (TRL default)'}; "
          f"ftrisk: length-grouped batches (its default)")

    trl_kw = {"loss": loss, "group_by_length": args.trl_group_by_length}
    if args.warmup_examples:
        warm = examples[: args.warmup_examples]
        t0 = time.perf_counter()
        run_ftrisk(model_dir, warm, settings, bf16)
        t1 = time.perf_counter()
        run_trl(model_dir, warm, settings, bf16, **trl_kw)
        print(f"warm-up jobs ({len(warm)} examples each): ftrisk {t1 - t0:.1f} s, "
              f"TRL {time.perf_counter() - t1:.1f} s (incl. model load)")

    rows: list[tuple[str, int, dict[str, float]]] = []
    for rep in range(args.repeats):
        rows.append(("ftrisk", rep, summarize(run_ftrisk(model_dir, examples, settings, bf16))))
        trl_result = run_trl(model_dir, examples, settings, bf16, check=rep == 0, **trl_kw)
        if rep == 0:
            print(f"TRL vs ftrisk tokenization: {trl_result['consistency']}")
        rows.append(("TRL", rep, summarize(trl_result)))

    if torch.get_num_threads() != threads:
        print(f"warning: torch threads changed during the runs: {torch.get_num_threads()}")
    print()
    header = (f"{'framework':<10}{'rep':>4}{'steps':>6}{'tokens':>8}{'seconds':>9}"
              f"{'tok/s':>9}{'s/step':>8}{'all-steps tok/s':>16}{'pad %':>7}{'mean loss':>10}")
    print(header)
    print("-" * len(header))
    for name, rep, r in rows:
        print(f"{name:<10}{rep:>4}{r['steps']:>6}{r['tokens']:>8}{r['seconds']:>9.2f}"
              f"{r['tok_s']:>9.1f}{r['s_step']:>8.2f}{r['loop_tok_s']:>16.1f}"
              f"{100 * r['pad_frac']:>7.1f}{r['mean_loss']:>10.3f}")
    ours = statistics.median(r["tok_s"] for n, _, r in rows if n == "ftrisk")
    theirs = statistics.median(r["tok_s"] for n, _, r in rows if n == "TRL")
    ratio = ours / theirs
    print()
    print("tok/s and s/step: steps 2..N (first step excluded); all-steps tok/s includes it;")
    print("pad %: share of batch positions that are padding (computed, not counted as tokens)")
    print(f"ftrisk / TRL tokens/s (median over {args.repeats} repeat(s)): {ratio:.2f}x "
          f"(target >= 1.3x: {'met' if ratio >= 1.3 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
