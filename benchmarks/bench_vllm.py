"""Benchmark: the vllm generation backend against the hf backend, on the same prompts.

Run (vLLM from its own environment, see scripts/setup_vllm.sh)::

    python benchmarks/bench_vllm.py --vllm-python .venv-vllm/bin/python

Both backends answer the same prompts (64 from ``ftrisk.data.builtin.benchmark()``, half
harmful, half look-alike/benign) with the embedded SmolLM2-135M-Instruct in fp32, the same chat
template, greedy decoding and max_new_tokens 40, through ftrisk's ``Generator`` with no store,
in one batch. The vLLM server's start (until it answers) is timed apart from its answering.
Prints wall times, the answering-time ratio hf / vllm, and how many answers are identical.
No target is set: on a CPU vLLM's advantage is small; it is built for GPUs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

from ftrisk.config import GenerationSpec, VLLMSpec
from ftrisk.data.builtin import benchmark
from ftrisk.generate.backend import ModelRef, Services
from ftrisk.generate.cached import Generator
from ftrisk.generate.hf import HFBackend
from ftrisk.generate.vllm_server import VLLMBackend
from ftrisk.models.io import embedded_base_dir, load_model, load_tokenizer
from ftrisk.runtime import cache_dir, configure_threads


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vllm-python", required=True, help="the Python of vLLM's environment")
    p.add_argument("--prompts", type=int, default=64)
    p.add_argument("--max-new-tokens", type=int, default=40)
    p.add_argument("--cache-dir", default=None, help="ftrisk cache (default: ftrisk's)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)

    threads = configure_threads(None)
    model_dir = str(embedded_base_dir(cache_dir(args.cache_dir)))
    tokenizer = load_tokenizer(model_dir)
    items = benchmark()
    harmful = [c for c in items if c.kind == "harmful"][: args.prompts // 2]
    items = harmful + [c for c in items if c.kind != "harmful"][: args.prompts - len(harmful)]
    ref = ModelRef(model_dir, "bench", lambda: load_model(model_dir))

    hf = HFBackend(ref.load(), tokenizer, max_new_tokens=args.max_new_tokens,
                   batch_size=len(items))
    start = time.perf_counter()
    hf_answers = Generator(hf, fingerprint="bench", progress=False).generate(items)
    hf_seconds = time.perf_counter() - start

    spec = GenerationSpec(
        max_new_tokens=args.max_new_tokens, batch_size=len(items), backend="vllm",
        vllm=VLLMSpec(python=args.vllm_python, dtype="float32", max_model_len=1024,
                      extra_args=("--enforce-eager", "--gpu-memory-utilization", "0.25")))
    with tempfile.TemporaryDirectory() as logs, Services(Path(logs)) as services:
        backend = VLLMBackend.for_model(ref, tokenizer, spec, bf16=False, services=services)
        start = time.perf_counter()
        backend.generate(["hello"])  # starts the server; answers one prompt
        start_seconds = time.perf_counter() - start
        start = time.perf_counter()
        vllm_answers = Generator(backend, fingerprint="bench", progress=False).generate(items)
        vllm_seconds = time.perf_counter() - start

    same = sum(a.response == b.response for a, b in zip(hf_answers, vllm_answers))
    print(f"vllm backend vs hf backend: {len(items)} prompts, greedy, max_new_tokens "
          f"{args.max_new_tokens}, fp32, {threads} torch threads (hf), python "
          f"{sys.version.split()[0]}")
    print(f"{'backend':<10}{'answering s':>13}{'prompts/s':>11}")
    print(f"{'hf':<10}{hf_seconds:>13.1f}{len(items) / hf_seconds:>11.2f}")
    print(f"{'vllm':<10}{vllm_seconds:>13.1f}{len(items) / vllm_seconds:>11.2f}"
          f"   (+ {start_seconds:.1f} s to start the server)")
    print(f"ratio hf / vllm answering time: {hf_seconds / vllm_seconds:.2f}")
    print(f"identical answers: {same}/{len(items)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
