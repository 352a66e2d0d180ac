"""The OpenAI-compatible backend: exact request bodies, and behaviour against a loopback faulty server."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rgvlm_core.errors import UsageError
from rgvlm_core.labeling.backends import make_backend
from rgvlm_core.labeling.backends.base import (
    Backend,
    BackendConfig,
    BackendError,
    ChatRequest,
    ChatResult,
    ImagePart,
    Message,
    TextPart,
)
from rgvlm_core.labeling.backends.openai_http import (
    RETRY_AFTER_CAP_S,
    OpenAIBackend,
    backoff_s,
    build_payload,
    parse_completion,
    retry_after_s,
)
from tests.fake_openai import FakeOpenAI
from tests.fake_openai import run_backend as run

SCHEMA = {"type": "object", "properties": {"scores": {"type": "array", "items": {"type": "integer"}}}}
HELLO = ChatRequest((Message.text("user", "hello"),), max_tokens=32)
SCORING = ChatRequest(
    (Message.text("user", 'Answer {"scores": [...]}.\n0. Pickup\n1. Put'),), json_schema=SCHEMA
)


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture()
def fake(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> FakeOpenAI:
    monkeypatch.delenv("RGVLM_API_KEY", raising=False)
    server.reset()
    return server


def config(*urls: str, **kw: Any) -> BackendConfig:
    return BackendConfig(base_urls=urls, model="fake-vlm", **{"backoff_s": 0.001, **kw})


def chat(backend: OpenAIBackend, request: ChatRequest = HELLO) -> ChatResult:
    return run(backend, lambda b: b.chat(request))


def chat_error(backend: OpenAIBackend, request: ChatRequest = HELLO) -> BackendError:
    with pytest.raises(BackendError) as caught:
        chat(backend, request)
    return caught.value


# --- pure functions ------------------------------------------------------------------------------


def test_a_text_only_message_is_sent_as_a_plain_string() -> None:
    request = ChatRequest(
        (Message.text("system", "You rate robots."), Message.text("user", "hello")),
        max_tokens=64,
        temperature=0.0,
    )
    assert build_payload(request, "qwen2-vl", json_schema=True, extra={}) == {
        "model": "qwen2-vl",
        "messages": [
            {"role": "system", "content": "You rate robots."},
            {"role": "user", "content": "hello"},
        ],
        "temperature": 0.0,
        "max_tokens": 64,
    }


def test_images_become_data_uris_in_order_after_the_text() -> None:
    parts = (TextPart("What happens?"), ImagePart(b"img1"), ImagePart(b"img2", mime="image/png"))
    request = ChatRequest((Message("user", parts),), max_tokens=512, temperature=0.2)
    assert build_payload(request, "m", json_schema=False, extra={}) == {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What happens?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,aW1nMQ=="}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,aW1nMg=="}},
                ],
            }
        ],
        "temperature": 0.2,
        "max_tokens": 512,
    }


def test_a_schema_is_sent_as_strict_response_format_only_when_enabled() -> None:
    payload = build_payload(SCORING, "m", json_schema=True, extra={})
    assert payload["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "scores", "schema": SCHEMA, "strict": True},
    }
    assert "response_format" not in build_payload(SCORING, "m", json_schema=False, extra={})
    assert "response_format" not in build_payload(HELLO, "m", json_schema=True, extra={})


def test_extra_fields_are_merged_last_without_touching_the_inputs() -> None:
    extra = {"top_p": 0.9, "temperature": 0.5}
    payload = build_payload(HELLO, "m", json_schema=False, extra=extra)
    assert payload["top_p"] == 0.9 and payload["temperature"] == 0.5
    assert extra == {"top_p": 0.9, "temperature": 0.5}
    assert build_payload(HELLO, "m", json_schema=False, extra=extra) == payload


def test_parse_completion_reads_content_model_and_usage() -> None:
    body = {
        "model": "served",
        "choices": [{"message": {"content": "hi"}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    assert parse_completion(json.dumps(body).encode()) == ("hi", "served", 3, 1)
    assert parse_completion(b'{"choices": [{"message": {"content": ""}}]}') == ("", None, None, None)


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"<html>", "not JSON"),
        (b'{"choices": []}', "no choices"),
        (b"[1]", "no choices"),
        (b'{"choices": [{"message": {"content": null}}]}', "not a string"),
    ],
)
def test_parse_completion_names_what_is_malformed(body: bytes, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_completion(body)


def test_retry_after_accepts_seconds_and_dates_and_is_capped() -> None:
    assert retry_after_s("2") == 2.0
    assert retry_after_s("0.25") == 0.25
    assert retry_after_s("99999") == RETRY_AFTER_CAP_S
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_s(None) is None
    assert retry_after_s("soon") is None


def test_backoff_doubles_with_jitter_in_the_upper_half() -> None:
    rng = random.Random(0)
    for retry, full in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0)]:
        assert full / 2 <= backoff_s(retry, 0.5, rng) <= full


# --- construction and provenance -----------------------------------------------------------------


def test_the_backend_table_builds_an_openai_backend_without_touching_the_network() -> None:
    backend = make_backend("openai", config("http://127.0.0.1:9/v1"))
    assert isinstance(backend, OpenAIBackend) and isinstance(backend, Backend)
    assert backend.name == "openai" and backend.model == "fake-vlm"


@pytest.mark.parametrize(
    "bad",
    [
        {"model": ""},
        {"base_urls": ()},
        {"base_urls": ("127.0.0.1:8000/v1",)},
        {"concurrency": 0},
    ],
)
def test_impossible_settings_are_refused_with_a_usage_error(bad: dict[str, Any]) -> None:
    settings = {"base_urls": ("http://127.0.0.1:9/v1",), "model": "m", **bad}
    with pytest.raises(UsageError):
        OpenAIBackend(BackendConfig(**settings))


def test_the_key_comes_from_the_environment_and_stays_out_of_describe_and_logs(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("MY_VLM_KEY", "sk-sentinel-123")
    fake.api_key = "sk-sentinel-123"
    fake.script.append("500")
    backend = OpenAIBackend(config(fake.base_url, api_key_env="MY_VLM_KEY"))
    with caplog.at_level(logging.DEBUG):
        assert chat(backend).attempts == 2
    assert [h["authorization"] for h in fake.headers] == ["Bearer sk-sentinel-123"] * 2
    assert "sk-sentinel" not in json.dumps(backend.describe()) + caplog.text


def test_no_authorization_header_is_sent_without_a_key(fake: FakeOpenAI) -> None:
    chat(OpenAIBackend(config(fake.base_url)))
    assert "authorization" not in fake.headers[0]


def test_describe_names_what_makes_the_answers_without_credentials() -> None:
    backend = OpenAIBackend(config("http://user:pw@gpu1:8000/v1", "http://gpu2:8000/v1", max_retries=2))
    assert backend.describe() == {
        "backend": "openai",
        "model": "fake-vlm",
        "base_urls": ["http://gpu1:8000/v1", "http://gpu2:8000/v1"],
        "json_schema": None,
        "max_retries": 2,
        "extra": {},
    }


# --- answers and failures ------------------------------------------------------------------------


def test_an_answer_carries_text_model_usage_latency_and_one_attempt(fake: FakeOpenAI) -> None:
    fake.responder = lambda body: "the agent opened the fridge"
    result = chat(OpenAIBackend(config(fake.base_url)))
    assert result.text == "the agent opened the fridge"
    assert result.model == "fake-vlm"
    assert result.prompt_tokens == 1 and result.completion_tokens == 5
    assert result.attempts == 1 and result.latency_s > 0


@pytest.mark.parametrize("fault", ["429", "500", "503", "timeout"])
def test_transient_failures_are_retried_until_an_answer(fake: FakeOpenAI, fault: str) -> None:
    fake.script.extend([fault, fault])
    fake.hang_s = 1.0
    result = chat(OpenAIBackend(config(fake.base_url, timeout_s=0.2)))
    assert result.attempts == 3 and len(fake.requests) == 3
    assert result.latency_s < 0.2  # the successful attempt only


def test_retries_are_bounded_by_max_retries(fake: FakeOpenAI) -> None:
    fake.script.extend(["500"] * 10)
    error = chat_error(OpenAIBackend(config(fake.base_url, max_retries=2)))
    assert len(fake.requests) == 3 and error.attempts == 3 and error.retryable
    assert "HTTP 500" in error.reason and "Internal server error" in error.reason


def test_an_unreachable_server_is_retried_then_reported() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the backend connects
    error = chat_error(OpenAIBackend(config(f"http://127.0.0.1:{port}/v1", max_retries=1)))
    assert error.attempts == 2 and "cannot reach" in error.reason


def test_a_bad_request_fails_at_once_with_the_servers_message(fake: FakeOpenAI) -> None:
    fake.script.append("400")
    error = chat_error(OpenAIBackend(config(fake.base_url)))
    assert len(fake.requests) == 1 and error.attempts == 1 and not error.retryable
    assert "HTTP 400" in error.reason and "Bad request" in error.reason


def test_a_request_the_server_finds_invalid_is_not_retried(fake: FakeOpenAI) -> None:
    bad = ChatRequest((Message("user", (TextPart("x"), ImagePart(b"x", mime="image/png;base64,@@"))),))
    error = chat_error(OpenAIBackend(config(fake.base_url)), bad)
    assert len(fake.requests) == 1 and "image_url" in error.reason


def test_unauthorized_names_the_environment_variable_to_set(fake: FakeOpenAI) -> None:
    fake.api_key = "right"
    error = chat_error(OpenAIBackend(config(fake.base_url)))
    assert "unauthorized" in error.reason and "set RGVLM_API_KEY" in error.reason
    assert len(fake.requests) == 1


def test_a_rejected_key_is_reported_as_such(fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RGVLM_API_KEY", "sk-wrong-777")
    fake.api_key = "right"
    error = chat_error(OpenAIBackend(config(fake.base_url)))
    assert "the key in RGVLM_API_KEY was rejected" in error.reason
    assert "sk-wrong-777" not in error.reason, "the server echoes the key; the error must not"


def test_not_found_suggests_checking_the_url_and_model(fake: FakeOpenAI) -> None:
    fake.script.append("404")
    error = chat_error(OpenAIBackend(config(fake.base_url)))
    assert "HTTP 404" in error.reason and "base URL" in error.reason


@pytest.mark.parametrize("fault", ["malformed", "no_choices", "content_null"])
def test_a_malformed_answer_is_retried_once(fake: FakeOpenAI, fault: str) -> None:
    fake.script.append(fault)
    assert chat(OpenAIBackend(config(fake.base_url))).attempts == 2


def test_a_second_malformed_answer_fails_the_query(fake: FakeOpenAI) -> None:
    fake.script.extend(["malformed", "no_choices", "500"])
    error = chat_error(OpenAIBackend(config(fake.base_url, max_retries=4)))
    assert len(fake.requests) == 2 and error.attempts == 2 and "malformed answer" in error.reason


# --- constrained output --------------------------------------------------------------------------


def test_auto_json_schema_is_dropped_after_the_server_rejects_it_and_stays_off(fake: FakeOpenAI) -> None:
    fake.script.append("bad_request_response_format")
    backend = OpenAIBackend(config(fake.base_url))

    async def twice(b: OpenAIBackend) -> list[ChatResult]:
        return [await b.chat(SCORING), await b.chat(SCORING)]

    first, second = run(backend, twice)
    assert first.attempts == 2 and second.attempts == 1
    assert ["response_format" in r for r in fake.requests] == [True, False, False]
    assert json.loads(first.text) == {"scores": [5, 10]}


def test_forced_json_schema_reports_a_server_that_rejects_it(fake: FakeOpenAI) -> None:
    fake.script.append("bad_request_response_format")
    error = chat_error(OpenAIBackend(config(fake.base_url, json_schema=True)), SCORING)
    assert len(fake.requests) == 1 and "response_format" in error.reason and "json_schema" in error.reason


def test_json_schema_off_never_sends_response_format(fake: FakeOpenAI) -> None:
    chat(OpenAIBackend(config(fake.base_url, json_schema=False)), SCORING)
    assert "response_format" not in fake.requests[0]


# --- scale-out and concurrency -------------------------------------------------------------------


def test_queries_go_round_robin_over_the_base_urls_and_retries_move_on(fake: FakeOpenAI) -> None:
    with FakeOpenAI() as other:
        backend = OpenAIBackend(config(fake.base_url, other.base_url))

        async def four(b: OpenAIBackend) -> list[ChatResult]:
            return [await b.chat(HELLO) for _ in range(4)]

        run(backend, four)
        assert (len(fake.requests), len(other.requests)) == (2, 2)
        fake.script.append("503")
        assert chat(OpenAIBackend(config(fake.base_url, other.base_url))).attempts == 2
        assert (len(fake.requests), len(other.requests)) == (3, 3)


def test_no_more_than_concurrency_queries_are_in_flight() -> None:
    with FakeOpenAI(delay_s=0.05) as fresh:  # the shared server may still hold a hung "timeout" request
        backend = OpenAIBackend(config(fresh.base_url, concurrency=3))
        results = run(backend, lambda b: asyncio.gather(*[b.chat(HELLO) for _ in range(12)]))
    assert len(results) == 12 and fresh.max_in_flight == 3


def test_retry_after_is_honoured(fake: FakeOpenAI) -> None:
    fake.retry_after = 0.3
    fake.script.append("429")
    start = time.perf_counter()
    assert chat(OpenAIBackend(config(fake.base_url))).attempts == 2
    assert 0.3 <= time.perf_counter() - start < 2.0


def test_the_backend_survives_successive_event_loops(fake: FakeOpenAI) -> None:
    backend = OpenAIBackend(config(fake.base_url))
    assert asyncio.run(backend.chat(HELLO)).attempts == 1
    assert chat(backend).attempts == 1


def test_a_closed_backend_refuses_queries(fake: FakeOpenAI) -> None:
    backend = OpenAIBackend(config(fake.base_url))
    chat(backend)
    with pytest.raises(BackendError, match="closed"):
        asyncio.run(backend.chat(HELLO))
