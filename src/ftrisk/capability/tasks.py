"""Multiple-choice capability tasks: public benchmark layouts read into :class:`MCItem` records.

Every reader has the signature ``reader(path, **options) -> list[MCItem]`` (the built-in task
takes a name instead of a path) and is registered in ``ftrisk.registry.CAPABILITY_READERS``.
Prompts follow
lm-evaluation-harness's zero-shot formats, so that accuracies are comparable with published
ones (Lermen et al. 2023 report MMLU and HellaSwag that way).

An item is scored as ``context + choice`` for each choice: a choice is the continuation exactly
as the model sees it, so it carries its leading separator (lm-eval's target delimiter, a space:
``" A"``, ``" Paris"``).

Every problem with a file is raised as one :class:`~ftrisk.errors.InputError` naming the file,
the 1-based line (for CSV, the line where the row starts) or the field, and what was expected.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from ftrisk.data.readers import _check_file, _found, _json_type, _read_text, _Row, read_json_lines
from ftrisk.errors import InputError
from ftrisk.yamlio import load_yaml

#: Put between a context and each answer text, as lm-eval's default ``target_delimiter``.
CHOICE_SEPARATOR = " "


class MCItem(BaseModel):
    """One multiple-choice question: the model scores ``context + choices[i]`` for every ``i``;
    ``answer`` is the index of the right choice."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    task: str
    context: str
    choices: tuple[str, ...]
    answer: int
    category: str | None = None

    @model_validator(mode="after")
    def _check(self) -> MCItem:
        # The scorer needs a context token before the first choice token, and a non-empty
        # answer text to normalise by its length.
        if not self.context.strip():
            raise ValueError("context is empty")
        if len(self.choices) < 2:
            raise ValueError(f"needs at least two choices, got {len(self.choices)}")
        if any(not choice.strip() for choice in self.choices):
            raise ValueError("a choice is empty")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"answer {self.answer} is not a choice index "
                             f"(0-{len(self.choices) - 1})")
        return self


# --- MMLU -----------------------------------------------------------------------------------

MMLU_LETTERS: tuple[str, ...] = ("A", "B", "C", "D")
_MMLU_FILE = re.compile(r"(?P<subject>.+)_(?:test|val|dev)\.csv")
_MMLU_TEST_FILE = re.compile(r"(?P<subject>.+)_test\.csv")
_MMLU_COLUMNS = ("question", *MMLU_LETTERS, "answer")


def mmlu(
    path: str | Path,
    *,
    subjects: Iterable[str] | str | None = None,
    limit_per_subject: int | None = None,
) -> list[MCItem]:
    """Read MMLU (Hendrycks et al. 2021) in its original CSV layout.

    ``path`` is the ``data/test/`` folder of the public tarball (``data.tar`` from
    people.eecs.berkeley.edu/~hendrycks), holding one ``<subject>_test.csv`` per subject (other
    files are ignored; the extracted ``data/`` folder itself is accepted too), or one
    ``<subject>_{test,val,dev}.csv`` file. Files have no header; each row is
    ``question,A,B,C,D,answer-letter``.

    Items are formatted as lm-eval's default zero-shot ``mmlu`` task does::

        The following are multiple choice questions (with answers) about <subject>.

        <question>
        A. <choice>
        B. <choice>
        C. <choice>
        D. <choice>
        Answer:

    with choices ``" A"`` ... ``" D"``. The task is ``"mmlu"``, the category the subject
    (``"high_school_biology"``) and ids ``mmlu-<subject>-NNNN`` (0-based row number).
    ``subjects`` keeps only the named subjects; ``limit_per_subject`` keeps the first rows of
    each.

    Raises:
        InputError: no subject files, a row without six fields, an answer that is not A-D, an
            empty question, an unknown subject, or a limit below 1.
    """
    files = _mmlu_files(Path(path))
    if subjects is not None:
        files = _select_subjects(files, subjects, path)
    limit = _limit(limit_per_subject, "limit_per_subject")
    items: list[MCItem] = []
    for subject, file in files.items():
        topic = subject.replace("_", " ")
        for index, (question, choices, answer) in enumerate(_mmlu_rows(file)[:limit]):
            options = "".join(f"\n{letter}. {text}" for letter, text in zip(MMLU_LETTERS, choices))
            context = (f"The following are multiple choice questions (with answers) about "
                       f"{topic}.\n\n{question.strip()}{options}\nAnswer:")
            items.append(MCItem(
                id=f"mmlu-{subject}-{index:04d}", task="mmlu", context=context,
                choices=tuple(CHOICE_SEPARATOR + letter for letter in MMLU_LETTERS),
                answer=answer, category=subject))
    return items


