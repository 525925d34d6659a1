"""The run directory contract: atomic writes and stage markers holding input fingerprints.

A stage is skipped only when its marker's fingerprint matches the fingerprint of its current
inputs (config slice, data hash, model fingerprint, code version); a file that merely exists is
not trusted.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from pydantic import BaseModel

import ftrisk
from ftrisk.store import content_key


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temp file and rename, so a killed process never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Yield a scratch folder that replaces ``target`` only when the block completes.

    The old folder is moved aside first and removed last, so a kill at any moment leaves either
    the old or the new folder at ``target`` (or neither, for a first build), never half of one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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


class RunDir:
    """A run directory: stage outputs plus ``stages/<name>.json`` completion markers."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, *parts: str) -> Path:
        """A path inside the run directory."""
        return self.root.joinpath(*parts)

    def _marker(self, stage: str) -> Path:
        return self.root / "stages" / f"{stage.replace('/', '__')}.json"

    def is_done(self, stage: str, fingerprint: str) -> bool:
        """True when ``stage`` finished with exactly these inputs."""
        marker = self._marker(stage)
        if not marker.is_file():
            return False
        try:
            return json.loads(marker.read_text())["fingerprint"] == fingerprint
        except (ValueError, KeyError, TypeError):
            return False

    def clear(self, stage: str) -> None:
        """Forget that ``stage`` finished: called before its output is rewritten, so a kill
        between the new output and the new marker never pairs new output with an old marker."""
        self._marker(stage).unlink(missing_ok=True)

    def mark_done(self, stage: str, fingerprint: str, **info: object) -> None:
        """Record that ``stage`` finished with these inputs."""
        payload = {"stage": stage, "fingerprint": fingerprint, "finished": time.time(), **info}
        atomic_write_text(self._marker(stage), json.dumps(payload, indent=2, default=str))

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
        """Read records written by :meth:`write_jsonl`."""
        text = self.path(relpath).read_text(encoding="utf-8")
        # split("\n"), not splitlines(): model output may hold U+2028 and friends.
        return [model.model_validate_json(line) for line in text.split("\n") if line.strip()]
