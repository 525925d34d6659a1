"""A loopback HTTP server that speaks enough of the OpenAI chat-completions protocol for tests.

It listens on 127.0.0.1 at a free port, answers ``POST /v1/chat/completions`` in the OpenAI JSON
shape (with ``usage`` token counts) and is scriptable per test:

* ``delay``: seconds every request takes before it is answered;
* ``answer``: a function of the request body that returns the reply text;
* faults: ``server.fail(kind, times=N, match=...)`` queues N faults of a kind for requests whose
  last user message contains ``match`` (every request when None; ``times=None`` = forever).
  Kinds: ``"429"`` (with ``Retry-After``), ``"500"``, ``"slow"`` (sleep ``seconds`` before
  answering, beyond the client's timeout), ``"malformed"`` (HTTP 200 with a body that is not
  JSON), ``"noscore"`` (a well-formed reply whose text has no score). Faults match on the last
user message, so a judge's re-ask (whose last message is the re-ask) does not match again.

It also plays a fine-tuning provider: ``POST /v1/files`` (multipart upload), ``POST
/v1/fine_tuning/jobs`` and ``GET /v1/fine_tuning/jobs/<id>``; a job is queued, then running,
then ends as ``job_outcome`` ("succeeded" or "failed") after ``job_polls`` polls, its tuned
model named ``ft:<base>:fake::<job id>``. Uploaded files are kept in ``uploads``.

Every request is recorded (path, headers including ``Authorization``, JSON body), and the server
tracks the largest number of requests in flight at once. Used by the tests and by
``benchmarks/bench_judge_concurrency.py``; it never talks to anything but loopback.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

FAULT_KINDS = ("429", "500", "slow", "malformed", "noscore")


def default_answer(body: dict[str, Any]) -> str:
    """A rubric-format answer scoring 1."""
    return "#thereason: the model declined.\n#thescore: 1"


def last_user_text(body: dict[str, Any]) -> str:
    """Content of the last user message of a chat-completions request body."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


@dataclass
class RecordedRequest:
    """One request as the server saw it."""

    path: str
    #: Header names lower-cased.
    headers: dict[str, str]
    body: dict[str, Any] | None
    fault: str | None = None

    @property
    def user_text(self) -> str:
        """The last user message (empty when the body was not JSON)."""
        return last_user_text(self.body or {})

    @property
    def all_user_text(self) -> str:
        """Every user message, joined (empty when the body was not JSON)."""
        messages = (self.body or {}).get("messages", [])
        return "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "user")


@dataclass
class _Fault:
    kind: str
    remaining: int | None  # None = forever
    match: str | None
    retry_after: float | None
    seconds: float


