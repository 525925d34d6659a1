"""Read user data files into :class:`~ftrisk.records.Conversation` records.

Two entry points:

* :func:`read_conversations` — training data: OpenAI chat-format JSONL, a JSON array of
  message lists (Qi et al.'s Llama-2 AOA layout), or prompt/response pairs as JSONL or CSV.
* :func:`read_prompts` — evaluation prompts: one prompt (and optional category) per JSONL
  record or CSV row, returned as user-only conversations.

Every problem with a file is raised as one :class:`~ftrisk.errors.InputError` naming the file,
the 1-based physical line (for CSV, the line where the row starts; the header is line 1) or the
field, and what was expected.

Limits, the same for every JSON file ftrisk reads from users (training data, prompt files,
Alpaca/Dolly, RefusalBench, capability tasks): files are UTF-8 (a UTF-8 byte-order mark is
fine; UTF-16 and UTF-32 are named and refused); JSON nests at most :data:`MAX_JSON_DEPTH` (100)
levels of arrays and objects; one record, a JSON Lines line or an item of a JSON array file, is
at most :data:`MAX_RECORD_BYTES` (16 MiB).
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal, get_args

from ftrisk.errors import InputError, decode_utf8
from ftrisk.records import Conversation, Message, PromptKind, Role

ConversationFormat = Literal["auto", "chat", "prompt_response"]

#: File suffixes we read, and how. ``.json`` is read as JSON Lines, as fine-tuning APIs do.
SUPPORTED_SUFFIXES: dict[str, Literal["jsonl", "csv"]] = {
    ".jsonl": "jsonl",
    ".json": "jsonl",
    ".csv": "csv",
}

#: The category field that may be absent without error; any other name must exist, so that a
#: misspelt ``category_field`` fails loudly instead of silently yielding no categories.
DEFAULT_CATEGORY_FIELD = "category"
#: Field that gives a training record its own id when present.
DEFAULT_ID_FIELD = "id"
#: Deepest nesting of JSON arrays and objects read: real records nest a few levels, and
#: Python's own parser would crash near 1,000.
MAX_JSON_DEPTH = 100
#: Largest record, in UTF-8 bytes: one JSON Lines line, or one item of a JSON array file. Real
#: records are a few KiB; a larger one is almost surely a broken or wrong file.
MAX_RECORD_BYTES = 16 * 2**20

_ROLES: tuple[str, ...] = get_args(Role)
_KINDS: tuple[str, ...] = get_args(PromptKind)
_FORMATS: tuple[str, ...] = get_args(ConversationFormat)

# (physical line number, record) — a parsed JSON object, or a CSV row keyed by header name.
_Row = tuple[int, dict[str, Any]]


def read_conversations(
    path: str | Path,
    *,
    format: ConversationFormat = "auto",
    prompt_field: str = "prompt",
    response_field: str = "response",
    category_field: str | None = DEFAULT_CATEGORY_FIELD,
    system_prompt: str | None = None,
    source: str | None = None,
) -> list[Conversation]:
    """Read training conversations from a JSONL or CSV file.

    Formats:

    * ``"chat"`` — JSONL, one ``{"messages": [{"role": ..., "content": ...}, ...]}`` per line
      (the OpenAI fine-tuning layout, e.g. Qi et al.'s ``gpt-3.5/data/identity-shift-aoa.jsonl``),
      or one JSON array whose items are such message lists,
      ``[[{"role": ..., "content": ...}, ...], ...]`` (Qi et al.'s
      ``llama2/ft_datasets/aoa_dataset/train.json``). Roles are system/user/assistant; content
      is a non-empty string (a system turn may be empty); at most one system turn, and it comes
      first; at least one user turn; the last turn is the assistant's. An assistant turn may
      carry OpenAI's ``"weight"``: 1 (train on it, as without a weight) or 0 (show it, do not
      train on it); at least one assistant turn must be trained on.
    * ``"prompt_response"`` — JSONL objects or CSV rows (with a header) holding
      ``prompt_field`` and ``response_field``; each becomes a user turn and an assistant turn.
    * ``"auto"`` — ``.csv`` is prompt/response; a ``.json``/``.jsonl`` file that starts with
      ``[`` is the array of message lists; otherwise chat when the first record has a
      ``"messages"`` key, prompt/response when it has not.

    ``system_prompt``, when not None, becomes the system turn of every conversation, replacing
    any in the file (None keeps the file's own). Ids are the record's ``"id"`` when it has one,
    else ``f"{stem}-{index:05d}"`` with ``index`` the 0-based record (or array item) number.
    The category comes from ``category_field`` (None: no categories; the default
    ``"category"`` may be absent; any other name must be present). ``source`` defaults to the
    file name. Blank lines are skipped.

    Raises:
        InputError: for any unreadable or malformed input, or input past the limits in the
            module docstring (encoding, nesting, record size), naming file, line and field.
    """
    path = _check_file(path)
    if format not in _FORMATS:
        raise InputError(f"unknown format '{format}'; expected one of {', '.join(_FORMATS)}",
                         field="format")
    file_type = _file_type(path)
    array = False  # one JSON array of message lists instead of JSON Lines
    if file_type == "csv":
        if format == "chat":
            raise InputError("chat format needs a JSONL file (.jsonl or .json), got a CSV file",
                             path=path)
        header_line, columns, rows = _read_csv(path)
        _require_columns(columns, [prompt_field, response_field], category_field, path=path,
                         line=header_line)
        format = "prompt_response"
    elif _read_text(path).lstrip().startswith("["):
        if format == "prompt_response":
            raise InputError("a JSON array file is read as message lists (chat format); for "
                             "prompt/response records write one object per line", path=path)
        rows = _read_message_lists(path)
        format, array = "chat", True
    else:
        rows = read_json_lines(path)
        if format == "auto":
            format = "chat" if "messages" in rows[0][1] else "prompt_response"

    source = path.name if source is None else source
    conversations: list[Conversation] = []
    for index, (line, record) in enumerate(rows):
        if format == "chat":
            messages = _chat_messages(record, path=path, line=line,
                                      field=f"[{index}]" if array else "messages")
        else:
            messages = (
                Message(role="user", content=_text(record, prompt_field, path=path, line=line)),
                Message(role="assistant",
                        content=_text(record, response_field, path=path, line=line)),
            )
        record_id = _record_id(record, DEFAULT_ID_FIELD, required=False,
                               default=f"{path.stem}-{index:05d}", path=path, line=line)
        conversation = Conversation(
            id=record_id,
            messages=messages,
            category=_category(record, category_field, path=path, line=line),
            source=source,
        )
        if system_prompt is not None:
            conversation = conversation.with_system(system_prompt)
        conversations.append(conversation)
    _check_unique_ids(conversations, rows, path, DEFAULT_ID_FIELD)
    return conversations


def read_prompts(
    path: str | Path,
    *,
    prompt_field: str = "prompt",
    category_field: str | None = DEFAULT_CATEGORY_FIELD,
    kind: PromptKind = "harmful",
    id_field: str | None = None,
    source: str | None = None,
    cluster_field: str | None = None,
) -> list[Conversation]:
    """Read evaluation prompts from a JSONL or CSV file as user-only conversations.

    Each record needs a non-empty ``prompt_field``. The category comes from ``category_field``
    (None: no categories; the default ``"category"`` may be absent, leaving it None; any other
    name must be present, else the error lists the columns found). Ids come from ``id_field``
    when given (then required in every record), else ``f"{stem}-{index:05d}"`` with ``index``
    the 0-based record number. ``cluster_field`` (required in every record when given, a
    string or an integer) names the correlated unit a prompt belongs to, such as the action
    behind several phrasings; intervals then resample clusters. Every conversation gets
    ``kind``; ``source`` defaults to the file name. Blank lines are skipped.

    Raises:
        InputError: for any unreadable or malformed input, or input past the limits in the
            module docstring (encoding, nesting, record size), naming file, line and field.
    """
    path = _check_file(path)
    if kind not in _KINDS:
        raise InputError(f"unknown prompt kind '{kind}'; expected one of {', '.join(_KINDS)}",
                         field="kind")
    if _file_type(path) == "csv":
        header_line, columns, rows = _read_csv(path)
        required = [prompt_field] + [f for f in (id_field, cluster_field) if f is not None]
        _require_columns(columns, required, category_field, path=path, line=header_line)
    else:
        rows = read_json_lines(path)

    source = path.name if source is None else source
    prompts = [
        Conversation(
            id=_record_id(record, id_field, required=True, default=f"{path.stem}-{index:05d}",
                          path=path, line=line),
            messages=(Message(role="user",
                              content=_text(record, prompt_field, path=path, line=line)),),
            category=_category(record, category_field, path=path, line=line),
            kind=kind,
            source=source,
            cluster=_cluster(record, cluster_field, path=path, line=line),
        )
        for index, (line, record) in enumerate(rows)
    ]
    _check_unique_ids(prompts, rows, path, id_field)
    return prompts


# --- files ----------------------------------------------------------------------------------


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError("file not found", path=path)
    if path.is_dir():
        raise InputError("is a directory; expected a data file (.jsonl, .json or .csv)",
                         path=path)
    return path


def _file_type(path: Path) -> Literal["jsonl", "csv"]:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        shown = f"'{path.suffix}'" if path.suffix else "none"
        raise InputError(f"unsupported file extension {shown}; expected one of "
                         f"{', '.join(SUPPORTED_SUFFIXES)}", path=path)
    return SUPPORTED_SUFFIXES[suffix]


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise InputError(f"cannot read file: {error.strerror}", path=path) from error
    return decode_utf8(data, path)


class _DuplicateKeyError(ValueError):
    pass


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.loads would keep the last of two equal keys; a silently dropped field is a bug.
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKeyError(key)
        obj[key] = value
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicate_keys)
# A JSON string (escapes included) or a bracket, to find where nesting gets too deep.
_JSON_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)


def _decode_json(text: str, *, path: Path, line: int = 1,
                 start: int | None = None) -> tuple[Any, int]:
    """Decode ``text`` as one JSON document or, given ``start``, the JSON value that begins
    there (as ``JSONDecoder.raw_decode``); return the value and the offset where it ends.

    Duplicate keys raise :class:`_DuplicateKeyError` and syntax errors ``json.JSONDecodeError``;
    nesting deeper than :data:`MAX_JSON_DEPTH` raises :class:`InputError` naming the line where
    it goes too deep (``line`` is the line ``text[start]`` is on).
    """
    try:
        if start is None:
            value, end = _DECODER.decode(text), len(text)
        else:
            value, end = _DECODER.raw_decode(text, start)
    except RecursionError:  # Python's parser gives up near 1,000 levels
        raise _too_deep(text, start or 0, path=path, line=line) from None
    level = [value] if isinstance(value, dict | list) else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise _too_deep(text, start or 0, path=path, line=line)
        level = [child for item in level
                 for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, dict | list)]
    return value, end


def _too_deep(text: str, start: int, *, path: Path, line: int) -> InputError:
    depth = 0
    for token in _JSON_TOKEN.finditer(text, start):
        if token.group() in ("[", "{"):
            depth += 1
            if depth > MAX_JSON_DEPTH:
                line += text.count("\n", start, token.start())
                break
        elif token.group() in ("]", "}"):
            depth -= 1
    return InputError(f"JSON nested more than {MAX_JSON_DEPTH} levels deep; ftrisk reads at most "
                      f"{MAX_JSON_DEPTH} levels of arrays and objects", path=path, line=line)


def _check_record_size(text: str, start: int, end: int, *, path: Path, line: int,
                       what: str) -> None:
    """Raise when ``text[start:end]``, one record, is over :data:`MAX_RECORD_BYTES` in UTF-8."""
    # A character is 1 to 4 bytes, so most records need no encoding to be measured.
    if (end - start) * 4 <= MAX_RECORD_BYTES:
        return
    size = len(text[start:end].encode("utf-8"))
    if size > MAX_RECORD_BYTES:
        raise InputError(f"{what} is {size / 2**20:.1f} MiB, over the limit of "
                         f"{MAX_RECORD_BYTES // 2**20} MiB per record", path=path, line=line)


def read_json_lines(path: Path) -> list[_Row]:
    """The records of a JSON Lines file as ``(line number, object)``, with the reader's checks:
    UTF-8, one object per line, no duplicate keys, the nesting and record-size limits.

    Raises:
        InputError: naming the file and line of the first problem.
    """
    rows: list[_Row] = []
    # split("\n") rather than splitlines(): JSON strings may hold raw U+2028, which
    # splitlines() would treat as a line break.
    for line, text in enumerate(_read_text(path).split("\n"), start=1):
        if not text.strip():
            continue
        _check_record_size(text, 0, len(text), path=path, line=line, what="the line")
        try:
            value, _end = _decode_json(text, path=path, line=line)
        except json.JSONDecodeError as error:
            # A pretty-printed JSON array is the commonest wrong shape; say so directly.
            shape = ("a JSON array file is not supported, write one object per line"
                     if text.lstrip().startswith("[") else "expected one JSON object per line")
            raise InputError(f"invalid JSON: {error.msg} (column {error.colno}); {shape}",
                             path=path, line=line) from error
        except _DuplicateKeyError as error:
            raise InputError(f"duplicate key '{error.args[0]}' in JSON object",
                             path=path, line=line) from error
        if not isinstance(value, dict):
            raise InputError(f"expected a JSON object, got {_json_type(value)}; the file must "
                             "hold one object per line (JSON Lines)", path=path, line=line)
        rows.append((line, value))
    if not rows:
        raise InputError("empty file: no records", path=path)
    return rows


def _read_message_lists(path: Path) -> list[_Row]:
    """One JSON array of message lists, as rows ``(line, {"messages": item})`` with the line
    each item starts on."""
    text = _read_text(path)
    try:
        data, _end = _decode_json(text, path=path)
    except json.JSONDecodeError as error:
        raise InputError(f"invalid JSON: {error.msg} (column {error.colno})", path=path,
                         line=error.lineno) from error
    except _DuplicateKeyError as error:
        raise InputError(f"duplicate key '{error.args[0]}' in JSON object", path=path) from error
    if not data:
        raise InputError("empty array: no conversations", path=path)
    rows: list[_Row] = []
    for index, (line, item) in enumerate(zip(_item_lines(text, path), data, strict=True)):
        if not isinstance(item, list):
            raise InputError(f"expected a list of {{role, content}} messages, got "
                             f"{_json_type(item)}; a JSON array file must hold one message list "
                             "per conversation (for other records write one JSON object per "
                             "line)", path=path, line=line, field=f"[{index}]")
        rows.append((line, {"messages": item}))
    return rows


def _item_lines(text: str, path: Path) -> list[int]:
    """The line on which each item of the (valid) top-level JSON array in ``text`` starts;
    an item over :data:`MAX_RECORD_BYTES` is an error."""
    decoder = json.JSONDecoder()
    lines, line, seen = [], 1, 0
    index = text.index("[") + 1
    while True:
        while text[index] in " \t\r\n,":
            index += 1
        if text[index] == "]":
            return lines
        line += text.count("\n", seen, index)
        seen = index
        lines.append(line)
        _value, end = decoder.raw_decode(text, index)
        _check_record_size(text, index, end, path=path, line=line,
                           what=f"item [{len(lines) - 1}]")
        index = end


def _read_csv(path: Path) -> tuple[int, list[str], list[_Row]]:
    """Return the header's line and column names, and the rows with the line each starts on."""
    # strict: an unclosed or stray quote is an error instead of silently swallowing lines.
    reader = csv.reader(io.StringIO(_read_text(path), newline=""), strict=True)
    columns: list[str] | None = None
    header_line = 0
    rows: list[_Row] = []
    previous_end = 0
    try:
        for fields in reader:
            # A quoted value may span lines, so a row starts right after the previous one ends.
            start, previous_end = previous_end + 1, reader.line_num
            if all(field == "" for field in fields):
                continue  # blank lines, and the all-empty trailing rows spreadsheets export
            if columns is None:
                columns, header_line = _header(fields, path=path, line=start), start
                continue
            if len(fields) != len(columns):
                raise InputError(
                    f"row has {len(fields)} fields but the header has {len(columns)} "
                    f"({', '.join(columns)}); quote values that contain commas",
                    path=path, line=start)
            rows.append((start, dict(zip(columns, fields, strict=True))))
    except csv.Error as error:
        raise InputError(f"invalid CSV in the row starting here: {error} (check its quotes)",
                         path=path, line=previous_end + 1) from error
    if columns is None:
        raise InputError("empty file: no header row and no records", path=path)
    if not rows:
        raise InputError("no records after the header", path=path, line=header_line)
    return header_line, columns, rows


def _header(fields: list[str], *, path: Path, line: int) -> list[str]:
    # Strip names so that a hand-written "prompt, category" header still matches.
    columns = [field.strip() for field in fields]
    seen: set[str] = set()
    for position, name in enumerate(columns, start=1):
        if not name:
            raise InputError(f"header column {position} has no name", path=path, line=line)
        if name in seen:
            raise InputError(f"duplicate column '{name}' in header", path=path, line=line)
        seen.add(name)
    return columns


def _require_columns(columns: list[str], required: Iterable[str], category_field: str | None,
                     *, path: Path, line: int) -> None:
    """Check the CSV header once, so a missing column is reported at the header, not per row."""
    needed = list(required)
    if category_field is not None and category_field != DEFAULT_CATEGORY_FIELD:
        needed.append(category_field)
    for name in needed:
        if name not in columns:
            raise InputError(f"missing column; {_found(name, columns, 'columns')}",
                             path=path, line=line, field=name)


# --- fields ---------------------------------------------------------------------------------


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _found(name: str, available: Iterable[str], noun: str = "fields") -> str:
    """Describe what was found instead of ``name``, suggesting a close spelling."""
    available = list(available)
    found = f"{noun} found: {', '.join(available) if available else '(none)'}"
    close = difflib.get_close_matches(name, available, n=1)
    return f"{found} (did you mean '{close[0]}'?)" if close else found


def _missing(record: dict[str, Any], field: str, *, path: Path, line: int) -> InputError:
    hint = ""
    if field != "messages" and "messages" in record:
        hint = "; this looks like chat format (use format 'chat' or 'auto')"
    elif field == "messages" and len(record) > 0:
        hint = "; for prompt/response records use format 'prompt_response' or 'auto'"
    return InputError(f"missing; {_found(field, record)}{hint}", path=path, line=line,
                      field=field)


def _text(record: dict[str, Any], field: str, *, path: Path, line: int) -> str:
    """Return a required, non-empty string field, kept verbatim (whitespace may matter)."""
    if field not in record:
        raise _missing(record, field, path=path, line=line)
    value = record[field]
    if not isinstance(value, str):
        raise InputError(f"expected a string, got {_json_type(value)}", path=path, line=line,
                         field=field)
    if not value.strip():
        raise InputError("empty value; expected non-empty text", path=path, line=line,
                         field=field)
    return value


def _category(record: dict[str, Any], field: str | None, *, path: Path,
              line: int) -> str | None:
    if field is None:
        return None
    if field not in record:
        if field == DEFAULT_CATEGORY_FIELD:
            return None
        raise _missing(record, field, path=path, line=line)
    value = record[field]
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"expected a string or null, got {_json_type(value)}", path=path,
                         line=line, field=field)
    # An empty CSV cell means "no category", not a category named "".
    return value.strip() or None


def _cluster(record: dict[str, Any], field: str | None, *, path: Path, line: int) -> str | None:
    if field is None:
        return None
    if field not in record:
        raise _missing(record, field, path=path, line=line)
    value = record[field]
    # bool is an int subclass, but True is no cluster id.
    if isinstance(value, bool) or not isinstance(value, str | int) or not str(value).strip():
        raise InputError(f"expected a non-empty string or an integer cluster id, got "
                         f"{_json_type(value)}", path=path, line=line, field=field)
    return str(value).strip()


def _record_id(record: dict[str, Any], field: str | None, *, required: bool, default: str,
               path: Path, line: int) -> str:
    if field is None or (not required and record.get(field) is None):
        return default
    if field not in record:
        raise _missing(record, field, path=path, line=line)
    value = record[field]
    # Integer ids are common in JSON datasets; bool is an int subclass but never an id.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InputError(f"expected a string or integer id, got {_json_type(value)}",
                         path=path, line=line, field=field)
    if not value.strip():
        raise InputError("empty id", path=path, line=line, field=field)
    return value.strip()


