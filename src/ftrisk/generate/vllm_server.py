"""The ``vllm`` backend: offline batched generation by a vLLM server that ftrisk starts and stops.

vLLM pins its own torch and transformers, so it runs from its own Python environment
(``generation.vllm.python``) as an OpenAI-compatible server on loopback, started once per base
model and stopped when the run ends (:class:`~ftrisk.generate.backend.Services`). ftrisk sends
it token ids: the prompts are rendered and tokenized exactly as the ``hf`` backend does (chat
template and system prompt included, no second BOS), so both backends store the same rendered
prompts. Decoding is greedy (temperature 0).

Tuned models: a LoRA adapter is loaded into the base model's server at run time
(``/v1/load_lora_adapter``) and asked by its name; a fully tuned model gets a server of its own.
One server runs at a time (an accelerator holds one): starting another stops the running one.
Prefix and adapter (LLaMA-Adapter) tuning have no vLLM equivalent: those need the ``hf``
backend, and ftrisk says so before it starts anything.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ftrisk.errors import FtriskError, InputError
from ftrisk.generate.backend import ModelRef, Services, TemplatedBackend
from ftrisk.protocols import ChatReply

#: The name the base model is served under.
BASE_NAME = "base"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """In the server's process, before vLLM starts: on Linux, be sent SIGTERM when ftrisk
    dies, however it dies (kill -9 included), so no server outlives its run holding the
    accelerator's memory; vLLM stops its engine processes on SIGTERM."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _tail(path: Path, lines: int = 8) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return " | ".join(line.strip() for line in deque(handle, maxlen=lines))
    except OSError:
        return "(no log)"


