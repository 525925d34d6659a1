"""A stand-in for ``python -m vllm.entrypoints.openai.api_server`` speaking the same HTTP API.

Run as ``python fake_vllm.py -m vllm.entrypoints.openai.api_server --model M --port P ...``
(what ftrisk runs, with this file in place of the interpreter's module lookup). It answers
``/health``, ``/v1/load_lora_adapter`` and ``/v1/completions`` (token-id prompts only, as
ftrisk sends them) with ``"<model name>|<prompt length>|<last token id>"``, records every
request in ``$FAKE_VLLM_LOG`` as JSON lines, and forks one child process so that tests can
check that stopping the server stops its whole process group (on SIGTERM it stops the child
first, as vLLM stops its engine). ``$FAKE_VLLM_MODE`` set to
``exit`` makes it fail at start; ``hang`` makes it never answer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _arg(name: str) -> str:
    return sys.argv[sys.argv.index(name) + 1]


def _log(record: dict) -> None:
    with open(os.environ["FAKE_VLLM_LOG"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")


class Handler(BaseHTTPRequestHandler):
    adapters: dict[str, str] = {}

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def _send(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _plain(self, status: int, text: str) -> None:  # vLLM answers some routes in text
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802
        self._send(200 if self.path == "/health" else 404, {})

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _log({"path": self.path, "body": body})
        if self.path == "/v1/load_lora_adapter":
            if not os.path.isfile(os.path.join(body["lora_path"], "adapter_config.json")):
                self._send(400, {"error": {"message": "No adapter found"}})
                return
            self.adapters[body["lora_name"]] = body["lora_path"]
            self._plain(200, f"Success: LoRA adapter '{body['lora_name']}' added successfully.")
            return
        if self.path != "/v1/completions":
            self._send(404, {})
            return
        name = body["model"]
        if name != "base" and name not in self.adapters:
            self._send(404, {"error": {"message": f"The model `{name}` does not exist."}})
            return
        choices = [{"index": i, "text": f" {name}|{len(ids)}|{ids[-1]} ", "finish_reason": "length"}
                   for i, ids in enumerate(body["prompt"])]
        self._send(200, {"choices": choices[::-1]})  # any order: ftrisk sorts by index


def main() -> None:
    mode = os.environ.get("FAKE_VLLM_MODE", "")
    _log({"argv": sys.argv[1:], "pid": os.getpid()})
    if mode == "exit":
        print("ImportError: No module named 'vllm'", flush=True)
        sys.exit(3)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    _log({"child": child.pid})

    def stop(*_: object) -> None:  # as vLLM does: stop the engine processes, then exit
        child.terminate()
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    if mode == "hang":
        time.sleep(600)
    ThreadingHTTPServer(("127.0.0.1", int(_arg("--port"))), Handler).serve_forever()


if __name__ == "__main__":
    main()