def _check_unique_ids(conversations: list[Conversation], rows: list[_Row], path: Path,
                      field: str | None) -> None:
    # Later stages key generations and judgments by id; duplicates would overwrite each other.
    first_line: dict[str, int] = {}
    for conversation, (line, _record) in zip(conversations, rows, strict=True):
        if conversation.id in first_line:
            raise InputError(f"duplicate id '{conversation.id}' (first on line "
                             f"{first_line[conversation.id]})", path=path, line=line,
                             field=field)
        first_line[conversation.id] = line


def _chat_messages(record: dict[str, Any], *, path: Path, line: int,
                   field: str = "messages") -> tuple[Message, ...]:
    """Validate one chat-format record's ``messages`` and return them as :class:`Message`;
    errors name the list as ``field`` (``[3]`` for an item of a JSON array file)."""
    if "messages" not in record:
        raise _missing(record, "messages", path=path, line=line)
    raw = record["messages"]
    if not isinstance(raw, list):
        raise InputError(f"expected a list of {{role, content}} objects, got {_json_type(raw)}",
                         path=path, line=line, field=field)
    if not raw:
        raise InputError("empty list; expected at least a user and an assistant turn",
                         path=path, line=line, field=field)
    messages: list[Message] = []
    for position, item in enumerate(raw):
        where = f"{field}[{position}]"
        if not isinstance(item, dict):
            raise InputError(f"expected an object with role and content, got {_json_type(item)}",
                             path=path, line=line, field=where)
        for key in ("role", "content"):
            if key not in item:
                raise InputError(f"missing; {_found(key, item)}", path=path, line=line,
                                 field=f"{where}.{key}")
        role, content = item["role"], item["content"]
        if role not in _ROLES:
            shown = f"'{role}'" if isinstance(role, str) else _json_type(role)
            raise InputError(f"unknown role {shown}; expected one of {', '.join(_ROLES)}",
                             path=path, line=line, field=f"{where}.role")
        if not isinstance(content, str):
            raise InputError(f"content must be a string, got {_json_type(content)} "
                             "(multi-part and tool-call content are not supported)",
                             path=path, line=line, field=f"{where}.content")
        if role != "system" and not content.strip():
            raise InputError(f"empty {role} turn; expected non-empty text", path=path,
                             line=line, field=f"{where}.content")
        # Chat templates expect at most one system turn, at the start.
        if role == "system" and position != 0:
            raise InputError("a system turn may only come first", path=path, line=line,
                             field=f"{where}.role")
        weight = _weight(item, role, path=path, line=line, field=f"{where}.weight")
        messages.append(Message(role=role, content=content, weight=1 if weight is None else weight))
    if not any(message.role == "user" for message in messages):
        raise InputError("no user turn; expected at least one", path=path, line=line,
                         field=field)
    if messages[-1].role != "assistant":
        raise InputError(f"last turn is '{messages[-1].role}'; a training conversation must end "
                         "with an assistant turn", path=path, line=line, field=field)
    if not any(m.role == "assistant" and m.weight == 1 for m in messages):
        raise InputError("every assistant turn has weight 0, so there is nothing to train on; "
                         "expected at least one with weight 1 or no weight", path=path,
                         line=line, field=field)
    return tuple(messages)


def _weight(item: dict[str, Any], role: str, *, path: Path, line: int,
            field: str) -> int | None:
    """A turn's OpenAI ``weight``: 1 trains on the assistant turn, 0 does not; None if absent."""
    if "weight" not in item:
        return None
    weight = item["weight"]
    if role != "assistant":
        raise InputError(f"weight applies to assistant turns only, not to a {role} turn "
                         "(OpenAI's chat format)", path=path, line=line, field=field)
    # bool is an int subclass, and 1.0 is not one of the format's two values.
    if isinstance(weight, bool) or not isinstance(weight, int) or weight not in (0, 1):
        shown = (json.dumps(weight) if isinstance(weight, int | float)
                 and not isinstance(weight, bool) else _json_type(weight))
        raise InputError(f"expected 0 (do not train on this turn) or 1 (train on it), got "
                         f"{shown}", path=path, line=line, field=field)
    return weight
