"""Score a refusal judge against human labels (``ftrisk judge-eval``).

Label files:

* ftrisk JSONL: one ``{"prompt", "response", "label"}`` per line, label ``refusal``,
  ``compliance`` or ``partial`` (optional ``id`` and ``case``, a tag for per-case counts);
* XSTest's released human-labelled completions CSVs (``id,type,prompt,completion,...,
  final_label`` with ``1_full_compliance`` / ``2_full_refusal`` / ``3_partial_refusal``).

Binary metrics take *full refusal* as the positive class (a partial refusal delivered
something, so it is not a refusal); the three-way confusion matrix shows every verdict,
``empty`` and ``degenerate`` included.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftrisk.data.readers import read_json_lines
from ftrisk.errors import InputError, decode_utf8
from ftrisk.records import Generation

LABELS: tuple[str, ...] = ("refusal", "partial", "compliance")
_XSTEST_LABELS = {"1_full_compliance": "compliance", "2_full_refusal": "refusal",
                  "3_partial_refusal": "partial"}
_XSTEST_COLUMNS = ("prompt", "completion", "final_label")


@dataclass(frozen=True)
class LabelledAnswer:
    """One human-labelled answer."""

    id: str
    prompt: str
    response: str
    label: str
    case: str | None = None


def read_labels(path: str | Path) -> list[LabelledAnswer]:
    """Read a label file (ftrisk JSONL or an XSTest completions CSV, by extension).

    Raises InputError naming the file, the line and the field for anything malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such label file (expected ftrisk JSONL or an XSTest completions "
                         "CSV)", path=path)
    if path.suffix.lower() == ".csv":
        items = _read_xstest(decode_utf8(path.read_bytes(), path), path)
    elif path.suffix.lower() in (".jsonl", ".json"):
        items = _read_jsonl(path)
    else:
        raise InputError(f"unknown label file type {path.suffix!r}; expected .jsonl or .csv",
                         path=path)
    if not items:
        raise InputError("the label file holds no items", path=path)
    return items


def _read_jsonl(path: Path) -> list[LabelledAnswer]:
    items, seen = [], set()
    for number, row in read_json_lines(path):
        for field in ("prompt", "response", "label"):
            if not isinstance(row.get(field), str):
                raise InputError("missing or not a string", path=path, line=number, field=field)
        if row["label"] not in LABELS:
            raise InputError(f"unknown label {row['label']!r}; expected one of "
                             f"{', '.join(LABELS)}", path=path, line=number, field="label")
        item_id = str(row.get("id", f"line-{number}"))
        if item_id in seen:
            raise InputError(f"duplicate id {item_id!r}", path=path, line=number, field="id")
        seen.add(item_id)
        items.append(LabelledAnswer(item_id, row["prompt"], row["response"], row["label"],
                                    row.get("case")))
    return items


def _read_xstest(text: str, path: Path) -> list[LabelledAnswer]:
    reader = csv.DictReader(text.splitlines(keepends=True))
    missing = [c for c in _XSTEST_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"not an XSTest completions file: columns {missing} missing (found "
                         f"{reader.fieldnames})", path=path, line=1)
    items = []
    for row in reader:
        label = _XSTEST_LABELS.get((row["final_label"] or "").strip())
        if label is None:
            raise InputError(f"unknown final_label {row['final_label']!r}; expected one of "
                             f"{', '.join(_XSTEST_LABELS)}", path=path, line=reader.line_num,
                             field="final_label")
        items.append(LabelledAnswer(row.get("id") or f"line-{reader.line_num}", row["prompt"],
                                    row["completion"] or "", label, row.get("type")))
    return items


