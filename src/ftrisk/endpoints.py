"""Talking to endpoints safely: API keys that never show themselves, credential masking, and
the retry rules shared by every client of an HTTP API (chat backends, provider fine-tuning).

Neutral ground: generation backends and the remote trainer both import from here, and nothing
here imports from them.
"""

from __future__ import annotations

import email.utils
import os
import random
import re
import time
import urllib.parse
from collections.abc import Sequence
from typing import Any

from ftrisk.errors import InputError

#: Longest wait we accept from a Retry-After header or our own backoff, in seconds.
MAX_WAIT = 60.0
#: HTTP status codes worth retrying besides 5xx: request timeout, conflict/lock, rate limit.
RETRY_STATUS = frozenset({408, 409, 429})


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


def mask_pieces(text: str, secret: str) -> str:
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
            mask_pieces(text, secret)
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


def public_url(url: str | None) -> str | None:
    """``url`` without user info, query or fragment (they can carry credentials)."""
    if url is None:
        return None
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def retry_after(headers: Any) -> float | None:
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


def short(text: object, limit: int = 160) -> str:
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


def retryable(status: int) -> bool:
    """Whether an HTTP status is worth asking again: 408, 409, 429 and every 5xx (a bad
    request stays bad)."""
    return status >= 500 or status in RETRY_STATUS


def backoff_wait(attempt: int, backoff: float, asked: float | None, rng: random.Random) -> float:
    """Seconds to wait before retrying after failed attempt number ``attempt`` (from 1).

    The endpoint's own ``Retry-After`` (``asked``) wins, plus up to 10% jitter; otherwise
    exponential backoff ``backoff * 2^(attempt-1)``, jittered over its upper half so a herd of
    clients spreads out. Both are capped at :data:`MAX_WAIT`.
    """
    if asked is not None:
        return min(MAX_WAIT, asked) * (1 + rng.uniform(0, 0.1))
    base = min(MAX_WAIT, backoff * 2 ** (attempt - 1))
    return base / 2 + rng.uniform(0, base / 2)