def _mmlu_files(path: Path) -> dict[str, Path]:
    expected = ("expected MMLU's data/test folder of <subject>_test.csv files, or one "
                "<subject>_test.csv file")
    if not path.exists():
        raise InputError(f"not found; {expected}", path=path)
    if path.is_file():
        match = _MMLU_FILE.fullmatch(path.name)
        if match is None:
            raise InputError(f"unexpected file name; {expected}", path=path)
        return {match.group("subject"): path}
    folder = path
    # The extracted tarball's data/ folder holds dev/, val/ and test/; evaluate on test/.
    if not any(_MMLU_TEST_FILE.fullmatch(f.name) for f in folder.iterdir()) and (
            path / "test").is_dir():
        folder = path / "test"
    files: dict[str, Path] = {}
    for file in sorted(folder.iterdir()):
        match = _MMLU_TEST_FILE.fullmatch(file.name)
        if match is not None and file.is_file():
            files[match.group("subject")] = file
    if not files:
        names = sorted(f.name for f in folder.iterdir())
        found = ", ".join(names[:10]) or "(nothing)"
        raise InputError(f"{expected}; found: {found}{', ...' if len(names) > 10 else ''}",
                         path=folder)
    return files


def _select_subjects(files: dict[str, Path], subjects: Iterable[str] | str,
                     path: str | Path) -> dict[str, Path]:
    wanted = [subjects] if isinstance(subjects, str) else list(subjects)
    if not wanted:
        raise InputError("empty list; name at least one subject, or leave it out for all",
                         field="subjects")
    for subject in wanted:
        if subject not in files:
            raise InputError(f"unknown subject {subject!r}; {_found(subject, files, 'subjects')}",
                             path=path, field="subjects")
    return {subject: files[subject] for subject in files if subject in wanted}


def _mmlu_rows(path: Path) -> list[tuple[str, tuple[str, ...], int]]:
    """(question, four choice texts, answer index) for each row of one MMLU file."""
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    rows: list[tuple[str, tuple[str, ...], int]] = []
    previous_end = 0
    try:
        for fields in reader:
            # Questions often span lines, so a row starts right after the previous one ends.
            start, previous_end = previous_end + 1, reader.line_num
            if all(not field.strip() for field in fields):
                continue
            if len(fields) != len(_MMLU_COLUMNS):
                raise InputError(f"row has {len(fields)} fields; expected 6: question, A, B, C, "
                                 "D, answer letter (quote text that contains commas)",
                                 path=path, line=start)
            question, *choices, letter = fields
            if letter.strip().upper() not in MMLU_LETTERS:
                header = " (MMLU files have no header row)" if not rows else ""
                raise InputError(f"expected an answer letter A-D, got {letter!r}{header}",
                                 path=path, line=start, field="answer")
            if not question.strip():
                raise InputError("empty question", path=path, line=start, field="question")
            rows.append((question, tuple(choices),
                         MMLU_LETTERS.index(letter.strip().upper())))
    except csv.Error as error:
        raise InputError(f"invalid CSV in the row starting here: {error} (check its quotes)",
                         path=path, line=previous_end + 1) from error
    if not rows:
        raise InputError("empty file: expected rows of question,A,B,C,D,answer", path=path)
    return rows


