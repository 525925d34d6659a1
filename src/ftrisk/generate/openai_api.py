"""The ``openai`` backend: chat completions from any OpenAI-compatible endpoint (OpenAI itself,
a provider's fine-tuned model, a local vLLM or llama.cpp server), concurrently, with retries.

A backend never raises for one bad prompt: a prompt that still fails after the retries comes
back with ``text=None`` and ``error="<kind>: <short reason>"``, and the others are unaffected.
The API key is kept in a :class:`~ftrisk.endpoints.Secret`, and every error text is masked
with :func:`~ftrisk.endpoints.redact` before it is cut short (a cut key would no longer match),
so fingerprints, reprs, logs and stored answers never hold it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import random
import re
from collections.abc import Sequence
from typing import Any

from ftrisk.endpoints import (
    MIN_SECRET_PIECE,
    Secret,
    backoff_wait,
    endpoint_key,
    mask_pieces,
    public_url,
    retry_after,
    retryable,
    short,
)
from ftrisk.protocols import ChatReply, Messages


class OpenAIBackend:
    """Chat completions from any OpenAI-compatible endpoint, concurrently, with retries.

    ``base_url`` None means OpenAI itself; the key comes from ``api_key`` or the environment
    variable ``api_key_env``. At most ``concurrency`` requests are in flight at once. A request
    that hits HTTP 408/409/429/5xx, a timeout (``timeout`` seconds per request), a connection
    error or a malformed body is retried up to ``max_retries`` times with exponential backoff
    (``backoff`` * 2^n seconds, jittered) or, when the endpoint sends ``Retry-After``, after
    the time it asks for (capped at :data:`~ftrisk.endpoints.MAX_WAIT`). Other HTTP errors are
    not retried. ``batch_size`` prompts go to :meth:`generate` at a time: the unit in which the
    answers of a long stage are cached as they arrive.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 0.5,
        temperature: float = 0.0,
        max_tokens: int = 512,
        batch_size: int = 64,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        key = api_key or endpoint_key(api_key_env, base_url, purpose=f"the {model} endpoint",
                                      field="api_key_env")
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self._key = Secret(key)
        self._rng = random.Random()  # jitter only; not part of any result

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self.model!r}, base_url={public_url(self.base_url)!r}, "
            f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency})"
        )

    @property
    def fingerprint(self) -> str:
        """sha256 of model, endpoint (without credentials), temperature and max_tokens."""
        payload = {
            "backend": "openai-compat",  # kept: cached judgments stay valid
            "model": self.model,
            "base_url": public_url(self.base_url),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        blob = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def decoding(self) -> dict[str, object]:
        """Decoding settings stored with each answer (the endpoint by its fingerprint)."""
        return {"max_new_tokens": self.max_tokens, "temperature": self.temperature,
                "endpoint": self.fingerprint[:16]}

    def render(self, messages: Messages) -> str:
        """The request's messages as canonical JSON: the endpoint applies its own chat
        format, so this is the exact prompt sent."""
        return json.dumps(messages, ensure_ascii=False)

    def generate(self, rendered: Sequence[str]) -> list[ChatReply]:
        """Answer prompts made by :meth:`render`, concurrently, in order."""
        return self.complete([json.loads(text) for text in rendered])

    def complete(self, conversations: Sequence[Messages]) -> list[ChatReply]:
        """Answer every conversation (lists of ``{"role", "content"}``), in input order."""
        if not conversations:
            return []
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._complete_all(conversations))
        # Called from inside an event loop (a notebook): run ours on a worker thread.
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(asyncio.run, self._complete_all(conversations)).result()

    async def _complete_all(self, conversations: Sequence[Messages]) -> list[ChatReply]:
        from openai import AsyncOpenAI

        # One client per call: its connection pool belongs to this event loop. max_retries=0
        # because the retry policy (which errors, Retry-After, counting) is ours.
        client = AsyncOpenAI(
            api_key=self._key.reveal(), base_url=self.base_url, max_retries=0,
            timeout=self.timeout,
        )
        slots = asyncio.Semaphore(self.concurrency)
        try:
            return list(await asyncio.gather(
                *(self._complete_one(client, slots, list(c)) for c in conversations)
            ))
        finally:
            await client.close()

    async def _complete_one(
        self, client: Any, slots: asyncio.Semaphore, messages: Messages
    ) -> ChatReply:
        import openai

        attempts = 0
        # The slot is held through backoff sleeps, so a throttled endpoint sees fewer requests.
        async with slots:
            while True:
                attempts += 1
                wait: float | None = None
                try:
                    response = await client.chat.completions.create(
                        model=self.model, messages=messages, temperature=self.temperature,
                        max_tokens=self.max_tokens, timeout=self.timeout,
                    )
                    return self._reply(response, attempts)
                # Every text from the endpoint is masked before it is cut (see redact).
                except openai.APITimeoutError:
                    error = f"timeout: no reply within {self.timeout:g}s"
                except openai.APIConnectionError as err:
                    error = f"connection: {self._short(err)}"
                except openai.APIStatusError as err:
                    status = err.status_code
                    kind = "rate_limited" if status == 429 else (
                        "server_error" if status >= 500 else "http_error")
                    reason = re.sub(r"^Error code: \d+ - ", "", str(err.message))
                    error = f"{kind}: HTTP {status}: {self._short(reason)}"
                    if not retryable(status):
                        return self._failed(error, attempts)
                    wait = retry_after(err.response.headers)
                except (ValueError, openai.APIResponseValidationError) as err:
                    # A body that is not JSON (a proxy's error page, a truncated reply).
                    error = ("malformed: response body is not valid JSON "
                             f"({self._short(err, 80)})")
                except Exception as err:  # anything else fails this item only, visibly
                    error = f"unexpected: {type(err).__name__}: {self._short(err)}"
                    return self._failed(error, attempts)
                if attempts > self.max_retries:
                    return self._failed(error, attempts)
                await asyncio.sleep(backoff_wait(attempts, self.backoff, wait, self._rng))

    def redact(self, text: object) -> str:
        """``text`` with this backend's key (and its pieces) and credential headers masked."""
        return self._key.scrub(str(text))

    def _short(self, text: object, limit: int = 160) -> str:
        """Endpoint text masked (key, its pieces, credential headers), then cut short."""
        return short(self._key.scrub(str(text)), limit)

    def _failed(self, error: str, attempts: int) -> ChatReply:
        if attempts > 1:
            error = f"{error} (after {attempts} attempts)"
        return ChatReply(text=None, error=self._key.scrub(error), attempts=attempts)

    def _reply(self, response: Any, attempts: int) -> ChatReply:
        usage = getattr(response, "usage", None)
        prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        choices = getattr(response, "choices", None) or []
        message = getattr(choices[0], "message", None) if choices else None
        text = getattr(message, "content", None)
        if not isinstance(text, str):
            error = "empty: the reply had no message content"
            return ChatReply(text=None, error=error, attempts=attempts,
                             prompt_tokens=prompt_tokens, completion_tokens=completion_tokens)
        key = self._key.reveal()
        if len(key) >= MIN_SECRET_PIECE:  # an endpoint that echoes the key into an answer
            text = mask_pieces(text, key)
        return ChatReply(text=text, prompt_tokens=prompt_tokens,
                         completion_tokens=completion_tokens, attempts=attempts)