def evaluate(judge: Any, items: Sequence[LabelledAnswer]) -> dict[str, Any]:
    """Run ``judge`` on the labelled answers and measure it.

    Returns precision, recall, F1 and accuracy with full refusal as the positive class
    (unscored verdicts count as "not refusal"), the three-way accuracy, the confusion matrix
    ``{label: {verdict: count}}``, per-case counts of misjudged items, and the misjudged items.
    """
    generations = [Generation(item_id=f"{i}", kind=None, category=None, prompt=item.prompt,
                              rendered_prompt=item.prompt, response=item.response,
                              model_fingerprint="labels")
                   for i, item in enumerate(items)]
    judgments = judge.judge(generations)
    verdicts = [_verdict(j) for j in judgments]
    tp = sum(v == "refusal" and i.label == "refusal" for v, i in zip(verdicts, items))
    fp = sum(v == "refusal" and i.label != "refusal" for v, i in zip(verdicts, items))
    fn = sum(v != "refusal" and i.label == "refusal" for v, i in zip(verdicts, items))
    correct = sum((v == "refusal") == (i.label == "refusal") for v, i in zip(verdicts, items))
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = (2 * precision * recall / (precision + recall)
          if precision is not None and recall is not None and precision + recall else None)
    confusion = {label: dict(Counter(v for v, i in zip(verdicts, items) if i.label == label))
                 for label in LABELS}
    wrong = [{"id": item.id, "case": item.case, "label": item.label, "verdict": verdict,
              "reason": judgment.reasoning or judgment.matched_pattern,
              "prompt": item.prompt, "response": item.response}
             for item, verdict, judgment in zip(items, verdicts, judgments)
             if (verdict == "refusal") != (item.label == "refusal")]
    three_way = [v == i.label for v, i in zip(verdicts, items) if v in LABELS]
    by_case = Counter(w["case"] for w in wrong if w["case"])
    return {"judge": judge.name, "n": len(items), "labels": dict(Counter(i.label for i in items)),
            "precision": precision, "recall": recall, "f1": f1,
            "accuracy": correct / len(items),
            "three_way_accuracy": sum(three_way) / len(items),
            "confusion": confusion, "misjudged_by_case": dict(by_case.most_common()),
            "misjudged": wrong}


def _verdict(judgment: Any) -> str:
    if judgment.verdict is not None:
        return judgment.verdict
    return "unscored" if judgment.refused is None else (
        "refusal" if judgment.refused else "compliance")


def render(result: dict[str, Any], *, show: int = 20, width: int = 160) -> str:
    """A terminal summary of :func:`evaluate`'s result (the first ``show`` misjudged items)."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    lines = [f"judge {result['judge']} on {result['n']} labelled answers "
             f"({', '.join(f'{k} {v}' for k, v in sorted(result['labels'].items()))})",
             f"  refusal (positive class): precision {pct(result['precision'])}  recall "
             f"{pct(result['recall'])}  F1 {pct(result['f1'])}  accuracy "
             f"{pct(result['accuracy'])}; three-way accuracy "
             f"{pct(result['three_way_accuracy'])}",
             "  confusion (rows: label, columns: verdict):"]
    columns = ["refusal", "partial", "compliance", "empty", "degenerate", "unscored"]
    used = [c for c in columns if any(c in row for row in result["confusion"].values())]
    lines.append("    " + f"{'':<12}" + "".join(f"{c:>12}" for c in used))
    for label, row in result["confusion"].items():
        lines.append("    " + f"{label:<12}" + "".join(f"{row.get(c, 0):>12}" for c in used))
    wrong = result["misjudged"]
    if wrong:
        lines.append(f"  misjudged: {len(wrong)}"
                     + (f" (by case: {result['misjudged_by_case']})"
                        if result["misjudged_by_case"] else ""))
        for item in wrong[:show]:
            response = " ".join(item["response"].split())
            lines.append(f"    [{item['id']}] label {item['label']}, judged {item['verdict']}"
                         f": {response[:width]!r}")
        if len(wrong) > show:
            lines.append(f"    ... {len(wrong) - show} more (--json for all)")
    return "\n".join(lines)
