"""The run directory contract: atomic writes and stage markers holding input fingerprints.

A stage is skipped only when its marker's fingerprint matches the fingerprint of its current
inputs (config slice, data hash, model fingerprint, code version) and every output file the
marker recorded (size, record count, sha256) is still what the stage wrote; a file that merely
exists is not trusted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from pydantic import BaseModel

import ftrisk
from ftrisk.errors import InputError
from ftrisk.store import content_key

#: Scratch names of :func:`atomic_write_text` and :func:`atomic_dir`: ``.<name>.<pid>.tmp|old``.
_SCRATCH = re.compile(r"^\..+\.(?P<pid>\d+)\.(?:tmp|old)$")
#: Lock file of :meth:`RunDir.exclusive` (kept: a lock file is never safe to delete).
LOCK_NAME = ".ftrisk.lock"


class DamagedFileError(InputError, ValueError):
    """A file of the run directory that cannot be read back (cut short, edited, corrupt)."""


def _with_path(err: OSError, path: Path) -> OSError:
    # A failed write() reports no file name; the one-line error must name the file.
    if err.filename is None:
        err.filename = str(path)
    return err


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a killed process never leaves half a file.

    On failure (a full disk, a read-only folder) the temp file is removed, the old file is
    kept, and the OSError names ``path``.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _with_path(err, path.parent) from None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise _with_path(err, path) from None
        raise


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_scratch(root: Path, *, max_depth: int = 8) -> list[Path]:
    """Remove the temp files and folders that killed writes left under ``root`` (those of
    processes no longer running); returns what was removed."""
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    base_depth = len(root.parts)
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        for name in [*dirs, *files]:
            match = _SCRATCH.match(name)
            if match is None or _pid_alive(int(match["pid"])):
                continue
            path = here / name
            try:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError:
                continue  # not ours to remove (permissions): leave it
            removed.append(path)
        # Never descend into scratch folders, nor deeper than max_depth.
        dirs[:] = [] if len(here.parts) - base_depth >= max_depth else [
            d for d in dirs if not _SCRATCH.match(d)]
    return removed


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a scratch folder that replaces ``target`` only when the block completes.

    The old folder is moved aside first and removed last, so a kill at any moment leaves either
    the old or the new folder at ``target`` (or neither, for a first build), never half of one.
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as err:
        raise _with_path(err, target) from None
    try:
        yield tmp
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(err, OSError):
            raise _with_path(err, target) from None
        raise
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    if target.exists():
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


@functools.cache
def code_version() -> str:
    """Hash of ftrisk's own code and data files, so any change of code invalidates stages.

    Presets are left out: they are configs, whose settings reach each stage's fingerprint as
    inputs, so adding a preset must not make every cached stage stale.
    """
    root = Path(ftrisk.__file__).parent
    digest = hashlib.sha256(ftrisk.__version__.encode())
    for file in sorted(root.rglob("*")):
        if file.suffix in {".py", ".yaml", ".txt"} and "__pycache__" not in file.parts and \
                file.relative_to(root).parts[0] != "presets":
            digest.update(file.relative_to(root).as_posix().encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def stage_fingerprint(*parts: object) -> str:
    """Fingerprint of a stage's inputs, including the code version."""
    return content_key(code_version(), *parts)[:16]


