"""User-facing errors: one line naming the file, line or field and what was expected."""

from __future__ import annotations

import errno


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


# Byte-order marks of the encodings people save data in by mistake (UTF-32 before UTF-16,
# whose little-endian mark is a prefix of UTF-32's).
_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32 (little-endian, with a byte-order mark)"),
         (b"\x00\x00\xfe\xff", "UTF-32 (big-endian, with a byte-order mark)"),
         (b"\xff\xfe", "UTF-16 (little-endian, with a byte-order mark)"),
         (b"\xfe\xff", "UTF-16 (big-endian, with a byte-order mark)"))


def _wide_encoding(data: bytes) -> str | None:
    """The UTF-16/UTF-32 encoding ``data`` is in, from its byte-order mark or, without one, from
    the NUL bytes that mostly-ASCII text has in those encodings; None for anything else."""
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    sample = data[:4096]
    sample = sample[: len(sample) - len(sample) % 4]
    if len(sample) < 4:
        return None
    for name, zero, text in (
            ("UTF-32 (little-endian, no byte-order mark)", (1, 2, 3), 0),
            ("UTF-32 (big-endian, no byte-order mark)", (0, 1, 2), 3),
            ("UTF-16 (little-endian, no byte-order mark)", (1,), 0),
            ("UTF-16 (big-endian, no byte-order mark)", (0,), 1)):
        step = 4 if name.startswith("UTF-32") else 2
        if all(not any(sample[i::step]) for i in zero) and any(sample[text::step]):
            return name
    return None


def decode_utf8(data: bytes, path: object) -> str:
    """The text of a file's bytes, read as UTF-8 (a leading UTF-8 byte-order mark, as Excel and
    some Windows editors write, is dropped).

    Raises:
        InputError: the file is UTF-16 or UTF-32 (named, with how it was detected) or otherwise
            not UTF-8 (naming the line of the first bad byte); each says to re-save as UTF-8.
    """
    wide = _wide_encoding(data)
    if wide is not None:
        raise InputError(f"the file is {wide}, not UTF-8; re-save it as UTF-8", path=path,
                         line=1)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise InputError(f"not valid UTF-8 (byte {error.start}: {error.reason}); re-save the "
                         "file as UTF-8", path=path, line=line) from None


#: errno values of a full disk and of a denied permission.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
DENIED = (errno.EACCES, errno.EPERM)
# How libraries that do not raise OSError (safetensors, torch) word the same failures.
_WORDED = (("no space left on device", errno.ENOSPC), ("storagefull", errno.ENOSPC),
           ("os error 28", errno.ENOSPC), ("database or disk is full", errno.ENOSPC),
           ("read-only file system", errno.EROFS), ("os error 30", errno.EROFS),
           ("permission denied (os error 13)", errno.EACCES))


def storage_failure(err: BaseException) -> tuple[int, str | None] | None:
    """(errno, path or None) when ``err`` (or what caused it) is a full disk, a denied
    permission or a read-only file system; None otherwise."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (*NO_SPACE, *DENIED,
                                                              errno.EROFS):
            path = current.filename2 if current.filename is None else current.filename
            return current.errno, None if path is None else str(path)
        current = current.__cause__ or current.__context__
    text = str(err).lower()
    for words, code in _WORDED:
        if words in text:
            return code, None
    return None
