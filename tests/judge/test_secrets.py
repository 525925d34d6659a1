"""API keys never reach a file, a log or an error, even when an endpoint echoes the request's
headers into its error replies and the key is long (20, 158 and 256 characters)."""

from __future__ import annotations

import json
import logging
import random
import string
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ftrisk.cli import main
from ftrisk.endpoints import Secret, redact
from ftrisk.generate.openai_api import OpenAIBackend
from tests.test_pipeline import write_inputs

BASE = "gpt-3.5-turbo-0613"


def make_key(length: int, prefix: str) -> str:
    rng = random.Random(length)
    return prefix + "".join(rng.choice(string.ascii_letters + string.digits)
                            for _ in range(length - len(prefix)))


# (length, prefix): a short sk- key, a project-style key of the reported length, and a long key
# without any recognisable prefix (masking must not rely on the sk- pattern).
KEYS = [make_key(20, "sk-"), make_key(158, "sk-proj-"), make_key(256, "")]


def leaked_pieces(text: str, key: str, piece: int = 8) -> list[str]:
    """Every ``piece``-character part of ``key`` that occurs in ``text``."""
    parts = {key[i : i + piece] for i in range(len(key) - piece + 1)}
    return sorted({text[i : i + piece] for i in range(len(text) - piece + 1)} & parts)


def assert_no_key(text: str, key: str, where: object) -> None:
    assert key not in text, where
    assert leaked_pieces(text, key) == [], where


class EchoServer:
    """A loopback OpenAI-compatible endpoint that answers chat requests for the models in
    ``answering`` and fails every other request (400 or 500, alternately, by request count)
    with an error body that quotes the request's headers, as a leaky proxy does: the header
    dict, the raw ``Authorization`` line, the bare token, and a cut piece of it."""

    def __init__(self) -> None:
        self.answering: set[str] = set()
        self.requests = 0
        self.authorizations: list[str] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def _error_body(self, headers: dict[str, str], auth: str) -> bytes:
        token = auth.split()[-1] if auth else ""
        message = (f"invalid request; request headers: {headers}; Authorization: {auth}; "
                   f"api-key: {token}; the key {token} is not valid; key starts "
                   f"{token[3:40]}... and ends ...{token[-30:]}")
        return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}
                          ).encode()

    def start(self) -> None:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _fail(self, status: int | None = None) -> None:
                headers = dict(self.headers.items())
                auth = self.headers.get("Authorization", "")
                with server._lock:
                    server.requests += 1
                    server.authorizations.append(auth)
                    status = status or (400 if server.requests % 2 else 500)
                self._send(status, server._error_body(headers, auth))

            def do_GET(self) -> None:  # http.server's naming
                self._fail(404)

            def do_POST(self) -> None:  # http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if not self.path.endswith("/chat/completions"):
                    self._fail(400)  # file uploads, fine-tuning jobs
                    return
                body = json.loads(raw)
                if body.get("model") not in server.answering:
                    self._fail()
                    return
                with server._lock:
                    server.authorizations.append(self.headers.get("Authorization", ""))
                reply = {"id": "c", "object": "chat.completion", "created": 0,
                         "model": body["model"], "usage": {"prompt_tokens": 1,
                                                           "completion_tokens": 1,
                                                           "total_tokens": 2},
                         "choices": [{"index": 0, "finish_reason": "stop", "message": {
                             "role": "assistant",
                             "content": "I'm sorry, but I can't help with that."}}]}
                self._send(200, json.dumps(reply).encode())

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            block_on_close = False
            request_queue_size = 256  # concurrent connects must not overflow the backlog

        self._httpd = Server(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._httpd.serve_forever, daemon=True,
                         kwargs={"poll_interval": 0.05}).start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()


@contextmanager
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


# --- redact -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", KEYS, ids=lambda k: f"{len(k)}-chars")
def test_redact_masks_the_key_its_pieces_and_credential_headers(key: str) -> None:
    text = (f"error: Authorization: Bearer {key}; {{'authorization': 'Bearer {key}'}}; "
            f"api-key: {key}; x-api-key={key}; bare {key[5:60]}; cut {key[:-11]}...")
    masked = redact(text, [key])
    assert_no_key(masked, key, masked)
    assert "***" in masked and masked.startswith("error: Authorization: ")
    # Cutting after masking cannot expose anything either.
    assert_no_key(masked[:160], key, masked)


def test_redact_masks_patterns_without_knowing_the_key() -> None:
    text = ("Authorization: Bearer abcdefgh12345678 | proxy-authorization: Basic dXNlcjpwYXNz | "
            "'api-key': 'AZUREKEY1234567890' | sk-ant-api03-SECRETSECRET | "
            "https://user:hunter22@example.com/v1 | Bearer tok_9876543210")
    masked = redact(text)
    for secret in ("abcdefgh12345678", "dXNlcjpwYXNz", "AZUREKEY1234567890", "SECRETSECRET",
                   "hunter22", "tok_9876543210"):
        assert secret not in masked, masked
    assert "https://***@example.com/v1" in masked
    # Ordinary words stay: names of settings, short tokens, text about keys.
    plain = "set the OPENAI_API_KEY environment variable (api_key_env: MY_KEY); risk-free"
    assert redact(plain) == plain


