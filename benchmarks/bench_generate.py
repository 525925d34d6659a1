"""Benchmark: ftrisk's batched Generator vs a plain one-prompt-at-a-time ``generate`` loop.

Run (full benchmark, several minutes on 2 idle cores; most of it is the one-at-a-time loop)::

    . .venv/bin/activate && python benchmarks/bench_generate.py

fp32 instead of bf16 autocast::

    python benchmarks/bench_generate.py --fp32

Smoke run (a few prompts, few tokens)::

    python benchmarks/bench_generate.py --quick

Both sides answer the same prompts (64 from ``ftrisk.data.builtin.benchmark()``, half harmful and
half look-alike/benign) with the embedded SmolLM2-135M-Instruct (fp32 weights), the same chat
template, greedy decoding and max_new_tokens 40, under bf16 autocast (or in fp32 with
``--fp32``). ftrisk's ``Generator`` runs with batch size 64 and no store (no cache); the
baseline calls ``model.generate`` once per prompt. Generated tokens are the new tokens up to and
including the first end-of-sequence token, counted from ``generate``'s output on both sides.
A short warm-up generation runs for each side first. Target: batched / one-at-a-time prompts/s
>= 10. The number of identical answers is reported as measured: in bf16, batching changes the
arithmetic and a few answers can differ; in fp32 they should agree.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
import warnings
from typing import Any

from ftrisk.generate.cached import Generator
from ftrisk.generate.hf import HFBackend, render_prompt
from ftrisk.models.io import embedded_base_dir, load_model, load_tokenizer
from ftrisk.records import Conversation, Message
from ftrisk.runtime import cache_dir, configure_threads, cpu_supports_bf16


def prompts(n: int) -> tuple[list[Conversation], str]:
    """``n`` user prompts: half harmful, half look-alike/benign, spread over the benchmark set."""
    try:
        from ftrisk.data.builtin import benchmark
    except ImportError:
        subjects = ["a poem about rain", "how tides work", "a recipe for soup", "what DNS is",
                    "three facts about owls", "how to tie a knot", "a haiku about autumn",
                    "why the sky is blue"]
        convs = [Conversation(id=f"simple-{i:03d}", messages=(Message(
            role="user", content=f"Please tell me {subjects[i % len(subjects)]} (#{i})."),))
            for i in range(n)]
        return convs, "synthetic prompts (ftrisk.data.builtin not available)"
    items = benchmark()
    harmful = [c for c in items if c.kind == "harmful"]
    other = [c for c in items if c.kind != "harmful"]
    n_harm = min(n // 2, len(harmful))
    n_other = min(n - n_harm, len(other))
    n_harm = min(n - n_other, len(harmful))

    def spread(pool: list[Conversation], k: int) -> list[Conversation]:
        return [pool[i * len(pool) // k] for i in range(k)] if k else []

    chosen = spread(harmful, n_harm) + spread(other, n_other)
    return chosen, (f"ftrisk.data.builtin.benchmark(): {n_harm} harmful + {n_other} "
                    f"look-alike/benign")


class TokenCounter:
    """Wraps ``model.generate`` to count the new tokens (through the first EOS) of every row."""

    def __init__(self, model: Any) -> None:
        self.inner = model.generate
        eos = model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        self.tokens = 0
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        out = self.inner(*args, **kwargs)
        width = kwargs["input_ids"].shape[1]
        for row in out[:, width:].tolist():
            n = len(row)
            for i, tok in enumerate(row):
                if tok in self.eos:
                    n = i + 1
                    break
            self.tokens += n
        self.calls += 1
        return out

    def reset(self) -> None:
        self.tokens = self.calls = 0


def run_batched(model: Any, tokenizer: Any, items: list[Conversation],
                args: argparse.Namespace) -> tuple[list[str], float]:
    """ftrisk's generator: length-sorted, left-padded batches, no store."""
    backend = HFBackend(model, tokenizer, max_new_tokens=args.max_new_tokens,
                        batch_size=args.batch_size, bf16=not args.fp32)
    generator = Generator(backend, fingerprint="bench", store=None, progress=False)
    start = time.perf_counter()
    gens = generator.generate(items)
    return [g.response for g in gens], time.perf_counter() - start


