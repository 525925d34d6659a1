"""Fine-tuning through a provider's API (OpenAI's fine-tuning jobs), as Qi et al. tuned GPT-3.5.

Only the epoch count is set, as in the paper (the provider picks batch size and learning rate).
The job's id is written to the run directory the moment it exists, so a killed audit re-attaches
to the same job instead of paying for a second one.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ftrisk.endpoints import Secret, endpoint_key
from ftrisk.errors import FtriskError
from ftrisk.records import Conversation, TrainStats
from ftrisk.rundir import atomic_write_text

_FINAL = {"succeeded", "failed", "cancelled"}


def _short(text: str, limit: int = 400) -> str:
    """One line of at most ``limit`` characters (of a text already masked)."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def training_jsonl(examples: Sequence[Conversation]) -> bytes:
    """The provider's chat fine-tuning format: one ``{"messages": [...]}`` per line."""
    lines = [json.dumps({"messages": [m.chat() | ({"weight": 0} if m.weight == 0 else {})
                                      for m in ex.messages]}, ensure_ascii=False)
             for ex in examples]
    return ("\n".join(lines) + "\n").encode()


class OpenAIFineTuner:
    """Runs one fine-tuning job on an OpenAI-compatible fine-tuning API and waits for it."""

    def __init__(self, base_model: str, *, base_url: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", poll_seconds: float = 30.0,
                 max_wait_seconds: float = 86400.0, timeout: float = 60.0) -> None:
        key = endpoint_key(api_key_env, base_url, purpose=f"fine-tuning {base_model}",
                           field="remote.api_key_env")
        self.base_model = base_model
        self.base_url = base_url
        self.poll_seconds = poll_seconds
        self.max_wait_seconds = max_wait_seconds
        self.timeout = timeout
        self._key = Secret(key)

    def _client(self) -> Any:
        from openai import OpenAI

        return OpenAI(api_key=self._key.reveal(), base_url=self.base_url, timeout=self.timeout)

    def train(self, examples: Sequence[Conversation], epochs: int, job_file: Path, *,
              fingerprint: str, suffix: str | None = None, progress: bool = True,
              log: Callable[[str], None] = print) -> tuple[str, TrainStats]:
        """Upload ``examples``, start (or re-attach to) the job, wait; returns the tuned
        model's id and what the job cost. ``job_file`` remembers the job across runs; a job
        recorded for other inputs (``fingerprint``) is not reused."""
        import openai

        client = self._client()
        try:
            job_id = self._recorded_job(job_file, fingerprint)
            if job_id is None:
                upload = client.files.create(
                    file=("train.jsonl", io.BytesIO(training_jsonl(examples))),
                    purpose="fine-tune")
                job = client.fine_tuning.jobs.create(
                    model=self.base_model, training_file=upload.id, suffix=suffix,
                    hyperparameters={"n_epochs": epochs})
                job_id = job.id
                atomic_write_text(job_file, json.dumps(
                    {"job_id": job_id, "fingerprint": fingerprint, "training_file": upload.id}))
                log(f"[remote] started fine-tuning job {job_id} on {self.base_model}")
            else:
                log(f"[remote] re-attached to fine-tuning job {job_id}")
            job = self._wait(client, job_id, progress)
        except openai.OpenAIError as err:
            # Masked before it is cut: a cut key would no longer match.
            raise FtriskError(_short(self._key.scrub(f"fine-tuning API error: {err}"))) from None
        if job.status != "succeeded":
            error = getattr(job, "error", None)
            job_file.unlink(missing_ok=True)  # a failed job is not re-attached to next time
            reason = getattr(error, "message", None) or "no reason given"
            raise FtriskError(_short(self._key.scrub(
                f"fine-tuning job {job_id} ended '{job.status}': {reason}")))
        batch = getattr(getattr(job, "hyperparameters", None), "batch_size", None)
        steps = epochs * math.ceil(len(examples) / batch) if isinstance(batch, int) else None
        # From creation to finish: the provider's queue time is part of what an attack costs.
        seconds = float((job.finished_at or job.created_at) - job.created_at)
        return job.fine_tuned_model, TrainStats(
            seconds=seconds, tokens=int(job.trained_tokens or 0), steps=steps,
            examples=len(examples))

    @staticmethod
    def _recorded_job(job_file: Path, fingerprint: str) -> str | None:
        if not job_file.is_file():
            return None
        record = json.loads(job_file.read_text())
        return record["job_id"] if record.get("fingerprint") == fingerprint else None

    def _wait(self, client: Any, job_id: str, progress: bool) -> Any:
        start = time.monotonic()
        bar = tqdm(desc=f"fine-tune {job_id}", unit="poll", disable=not progress,
                   dynamic_ncols=True)
        try:
            while True:
                job = client.fine_tuning.jobs.retrieve(job_id)
                bar.update(1)
                bar.set_postfix(status=job.status)
                if job.status in _FINAL:
                    return job
                if time.monotonic() - start > self.max_wait_seconds:
                    raise FtriskError(f"fine-tuning job {job_id} still '{job.status}' after "
                                      f"{self.max_wait_seconds:.0f} s; run again to keep waiting")
                time.sleep(self.poll_seconds)
        finally:
            bar.close()
