"""User-facing errors: one line naming the file, line or field and what was expected."""

from __future__ import annotations


class FtriskError(Exception):
    """Base class for errors that the CLI prints as one line, without a traceback."""


class InputError(FtriskError):
    """Bad user input: names where the problem is (file, line, field) and what was expected."""

    def __init__(self, message: str, *, path: object = None, line: int | None = None,
                 field: str | None = None) -> None:
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
        if field:
            where = f"{where} field '{field}'" if where else f"field '{field}'"
        self.message, self.path, self.line, self.field = message, path, line, field
        super().__init__(f"{where}: {message}" if where else message)