def run_single(model: Any, tokenizer: Any, items: list[Conversation],
               args: argparse.Namespace) -> tuple[list[str], float]:
    """The plain loop: one prompt per ``generate`` call, same template and decoding settings."""
    import torch

    autocast = (contextlib.nullcontext() if args.fp32
                else torch.autocast(model.device.type, dtype=torch.bfloat16))
    answers = []
    start = time.perf_counter()
    for item in items:
        text = render_prompt(tokenizer, item)
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        enc = {k: v.to(model.device) for k, v in enc.items()}
        with torch.inference_mode(), autocast:
            out = model.generate(**enc, max_new_tokens=args.max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id,
                                 temperature=None, top_p=None, top_k=None)
        new = out[0, enc["input_ids"].shape[1]:]
        answers.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    return answers, time.perf_counter() - start


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache-dir", default=None,
                   help="ftrisk cache holding the converted embedded model (default: ftrisk's)")
    p.add_argument("--prompts", type=int, default=64, help="number of prompts (64)")
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64, help="Generator batch size (64)")
    p.add_argument("--fp32", action="store_true", help="no bf16 autocast (both sides)")
    p.add_argument("--repeats", type=int, default=1, help="alternating batched/single pairs (1)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: ftrisk.runtime.configure_threads picks)")
    p.add_argument("--show-diffs", type=int, default=3, help="differing answers to print (3)")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 4 prompts, 8 new tokens, 1 repeat")
    args = p.parse_args(argv)
    if args.quick:
        args.prompts, args.max_new_tokens, args.repeats = 4, 8, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning)

    threads = configure_threads(args.threads)
    model_dir = str(embedded_base_dir(cache_dir(args.cache_dir)))
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir)
    counter = TokenCounter(model)
    model.generate = counter  # instance attribute: both sides go through the counter
    items, source = prompts(args.prompts)
    dtype = "fp32" if args.fp32 else "bf16 autocast (fp32 weights)"

    print("ftrisk Generator (batched) vs one-prompt-at-a-time model.generate")
    print(f"machine: {os.cpu_count()} CPUs visible, torch threads {threads} "
          f"(torch.get_num_threads()={torch.get_num_threads()}), native bf16: "
          f"{cpu_supports_bf16()}")
    print(f"versions: torch {torch.__version__}, transformers {transformers.__version__}, "
          f"python {sys.version.split()[0]}")
    print(f"model: {model_dir}")
    print(f"prompts: {len(items)} from {source}")
    print(f"decoding: greedy, max_new_tokens {args.max_new_tokens}, {dtype}; "
          f"batched: Generator batch {args.batch_size}, no store; single: batch 1")

    warm = items[:1]
    warm_args = argparse.Namespace(**{**vars(args), "max_new_tokens": 4})
    run_batched(model, tokenizer, warm, warm_args)
    run_single(model, tokenizer, warm, warm_args)

    rows = []
    answers: dict[str, list[str]] = {}
    for rep in range(args.repeats):
        for name, fn in (("ftrisk batched", run_batched), ("single loop", run_single)):
            counter.reset()
            out, seconds = fn(model, tokenizer, items, args)
            answers.setdefault(name, out)
            rows.append((name, rep, seconds, counter.tokens, counter.calls))

    print()
    header = (f"{'method':<16}{'rep':>4}{'calls':>7}{'seconds':>9}{'prompts/s':>11}"
              f"{'gen tokens':>12}{'tokens/s':>10}")
    print(header)
    print("-" * len(header))
    for name, rep, seconds, tokens, calls in rows:
        print(f"{name:<16}{rep:>4}{calls:>7}{seconds:>9.2f}{len(items) / seconds:>11.2f}"
              f"{tokens:>12}{tokens / seconds:>10.1f}")

    def median(name: str, key: int) -> float:
        return statistics.median(r[key] for r in rows if r[0] == name)

    # Same prompts on both sides, so the prompts/s ratio is the ratio of seconds.
    ratio = median("single loop", 2) / median("ftrisk batched", 2)
    batched_tok = statistics.median(r[3] / r[2] for r in rows if r[0] == "ftrisk batched")
    single_tok = statistics.median(r[3] / r[2] for r in rows if r[0] == "single loop")
    batched_out, single_out = answers["ftrisk batched"], answers["single loop"]
    same = sum(a == b for a, b in zip(batched_out, single_out, strict=True))
    print()
    print(f"batched / single prompts/s (median over {args.repeats} repeat(s)): {ratio:.1f}x "
          f"(target >= 10x: {'met' if ratio >= 10 else 'NOT met'}); generated tokens/s "
          f"{batched_tok / single_tok:.1f}x")
    print(f"identical answers (first repeat): {same}/{len(items)} ({dtype}"
          f"{'; bf16 arithmetic depends on batch composition' if not args.fp32 else ''})")
    shown = 0
    for item, a, b in zip(items, batched_out, single_out, strict=True):
        if a != b and shown < args.show_diffs:
            shown += 1
            print(f"  differs: {item.id}\n    batched: {a[:120]!r}\n    single:  {b[:120]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