def _reason(err: ValueError) -> str:
    """The first problem of a validation error, in one line."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return f"{where}: {first['msg']}" if where else str(first["msg"])
    return " ".join(str(err).split())


class StageCheck(NamedTuple):
    """Whether a stage can be skipped, and what is wrong when a finished stage cannot."""

    done: bool
    #: Set when the stage finished with these inputs but an output it wrote is damaged (or
    #: its marker is unreadable): one line naming the file and why.
    problem: str | None = None


def _scan(path: Path) -> tuple[int, str, int, bool]:
    """(bytes, sha256, newline count, ends with a newline) of a file, read once in chunks."""
    digest, size, newlines, last = hashlib.sha256(), 0, 0, b""
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    return size, digest.hexdigest(), newlines, last in (b"", b"\n")


def _describe(path: Path) -> dict[str, object]:
    size, sha, newlines, _ = _scan(path)
    record: dict[str, object] = {"bytes": size, "sha256": sha}
    if path.suffix == ".jsonl":
        record["records"] = newlines  # write_jsonl ends every record with one newline
    return record


def _problem(rel: str, path: Path, want: dict[str, object]) -> str | None:
    """Why ``path`` is not the file a stage recorded as ``want``; None when it is."""
    if not path.is_file():
        return f"{rel} is missing"
    try:
        size, sha, newlines, ends_whole = _scan(path)
    except OSError as err:
        return f"{rel} cannot be read ({err.strerror or err})"
    if sha == want.get("sha256"):
        return None
    if "records" in want:
        if not ends_whole:
            return f"{rel} ends mid-line (cut short)"
        if newlines != want["records"]:
            return f"{rel} has {newlines} records, the stage wrote {want['records']}"
    if isinstance(want.get("bytes"), int) and size != want["bytes"]:
        cut = " (truncated)" if size < want["bytes"] else ""
        return f"{rel} is {size} bytes, the stage wrote {want['bytes']}{cut}"
    if path.suffix == ".json":
        try:
            json.loads(path.read_bytes())
        except ValueError as err:
            return f"{rel} is not valid JSON ({err})"
    return f"{rel} changed since the stage wrote it (content hash differs)"


class RunDir:
    """A run directory: stage outputs plus ``stages/<name>.json`` completion markers."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise _with_path(err, self.root) from None

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the run directory for one process: a second ftrisk run on the same folder
        stops at once with one line, instead of both writing the same stage outputs."""
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.root / LOCK_NAME))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise InputError("another ftrisk process is running in this run directory; wait "
                             "for it to finish or choose another --run-dir",
                             path=self.root) from None
        try:
            yield
        finally:
            lock.release()

    def path(self, *parts: str) -> Path:
        """A path inside the run directory."""
        return self.root.joinpath(*parts)

    def _marker(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage.replace('/', '__')}.json"

    def _read_marker(self, stage: str) -> dict | None:
        """The marker of ``stage``; None when absent; ValueError when unreadable."""
        marker = self._marker(stage)
        if not marker.is_file():
            return None
        try:
            payload = json.loads(marker.read_bytes())
        except (OSError, ValueError) as err:
            raise ValueError(str(err)) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("fingerprint"), str):
            raise ValueError("no fingerprint")
        return payload

    def check(self, stage: str, fingerprint: str) -> StageCheck:
        """Whether ``stage`` finished with exactly these inputs and its outputs are intact.

        A stage that never ran or ran with other inputs is simply not done; one that finished
        with these inputs but whose output was since cut, edited or deleted (or whose marker
        is unreadable) is not done either, and ``problem`` says which file and why.
        """
        try:
            payload = self._read_marker(stage)
        except ValueError:
            rel = self._marker(stage).relative_to(self.root).as_posix()
            return StageCheck(False, f"its marker {rel} is unreadable")
        if payload is None or payload["fingerprint"] != fingerprint:
            return StageCheck(False)
        problem = self._outputs_problem(payload)
        return StageCheck(problem is None, problem)

    def is_done(self, stage: str, fingerprint: str) -> bool:
        """True when ``stage`` finished with exactly these inputs and its outputs are intact."""
        return self.check(stage, fingerprint).done

    def damage(self, stage: str) -> str | None:
        """What is wrong with the outputs ``stage`` recorded (None: intact, or no marker)."""
        try:
            payload = self._read_marker(stage)
        except ValueError:
            return None
        return None if payload is None else self._outputs_problem(payload)

    def _outputs_problem(self, payload: dict) -> str | None:
        outputs = payload.get("outputs") or {}
        if not isinstance(outputs, dict):
            return "its marker's output list is unreadable"
        for rel, want in outputs.items():
            problem = _problem(rel, self.path(rel), want if isinstance(want, dict) else {})
            if problem is not None:
                return problem
        return None

    def clear(self, stage: str) -> None:
        """Forget that ``stage`` finished: called before its output is rewritten, so a kill
        between the new output and the new marker never pairs new output with an old marker."""
        self._marker(stage).unlink(missing_ok=True)

    def mark_done(self, stage: str, fingerprint: str, *, outputs: Sequence[str | Path] = (),
                  **info: object) -> None:
        """Record that ``stage`` finished with these inputs, and what it wrote: the size,
        sha256 (and, for JSON Lines, the record count) of each file of ``outputs`` (paths
        inside the run directory; a folder stands for every file in it)."""
        files: dict[str, object] = {}
        for output in outputs:
            path = self.path(str(output))
            found = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
            for file in found:
                files[file.relative_to(self.root).as_posix()] = _describe(file)
        payload = {"stage": stage, "fingerprint": fingerprint, "finished": time.time(), **info,
                   "outputs": files}
        atomic_write_text(self._marker(stage), json.dumps(payload, indent=2, default=str))

    def remove_stale_scratch(self) -> list[Path]:
        """Remove temp files and folders that killed writes left in the run directory."""
        return remove_stale_scratch(self.root)

    def write_json(self, relpath: str, data: object) -> Path:
        """Write JSON atomically; pydantic models are dumped."""
        if isinstance(data, BaseModel):
            data = data.model_dump(mode="json")
        path = self.path(relpath)
        atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False, default=str))
        return path

    def write_jsonl(self, relpath: str, records: Iterable[BaseModel]) -> Path:
        """Write records as JSON Lines atomically."""
        path = self.path(relpath)
        lines = (json.dumps(r.model_dump(mode="json"), ensure_ascii=False) for r in records)
        atomic_write_text(path, "".join(line + "\n" for line in lines))
        return path

    def read_jsonl(self, relpath: str, model: type[BaseModel]) -> list:
        """Read records written by :meth:`write_jsonl`; a line that is not a whole ``model``
        record raises :class:`DamagedFileError` naming the file and line."""
        path = self.path(relpath)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as err:
            raise DamagedFileError(f"not valid UTF-8 at byte {err.start}", path=path) from None
        records = []
        # split("\n"), not splitlines(): model output may hold U+2028 and friends.
        for number, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            try:
                records.append(model.model_validate_json(line))
            except ValueError as err:
                raise DamagedFileError(f"not a whole {model.__name__} record ({_reason(err)}); "
                                       "the file is damaged", path=path, line=number) from None
        return records
