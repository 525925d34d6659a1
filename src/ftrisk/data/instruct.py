"""Readers for the benign instruction-tuning sets of Qi et al. 2023 (risk level 3).

* :func:`read_alpaca` — Stanford Alpaca ``alpaca_data.json``: one JSON array of
  ``{"instruction", "input", "output"}`` objects (the same records as JSON Lines also work).
* :func:`read_dolly` — ``databricks-dolly-15k.jsonl``: one ``{"instruction", "context",
  "response", "category"}`` object per line (a JSON array also works).

Both return an :class:`InstructionSet`: training conversations (a user turn and an assistant
turn, plus Qi et al.'s task preamble as the system turn) and the counts to log.

What Qi et al. did, as read in their code (github.com/LLM-Tuning-Safety/LLMs-Finetuning-Safety,
``llama2/ft_datasets/{alpaca,dolly}_dataset/`` and ``llama2/configs/datasets.py``):

* **Prompt.** ``[INST] <<SYS>>\\n{preamble}\\n<</SYS>>\\n\\n{user} [/INST] {answer} </s>`` —
  the Llama-2 chat template with the Stanford Alpaca preamble as the system prompt and the
  Alpaca ``### Instruction:`` scaffold as the user turn (see :func:`qi_turns`). Alpaca rows with
  an input use Alpaca's longer preamble and a ``### Input:`` block; Dolly rows with a context
  keep the short preamble and an ``Input:`` block *without* ``###`` (their quirk, kept). An
  input or context counts as absent only when it is exactly ``""``.
* **Safety filter.** ``alpaca_remove_safety.py`` / ``dolly_remove_safety.py`` drop a row when
  any of their keywords occurs, case-insensitively, as a plain substring of the *answer* only
  (Alpaca ``output``, Dolly ``response``; never the instruction, input or context). The list is
  reproduced in ``builtin_data/safety_keywords.txt``. Their released removed-rows files hold
  1,904 Alpaca rows and 387 Dolly rows, and every one of them matches this rule; Dolly's 387
  agrees with the paper (15,011 - 387 = 14,624). The paper's 1,902 for Alpaca could not be
  reconciled with their released 1,904 (their copy of ``alpaca_data.json`` is not in the
  repository snapshot, so the count on the full file was not re-run here).
* **Held-out split.** No shuffle, no seed: training reads the *filtered* file and sets aside
  200 rows as validation data (used only for an eval loss) — Alpaca's *first* 200 rows, Dolly's
  *last* 200. So Llama-2 was tuned on 50,098 - 200 Alpaca rows and 14,624 - 200 Dolly rows; the
  paper's set sizes (~50K, 14,624) are the filtered files. The GPT-3.5 runs uploaded a filtered
  file whole (``gpt-3.5/data/*-no-safety.jsonl``, not in the snapshot; its chat layout could
  not be checked). ``split="train"`` reproduces the Llama-2 runs; the default ``"all"`` keeps
  every row. ``limit``/``seed`` (a subset) are ftrisk's, not the paper's.

Every problem with a file is one :class:`~ftrisk.errors.InputError` naming the file, the line
(for a JSON array, the line where the record starts) and the field (``[12].output`` in an
array), and what was expected. The limits of :mod:`ftrisk.data.readers` apply: UTF-8 text, JSON
nested at most 100 levels, records of at most 16 MiB.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict

from ftrisk.data.readers import (
    _check_file,
    _check_record_size,
    _decode_json,
    _DuplicateKeyError,
    _found,
    _json_type,
    _read_text,
    read_json_lines,
)
from ftrisk.errors import InputError
from ftrisk.records import Conversation, Message

InstructSource = Literal["alpaca", "dolly"]
#: ``"all"`` rows, Qi et al.'s ``"train"`` part, or their ``"held_out"`` validation rows.
Split = Literal["all", "train", "held_out"]
#: ``"qi"``: Qi et al.'s preamble + Alpaca scaffold; ``"plain"``: instruction (+ blank line +
#: input/context) as the user turn, no system turn.
Template = Literal["qi", "plain"]

#: Rows Qi et al. set aside as validation data (Alpaca: the first ones; Dolly: the last ones).
QI_HELD_OUT_ROWS = 200

#: Stanford Alpaca's task preambles, which Qi et al. put in the Llama-2 system prompt.
PREAMBLE = ("Below is an instruction that describes a task. "
            "Write a response that appropriately completes the request.")
PREAMBLE_WITH_INPUT = ("Below is an instruction that describes a task, paired with an input that "
                       "provides further context. Write a response that appropriately completes "
                       "the request.")

_SPLITS: tuple[str, ...] = get_args(Split)
_TEMPLATES: tuple[str, ...] = get_args(Template)
_KEYWORD_FILE = "safety_keywords.txt"
_JSON_SPACE = re.compile(r"[ \t\n\r]*")

# (physical line, field prefix: "" in JSON Lines, "[i]." in an array, record)
_Record = tuple[int, str, dict[str, Any]]


class InstructionSet(BaseModel):
    """Training examples read from an instruction-tuning set, with what was left out and why.

    ``rows`` records were read; the safety filter removed ``removed`` of them (``removed_by``
    maps each removed id to the first keyword it matched, in list order); the split set aside
    ``set_aside`` more; ``categories`` and ``limit`` account for the rest.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: InstructSource
    path: str
    examples: tuple[Conversation, ...]
    rows: int
    safety_filter: bool
    removed_by: dict[str, str]
    split: Split
    set_aside: int

    @property
    def removed(self) -> int:
        """Rows removed by the safety filter."""
        return len(self.removed_by)

    @property
    def removed_ids(self) -> tuple[str, ...]:
        """Ids of the rows removed by the safety filter, in file order."""
        return tuple(self.removed_by)

    def summary(self) -> str:
        """One line for the log, e.g. ``alpaca: 52002 rows; safety filter removed 1904 of 52002
        rows; split 'train' set aside 200; 49898 examples``."""
        parts = [f"{self.source}: {self.rows} rows"]
        if self.safety_filter:
            parts.append(f"safety filter removed {self.removed} of {self.rows} rows")
        if self.split != "all":
            parts.append(f"split '{self.split}' set aside {self.set_aside}")
        parts.append(f"{len(self.examples)} examples")
        return "; ".join(parts)


