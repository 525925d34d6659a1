"""Chat backends: a real loopback HTTP server with injected faults, and a tiny local model."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import time
from typing import Any

import pytest

from ftrisk.endpoints import Secret, retry_after
from ftrisk.errors import InputError
from ftrisk.generate.hf import HFBackend
from ftrisk.generate.openai_api import OpenAIBackend
from ftrisk.protocols import ChatReply
from tests.fake_openai import KEY, FakeOpenAI, last_user_text, make_backend


def chat(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def echo(body: dict[str, Any]) -> str:
    return "echo: " + last_user_text(body)


def test_replies_come_back_in_input_order_under_concurrency(server: FakeOpenAI) -> None:
    # Early items answer slowest, so completions arrive roughly in reverse order.
    def slow_echo(body: dict[str, Any]) -> str:
        index = int(last_user_text(body).split("-")[1])
        time.sleep(0.01 * (20 - index))
        return echo(body)

    server.answer = slow_echo
    texts = [f"item-{i}" for i in range(20)]
    replies = make_backend(server, concurrency=8).complete([chat(t) for t in texts])
    assert [r.text for r in replies] == [f"echo: {t}" for t in texts]
    assert all(r.error is None and r.attempts == 1 for r in replies)
    assert all(r.prompt_tokens == 1 and r.completion_tokens == 2 for r in replies)
    body = server.requests[0].body
    assert body["model"] == "judge-model" and body["temperature"] == 0.0
    assert body["max_tokens"] == 512


@pytest.mark.parametrize("concurrency", [1, 4])
def test_concurrency_bound_is_respected(server: FakeOpenAI, concurrency: int) -> None:
    server.delay = 0.1
    replies = make_backend(server, concurrency=concurrency).complete(
        [chat(f"q{i}") for i in range(12)]
    )
    assert all(r.text for r in replies)
    assert server.max_in_flight == concurrency  # reached, never exceeded


def test_429_is_retried_after_the_time_retry_after_asks(server: FakeOpenAI) -> None:
    server.answer = echo
    server.fail("429", times=2, match="limited", retry_after=0.3)
    start = time.perf_counter()
    replies = make_backend(server, backoff=0.001).complete([chat("ok"), chat("limited")])
    elapsed = time.perf_counter() - start
    assert [r.text for r in replies] == ["echo: ok", "echo: limited"]
    assert replies[1].attempts == 3 and replies[0].attempts == 1
    assert server.count("limited") == 3
    assert elapsed >= 0.6  # two Retry-After waits, not the 1 ms backoff


def test_500_is_retried_until_success(server: FakeOpenAI) -> None:
    server.answer = echo
    server.fail("500", times=3, match="flaky")
    (reply,) = make_backend(server).complete([chat("flaky")])
    assert reply.text == "echo: flaky" and reply.attempts == 4 and reply.error is None


def test_timeout_is_retried(server: FakeOpenAI) -> None:
    server.answer = echo
    server.fail("slow", times=1, match="slow", seconds=3.0)
    start = time.perf_counter()
    (reply,) = make_backend(server, timeout=0.5).complete([chat("slow")])
    assert reply.text == "echo: slow" and reply.attempts == 2
    assert time.perf_counter() - start < 2.5  # gave up on the slow reply after its timeout


def test_timeouts_that_persist_give_a_timeout_error(server: FakeOpenAI) -> None:
    server.fail("slow", times=None, match="stuck", seconds=2.0)
    replies = make_backend(server, timeout=0.3, max_retries=1).complete(
        [chat("stuck"), chat("fine")]
    )
    assert replies[0].text is None and replies[0].attempts == 2
    assert replies[0].error.startswith("timeout: no reply within 0.3s")
    assert replies[1].text is not None


def test_a_permanently_failing_item_does_not_lose_the_others(server: FakeOpenAI) -> None:
    server.answer = echo
    server.fail("500", times=None, match="doomed")
    texts = ["a", "doomed", "b", "c"]
    replies = make_backend(server, max_retries=2, concurrency=2).complete(
        [chat(t) for t in texts]
    )
    assert [r.text for r in replies] == ["echo: a", None, "echo: b", "echo: c"]
    failed = replies[1]
    assert failed.error.startswith("server_error: HTTP 500")
    assert failed.error.endswith("(after 3 attempts)") and failed.attempts == 3
    assert server.count("doomed") == 3


def test_malformed_json_is_a_counted_failure_and_a_transient_one_is_retried(
    server: FakeOpenAI,
) -> None:
    server.answer = echo
    server.fail("malformed", times=None, match="garbled")
    server.fail("malformed", times=1, match="hiccup")
    replies = make_backend(server, max_retries=1).complete(
        [chat("garbled"), chat("hiccup"), chat("fine")]
    )
    assert replies[0].text is None and replies[0].error.startswith("malformed:")
    assert replies[0].attempts == 2
    assert replies[1].text == "echo: hiccup" and replies[1].attempts == 2
    assert replies[2].text == "echo: fine"


def test_client_errors_are_not_retried(server: FakeOpenAI) -> None:
    backend = make_backend(server, base_url=server.base_url + "/wrong")
    (reply,) = backend.complete([chat("x")])
    assert reply.text is None and reply.attempts == 1
    assert reply.error.startswith("http_error: HTTP 404")


def test_connection_errors_are_retried_then_reported() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    backend = OpenAIBackend("m", base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY,
                                  max_retries=2, backoff=0.01)
    (reply,) = backend.complete([chat("x")])
    assert reply.text is None and reply.attempts == 3
    assert reply.error.startswith("connection:")


def test_retry_after_forms() -> None:
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({}) is None and retry_after({"retry-after": "soon"}) is None
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < retry_after({"retry-after": date}) <= 30


def test_works_when_called_inside_a_running_event_loop(server: FakeOpenAI) -> None:
    server.answer = echo

    async def inside() -> list[ChatReply]:
        return make_backend(server).complete([chat("in a loop")])

    (reply,) = asyncio.run(inside())
    assert reply.text == "echo: in a loop"


def test_missing_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("MY_JUDGE_KEY", raising=False)
    with pytest.raises(InputError, match="OPENAI_API_KEY"):
        OpenAIBackend("gpt-4")
    with pytest.raises(InputError, match="MY_JUDGE_KEY"):
        OpenAIBackend("gpt-4", api_key_env="MY_JUDGE_KEY")
    # A local endpoint needs no key.
    assert OpenAIBackend("local", base_url="http://127.0.0.1:1/v1").model == "local"


def test_key_from_the_environment_is_sent_and_never_shown(
    server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MY_JUDGE_KEY", KEY)
    server.echo_auth_in_errors = True  # a leaky endpoint that puts the key in its errors
    server.fail("500", times=None, match="doomed")
    backend = OpenAIBackend("judge-model", base_url=server.base_url,
                                  api_key_env="MY_JUDGE_KEY", max_retries=1, backoff=0.01)
    with caplog.at_level(logging.DEBUG):
        replies = backend.complete([chat("fine"), chat("doomed")])
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in server.requests)
    assert replies[0].text is not None
    assert replies[1].error.startswith("server_error") and "***" in replies[1].error
    shown = [repr(backend), str(backend), backend.fingerprint, repr(vars(backend)),
             repr(replies), caplog.text]
    assert caplog.records  # the openai client did log at DEBUG
    for text in shown:
        assert KEY not in text


def test_secret_masks_itself() -> None:
    secret = Secret(KEY)
    assert KEY not in repr(secret) and KEY not in str(secret) and KEY not in f"{secret}"
    assert secret.reveal() == KEY
    assert secret.scrub(f"bad key {KEY}!") == "bad key ***!"
    with pytest.raises(TypeError):
        import pickle

        pickle.dumps(secret)


def test_fingerprint_covers_model_settings_but_not_key_or_concurrency() -> None:
    def fp(**settings: Any) -> str:
        options: dict[str, Any] = {"base_url": "http://h:1/v1", "api_key": KEY}
        options.update(settings)
        model = options.pop("model", "m")
        return OpenAIBackend(model, **options).fingerprint

    base = fp()
    assert fp(api_key="sk-other") == base and fp(concurrency=2) == base
    assert fp(model="m2") != base and fp(temperature=0.7) != base
    assert fp(max_tokens=100) != base and fp(base_url="http://other:1/v1") != base
    # Credentials in the URL are not part of it (nor shown).
    with_userinfo = OpenAIBackend("m", base_url=f"http://u:{KEY}@h:1/v1", api_key=KEY)
    assert with_userinfo.fingerprint == base and KEY not in repr(with_userinfo)


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        OpenAIBackend("m", base_url="http://h/v1", concurrency=0)
    with pytest.raises(ValueError, match="timeout"):
        OpenAIBackend("m", base_url="http://h/v1", timeout=0)


# -- local transformers backend ---------------------------------------------------------------


@pytest.fixture(scope="module")
def local_backend(tiny_model_dir) -> HFBackend:
    return HFBackend(str(tiny_model_dir), max_new_tokens=6, batch_size=2)


def test_transformers_backend_answers_in_input_order(local_backend) -> None:
    chats = [chat("hi"), chat("a much longer question about pasta and code"), chat("ok?")]
    forward = local_backend.complete(chats)
    backward = local_backend.complete(chats[::-1])
    assert [r.text for r in forward] == [r.text for r in backward[::-1]]
    for reply in forward:
        assert reply.error is None and isinstance(reply.text, str)
        assert reply.prompt_tokens > 0 and 1 <= reply.completion_tokens <= 6
    assert forward[1].prompt_tokens > forward[0].prompt_tokens


def test_transformers_backend_fingerprint_and_inputs(local_backend, tiny_model_dir) -> None:
    again = HFBackend(local_backend.model, local_backend.tokenizer, max_new_tokens=6)
    assert again.fingerprint == local_backend.fingerprint  # derived from the same directory
    longer = HFBackend(local_backend.model, local_backend.tokenizer, max_new_tokens=7)
    assert longer.fingerprint != local_backend.fingerprint
    with pytest.raises(ValueError, match="tokenizer"):
        HFBackend(local_backend.model)


def test_a_judge_runs_on_the_local_backend(local_backend) -> None:
    from ftrisk.judge.rubric import RubricJudge
    from ftrisk.records import Generation

    item = Generation(item_id="a", kind="harmful", category=None, prompt="q", rendered_prompt="q",
                      response="r", model_fingerprint="m", decoding={})
    (judgment,) = RubricJudge(local_backend, max_parse_retries=1).judge([item])
    # A random-weight model cannot follow the rubric: unscored, never imputed.
    assert judgment.score is None and judgment.error.startswith("unparseable:")
    assert judgment.prompt_tokens > 0 and judgment.completion_tokens > 0
