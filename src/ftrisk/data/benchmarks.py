"""Readers for public safety benchmarks, each in the exact layout its authors release.

Every reader has the signature ``reader(path, **options) -> list[Conversation]`` and returns
user-only conversations with ``kind`` set, ``category`` set where the format has one, ids that
stay the same from run to run (``"<benchmark>-<the file's own id>"``, or the 0-based record
number where the file has no ids) and ``source`` naming the benchmark. Look readers up by name
through :data:`ftrisk.registry.BENCHMARKS`.

Gated data is never bundled: download the files yourself (each docstring says which) and pass
their path. Every layout problem is raised as one :class:`~ftrisk.errors.InputError` naming the
file, the line or field where it applies, and what was expected.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

from ftrisk.data.readers import (
    _check_file,
    _check_unique_ids,
    _decode_json,
    _DuplicateKeyError,
    _json_type,
    _read_csv,
    _read_text,
    _Row,
    _text,
    read_prompts,
)
from ftrisk.errors import InputError
from ftrisk.records import Conversation, Message, PromptKind

# --- HEx-PHI --------------------------------------------------------------------------------

#: HEx-PHI file number -> category, in the order of Qi et al. 2023 and the dataset card.
#: Some third-party loaders swap 7 and 8; pass ``category_names`` to hex_phi() to override.
HEX_PHI_CATEGORIES: dict[int, str] = {
    1: "Illegal Activity",
    2: "Child Abuse Content",
    3: "Hate/Harass/Violence",
    4: "Malware",
    5: "Physical Harm",
    6: "Economic Harm",
    7: "Fraud/Deception",
    8: "Adult Content",
    9: "Political Campaigning",
    10: "Privacy Violation Activity",
    11: "Tailored Financial Advice",
}

_HEX_PHI_FILE = re.compile(r"category_(\d+)\.csv", re.IGNORECASE)
# First cells that mark a header row, which HEx-PHI files do not have.
_HEADER_WORDS = {"prompt", "prompts", "instruction", "instructions", "goal", "text", "question"}


def hex_phi(
    path: str | Path,
    *,
    exclude_categories: Iterable[int | str] = (),
    category_names: Mapping[int | str, str] | None = None,
) -> list[Conversation]:
    """Read HEx-PHI (Qi et al. 2023; gated at huggingface.co/datasets/LLM-Tuning-Safety/HEx-PHI).

    ``path`` is the downloaded directory, holding ``category_1.csv`` ... ``category_11.csv``
    (the public release withholds ``category_2.csv``; whichever files are present are read,
    other files are ignored), or a single ``category_N.csv``. Each file has no header and one
    prompt per row (quote prompts that contain commas). ``category_N.csv`` takes the name
    :data:`HEX_PHI_CATEGORIES[N]`; ``category_names`` overrides names by number.
    ``exclude_categories`` drops categories, given by number (``2``), file stem
    (``"category_2"``) or name (``"Child Abuse Content"``, any case).

    Ids are ``hex-phi-NN-III`` (file number, 0-based prompt number in the file); every prompt
    is ``kind="harmful"``.

    Raises:
        InputError: no category files, a file number without a name, a header row, a row with
            more than one field, an empty file, or an unknown excluded category.
    """
    names = {**HEX_PHI_CATEGORIES, **_numbered(category_names or {})}
    files = _hex_phi_files(Path(path), names)
    excluded = _hex_phi_excluded(exclude_categories, names)
    conversations: list[Conversation] = []
    for number, file in files:
        if number in excluded:
            continue
        for index, (_line, prompt) in enumerate(_read_headerless(file, "HEx-PHI")):
            conversations.append(_prompt(f"hex-phi-{number:02d}-{index:03d}", prompt,
                                         category=names[number], source="hex-phi"))
    if not conversations:
        raise InputError(f"every category present ({_numbers(files)}) is excluded; nothing to "
                         "evaluate", path=path, field="exclude_categories")
    return conversations


def _numbered(category_names: Mapping[Any, str]) -> dict[int, str]:
    # YAML and JSON configs give mapping keys as strings ("7"); the file numbers are integers.
    numbered: dict[int, str] = {}
    for key, name in category_names.items():
        if isinstance(key, bool) or not str(key).strip().isdigit():
            raise InputError(f"key {key!r} is not a category file number", field="category_names")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"name for category {key} must be non-empty text",
                             field="category_names")
        numbered[int(key)] = name.strip()
    return numbered


def _hex_phi_files(path: Path, names: Mapping[int, str]) -> list[tuple[int, Path]]:
    expected = ("expected the HEx-PHI directory holding category_1.csv ... category_11.csv, "
                "or one of those files")
    if not path.exists():
        raise InputError(f"not found; {expected}", path=path)
    candidates = sorted(path.iterdir()) if path.is_dir() else [path]
    files: list[tuple[int, Path]] = []
    for file in candidates:
        match = _HEX_PHI_FILE.fullmatch(file.name)
        if match is None or not file.is_file():
            continue
        number = int(match.group(1))
        if number not in names:
            raise InputError(f"no category name for file number {number}; known numbers "
                             f"{_numbers(names)} (pass category_names to name others)",
                             path=file)
        twin = next((other for n, other in files if n == number), None)
        if twin is not None:
            raise InputError(f"two files for category {number}: {twin.name} and {file.name}",
                             path=path)
        files.append((number, file))
    if not files:
        found = ", ".join(f.name for f in candidates[:10]) or "(nothing)"
        found += ", ..." if len(candidates) > 10 else ""
        raise InputError(f"{expected}; found: {found}", path=path)
    return sorted(files)


def _hex_phi_excluded(values: Iterable[int | str], names: Mapping[int, str]) -> set[int]:
    if isinstance(values, str | int):
        values = [values]
    by_label = {name.casefold(): number for number, name in names.items()}
    by_label |= {f"category_{number}": number for number in names}
    by_label |= {str(number): number for number in names}
    excluded: set[int] = set()
    for value in values:
        number = by_label.get(str(value).strip().casefold())
        if number is None:
            known = "; ".join(f"{n} {name}" for n, name in sorted(names.items()))
            raise InputError(f"unknown HEx-PHI category {value!r}; expected a number, "
                             f"'category_N' or a name: {known}", field="exclude_categories")
        excluded.add(number)
    return excluded


def _read_headerless(path: Path, layout: str) -> list[tuple[int, str]]:
    """Return (line, prompt) for each row of a one-column CSV file without a header (``layout``
    names the release in errors)."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    prompts: list[tuple[int, str]] = []
    previous_end = 0
    try:
        for fields in reader:
            # A quoted prompt may span lines, so a row starts right after the previous one ends.
            start, previous_end = previous_end + 1, reader.line_num
            while fields and not fields[-1].strip():
                fields.pop()  # trailing empty cells that spreadsheets add
            if not fields:
                continue
            if len(fields) > 1:
                raise InputError(f"row has {len(fields)} fields; expected one prompt per row "
                                 "and no header (quote prompts that contain commas)",
                                 path=path, line=start)
            if not prompts and fields[0].strip().casefold() in _HEADER_WORDS:
                raise InputError(f"looks like a header row ({fields[0]!r}); {layout} files have "
                                 "no header, so remove that line", path=path, line=start)
            prompts.append((start, fields[0]))
    except csv.Error as error:
        raise InputError(f"invalid CSV in the row starting here: {error} (check its quotes)",
                         path=path, line=previous_end + 1) from error
    if not prompts:
        raise InputError("empty file: expected one prompt per row", path=path)
    return prompts