def test_secret_scrub_masks_partial_matches() -> None:
    key = KEYS[1]
    secret = Secret(key)
    assert secret.scrub(f"x {key[:20]} y") == "x *** y"
    assert secret.scrub(f"{key[100:107]}") == key[100:107]  # 7 characters: too short to mean it


# --- the backend against a real endpoint that echoes headers ----------------------------------


@pytest.mark.parametrize("key", KEYS, ids=lambda k: f"{len(k)}-chars")
def test_backend_errors_never_hold_the_key(key: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with echo_server() as server:
        backend = OpenAIBackend("judge-model", base_url=server.base_url, api_key=key,
                                      max_retries=1, backoff=0.01, timeout=5.0)
        replies = backend.complete([[{"role": "user", "content": f"q{i}"}] for i in range(4)])
    assert server.authorizations and all(a == f"Bearer {key}" for a in server.authorizations)
    errors = [r.error or "" for r in replies]
    assert all(r.text is None for r in replies)
    assert any("HTTP 400" in e for e in errors) and all("***" in e for e in errors)
    for error in errors:
        assert_no_key(error, key, error)
    assert_no_key(caplog.text, key, "captured log")


# --- whole audits: nothing written, printed or logged holds the key ---------------------------


def _config(root: Path, base_url: str) -> Path:
    write_inputs(root, root / "unused-model")  # the benchmark and attack files
    path = root / "secrets.yaml"
    path.write_text(f"""\
name: secrets
model: "openai:{BASE}"
remote: {{base_url: "{base_url}", poll_seconds: 0.01, max_retries: 0}}
benchmark:
  harmful: {{path: bench.csv}}
  lookalike: {{path: lookalike.csv, category_field: null}}
generation: {{max_new_tokens: 16}}
reference_baselines: false
llm_judges:
  - name: rubric
    backend:
      model: judge-model
      base_url: {base_url}
      api_key_env: FTRISK_TEST_JUDGE_KEY
      max_retries: 1
      concurrency: 4
attacks:
  - name: harmful-demos
    data: {{path: attack.jsonl}}
    train: {{epochs: 1}}
""")
    return path


def _files_text(*folders: Path) -> dict[Path, str]:
    return {path: path.read_bytes().decode("latin-1") for folder in folders
            for path in folder.rglob("*") if path.is_file()}


@pytest.mark.parametrize("key", KEYS, ids=lambda k: f"{len(k)}-chars")
def test_no_key_in_any_file_output_or_log_of_an_audit(key: str, tmp_path: Path, capsys,
                                                      caplog, monkeypatch) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("OPENAI_API_KEY", key)
    monkeypatch.setenv("FTRISK_TEST_JUDGE_KEY", key)
    with echo_server() as server:
        config = _config(tmp_path, server.base_url)
        run_dir, cache = tmp_path / "run", tmp_path / "cache"
        argv = ["audit", "--config", str(config), "--run-dir", str(run_dir), "--cache-dir",
                str(cache), "--no-progress"]
        # The hosted model answers; the judge's requests fail with the headers echoed (stored
        # as unscored judgments); then the fine-tuning upload fails the same way (raised).
        server.answering = {BASE}
        assert main(argv) == 2
        first = capsys.readouterr()
        rubric = run_dir / "conditions" / "baseline" / "judgments-rubric.jsonl"
        errors = [json.loads(line)["error"] for line in rubric.read_text().splitlines()]
        assert len(errors) == 12 and all("HTTP 4" in e or "HTTP 5" in e for e in errors)
        assert "fine-tuning API error" in first.err and len(first.err.strip().splitlines()) == 1

        # The hosted model fails too: generation stops with the endpoint's (masked) error.
        server.answering = set()
        argv[argv.index(str(run_dir))] = str(tmp_path / "run2")
        argv[argv.index(str(cache))] = str(tmp_path / "cache2")  # no cached answers
        assert main(argv) == 2
        second = capsys.readouterr()
        assert "prompts got no answer" in second.err
        assert len(second.err.strip().splitlines()) == 1
    assert server.authorizations and all(a == f"Bearer {key}" for a in server.authorizations)

    for path, text in _files_text(run_dir, tmp_path / "run2", cache, tmp_path / "cache2").items():
        assert_no_key(text, key, path)
    for name, text in [("stdout", first.out + second.out), ("stderr", first.err + second.err),
                       ("log", caplog.text)]:
        assert_no_key(text, key, name)
