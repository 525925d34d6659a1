"""Benchmark: the rubric judge at its default concurrency vs one request at a time.

Run (about 75 s, nearly all of it the sequential side)::

    . .venv/bin/activate && python benchmarks/bench_judge_concurrency.py

Both sides judge the same 330 generations (HEx-PHI's size; ``--items``) with ``RubricJudge``
over ``OpenAIBackend``, against the loopback fake endpoint of the tests
(``tests/fake_openai.py``), which answers every request after 200 ms (``--delay``), like
a remote judge model. One side uses the backend's default concurrency (16), the other
``concurrency=1``. No store, so nothing is cached. Printed: wall time, requests, the largest
number of requests the server saw in flight, scored items, and the ratio of wall times.
Target: concurrent <= 15 s and >= 10x faster than sequential.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # for tests.fake_openai

from ftrisk.generate.openai_api import OpenAIBackend  # noqa: E402
from ftrisk.judge.rubric import RubricJudge  # noqa: E402
from ftrisk.records import Generation  # noqa: E402
from tests.fake_openai import running  # noqa: E402

TARGET_SECONDS = 15.0
TARGET_RATIO = 10.0


def generations(count: int) -> list[Generation]:
    """``count`` distinct generations (distinct, so nothing is de-duplicated)."""
    return [
        Generation(item_id=f"hexphi-{i}", kind="harmful", category=f"category-{i % 11}",
                   prompt=f"benchmark instruction {i}", rendered_prompt=f"instruction {i}",
                   response=f"benchmark response {i}", model_fingerprint="bench", decoding={})
        for i in range(count)
    ]


def run(items: list[Generation], delay: float, concurrency: int | None) -> dict[str, float]:
    """Judge ``items`` against a fresh fake endpoint; wall time and server-side counts."""
    with running(delay=delay) as server:
        settings = {} if concurrency is None else {"concurrency": concurrency}
        backend = OpenAIBackend("bench-judge", base_url=server.base_url,
                                      api_key="sk-bench-not-a-key", **settings)
        judge = RubricJudge(backend)
        start = time.perf_counter()
        judgments = judge.judge(items)
        seconds = time.perf_counter() - start
        return {
            "concurrency": backend.concurrency,
            "seconds": seconds,
            "requests": len(server.requests),
            "max_in_flight": server.max_in_flight,
            "scored": sum(j.score is not None for j in judgments),
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=330, help="generations to judge")
    parser.add_argument("--delay", type=float, default=0.2, help="seconds per request")
    args = parser.parse_args()

    default = inspect.signature(OpenAIBackend).parameters["concurrency"].default
    print(f"items={args.items} delay={args.delay * 1000:.0f} ms/request cpus={os.cpu_count()} "
          f"default concurrency={default}")
    items = generations(args.items)
    concurrent = run(items, args.delay, None)
    sequential = run(items, args.delay, 1)
    print(f"{'side':<12}{'concurrency':>12}{'wall s':>9}{'requests':>10}{'in flight':>11}"
          f"{'scored':>8}")
    for side, row in (("concurrent", concurrent), ("sequential", sequential)):
        print(f"{side:<12}{row['concurrency']:>12}{row['seconds']:>9.2f}{row['requests']:>10}"
              f"{row['max_in_flight']:>11}{row['scored']:>8}")
    ratio = sequential["seconds"] / concurrent["seconds"]
    ok = concurrent["seconds"] <= TARGET_SECONDS and ratio >= TARGET_RATIO
    print(f"ratio sequential/concurrent = {ratio:.1f}x "
          f"(target: concurrent <= {TARGET_SECONDS:g} s and >= {TARGET_RATIO:g}x) "
          f"-> {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