class VLLMServer:
    """One vLLM OpenAI-compatible server for ``model_path``, as a context manager: entering
    starts it and waits until it answers, leaving stops it and every process it started."""

    def __init__(self, model_path: str, spec: Any, *, log_file: Path) -> None:
        self.model_path = model_path
        self.spec = spec
        self.log_file = log_file
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._adapters: dict[str, str] = {}

    @property
    def pid(self) -> int | None:
        """The server's process id (its process group's too) while it runs."""
        return None if self._proc is None else self._proc.pid

    def command(self, port: int) -> list[str]:
        """The server's command line."""
        spec = self.spec
        cmd = [spec.python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
               "--model", self.model_path, "--served-model-name", BASE_NAME,
               "--host", "127.0.0.1", "--port", str(port), "--dtype", spec.dtype,
               "--seed", "0", "--enable-lora", "--max-lora-rank", str(spec.max_lora_rank)]
        if spec.max_model_len is not None:
            cmd += ["--max-model-len", str(spec.max_model_len)]
        return [*cmd, *spec.extra_args]

    def __enter__(self) -> VLLMServer:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        # Adapters are loaded as each tuned model comes up, not known at start.
        env = {**os.environ, "VLLM_ALLOW_RUNTIME_LORA_UPDATING": "True"}
        with self.log_file.open("ab") as log:
            try:
                # Its own session: stopping the group stops the engine processes it forks.
                self._proc = subprocess.Popen(self.command(port), stdout=log,
                                              stderr=subprocess.STDOUT, env=env,
                                              stdin=subprocess.DEVNULL, start_new_session=True,
                                              preexec_fn=_die_with_parent)
            except OSError as err:
                raise InputError(f"cannot start vLLM: {err.strerror or err}",
                                 field="generation.vllm.python") from None
        try:
            self._wait_until_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + self.spec.startup_timeout
        while True:
            assert self._proc is not None
            code = self._proc.poll()
            if code is not None:
                raise FtriskError(
                    f"the vLLM server for {self.model_path} exited with code {code} while "
                    f"starting (is vLLM installed for generation.vllm.python?); its log "
                    f"{self.log_file} ends: {_tail(self.log_file)}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=5) as reply:
                    if reply.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise FtriskError(
                    f"the vLLM server for {self.model_path} did not answer within "
                    f"{self.spec.startup_timeout:g} s (generation.vllm.startup_timeout); its "
                    f"log {self.log_file} ends: {_tail(self.log_file)}")
            time.sleep(0.5)

    def stop(self) -> None:
        """Stop the server (SIGTERM, SIGKILL after 30 s), then any process it left behind."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        # Engine workers still in the group once the server is gone are orphans.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def post(self, path: str, body: dict[str, Any], timeout: float) -> Any:
        """POST ``body`` as JSON; the reply (decoded JSON, or its text when it is not JSON),
        or FtriskError with the server's own error text."""
        request = urllib.request.Request(f"{self.url}{path}", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                text = reply.read().decode("utf-8", errors="replace")
        except urllib.error.HTTPError as err:
            detail = " ".join(err.read().decode("utf-8", errors="replace").split())[:300]
            raise FtriskError(f"vLLM {path}: HTTP {err.code}: {detail}") from None
        except OSError as err:
            raise FtriskError(f"vLLM {path}: {err} (its log: {self.log_file})") from None
        try:
            return json.loads(text)
        except ValueError:  # some routes answer in plain text ("Success: ...")
            return text

    def serve_adapter(self, adapter_dir: Path, fingerprint: str) -> str:
        """Load the LoRA adapter in ``adapter_dir`` once per ``fingerprint`` (its weights':
        an adapter retrained in place is loaded anew) and return the name to ask it by."""
        name = f"lora-{fingerprint[:16]}"
        if name not in self._adapters:
            self.post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": str(adapter_dir)},
                      timeout=600)
            self._adapters[name] = str(adapter_dir)
        return name


def _served(model: ModelRef, spec: Any, services: Services) -> tuple[VLLMServer, str]:
    """The server that serves ``model`` and the model name to ask it for."""
    def server(path: str) -> VLLMServer:
        log = services.log_dir / f"vllm-{hashlib.sha256(path.encode()).hexdigest()[:8]}.log"
        return services.shared(("vllm", path), lambda: VLLMServer(path, spec, log_file=log),
                               alone=True)

    tuned = model.tuned
    if tuned is None:
        return server(model.path), BASE_NAME
    config_file = tuned / "adapter_config.json"
    if not config_file.is_file():  # a fully tuned model
        return server(str(tuned)), BASE_NAME
    peft_type = json.loads(config_file.read_text(encoding="utf-8")).get("peft_type")
    if peft_type != "LORA":
        raise InputError(f"vLLM serves LoRA adapters and whole models, not {peft_type} "
                         "adapters; use generation.backend: hf for this attack",
                         field="generation.backend")
    base = server(model.path)
    return base, base.serve_adapter(tuned, model.fingerprint)


class VLLMBackend(TemplatedBackend):
    """Greedy answers from a vLLM server, ``batch_size`` prompts per request.

    ``connect()`` gives the running server and the model name to ask it for; it is called for
    each batch, so a backend whose answers are all cached starts nothing. ``tokenizer`` (ftrisk's,
    chat template override included) renders and tokenizes prompts exactly as the ``hf``
    backend does.
    """

    def __init__(self, connect: Callable[[], tuple[VLLMServer, str]], tokenizer: Any, *,
                 model_fingerprint: str, max_new_tokens: int = 64, batch_size: int = 64,
                 timeout: float = 3600.0) -> None:
        self._connect = connect
        self.tokenizer = tokenizer
        self.model_fingerprint = model_fingerprint
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.timeout = timeout

    @classmethod
    def for_model(cls, model: ModelRef, tokenizer: Any, spec: Any, *, bf16: bool,
                  services: Services) -> VLLMBackend:
        """The backend an audit uses for ``model`` with its ``generation`` settings (vLLM
        takes its dtype from ``generation.vllm.dtype``, not from ``bf16``)."""
        return cls(lambda: _served(model, spec.vllm, services), tokenizer,
                   model_fingerprint=model.fingerprint, max_new_tokens=spec.max_new_tokens,
                   batch_size=spec.batch_size)

    def __repr__(self) -> str:
        return (f"VLLMBackend(model={self.model_fingerprint!r}, "
                f"max_new_tokens={self.max_new_tokens})")

    @property
    def decoding(self) -> dict[str, object]:
        """Greedy settings and the engine (vLLM's kernels give other sums than transformers')."""
        return {"max_new_tokens": self.max_new_tokens, "do_sample": False, "engine": "vllm"}

    @property
    def fingerprint(self) -> str:
        """sha256 of the weights' fingerprint and the decoding settings."""
        payload = {"backend": "vllm", "model": self.model_fingerprint, **self.decoding}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def generate(self, rendered: Sequence[str]) -> list[ChatReply]:
        """Answer rendered prompts in one request, sent as token ids (the template already
        wrote the special tokens)."""
        # Asked each time: the server may have been stopped for another model's since.
        server, name = self._connect()
        ids = [self.tokenizer(text, add_special_tokens=False)["input_ids"] for text in rendered]
        reply = server.post("/v1/completions", {
            "model": name, "prompt": ids, "max_tokens": self.max_new_tokens,
            "temperature": 0.0}, timeout=self.timeout)
        choices = sorted(reply["choices"], key=lambda c: c["index"])
        return [ChatReply(text=c["text"].strip(), prompt_tokens=len(prompt),
                          completion_tokens=0) for c, prompt in zip(choices, ids)]
