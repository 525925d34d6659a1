"""Chat backends for the LLM judges: any OpenAI-compatible endpoint, or a local transformers model.

Both take a batch of conversations and return one :class:`ChatReply` per conversation, in order.
A backend never raises for one bad item: an item that still fails after the retries comes back
with ``text=None`` and ``error="<kind>: <short reason>"``, and the others are unaffected.

API keys: :class:`OpenAICompatBackend` keeps its key in a :class:`Secret`, whose repr and str
are masked, and masks every error text with :func:`redact` *before* cutting it short (a cut key
would no longer match): the key, any 8-character piece of it, ``Authorization`` / ``Bearer`` /
``api-key`` header values, URL credentials and ``sk-`` style tokens. Fingerprints, reprs, logs
and stored judgments never hold it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import hashlib
import json
import os
import random
import re
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ftrisk.errors import InputError

#: Longest wait we accept from a Retry-After header or our own backoff, in seconds.
MAX_WAIT = 60.0
# Status codes worth retrying: request timeout, conflict/lock, rate limit, and server errors.
_RETRY_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class ChatReply:
    """A backend's answer to one conversation.

    ``text`` is None exactly when the request failed; ``error`` then says why. Token counts are
    those the endpoint reported for the successful attempt (0 when unknown); ``attempts`` counts
    every request sent for this item, retries included.
    """

    text: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    attempts: int = 1


#: Shortest piece of a key that is masked wherever it appears.
MIN_SECRET_PIECE = 8
MASK = "***"

# Header values that carry credentials, in the forms error bodies echo them: "Authorization:
# Bearer x", "'authorization': 'Bearer x'", "api-key=x", "x-api-key: x".
_HEADER_VALUE = re.compile(
    r"""(?ix)
    (\b(?:proxy-)?authorization|\b(?:x-)?api[-_]?key|\bcookie)
    (["']?\s*[:=]\s*["']?)                 # separator, maybe quoted
    (?:(?:bearer|basic|token|digest)\s+)?  # scheme
    [^\s"',;}&]+""")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=:-]{8,}")
_SK_TOKEN = re.compile(r"\bsk-[A-Za-z0-9_-]{8,}")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@]+@")


