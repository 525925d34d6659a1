"""Reading result files (``results.json`` into its typed record), with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ftrisk.errors import InputError
from ftrisk.records import AuditResults


def read_json(path: Path) -> Any:
    """The JSON document at ``path``; InputError naming the file (and the line) when it cannot
    be read or is not JSON. A missing file raises FileNotFoundError, for the caller to say
    what it lacks."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise
    except json.JSONDecodeError as err:
        raise InputError(f"not valid JSON: {err.msg}", path=path, line=err.lineno) from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot be read ({err})", path=path) from None


def read_results(path: str | Path) -> AuditResults:
    """The audit results at ``path``; InputError naming the file and, for a wrong field, its
    location (``conditions.2.refusal_rate``) when the file is not a results record."""
    path = Path(path)
    try:
        data = read_json(path)
    except FileNotFoundError:
        raise InputError("no results here: run the audit to the end first", path=path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object (an audit's results)", path=path)
    try:
        return AuditResults.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        raise InputError(f"{first['msg']} ({len(err.errors())} problem(s) in all)",
                         path=path, field=field) from None