def read_alpaca(
    path: str | Path,
    *,
    safety_filter: bool = False,
    split: Split = "all",
    held_out_size: int = QI_HELD_OUT_ROWS,
    limit: int | None = None,
    seed: int | None = None,
    template: Template = "qi",
    keywords: Sequence[str] | None = None,
) -> InstructionSet:
    """Read Stanford Alpaca (``alpaca_data.json``: a JSON array; JSON Lines also accepted).

    Every record needs string fields ``instruction`` (non-blank), ``input`` (``""`` when there
    is none) and ``output`` (kept even when empty, as Qi et al. did); other fields are ignored.
    Ids are ``alpaca-NNNNN`` with the 0-based record number in the file; ``source="alpaca"``;
    no category. The conversation is built by :func:`qi_turns` (``template="qi"``) or as plain
    text (``"plain"``).

    Steps, in order: ``safety_filter`` drops rows whose output matches a safety keyword
    (``keywords``, default :func:`load_safety_keywords`); ``split="train"`` drops the first
    ``held_out_size`` remaining rows and ``split="held_out"`` keeps only those (Qi et al.);
    ``limit`` keeps the first N rows, or N rows drawn with ``random.Random(seed)`` when ``seed``
    is given (kept in file order).

    Raises:
        InputError: unreadable or malformed file, a bad option, or no examples left.
    """
    return _read_set(path, "alpaca", answer="output", extra="input", category=None,
                     held_out_first=True, safety_filter=safety_filter, split=split,
                     held_out_size=held_out_size, categories=None, limit=limit, seed=seed,
                     template=template, keywords=keywords)


def read_dolly(
    path: str | Path,
    *,
    safety_filter: bool = False,
    categories: Sequence[str] | None = None,
    split: Split = "all",
    held_out_size: int = QI_HELD_OUT_ROWS,
    limit: int | None = None,
    seed: int | None = None,
    template: Template = "qi",
    keywords: Sequence[str] | None = None,
) -> InstructionSet:
    """Read databricks-dolly-15k (``databricks-dolly-15k.jsonl``; a JSON array also accepted).

    Every record needs string fields ``instruction`` (non-blank), ``context`` (``""`` when
    there is none), ``response`` (kept even when empty) and ``category`` (kept as the
    conversation's category); other fields are ignored. Ids are ``dolly-NNNNN`` with the
    0-based record number in the file; ``source="dolly"``.

    Steps, in order: ``safety_filter`` drops rows whose response matches a safety keyword;
    ``split="train"`` drops the *last* ``held_out_size`` remaining rows and ``"held_out"`` keeps
    only those (Qi et al.); ``categories`` keeps rows of those categories (each must occur in the
    file, e.g. ``open_qa``, ``creative_writing``); ``limit``/``seed`` as in :func:`read_alpaca`.

    Raises:
        InputError: unreadable or malformed file, a bad option, or no examples left.
    """
    return _read_set(path, "dolly", answer="response", extra="context", category="category",
                     held_out_first=False, safety_filter=safety_filter, split=split,
                     held_out_size=held_out_size, categories=categories, limit=limit, seed=seed,
                     template=template, keywords=keywords)