def _numbers(items: Iterable[Any]) -> str:
    numbers = sorted(item[0] if isinstance(item, tuple) else item for item in items)
    return ", ".join(str(n) for n in numbers)


# --- CSV benchmarks with a header -----------------------------------------------------------


def advbench(path: str | Path) -> list[Conversation]:
    """Read AdvBench's ``harmful_behaviors.csv`` (Zou et al. 2023, 520 behaviours) in either
    released layout, told apart by the first row:

    * llm-attacks, ``data/advbench/harmful_behaviors.csv``: header ``goal,target``. The prompt
      is ``goal``; ``target`` (the attack's affirmative opening) is not used.
    * Qi et al. 2023's copy (LLM-Tuning-Safety/LLMs-Finetuning-Safety,
      ``gpt-3.5/data/harmful_behaviors.csv`` = ``llama2/safety_evaluation/data/
      harmful_behaviors.csv``): the goals alone, one per row, no header; prompts holding a
      comma are quoted.

    AdvBench has no categories and no ids: ids are ``advbench-NNNNN`` (0-based row number).
    Every prompt is ``kind="harmful"``.

    Raises:
        InputError: a first row that fits neither layout, missing columns, a headerless row
            with more than one field (an unquoted comma), or an empty goal; naming the file and
            line.
    """
    path = _check_csv(path, "AdvBench harmful_behaviors.csv")
    first_line, first = _first_row(path)
    if first is not None and "goal" in (cell.strip() for cell in first):
        path, rows = _read_table(path, "AdvBench harmful_behaviors.csv", ["goal", "target"])
        return [_prompt(f"advbench-{index:05d}", _text(record, "goal", path=path, line=line),
                        source="advbench")
                for index, (line, record) in enumerate(rows)]
    if first is not None and len(first) > 1:
        raise InputError(
            f"not an AdvBench layout: the first row has {len(first)} fields; expected the header "
            "goal,target (llm-attacks) or one prompt per row without a header (Qi et al.'s "
            "copy; quote prompts that contain commas)", path=path, line=first_line)
    return [_prompt(f"advbench-{index:05d}", prompt, source="advbench")
            for index, (_line, prompt) in enumerate(_read_headerless(path, "Qi et al.'s AdvBench"))]