# --- HellaSwag ------------------------------------------------------------------------------


def hellaswag(path: str | Path, *, limit: int | None = None) -> list[MCItem]:
    """Read HellaSwag (Zellers et al. 2019) in its public JSONL layout.

    ``path`` is ``hellaswag_val.jsonl`` (rowanz/hellaswag, ``data/``; the test split has no
    labels) or any JSONL file of the same records: ``activity_label``, the context as
    ``ctx_a`` + ``ctx_b`` (or ``ctx``), ``endings`` (the choices) and ``label`` (index of the
    right ending, an integer or a digit string as on the Hugging Face hub).

    As lm-eval's ``hellaswag`` task, the context is ``"<activity_label>: <ctx_a> <Ctx_b>"``
    (``ctx_b`` capitalised) and WikiHow's bracketed artifacts are cleaned from context and
    endings; choices are ``" " + ending``. Ids are ``hellaswag-<ind>`` (the file's ``ind``, else
    the 0-based record number), the category is ``split_type`` (``indomain``/``zeroshot``) when
    present. ``limit`` keeps the first records.

    Raises:
        InputError: a missing or mistyped field, a label out of range, a duplicate id, or a
            limit below 1.
    """
    path = _check_file(path)
    limit = _limit(limit, "limit")
    items: list[MCItem] = []
    first_line: dict[str, int] = {}
    for index, (line, record) in enumerate(read_json_lines(path)[:limit]):
        if "ctx_a" in record:
            # lm-eval capitalises ctx_b with str.capitalize, which also lowercases the rest.
            ctx = (_string(record, "ctx_a", path, line) + " "
                   + _string(record, "ctx_b", path, line).capitalize())
        else:
            ctx = _string(record, "ctx", path, line)
        activity = _string(record, "activity_label", path, line)
        endings = _strings(record, "endings", path, line)
        choices = tuple(CHOICE_SEPARATOR + _clean_hellaswag(ending) for ending in endings)
        for position, choice in enumerate(choices):
            if not choice.strip():
                raise InputError("ending is empty after cleaning", path=path, line=line,
                                 field=f"endings[{position}]")
        if "label" not in record:
            raise InputError(f"missing (the public test split is unlabelled; use "
                             f"hellaswag_val.jsonl); {_found('label', record)}", path=path,
                             line=line, field="label")
        answer = _index(record["label"], len(choices), letters=False, path=path, line=line,
                        field="label")
        item_id = f"hellaswag-{_own_id(record, 'ind', index, path, line)}"
        if item_id in first_line:
            raise InputError(f"duplicate id (first on line {first_line[item_id]})", path=path,
                             line=line, field="ind")
        first_line[item_id] = line
        split_type = record.get("split_type")
        items.append(MCItem(
            id=item_id, task="hellaswag",
            context=_clean_hellaswag(f"{activity}: {ctx}"), choices=choices, answer=answer,
            category=split_type if isinstance(split_type, str) and split_type else None))
    return items