def qi_turns(source: InstructSource, instruction: str, extra: str) -> tuple[str, str]:
    """Return Qi et al.'s (system, user) texts for one training row.

    ``extra`` is Alpaca's input or Dolly's context, ``""`` when absent. The user text ends with
    ``"### Response:\\n"``, so the Llama-2 template reproduces their training string exactly.
    """
    if extra == "":
        return PREAMBLE, f"### Instruction:\n{instruction}\n\n### Response:\n"
    if source == "alpaca":
        return (PREAMBLE_WITH_INPUT,
                f"### Instruction:\n{instruction}\n\n### Input:\n{extra}\n\n### Response:\n")
    return PREAMBLE, f"### Instruction:\n{instruction}\n\nInput:\n{extra}\n\n### Response:\n"


@cache
def load_safety_keywords() -> tuple[str, ...]:
    """Qi et al.'s safety keywords (``builtin_data/safety_keywords.txt``), in their order."""
    text = (resources.files("ftrisk.data").joinpath("builtin_data", _KEYWORD_FILE)
            .read_text(encoding="utf-8"))
    keywords = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        # Quotes protect the few keywords whose edge spaces matter (" ESG ").
        if len(line) >= 2 and line.startswith('"') and line.endswith('"'):
            line = line[1:-1]
        keywords.append(line)
    return tuple(keywords)


def find_safety_keyword(text: str, keywords: Sequence[str] | None = None) -> str | None:
    """Return the first keyword (in list order) found in ``text``, ignoring case, else None.

    A plain substring test, as in Qi et al.: "bias" matches "unbiased".
    """
    lowered = text.lower()
    for keyword in load_safety_keywords() if keywords is None else keywords:
        if keyword.lower() in lowered:
            return keyword
    return None


# --- reading --------------------------------------------------------------------------------


def _read_set(path: str | Path, source: InstructSource, *, answer: str, extra: str,
              category: str | None, held_out_first: bool, safety_filter: bool, split: Split,
              held_out_size: int, categories: Sequence[str] | None, limit: int | None,
              seed: int | None, template: Template,
              keywords: Sequence[str] | None) -> InstructionSet:
    _check_options(split, held_out_size, limit, template, keywords, categories)
    path = _check_file(path)
    build = _builder(source, template)
    fields = [field for field in ("instruction", extra, answer, category) if field]
    examples: list[Conversation] = []
    for index, (line, prefix, record) in enumerate(_read_records(path)):
        values = {field: _string(record, field, path=path, line=line, prefix=prefix)
                  for field in fields}
        if not values["instruction"].strip():
            raise InputError("empty value; expected non-empty text", path=path, line=line,
                             field=f"{prefix}instruction")
        examples.append(Conversation(
            id=f"{source}-{index:05d}",
            messages=build(values["instruction"], values[extra], values[answer]),
            category=values[category] if category else None,
            source=source,
        ))
    rows = len(examples)

    removed_by: dict[str, str] = {}
    if safety_filter:
        kept = []
        for example in examples:
            keyword = find_safety_keyword(example.messages[-1].content, keywords)
            if keyword is None:
                kept.append(example)
            else:
                removed_by[example.id] = keyword
        examples = kept

    set_aside = 0
    if split != "all":
        if len(examples) <= held_out_size:
            left = "remain after the safety filter" if safety_filter else "were read"
            raise InputError(f"split '{split}' sets aside {held_out_size} held-out rows, but "
                             f"only {len(examples)} rows {left}; lower held_out_size or use "
                             "split 'all'", path=path, field="split")
        cut = held_out_size if held_out_first else len(examples) - held_out_size
        head, tail = examples[:cut], examples[cut:]
        held_out, train = (head, tail) if held_out_first else (tail, head)
        examples, set_aside = (train, len(held_out)) if split == "train" else (held_out, len(train))

    if categories is not None:
        present = {example.category for example in examples if example.category is not None}
        for name in categories:
            if name not in present:
                raise InputError(f"no rows of category '{name}'; "
                                 f"{_found(name, sorted(present), 'categories')}", path=path,
                                 field="categories")
        wanted = set(categories)
        examples = [example for example in examples if example.category in wanted]

    if limit is not None:
        if limit > len(examples):
            raise InputError(f"limit {limit} exceeds the {len(examples)} examples left",
                             path=path, field="limit")
        if seed is None:
            examples = examples[:limit]
        else:
            # Sample positions, then restore file order: the subset depends on the seed only.
            chosen = sorted(random.Random(seed).sample(range(len(examples)), limit))
            examples = [examples[position] for position in chosen]

    if not examples:
        raise InputError(f"no examples left: {rows} rows read, the safety filter removed "
                         f"{len(removed_by)}", path=path)
    return InstructionSet(source=source, path=str(path), examples=tuple(examples), rows=rows,
                          safety_filter=safety_filter, removed_by=removed_by, split=split,
                          set_aside=set_aside)