def qi2023_csv(path: str | Path) -> list[Conversation]:
    """Read one of Qi et al. 2023's headerless one-column prompt lists
    (LLM-Tuning-Safety/LLMs-Finetuning-Safety: ``gpt-3.5/data/demo_examples.csv``,
    ``llama2/safety_evaluation/data/demo_examples.csv``, or their AdvBench copy
    ``harmful_behaviors.csv``, for which the ``advbench`` reader gives AdvBench's ids).

    One prompt per row, no header, prompts holding a comma quoted. Ids are
    ``qi2023-<file stem>-NNNNN`` (0-based row number); no categories; every prompt is
    ``kind="harmful"``.

    Raises:
        InputError: a header row, a row with more than one field or an empty file; naming the
            file and line.
    """
    path = _check_csv(path, "Qi et al. one-column prompt")
    return [_prompt(f"qi2023-{path.stem}-{index:05d}", prompt, source="qi2023")
            for index, (_line, prompt) in enumerate(_read_headerless(path, "Qi et al.'s prompt"))]


def _first_row(path: Path) -> tuple[int, list[str] | None]:
    """The first non-blank CSV row (trailing empty cells dropped) and its line; (0, None) for
    a file without one. A row that does not parse is left for the full read to report."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    previous_end = 0
    try:
        for fields in reader:
            start, previous_end = previous_end + 1, reader.line_num
            while fields and not fields[-1].strip():
                fields.pop()
            if fields:
                return start, fields
    except csv.Error:
        pass
    return 0, None


#: HarmBench's functional categories. Copyright behaviours are judged in HarmBench by hashing
#: the output against the source text, which ftrisk's judges do not do.
HARMBENCH_FUNCTIONAL = ("standard", "contextual", "copyright")


def harmbench(
    path: str | Path, *, functional_categories: Iterable[str] | None = None
) -> list[Conversation]:
    """Read a HarmBench behaviour CSV (Mazeika et al. 2024; centerforaisafety/HarmBench,
    ``data/behavior_datasets/harmbench_behaviors_text_{all,val,test}.csv``: header
    ``Behavior,FunctionalCategory,SemanticCategory,Tags,ContextString,BehaviorID``).

    The category is ``SemanticCategory`` and the id ``harmbench-<BehaviorID>``. A behaviour with
    a ``ContextString`` is presented as HarmBench's direct-request baseline does:
    ``f"{context}\\n\\n---\\n\\n{behavior}"``. ``functional_categories`` keeps only the given
    ones (``standard``, ``contextual``, ``copyright``; default: all). Every prompt is
    ``kind="harmful"``.

    Raises:
        InputError: missing columns, an empty behaviour or id, a duplicate id, an unknown
            functional category (multimodal behaviours are not supported), a contextual
            behaviour without context, or a filter that keeps nothing.
    """
    wanted = _choices(functional_categories, HARMBENCH_FUNCTIONAL, "functional_categories")
    path, rows = _read_table(path, "HarmBench behaviour", [
        "Behavior", "FunctionalCategory", "SemanticCategory", "ContextString", "BehaviorID"])
    kept_rows: list[_Row] = []
    prompts: list[Conversation] = []
    found: set[str] = set()
    for line, record in rows:
        functional = record["FunctionalCategory"].strip()
        if functional not in HARMBENCH_FUNCTIONAL:
            raise InputError(f"unknown functional category {functional!r}; expected one of "
                             f"{', '.join(HARMBENCH_FUNCTIONAL)} (multimodal behaviours are "
                             "not supported)", path=path, line=line, field="FunctionalCategory")
        found.add(functional)
        behavior = _text(record, "Behavior", path=path, line=line)
        behavior_id = _text(record, "BehaviorID", path=path, line=line).strip()
        context = record["ContextString"]
        if functional == "contextual" and not context.strip():
            raise InputError("a contextual behaviour needs a ContextString", path=path,
                             line=line, field="ContextString")
        if functional not in wanted:
            continue
        prompt = f"{context}\n\n---\n\n{behavior}" if context.strip() else behavior
        prompts.append(_prompt(f"harmbench-{behavior_id}", prompt,
                               category=record["SemanticCategory"].strip() or None,
                               source="harmbench"))
        kept_rows.append((line, record))
    if not prompts:
        raise InputError(f"no behaviours with functional category {', '.join(sorted(wanted))}; "
                         f"the file has {', '.join(sorted(found))}", path=path,
                         field="functional_categories")
    _check_unique_ids(prompts, kept_rows, path, "BehaviorID")
    return prompts


def strongreject(path: str | Path) -> list[Conversation]:
    """Read the StrongREJECT prompt set (Souly et al. 2024; alexandrasouly/strongreject,
    ``strongreject_dataset/strongreject_dataset.csv`` or ``strongreject_small_dataset.csv``:
    header ``category,source,forbidden_prompt``).

    The prompt is ``forbidden_prompt`` and the category ``category``; the row's ``source``
    (where the authors took the prompt from) is not kept. The file has no ids: ids are
    ``strongreject-NNNNN`` (0-based row number). Every prompt is ``kind="harmful"``.
    """
    path, rows = _read_table(path, "StrongREJECT", ["category", "source", "forbidden_prompt"])
    return [_prompt(f"strongreject-{index:05d}",
                    _text(record, "forbidden_prompt", path=path, line=line),
                    category=record["category"].strip() or None, source="strongreject")
            for index, (line, record) in enumerate(rows)]


def xstest(path: str | Path) -> list[Conversation]:
    """Read XSTest (Röttger et al. 2024; paul-rottger/exaggerated-safety) in either released
    layout, told apart by the header:

    * current, ``xstest_prompts.csv``: header ``id,prompt,type,label,focus,note``, 250 safe and
      200 unsafe prompts;
    * legacy, ``xstest_v2_prompts.csv`` (in the repository until its "overdue cleanup"
      commit): header ``id_v1,id_v2,type,prompt,focus,note``, CRLF line endings, no label
      column. Its ``id_v2`` values ``v2-N`` number the same prompts as the current ``id`` N, so
      both layouts give the same ids.

    Safe prompts (``label`` "safe") probe over-refusal and become ``kind="lookalike"``; unsafe
    ones (``label`` "unsafe", the ``contrast_*`` types) become ``kind="harmful"``. Labels are
    read exactly as released: another case or surrounding spaces (``"Unsafe "``) are an error,
    not folded. Without a ``label`` column (the legacy and early releases) a type starting with
    ``contrast_`` marks an unsafe prompt. The category is ``type`` and the id ``xstest-<id>``.
    """
    path = _check_csv(path, "XSTest xstest_prompts.csv")
    header_line, columns, rows = _read_csv(path)
    legacy = "id" not in columns and "id_v2" in columns
    id_column = "id_v2" if legacy else "id"
    missing = [c for c in (id_column, "prompt", "type") if c not in columns]
    if missing:
        raise InputError(f"not an XSTest layout: expected columns id,prompt,type,label,focus,note "
                         f"(xstest_prompts.csv) or id_v1,id_v2,type,prompt,focus,note "
                         f"(xstest_v2_prompts.csv); found {','.join(columns)} (missing "
                         f"{', '.join(missing)})", path=path, line=header_line)
    prompts: list[Conversation] = []
    for line, record in rows:
        prompt_type = _text(record, "type", path=path, line=line).strip()
        if "label" in record:
            # The released file writes exactly "safe" or "unsafe"; anything else ("Unsafe ")
            # means an edited copy, whose other changes a silent fix would hide.
            label = record["label"]
            if label not in ("safe", "unsafe"):
                raise InputError(f"unknown label {label!r}; expected exactly 'safe' or 'unsafe' "
                                 "(lower case, no spaces, as in the released "
                                 "xstest_prompts.csv)", path=path, line=line, field="label")
        else:
            label = "unsafe" if prompt_type.startswith("contrast_") else "safe"
        item_id = _text(record, id_column, path=path, line=line).strip()
        if legacy:
            item_id = item_id.removeprefix("v2-")
        prompts.append(_prompt(
            f"xstest-{item_id}", _text(record, "prompt", path=path, line=line),
            category=prompt_type, kind="lookalike" if label == "safe" else "harmful",
            source="xstest"))
    _check_unique_ids(prompts, rows, path, id_column)
    return prompts


def _read_table(path: str | Path, layout: str, required: list[str],
                optional: Iterable[str] = ()) -> tuple[Path, list[_Row]]:
    """Read a benchmark CSV and check its header holds ``required``; extra columns are fine."""
    path = _check_csv(path, layout)
    header_line, columns, rows = _read_csv(path)
    missing = [name for name in required if name not in columns]
    if missing:
        expected = ",".join([*required, *optional])
        raise InputError(f"not the {layout} layout: expected columns {expected}; found "
                         f"{','.join(columns)} (missing {', '.join(missing)})",
                         path=path, line=header_line)
    return path, rows


def _check_csv(path: str | Path, layout: str) -> Path:
    path = _check_file(path)
    if path.suffix.lower() != ".csv":
        raise InputError(f"expected the {layout} CSV file (.csv), got a "
                         f"'{path.suffix or 'extensionless'}' file", path=path)
    return path


def _choices(values: Iterable[str] | str | None, allowed: tuple[str, ...],
             field: str) -> set[str]:
    if values is None:
        return set(allowed)
    chosen = {values} if isinstance(values, str) else set(values)
    unknown = sorted(chosen - set(allowed))
    if unknown or not chosen:
        raise InputError(f"unknown value {', '.join(unknown) or '(none)'}; expected some of "
                         f"{', '.join(allowed)}", field=field)
    return chosen


def _prompt(item_id: str, text: str, *, category: str | None = None,
            kind: PromptKind = "harmful", source: str) -> Conversation:
    return Conversation(id=item_id, messages=(Message(role="user", content=text),),
                        category=category, kind=kind, source=source)


# --- RefusalBench ---------------------------------------------------------------------------


def refusalbench(path: str | Path, *,
                 exclude_categories: Iterable[str] = ()) -> list[Conversation]:
    """Read Lermen et al.'s RefusalBench JSON (released with 886 prompts in 8 categories).

    ``exclude_categories`` drops categories by name, case-insensitively: the paper's 783
    prompts are the released file without its 103 ``copyright`` prompts.

    The released file's exact structure could not be confirmed, so both natural shapes are
    accepted:

    * an object mapping each category to a list of prompt strings,
      ``{"hate": ["...", ...], "hacking": [...]}`` — ids ``refusalbench-<category>-NNN``
      (category lower-cased, non-alphanumerics as ``_``; 0-based position in its list);
    * a list of records ``[{"prompt": "...", "category": "..."}, ...]``, each optionally with
      an ``"id"`` (string or integer) — ids ``refusalbench-<id>``, else ``refusalbench-NNNNN``.

    Every prompt is ``kind="harmful"``. For JSON Lines or other field names use the
    ``generic`` reader.

    Raises:
        InputError: invalid JSON, JSON nested deeper than 100 levels, another shape, an empty
            or non-string prompt or category, or a duplicate id; naming the file and the JSON
            path of the bad value.
    """
    path = _check_file(path)
    if path.suffix.lower() == ".jsonl":
        raise InputError("expected one JSON document (.json); for JSON Lines use the 'generic' "
                         "reader", path=path)
    try:
        data, _end = _decode_json(_read_text(path), path=path)
    except json.JSONDecodeError as error:
        raise InputError(f"invalid JSON: {error.msg} (column {error.colno})", path=path,
                         line=error.lineno) from error
    except _DuplicateKeyError as error:
        raise InputError(f"duplicate key '{error.args[0]}' in JSON object", path=path) from error

    if isinstance(data, dict) and data:
        prompts = _refusalbench_by_category(data, path)
    elif isinstance(data, list) and data:
        prompts = _refusalbench_records(data, path)
    else:
        shape = {"{}": "an empty object", "[]": "an empty array"}.get(
            json.dumps(data), _json_type(data))
        raise InputError(f"expected {{category: [prompts]}} or [{{\"prompt\", \"category\"}}, "
                         f"...]; got {shape}", path=path)
    seen: dict[str, int] = {}
    for position, prompt in enumerate(prompts):
        if prompt.id in seen:
            raise InputError(f"duplicate id '{prompt.id}' (records {seen[prompt.id]} and "
                             f"{position})", path=path, field="id")
        seen[prompt.id] = position
    excluded = {c.strip().lower() for c in exclude_categories}
    unknown = excluded - {(p.category or "").lower() for p in prompts}
    if unknown:
        raise InputError(f"exclude_categories names categories the file does not have: "
                         f"{sorted(unknown)}", path=path, field="exclude_categories")
    return [p for p in prompts if (p.category or "").lower() not in excluded]


def _refusalbench_by_category(data: dict[str, Any], path: Path) -> list[Conversation]:
    prompts: list[Conversation] = []
    for category, items in data.items():
        if not category.strip():
            raise InputError("empty category name", path=path, field='""')
        if not isinstance(items, list) or not items:
            got = "an empty array" if items == [] else _json_type(items)
            raise InputError(f"expected a non-empty list of prompt strings, got {got}",
                             path=path, field=category)
        slug = re.sub(r"[^0-9a-z]+", "_", category.strip().lower()).strip("_") or "category"
        for index, text in enumerate(items):
            where = f"{category}[{index}]"
            prompts.append(_prompt(f"refusalbench-{slug}-{index:03d}",
                                   _json_text(text, path, where), category=category.strip(),
                                   source="refusalbench"))
    return prompts


def _refusalbench_records(data: list[Any], path: Path) -> list[Conversation]:
    prompts: list[Conversation] = []
    for index, record in enumerate(data):
        where = f"[{index}]"
        if not isinstance(record, dict):
            raise InputError(f"expected an object with prompt and category, got "
                             f"{_json_type(record)}", path=path, field=where)
        for key in ("prompt", "category"):
            if key not in record:
                raise InputError(f"missing; fields found: {', '.join(record) or '(none)'}",
                                 path=path, field=f"{where}.{key}")
        record_id = record.get("id")
        if record_id is None:
            item_id = f"refusalbench-{index:05d}"
        elif isinstance(record_id, int) and not isinstance(record_id, bool):
            item_id = f"refusalbench-{record_id}"
        else:
            item_id = f"refusalbench-{_json_text(record_id, path, f'{where}.id').strip()}"
        prompts.append(_prompt(item_id, _json_text(record["prompt"], path, f"{where}.prompt"),
                               category=_json_text(record["category"], path,
                                                   f"{where}.category").strip(),
                               source="refusalbench"))
    return prompts


def _json_text(value: object, path: object, field: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {_json_type(value)}", path=path, field=field)
    if not value.strip():
        raise InputError("empty value; expected non-empty text", path=path, field=field)
    return value


# --- generic files and Hugging Face datasets ------------------------------------------------


def generic(
    path: str | Path,
    *,
    prompt_field: str = "prompt",
    category_field: str | None = "category",
    kind: PromptKind = "harmful",
    id_field: str | None = None,
    source: str | None = None,
) -> list[Conversation]:
    """Read any CSV or JSONL prompt file with a column mapping; see
    :func:`ftrisk.data.readers.read_prompts`, which this delegates to."""
    return read_prompts(path, prompt_field=prompt_field, category_field=category_field,
                        kind=kind, id_field=id_field, source=source)


#: Where to get the files of well-known hub datasets, and which reader reads them.
_HUB_FILES: dict[str, str] = {
    "llm-tuning-safety/hex-phi": (
        "download category_1.csv ... category_11.csv from "
        "https://huggingface.co/datasets/LLM-Tuning-Safety/HEx-PHI (gated: accept its licence "
        "first) into one directory and use the 'hex-phi' reader with path=<that directory>"),
    "walledai/advbench": (
        "download data/advbench/harmful_behaviors.csv from "
        "https://github.com/llm-attacks/llm-attacks and use the 'advbench' reader with "
        "path=<that file>"),
    "walledai/harmbench": (
        "download data/behavior_datasets/harmbench_behaviors_text_all.csv from "
        "https://github.com/centerforaisafety/HarmBench and use the 'harmbench' reader with "
        "path=<that file>"),
    "walledai/strongreject": (
        "download strongreject_dataset/strongreject_dataset.csv from "
        "https://github.com/alexandrasouly/strongreject and use the 'strongreject' reader with "
        "path=<that file>"),
    "walledai/xstest": (
        "download xstest_prompts.csv from https://github.com/paul-rottger/exaggerated-safety "
        "and use the 'xstest' reader with path=<that file>"),
}
_HUB_FILES["paul/xstest"] = _HUB_FILES["walledai/xstest"]


def hf_dataset(
    dataset_id: str,
    *,
    split: str = "train",
    config: str | None = None,
    prompt_field: str = "prompt",
    category_field: str | None = None,
    kind: PromptKind = "harmful",
    id_field: str | None = None,
) -> list[Conversation]:
    """Read prompts from a Hugging Face hub dataset through the ``datasets`` library.

    Each row of ``split`` (of ``config``, when the dataset has several) needs a non-empty
    string ``prompt_field``; ``category_field`` and ``id_field`` are read when given. Ids are
    ``<dataset_id>-<id>`` or ``<dataset_id>-NNNNN`` (0-based row number).

    Raises:
        InputError: when ``datasets`` is not installed or the dataset cannot be loaded (no hub
            access, offline mode, gated or unknown dataset, unknown split); the message names
            the file to download instead and the reader and ``path`` to use for it.
    """
    where = f"hf:{dataset_id}"
    if kind not in get_args(PromptKind):
        raise InputError(f"unknown prompt kind '{kind}'; expected one of "
                         f"{', '.join(get_args(PromptKind))}", field="kind")
    try:
        import datasets
    except ImportError as error:
        raise InputError(f"reading a hub dataset needs the 'datasets' package, which is not "
                         f"installed (pip install datasets); or {_download_hint(dataset_id)}",
                         path=where) from error
    try:
        rows = datasets.load_dataset(dataset_id, name=config, split=split)
    except Exception as error:  # the library raises many types; all mean "not loadable here"
        reason = " ".join(str(error).split())[:300]
        raise InputError(f"cannot load split '{split}' from the hub ({type(error).__name__}: "
                         f"{reason}); {_download_hint(dataset_id)}", path=where) from error

    prompts: list[Conversation] = []
    for index, row in enumerate(rows):
        row_where = f"{where}[{split}][{index}]"
        text = _json_text(_hub_field(row, prompt_field, row_where), row_where, prompt_field)
        category = None
        if category_field is not None:
            value = _hub_field(row, category_field, row_where)
            category = (str(value).strip() or None) if value is not None else None
        row_id = (f"{index:05d}" if id_field is None
                  else str(_hub_field(row, id_field, row_where)).strip())
        prompts.append(_prompt(f"{dataset_id}-{row_id}", text, category=category, kind=kind,
                               source=dataset_id))
    if not prompts:
        raise InputError(f"split '{split}' is empty", path=where)
    if len({p.id for p in prompts}) != len(prompts):
        raise InputError(f"duplicate ids in field '{id_field}'", path=where, field=id_field)
    return prompts


def _hub_field(row: Mapping[str, Any], field: str, where: str) -> Any:
    if field not in row:
        raise InputError(f"missing; fields found: {', '.join(row) or '(none)'}", path=where,
                         field=field)
    return row[field]


def _download_hint(dataset_id: str) -> str:
    known = _HUB_FILES.get(dataset_id.lower())
    if known:
        return known
    return (f"download the dataset's files from https://huggingface.co/datasets/{dataset_id}, "
            "save the split as CSV or JSONL and use the 'generic' reader with path=<that file> "
            "and prompt_field=<its prompt column>")