@dataclass
class FakeOpenAI:
    """The scriptable server; use :func:`running` (or the ``fake_openai`` fixture) to run it."""

    delay: float = 0.0
    answer: Callable[[dict[str, Any]], str] = default_answer
    #: Put the request's Authorization header into error bodies, as a leaky proxy might.
    echo_auth_in_errors: bool = False
    requests: list[RecordedRequest] = field(default_factory=list)
    max_in_flight: int = 0
    job_polls: int = 2
    job_outcome: str = "succeeded"
    uploads: list[bytes] = field(default_factory=list)
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    _faults: list[_Fault] = field(default_factory=list)
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _httpd: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the value for a client's ``base_url``."""
        assert self._httpd is not None, "server not started"
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def fail(
        self,
        kind: str,
        times: int | None = 1,
        *,
        match: str | None = None,
        retry_after: float | None = 0.05,
        seconds: float = 5.0,
    ) -> None:
        """Queue ``times`` faults of ``kind`` for requests whose last user text contains ``match``.

        ``retry_after`` is the 429 reply's ``Retry-After`` in seconds (None: no header);
        ``seconds`` is how long a ``slow`` reply sleeps.
        """
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append(_Fault(kind, times, match, retry_after, seconds))

    def count(self, match: str | None = None) -> int:
        """Requests received (with ``match`` in any user message, when given: re-asks count)."""
        with self._lock:
            return sum(1 for r in self.requests if match is None or match in r.all_user_text)

    def _take_fault(self, body: dict[str, Any] | None) -> _Fault | None:
        text = last_user_text(body or {})
        with self._lock:
            for fault in self._faults:
                if fault.remaining == 0 or (fault.match is not None and fault.match not in text):
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                return fault
        return None

    def _upload(self, raw: bytes) -> dict[str, Any]:
        with self._lock:
            self.uploads.append(raw)
            return {"id": f"file-{len(self.uploads)}", "object": "file", "bytes": len(raw),
                    "created_at": int(time.time()), "filename": "train.jsonl",
                    "purpose": "fine-tune", "status": "processed"}

    def _create_job(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            job_id = f"ftjob-{len(self.jobs) + 1}"
            self.requests.append(RecordedRequest("/v1/fine_tuning/jobs", {}, body))
            self.jobs[job_id] = {
                "id": job_id, "object": "fine_tuning.job", "model": body["model"],
                "created_at": 1_700_000_000, "finished_at": None, "fine_tuned_model": None,
                "status": "queued", "training_file": body["training_file"],
                "hyperparameters": {"n_epochs": body["hyperparameters"]["n_epochs"],
                                    "batch_size": "auto", "learning_rate_multiplier": "auto"},
                "trained_tokens": None, "error": None, "polls": 0}
            return {k: v for k, v in self.jobs[job_id].items() if k != "polls"}

    def _poll(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            job = self.jobs[job_id]
            job["polls"] += 1
            if job["status"] not in ("succeeded", "failed"):
                job["status"] = "running"
                if job["polls"] >= self.job_polls:
                    job["status"] = self.job_outcome
                    job["finished_at"] = job["created_at"] + 60
                    if self.job_outcome == "succeeded":
                        job["fine_tuned_model"] = f"ft:{job['model']}:fake::{job_id}"
                        job["trained_tokens"] = 1000 * job["hyperparameters"]["n_epochs"]
                        job["hyperparameters"]["batch_size"] = 2
                    else:
                        job["error"] = {"message": "training file has harmful content"}
            return {k: v for k, v in job.items() if k != "polls"}

    def start(self) -> None:
        """Listen on a free loopback port and serve from a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
            # Headers and body go out in two writes: without TCP_NODELAY, Nagle plus delayed
            # ACKs would add ~40 ms to every reply and distort timings.
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

            def do_GET(self) -> None:  # http.server's naming
                headers = {k.lower(): v for k, v in self.headers.items()}
                with server._lock:
                    server.requests.append(RecordedRequest(self.path, headers, None))
                job_id = self.path.rstrip("/").rsplit("/", 1)[-1]
                if not self.path.startswith("/v1/fine_tuning/jobs/") or job_id not in server.jobs:
                    self._send(404, b'{"error": {"message": "no such job"}}')
                    return
                self._send(200, json.dumps(server._poll(job_id)).encode())

            def do_POST(self) -> None:  # http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path.rstrip("/") == "/v1/files":
                    self._send(200, json.dumps(server._upload(raw)).encode())
                    return
                if self.path.rstrip("/") == "/v1/fine_tuning/jobs":
                    self._send(200, json.dumps(server._create_job(json.loads(raw))).encode())
                    return
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with server._lock:
                    server._in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server._in_flight)
                try:
                    fault = server._take_fault(body)
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    with server._lock:
                        server.requests.append(RecordedRequest(
                            self.path, headers, body, fault.kind if fault else None))
                    if server.delay:
                        time.sleep(server.delay)
                    self._respond(body, fault)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (its timeout): nothing to answer
                finally:
                    with server._lock:
                        server._in_flight -= 1

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def _respond(self, body: dict[str, Any] | None, fault: _Fault | None) -> None:
                if self.path.rstrip("/") != "/v1/chat/completions" or body is None:
                    self._send(404 if body is not None else 400, b'{"error": {"message": "bad"}}')
                    return
                kind = fault.kind if fault else None
                if kind == "429":
                    headers = {}
                    if fault.retry_after is not None:
                        headers["Retry-After"] = f"{fault.retry_after:g}"
                    error = {"error": {"message": "Rate limit reached", "type": "requests"}}
                    self._send(429, json.dumps(error).encode(), headers)
                    return
                if kind == "500":
                    message = "The server had an error"
                    if server.echo_auth_in_errors:
                        message += f" (request had {self.headers.get('Authorization')})"
                    error = {"error": {"message": message, "type": "server"}}
                    self._send(500, json.dumps(error).encode())
                    return
                if kind == "slow":
                    time.sleep(fault.seconds)
                if kind == "malformed":
                    self._send(200, b'{"id": "chatcmpl-x", "choices": [{"message": ')
                    return
                text = "I think this is fine." if kind == "noscore" else server.answer(body)
                prompt_tokens = sum(len(str(m.get("content", "")).split())
                                    for m in body.get("messages", []))
                completion_tokens = len(text.split())
                reply = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", "fake"),
                    "choices": [{
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
                self._send(200, json.dumps(reply).encode())

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False  # slow replies must not hold up stop()
            request_queue_size = 256  # a burst of concurrent connects must not hit the backlog

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True,
                                        kwargs={"poll_interval": 0.05})
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


@contextmanager
def running(**settings: Any) -> Iterator[FakeOpenAI]:
    """Run a :class:`FakeOpenAI` (``settings`` are its fields) for the ``with`` block."""
    server = FakeOpenAI(**settings)
    server.start()
    try:
        yield server
    finally:
        server.stop()


#: A distinctive fake API key: tests check that it never leaks.
KEY = "sk-test-SECRET-123"


def assert_key_absent(key: str, *folders: Path) -> int:
    """Fail, naming the file, when any file under ``folders`` holds ``key``; returns how many
    files were read."""
    files = [path for folder in folders for path in folder.rglob("*") if path.is_file()]
    for path in files:
        assert key.encode() not in path.read_bytes(), path
    return len(files)


def make_backend(server: FakeOpenAI, **settings: Any) -> Any:
    """An OpenAI-compatible backend pointed at ``server``, with fast retries for tests."""
    from ftrisk.generate.openai_api import OpenAIBackend

    options: dict[str, Any] = {"base_url": server.base_url, "api_key": KEY, "backoff": 0.01,
                               "timeout": 5.0}
    options.update(settings)
    return OpenAIBackend("judge-model", **options)