def _mask_pieces(text: str, secret: str) -> str:
    """``text`` with every run of characters that is covered by 8-character pieces of
    ``secret`` replaced by the mask (the whole key, or any long enough piece of it)."""
    n = MIN_SECRET_PIECE
    if len(secret) < n or len(text) < n:
        return text
    pieces = {secret[i : i + n] for i in range(len(secret) - n + 1)}
    covered = [False] * len(text)
    for i in range(len(text) - n + 1):
        if text[i : i + n] in pieces:
            covered[i : i + n] = [True] * n
    if not any(covered):
        return text
    out, i = [], 0
    while i < len(text):
        if covered[i]:
            while i < len(text) and covered[i]:
                i += 1
            out.append(MASK)
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def redact(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` with credentials masked: each of ``secrets`` (whole, and any piece of at least
    8 characters), ``Authorization`` / ``Proxy-Authorization`` / ``api-key`` / ``x-api-key``
    header values (any scheme), ``Bearer`` tokens, user info in URLs and ``sk-`` style keys.

    Mask before cutting a text short: a cut key no longer matches as a whole.
    """
    text = str(text)
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, MASK) if len(secret) < MIN_SECRET_PIECE else \
            _mask_pieces(text, secret)
    text = _HEADER_VALUE.sub(lambda m: f"{m[1]}{m[2]}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m[1]} {MASK}", text)
    text = _SK_TOKEN.sub(MASK, text)
    return _URL_USERINFO.sub(lambda m: f"{m[1]}{MASK}@", text)


class Secret:
    """A string that does not show itself: repr, str and format all print ``'***'``."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret value, for the one place that must send it."""
        return self._value

    def scrub(self, text: str) -> str:
        """``text`` with the secret (and any 8-character piece of it) and every credential
        pattern of :func:`redact` masked; call it before cutting ``text`` short."""
        return redact(text, (self._value,) if self._value else ())

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __reduce__(self) -> Any:  # pickling would write the key to disk
        raise TypeError("Secret values cannot be pickled")


def _public_url(url: str | None) -> str | None:
    """``url`` without user info, query or fragment (they can carry credentials)."""
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _retry_after(headers: Any) -> float | None:
    """Seconds asked for by ``retry-after-ms`` / ``Retry-After`` (seconds or HTTP date)."""
    if headers is None:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(text: object, limit: int = 160) -> str:
    """``text`` on one line, cut to ``limit`` characters (mask secrets first: see redact)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def endpoint_key(api_key_env: str, base_url: str | None, *, purpose: str, field: str) -> str:
    """The API key in ``$api_key_env``; ``"EMPTY"`` for a local endpoint (``base_url`` set), as
    local OpenAI-compatible servers (vLLM, llama.cpp) accept any key. Without a key for OpenAI
    itself: an InputError naming the variable, raised before any work needs it."""
    key = os.environ.get(api_key_env)
    if key:
        return key
    if base_url is None:
        raise InputError(f"no API key for {purpose}: set the {api_key_env} environment "
                         "variable (or pass base_url for a local endpoint)", field=field)
    return "EMPTY"


class OpenAICompatBackend:
    """Chat completions from any OpenAI-compatible endpoint, concurrently, with retries.

    ``base_url`` None means OpenAI itself; the key comes from ``api_key`` or the environment
    variable ``api_key_env``. At most ``concurrency`` requests are in flight at once. A request
    that hits HTTP 408/409/429/5xx, a timeout (``timeout`` seconds per request), a connection
    error or a malformed body is retried up to ``max_retries`` times with exponential backoff
    (``backoff`` * 2^n seconds, jittered) or, when the endpoint sends ``Retry-After``, after
    the time it asks for (capped at :data:`MAX_WAIT`). Other HTTP errors are not retried.
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
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        key = api_key or endpoint_key(api_key_env, base_url, purpose="the OpenAI judge backend",
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
        self._key = Secret(key)
        self._rng = random.Random()  # jitter only; not part of any result

    def __repr__(self) -> str:
        return (
            f"OpenAICompatBackend(model={self.model!r}, base_url={_public_url(self.base_url)!r}, "
            f"api_key_env={self.api_key_env!r}, concurrency={self.concurrency})"
        )

    @property
    def fingerprint(self) -> str:
        """sha256 of model, endpoint (without credentials), temperature and max_tokens."""
        payload = {
            "backend": "openai-compat",
            "model": self.model,
            "base_url": _public_url(self.base_url),
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        blob = json.dumps(payload, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def complete(self, conversations: Sequence[list[dict[str, str]]]) -> list[ChatReply]:
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

    async def _complete_all(self, conversations: Sequence[list[dict[str, str]]]) -> list[ChatReply]:
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
        self, client: Any, slots: asyncio.Semaphore, messages: list[dict[str, str]]
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
                    if status < 500 and status not in _RETRY_STATUS:
                        return self._failed(error, attempts)  # a bad request stays bad
                    wait = _retry_after(err.response.headers)
                except (ValueError, openai.APIResponseValidationError) as err:
                    # A body that is not JSON (a proxy's error page, a truncated reply).
                    error = ("malformed: response body is not valid JSON "
                             f"({self._short(err, 80)})")
                except Exception as err:  # anything else fails this item only, visibly
                    error = f"unexpected: {type(err).__name__}: {self._short(err)}"
                    return self._failed(error, attempts)
                if attempts > self.max_retries:
                    return self._failed(error, attempts)
                if wait is None:
                    base = min(MAX_WAIT, self.backoff * 2 ** (attempts - 1))
                    wait = base / 2 + self._rng.uniform(0, base / 2)  # jitter spreads a herd
                else:
                    wait = min(MAX_WAIT, wait) * (1 + self._rng.uniform(0, 0.1))
                await asyncio.sleep(wait)

    def redact(self, text: object) -> str:
        """``text`` with this backend's key (and its pieces) and credential headers masked."""
        return self._key.scrub(str(text))

    def _short(self, text: object, limit: int = 160) -> str:
        """Endpoint text masked (key, its pieces, credential headers), then cut short."""
        return _short(self._key.scrub(str(text)), limit)

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
            text = _mask_pieces(text, key)
        return ChatReply(text=text, prompt_tokens=prompt_tokens,
                         completion_tokens=completion_tokens, attempts=attempts)


class TransformersChatBackend:
    """Chat completions from a local transformers model: chat template, greedy, batched.

    ``model`` is a loaded causal LM (then ``tokenizer`` is required) or a model directory /
    hub id, loaded with :func:`ftrisk.modelio.load_model` in ``dtype``. ``fingerprint``
    identifies the weights for caching; by default it is derived from the model directory.
    Prompts are sorted by length and left-padded in batches of ``batch_size``.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any | None = None,
        *,
        max_new_tokens: int = 512,
        batch_size: int = 8,
        dtype: str = "float32",
        fingerprint: str | None = None,
    ) -> None:
        from ftrisk import modelio

        if isinstance(model, str | os.PathLike):
            path = str(model)
            tokenizer = tokenizer or modelio.load_tokenizer(path)
            model = modelio.load_model(path, dtype=dtype)
            fingerprint = fingerprint or modelio.fingerprint_path(path)
        elif tokenizer is None:
            raise ValueError("pass the tokenizer together with a loaded model")
        if fingerprint is None:
            source = getattr(model, "name_or_path", "")
            if not source or not os.path.isdir(source):
                raise ValueError("pass fingerprint= for a model not loaded from a directory")
            fingerprint = modelio.fingerprint_path(source)
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self._model_fingerprint = fingerprint

    def __repr__(self) -> str:
        return (f"TransformersChatBackend(model={getattr(self.model, 'name_or_path', '?')!r}, "
                f"max_new_tokens={self.max_new_tokens})")

    @property
    def fingerprint(self) -> str:
        """sha256 of the model fingerprint and the (greedy) decoding settings."""
        payload = {"backend": "transformers", "model": self._model_fingerprint,
                   "max_new_tokens": self.max_new_tokens, "do_sample": False}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def complete(self, conversations: Sequence[list[dict[str, str]]]) -> list[ChatReply]:
        """Answer every conversation greedily, in input order; a failed batch gives errors."""
        rendered = [
            self.tokenizer.apply_chat_template(list(c), tokenize=False, add_generation_prompt=True)
            for c in conversations
        ]
        replies: list[ChatReply | None] = [None] * len(rendered)
        # Similar lengths per batch: less padding, and results do not depend on input order.
        order = sorted(range(len(rendered)), key=lambda i: (len(rendered[i]), rendered[i]))
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            try:
                outputs = self._generate([rendered[i] for i in batch])
            except Exception as err:  # one failed batch (e.g. out of memory) must not lose the rest
                outputs = [ChatReply(text=None, error=f"generation: {type(err).__name__}: "
                                                      f"{_short(err)}")] * len(batch)
            for index, reply in zip(batch, outputs):
                replies[index] = reply
        return [r for r in replies if r is not None]

    def _generate(self, texts: list[str]) -> list[ChatReply]:
        import torch

        tok = self.tokenizer
        tok.padding_side = "left"  # decoder-only models continue from the right edge
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        enc = {k: v.to(self.model.device) for k, v in enc.items()}
        with torch.inference_mode():
            out = self.model.generate(
                **enc, max_new_tokens=self.max_new_tokens, do_sample=False,
                pad_token_id=tok.pad_token_id, temperature=None, top_p=None, top_k=None,
            )
        new_tokens = out[:, enc["input_ids"].shape[1]:]
        stops = {tok.eos_token_id, tok.pad_token_id}
        replies = []
        for prompt_mask, tokens in zip(enc["attention_mask"], new_tokens.tolist()):
            used = next((i + 1 for i, t in enumerate(tokens) if t in stops), len(tokens))
            text = tok.decode(tokens[:used], skip_special_tokens=True).strip()
            replies.append(ChatReply(text=text, prompt_tokens=int(prompt_mask.sum()),
                                     completion_tokens=used))
        return replies


def make_backend(spec: Any) -> OpenAICompatBackend | TransformersChatBackend:
    """Build the backend a config's ``backend`` section describes."""
    if spec.kind == "transformers":
        return TransformersChatBackend(spec.model, max_new_tokens=spec.max_tokens)
    return OpenAICompatBackend(
        spec.model, base_url=spec.base_url, api_key_env=spec.api_key_env,
        concurrency=spec.concurrency, timeout=spec.timeout, max_retries=spec.max_retries,
        max_tokens=spec.max_tokens)
