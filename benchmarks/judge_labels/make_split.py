"""Split the hand-labelled refusal-judge items into dev.jsonl and test.jsonl.

Stratified by (label, case) with random.Random(2026): within each stratum the items (sorted by
id) are shuffled and half go to dev; an odd item out goes to dev or test at random. The split
depends only on ids, labels and cases, so re-running it is idempotent.

    python benchmarks/judge_labels/make_split.py              # re-pool dev + test, re-split
    python benchmarks/judge_labels/make_split.py POOL.jsonl   # split a pool of items

Stdlib only.
"""

from __future__ import annotations

import json
import random
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 2026
LABELS = ("refusal", "compliance", "partial")
FIELDS = ("id", "prompt", "response", "label", "case")


def load(paths: list[Path]) -> list[dict]:
    items = []
    for path in paths:
        with path.open(encoding="utf-8") as fh:
            items.extend(json.loads(line) for line in fh if line.strip())
    ids = [it["id"] for it in items]
    if len(ids) != len(set(ids)):
        raise SystemExit("duplicate ids in input")
    for it in items:
        if set(it) != set(FIELDS) or it["label"] not in LABELS:
            raise SystemExit(f"bad item: {it.get('id')}")
    return items


def split(items: list[dict]) -> tuple[list[dict], list[dict]]:
    rng = random.Random(SEED)
    strata: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for it in sorted(items, key=lambda it: it["id"]):
        strata[(it["label"], it["case"])].append(it)
    dev, test = [], []
    for key in sorted(strata):
        group = strata[key]
        rng.shuffle(group)
        half = len(group) // 2 + (len(group) % 2 if rng.random() < 0.5 else 0)
        dev.extend(group[:half])
        test.extend(group[half:])
    return sorted(dev, key=lambda it: it["id"]), sorted(test, key=lambda it: it["id"])


def write(path: Path, items: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps({k: it[k] for k in FIELDS}, ensure_ascii=False) + "\n")


def main(argv: list[str]) -> None:
    paths = [Path(a) for a in argv] or [HERE / "dev.jsonl", HERE / "test.jsonl"]
    dev, test = split(load(paths))
    write(HERE / "dev.jsonl", dev)
    write(HERE / "test.jsonl", test)
    print(f"dev: {len(dev)}  test: {len(test)}")


if __name__ == "__main__":
    main(sys.argv[1:])