def _clean_hellaswag(text: str) -> str:
    """Remove WikiHow's markup the way lm-eval's ``hellaswag`` preprocessing does."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)  # [header], [step], [substeps] and similar markers
    return text.replace("  ", " ")


# --- generic multiple choice ----------------------------------------------------------------

#: The prompt of :func:`multiple_choice`: lm-eval's ARC / OpenBookQA-style cloze format,
#: which small models answer far better than lettered options.
DEFAULT_TEMPLATE = "Question: {question}\nAnswer:"
_RECORD_SUFFIXES = (".jsonl", ".json", ".yaml", ".yml")


def multiple_choice(
    path: str | Path,
    *,
    question_field: str = "question",
    choices_field: str = "choices",
    answer_field: str = "answer",
    template: str = DEFAULT_TEMPLATE,
    task: str | None = None,
) -> list[MCItem]:
    """Read a generic multiple-choice file: JSON Lines (``.jsonl``/``.json``, one object per
    line) or YAML (``.yaml``/``.yml``, a list of mappings).

    Each record holds ``question_field`` (text), ``choices_field`` (a list of at least two
    texts) and ``answer_field`` (the right choice as a 0-based index, a digit string, or a
    letter ``A``, ``B``, ... in any case); ``id`` and ``category`` are optional. The context is
    ``template`` with ``{question}`` replaced by the question (other braces are kept as they
    are), and choices are ``" " + text``. ``task`` defaults to the file's stem; ids are
    ``<task>-<id>``, or ``<task>-NNNNN`` (0-based record number) without an ``id``.

    Raises:
        InputError: an unsupported extension, a template without ``{question}``, or a missing,
            empty or mistyped field, an answer out of range, or a duplicate id.
    """
    path = _check_file(path)
    if "{question}" not in template:
        raise InputError("template must contain {question}", field="template")
    suffix = path.suffix.lower()
    if suffix not in _RECORD_SUFFIXES:
        raise InputError(f"unsupported file extension {path.suffix or 'none'!r}; expected one "
                         f"of {', '.join(_RECORD_SUFFIXES)}", path=path)
    rows = _yaml_rows(path) if suffix in (".yaml", ".yml") else read_json_lines(path)
    task = path.stem if task is None else task
    items: list[MCItem] = []
    first_line: dict[str, int] = {}
    for index, (line, record) in enumerate(rows):
        question = _string(record, question_field, path, line)
        if not question.strip():
            raise InputError("empty question", path=path, line=line, field=question_field)
        choices = _strings(record, choices_field, path, line)
        for position, choice in enumerate(choices):
            if not choice.strip():
                raise InputError("empty choice", path=path, line=line,
                                 field=f"{choices_field}[{position}]")
        if answer_field not in record:
            raise InputError(f"missing; {_found(answer_field, record)}", path=path, line=line,
                             field=answer_field)
        answer = _index(record[answer_field], len(choices), letters=True, path=path, line=line,
                        field=answer_field)
        item_id = f"{task}-{_own_id(record, 'id', index, path, line)}"
        if item_id in first_line:
            raise InputError(f"duplicate id (first on line {first_line[item_id]})", path=path,
                             line=line, field="id")
        first_line[item_id] = line
        category = record.get("category")
        if category is not None and not isinstance(category, str):
            raise InputError(f"expected a string or null, got {_json_type(category)}",
                             path=path, line=line, field="category")
        items.append(MCItem(
            id=item_id, task=task, context=template.replace("{question}", question),
            choices=tuple(CHOICE_SEPARATOR + choice for choice in choices), answer=answer,
            category=(category or "").strip() or None))
    return items


def _yaml_rows(path: Path) -> list[_Row]:
    data, lines = load_yaml(path)
    if not isinstance(data, list) or not data:
        raise InputError("expected a non-empty YAML list of question records", path=path,
                         line=lines.get(()))
    rows: list[_Row] = []
    for position, record in enumerate(data):
        line = lines[(position,)]
        if not isinstance(record, dict):
            raise InputError(f"expected a mapping (question, choices, answer), got "
                             f"{_json_type(record)}", path=path, line=line)
        rows.append((line, record))
    return rows


# --- built-in -------------------------------------------------------------------------------

#: Names of the built-in tasks (``builtin_data/capability_<name>.yaml``): ``basic`` is the test
#: split (reported), ``basic_dev`` the dev split (for tuning).
BUILTIN_TASKS: tuple[str, ...] = ("basic", "basic_dev")


def builtin(name: str = "basic") -> list[MCItem]:
    """A built-in task, read with :func:`multiple_choice` (task ``builtin-<name>``).

    Easy four-choice questions (general knowledge, arithmetic, commonsense, word meaning; the
    category) that even SmolLM2-135M-Instruct answers well above chance, so that a fine-tune's
    capability loss shows on the embedded model offline. The right answer sits equally often at
    each position. Two splits, sharing no question (nor a reworded near-duplicate), and neither
    repeating the built-in training data:

    * ``"basic"``: the test split, 200 questions (50 per category; ids like
      ``builtin-basic-arithmetic-007``), written after the organism and attack settings were
      tuned and never used for tuning; report this one.
    * ``"basic_dev"``: the dev split, the original 60 questions (15 per category; ids like
      ``builtin-basic_dev-arithmetic-07``), looked at while tuning; tune on this one.
    """
    if name not in BUILTIN_TASKS:
        raise InputError(f"unknown built-in task {name!r}; available: {', '.join(BUILTIN_TASKS)}",
                         field="name")
    resource = resources.files("ftrisk.data").joinpath("builtin_data", f"capability_{name}.yaml")
    with resources.as_file(resource) as file:
        return multiple_choice(file, task=f"builtin-{name}")


# --- fields ---------------------------------------------------------------------------------


def _limit(value: int | None, field: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InputError(f"expected a positive integer, got {value!r}", field=field)
    return value


def _string(record: dict[str, Any], field: str, path: Path, line: int) -> str:
    if field not in record:
        raise InputError(f"missing; {_found(field, record)}", path=path, line=line, field=field)
    value = record[field]
    if not isinstance(value, str):
        hint = " (quote it in YAML)" if isinstance(value, bool | int | float) else ""
        raise InputError(f"expected a string, got {_json_type(value)}{hint}", path=path,
                         line=line, field=field)
    return value


def _strings(record: dict[str, Any], field: str, path: Path, line: int) -> list[str]:
    if field not in record:
        raise InputError(f"missing; {_found(field, record)}", path=path, line=line, field=field)
    value = record[field]
    if not isinstance(value, list) or len(value) < 2:
        shown = f"{len(value)} item(s)" if isinstance(value, list) else _json_type(value)
        raise InputError(f"expected a list of at least two texts, got {shown}", path=path,
                         line=line, field=field)
    for position, text in enumerate(value):
        if not isinstance(text, str):
            hint = " (quote it in YAML)" if isinstance(text, bool | int | float) else ""
            raise InputError(f"expected a string, got {_json_type(text)}{hint}", path=path,
                             line=line, field=f"{field}[{position}]")
    return value


def _index(value: Any, n_choices: int, *, letters: bool, path: Path, line: int,
           field: str) -> int:
    """A 0-based choice index from an integer, a digit string or (``letters``) a letter."""
    letter_range = f"A-{chr(ord('A') + n_choices - 1)}"
    expected = f"a choice index 0-{n_choices - 1}" + (f" or a letter {letter_range}"
                                                      if letters else "")
    index: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        index = value
    elif isinstance(value, str) and value.strip().isdigit():
        index = int(value.strip())
    elif letters and isinstance(value, str) and len(value.strip()) == 1 and value.strip().isalpha():
        index = ord(value.strip().upper()) - ord("A")
    if index is None or not 0 <= index < n_choices:
        shown = repr(value) if isinstance(value, int | str) and not isinstance(value, bool) \
            else _json_type(value)
        raise InputError(f"expected {expected}, got {shown}", path=path, line=line, field=field)
    return index


def _own_id(record: dict[str, Any], field: str, index: int, path: Path, line: int) -> str:
    """The record's own id (a string or integer) when it has one, else its 0-based number."""
    value = record.get(field)
    if value is None:
        return f"{index:05d}"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        shown = repr(value) if isinstance(value, str) else _json_type(value)
        raise InputError(f"expected a non-empty string or integer id, got {shown}", path=path,
                         line=line, field=field)
    return value.strip()
