"""Content-addressed cache of model calls in an embedded SQLite database.

Keys are hashes of everything that determines an output (model fingerprint, rendered prompt,
decoding settings), so a killed run that is started again only computes what is missing.

The store is only a cache: a damaged database file is moved aside (``store.sqlite.corrupt-<time>``)
with one log line and a fresh store takes its place. A full disk or a read-only folder is
raised as an ``OSError`` naming the database file.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

T = TypeVar("T")
Input = TypeVar("Input")

# SQLite's own names for a damaged file ("database disk image is malformed", "file is not a
# database"); other errors (locked, full, read-only) are not damage.
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def content_key(*parts: object) -> str:
    """Stable hash of JSON-serialisable parts."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _damaged(err: sqlite3.Error) -> bool:
    name = getattr(err, "sqlite_errorname", "") or ""
    if name.startswith(_DAMAGED):
        return True
    text = str(err).lower()
    return "malformed" in text or "not a database" in text


def _as_os_error(err: sqlite3.Error, path: Path) -> OSError | None:
    """A full disk, a read-only file or folder, or a file SQLite cannot open, as the OSError a
    one-line message is made of (None for other errors)."""
    name = getattr(err, "sqlite_errorname", "") or ""
    text = str(err).lower()
    if name == "SQLITE_FULL" or "disk is full" in text:
        return OSError(errno.ENOSPC, "No space left on device (database or disk is full)",
                       str(path))
    if name.startswith("SQLITE_READONLY") or "readonly database" in text:
        folder = path.parent
        if not os.access(folder, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            return OSError(errno.EACCES, "Permission denied (read-only database)", str(path))
        return OSError(errno.EROFS, "Read-only file system (read-only database)", str(path))
    if name.startswith("SQLITE_CANTOPEN") or "unable to open database" in text:
        return OSError(errno.EACCES, "Permission denied (SQLite cannot open the database)",
                       str(path))
    if name.startswith("SQLITE_IOERR") or "disk i/o error" in text:
        return OSError(errno.EIO, "Input/output error (SQLite could not write the database)",
                       str(path))
    return None


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Store:
    """A small key -> JSON value store, one table, namespaced (``generation``, ``judgment``).

    ``log`` receives the one line written when a damaged database is moved aside.
    """

    def __init__(self, path: str | Path, *, log: Callable[[str], None] = _stderr) -> None:
        self.path = Path(path)
        self.log = log
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            if err.filename is None:
                err.filename = str(self.path.parent)
            raise
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as err:
            if not _damaged(err):
                raise self._os_error(err) from None
            self._set_aside(err)
            self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        try:
            self._inode = os.stat(self.path).st_ino if self.path.exists() else None
            # WAL keeps readers unblocked and survives a kill -9 between commits.
            db.execute("PRAGMA journal_mode=WAL")
            # Reads every page once: damage shows now, not as a traceback mid-run.
            verdict = db.execute("PRAGMA quick_check").fetchone()
            if verdict is None or verdict[0] != "ok":
                raise sqlite3.DatabaseError(
                    f"database disk image is malformed ({verdict[0] if verdict else 'no answer'})")
            db.execute(
                "CREATE TABLE IF NOT EXISTS cache (namespace TEXT, key TEXT, value TEXT,"
                " created REAL, PRIMARY KEY (namespace, key))"
            )
            db.commit()
            self._inode = os.stat(self.path).st_ino
        except BaseException:
            db.close()
            raise
        return db

    def _os_error(self, err: sqlite3.Error) -> BaseException:
        return _as_os_error(err, self.path) or err

    def _set_aside(self, err: sqlite3.Error) -> None:
        """Move the damaged database (and its WAL/SHM files, which belong to it) aside."""
        with contextlib.suppress(AttributeError, sqlite3.Error):
            self._db.close()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{os.getpid()}")
        try:
            # Another process may have set it aside already and started a fresh one: leave
            # the fresh one alone.
            if self.path.exists() and (self._inode is None or
                                       os.stat(self.path).st_ino == self._inode):
                for suffix in ("", "-wal", "-shm"):
                    source = Path(f"{self.path}{suffix}")
                    if source.exists():
                        os.replace(source, f"{aside}{suffix}")
        except OSError as move_err:
            if move_err.filename is None:
                move_err.filename = str(self.path)
            raise move_err from None
        reason = " ".join(str(err).split())
        self.log(f"warning: the cache {self.path} is damaged ({reason}): moved aside to "
                 f"{aside.name}; starting a fresh cache (answers will be computed again)")

    def _run(self, action: Callable[[], T]) -> T:
        """``action`` on the database; a damaged file is set aside and ``action`` retried once
        on a fresh store, a full disk or read-only folder becomes an OSError naming the file."""
        try:
            return action()
        except sqlite3.DatabaseError as err:
            if not _damaged(err):
                raise self._os_error(err) from None
            self._set_aside(err)
        try:
            self._db = self._open()
            return action()
        except sqlite3.DatabaseError as err:
            raise self._os_error(err) from None

    def get_many(self, namespace: str, keys: Iterable[str]) -> dict[str, object]:
        """Cached values for those of ``keys`` that are present."""
        keys = list(keys)

        def read() -> dict[str, object]:
            found: dict[str, object] = {}
            for start in range(0, len(keys), 500):  # stay under SQLite's parameter limit
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, value FROM cache WHERE namespace=? AND key IN ({marks})",
                    [namespace, *chunk],
                )
                found.update((key, json.loads(value)) for key, value in rows)
            return found

        return self._run(read)

    def put_many(self, namespace: str, values: Mapping[str, object]) -> None:
        """Insert or replace values in one transaction."""
        now = time.time()
        rows = [(namespace, k, json.dumps(v, ensure_ascii=False), now) for k, v in values.items()]

        def write() -> None:
            with self._db:
                self._db.executemany("INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?)", rows)

        self._run(write)

    def count(self, namespace: str) -> int:
        """Number of entries in a namespace."""
        return self._run(lambda: self._db.execute(
            "SELECT COUNT(*) FROM cache WHERE namespace=?", [namespace]).fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        self._db.close()


class Memo(Generic[Input]):
    """The cache-then-compute loop every model call shares (answers, judgments, capability
    scores): the values of ``keyed`` (key, input) pairs already in ``store`` are read once;
    :meth:`batches` yields the rest, each key once, in ``order`` of their inputs; :meth:`save`
    keeps each batch's new values and stores them at once, so a killed run keeps them.
    Without a store nothing is read or written."""

    def __init__(self, store: Store | None, namespace: str, keyed: Iterable[tuple[str, Input]],
                 *, order: Callable[[Input], Any] | None = None) -> None:
        self.store, self.namespace = store, namespace
        keyed = list(keyed)
        keys = [key for key, _ in keyed]
        #: Every value known so far, by key.
        self.values: dict[str, Any] = ({} if store is None else
                                       store.get_many(namespace, set(keys)))
        #: How many of the keys (repeats included) were found in the store.
        self.cached = sum(1 for key in keys if key in self.values)
        pending = {key: item for key, item in keyed if key not in self.values}
        self.pending: list[tuple[str, Input]] = list(pending.items())
        if order is not None:
            self.pending.sort(key=lambda kv: order(kv[1]))

    def batches(self, size: int) -> Iterator[list[tuple[str, Input]]]:
        """The pending (key, input) pairs, ``size`` at a time."""
        for start in range(0, len(self.pending), size):
            yield self.pending[start : start + size]

    def save(self, new: Mapping[str, Any], *,
             storable: Callable[[Any], bool] | None = None) -> None:
        """Keep ``new`` values and store those ``storable`` accepts (all by default): a value
        worth asking for again, like an unscored judgment, is returned but not cached."""
        self.values.update(new)
        kept = {k: v for k, v in new.items() if storable is None or storable(v)}
        if self.store is not None and kept:
            self.store.put_many(self.namespace, kept)