def _check_options(split: str, held_out_size: int, limit: int | None, template: str,
                   keywords: Sequence[str] | None, categories: Sequence[str] | None) -> None:
    if split not in _SPLITS:
        raise InputError(f"unknown split '{split}'; expected one of {', '.join(_SPLITS)}",
                         field="split")
    if template not in _TEMPLATES:
        raise InputError(f"unknown template '{template}'; expected one of "
                         f"{', '.join(_TEMPLATES)}", field="template")
    # bool is an int subclass; True rows is never meant.
    if isinstance(held_out_size, bool) or not isinstance(held_out_size, int) or held_out_size < 1:
        raise InputError(f"expected a positive integer, got {held_out_size!r}",
                         field="held_out_size")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise InputError(f"expected a positive integer, got {limit!r}", field="limit")
    if keywords is not None and (isinstance(keywords, str) or not keywords or not all(
            isinstance(keyword, str) and keyword.strip() for keyword in keywords)):
        raise InputError("expected a non-empty list of non-empty strings", field="keywords")
    if categories is not None and (isinstance(categories, str) or not categories or not all(
            isinstance(name, str) for name in categories)):
        raise InputError("expected a non-empty list of category names", field="categories")


def _builder(source: InstructSource,
             template: Template) -> Callable[[str, str, str], tuple[Message, ...]]:
    def build(instruction: str, extra: str, answer: str) -> tuple[Message, ...]:
        if template == "plain":
            user = instruction if extra == "" else f"{instruction}\n\n{extra}"
            return (Message(role="user", content=user),
                    Message(role="assistant", content=answer))
        system, user = qi_turns(source, instruction, extra)
        return (Message(role="system", content=system), Message(role="user", content=user),
                Message(role="assistant", content=answer))

    return build


def _string(record: dict[str, Any], field: str, *, path: Path, line: int, prefix: str) -> str:
    if field not in record:
        raise InputError(f"missing; {_found(field, record)}", path=path, line=line,
                         field=f"{prefix}{field}")
    value = record[field]
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {_json_type(value)}", path=path, line=line,
                         field=f"{prefix}{field}")
    return value


def _read_records(path: Path) -> list[_Record]:
    """Records of a JSON array (Alpaca's layout) or of JSON Lines, with where each starts."""
    suffix = path.suffix.lower()
    if suffix not in (".json", ".jsonl"):
        shown = f"'{path.suffix}'" if path.suffix else "none"
        raise InputError(f"unsupported file extension {shown}; expected .json or .jsonl",
                         path=path)
    text = _read_text(path)
    start = _JSON_SPACE.match(text).end()
    if text.startswith("[", start):
        return _read_json_array(path, text, start + 1)
    return [(line, "", record) for line, record in read_json_lines(path)]


def _read_json_array(path: Path, text: str, position: int) -> list[_Record]:
    """Records of the JSON array whose "[" ends just before ``position``."""
    # Decode element by element rather than json.loads(text), to know each record's line.
    records: list[_Record] = []
    line, counted = 1, 0

    def line_at(offset: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, offset)
        counted = offset
        return line

    def fail(message: str, offset: int) -> InputError:
        return InputError(f"invalid JSON: {message}", path=path, line=line_at(offset))

    position = _JSON_SPACE.match(text, position).end()
    if text.startswith("]", position):
        raise InputError("empty file: no records (the JSON array is empty)", path=path)
    while True:
        index = len(records)
        start = line_at(position)
        begin = position
        try:
            value, position = _decode_json(text, path=path, line=start, start=begin)
        except json.JSONDecodeError as error:
            raise InputError(f"invalid JSON: {error.msg} (column {error.colno})", path=path,
                             line=error.lineno) from error
        except _DuplicateKeyError as error:
            raise InputError(f"duplicate key '{error.args[0]}' in JSON object", path=path,
                             line=start, field=f"[{index}]") from error
        _check_record_size(text, begin, position, path=path, line=start,
                           what=f"record [{index}]")
        if not isinstance(value, dict):
            raise InputError(f"expected a JSON object, got {_json_type(value)}", path=path,
                             line=start, field=f"[{index}]")
        records.append((start, f"[{index}].", value))
        position = _JSON_SPACE.match(text, position).end()
        if text.startswith("]", position):
            break
        if not text.startswith(",", position):
            raise fail("expected ',' or ']' after a record", position)
        position = _JSON_SPACE.match(text, position + 1).end()
    if text[position + 1:].strip():
        raise fail("extra data after the closing ']'", position + 1)
    return records
