"""OpenAI-compatible chat-completions backend: vLLM, SGLang, Ollama, LM Studio and hosted APIs.

Wire format (vLLM's vision examples): each message's parts in the order given, text as
`{"type": "text"}` and each image as `{"type": "image_url"}` holding a base64 `data:` URI. A message
made of exactly one text part is sent as a plain string (what every server accepts, including
those whose chat templates take only strings for system and assistant turns).

Failures: HTTP 429, 408, 5xx, timeouts and connection errors are retried up to `max_retries` extra
attempts with exponential backoff and jitter (honouring `Retry-After`, capped). A malformed body
(not JSON, no choices, content not a string) is retried once within that budget, since a server
under load or a proxy in front of it can cut or replace an answer. Other 4xx fail at once with the
server's message. Nothing touches the network at import or construction time; the API key comes
from the environment only and never appears in `describe()` or the logs; a key written into a base
URL (`http://user:KEY@host/v1`, `?api_key=KEY`) is used for the requests and masked (rgvlm_core.redact)
in `describe()`, error reasons and logs.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import itertools
import logging
import os
import random
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import httpx
import orjson

from rgvlm_core.errors import UsageError
from rgvlm_core.labeling.backends.base import (
    BackendConfig,
    BackendError,
    ChatRequest,
    ChatResult,
    ImagePart,
    Message,
)
from rgvlm_core.redact import MASK, redact, url_secrets

log = logging.getLogger(__name__)

SCHEMA_NAME = "scores"  # response_format.json_schema.name sent with constrained requests
RETRY_AFTER_CAP_S = 60.0  # longest wait a server's Retry-After can impose between two attempts
MALFORMED_RETRIES = 1  # extra attempts (within max_retries) after a malformed response body
_RETRY_STATUSES = frozenset({408, 429})  # plus every 5xx
_JSON_HEADERS = {"Content-Type": "application/json"}


# --- pure request / response handling ------------------------------------------------------------


def data_uri(image: ImagePart) -> str:
    """`data:<mime>;base64,<bytes>`: how an image travels inside a chat-completions request."""
    return f"data:{image.mime};base64,{base64.b64encode(image.data).decode('ascii')}"


def message_content(message: Message) -> str | list[dict[str, Any]]:
    """A lone text part becomes a plain string; anything else a list of parts in the given order."""
    if len(message.parts) == 1 and not isinstance(message.parts[0], ImagePart):
        return message.parts[0].text
    return [
        {"type": "image_url", "image_url": {"url": data_uri(part)}}
        if isinstance(part, ImagePart)
        else {"type": "text", "text": part.text}
        for part in message.parts
    ]


def build_payload(request: ChatRequest, model: str, *, json_schema: bool, extra: dict[str, Any]) -> dict:
    """The chat-completions body for `request`. `extra` is merged last and may override any field."""
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": m.role, "content": message_content(m)} for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if json_schema and request.json_schema is not None:
        payload["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": SCHEMA_NAME, "schema": request.json_schema, "strict": True},
        }
    return {**payload, **extra}


def parse_completion(body: bytes) -> tuple[str, str | None, int | None, int | None]:
    """(content, model, prompt_tokens, completion_tokens) of a response; ValueError says what is wrong."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise ValueError(f"response is not JSON: {body[:80]!r}") from None
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError("response has no choices")
    message = choices[0].get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        raise ValueError(f"choices[0].message.content is {type(content).__name__}, not a string")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    model = data.get("model") if isinstance(data.get("model"), str) else None
    return (
        content,
        model,
        _int_or_none(usage.get("prompt_tokens")),
        _int_or_none(usage.get("completion_tokens")),
    )


def error_message(response: httpx.Response) -> str:
    """The server's own words: OpenAI `{"error": {"message"}}`, vLLM `{"message"}`, FastAPI `{"detail"}`."""
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error")
        for found in (
            err.get("message") if isinstance(err, dict) else err,
            data.get("message"),
            data.get("detail"),
        ):
            if isinstance(found, str) and found:
                return found[:300]
    return response.text.strip()[:300] or response.reason_phrase


def retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped; None when absent/bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def backoff_s(retry: int, first_s: float, rng: random.Random) -> float:
    """Wait before retry number `retry` (0-based): first_s doubled each time, with jitter in [d/2, d]."""
    delay = first_s * 2**retry
    return delay / 2 + rng.uniform(0, delay / 2)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def endpoint_url(base_url: str, path: str = "chat/completions") -> str:
    """`path` appended to the base URL's path; its query (e.g. `?api-version=...`) is kept after it."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + path))


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a server's base URL (None when it can)."""
    if not url.startswith(("http://", "https://")):
        return "not an http(s) URL"
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # port: ValueError when not a number in range
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    return None if host else "no host"


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """(the URL without `user:password@`, the (user, password) for HTTP basic auth, or None).

    The credentials travel in the Authorization header as before, but the URL that HTTP libraries
    log and put in their errors no longer holds them.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=host)), (unquote(user), unquote(password))


class _AttemptError(Exception):
    """Why one HTTP attempt failed. kind: transient | malformed | schema | fatal."""

    def __init__(self, reason: str, kind: str, retry_after: float | None = None) -> None:
        reason = redact(reason)  # it ends up in stored labels, logs and error lines
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.retry_after = retry_after


# --- the backend ---------------------------------------------------------------------------------


class OpenAIBackend:
    """Asynchronous client for `POST {base_url}/chat/completions`, safe to share across tasks.

    Use it from one event loop at a time; a later `asyncio.run` gets a fresh connection pool.
    """

    name = "openai"

    def __init__(self, config: BackendConfig) -> None:
        if not config.model:
            raise UsageError("the openai backend needs a model name: set model to a name the server serves")
        bad = [u for u in config.base_urls if url_problem(u)] if config.base_urls else [""]
        if bad:
            raise UsageError(
                f"base URL {redact(repr(bad[0]))}: {url_problem(bad[0]) or 'none given'}; "
                "give an http(s) URL such as http://127.0.0.1:8000/v1"
            )
        if config.concurrency < 1 or config.max_retries < 0:
            raise UsageError("concurrency must be at least 1 and max_retries at least 0")
        self.config = config
        self.model = config.model
        self._endpoints = [split_userinfo(endpoint_url(u)) for u in config.base_urls]
        self._next_endpoint = itertools.cycle(self._endpoints).__next__
        self._key_set = bool(os.environ.get(config.api_key_env))
        self._url_secrets = sorted(
            {s for u in config.base_urls for s in url_secrets(u)}, key=len, reverse=True
        )
        self._schema_ok = True  # cleared in auto mode once a server rejects response_format
        self._rng = random.Random()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._client = self._new_client()
        self._semaphore = asyncio.Semaphore(config.concurrency)

    def _new_client(self) -> httpx.AsyncClient:
        headers = {"User-Agent": "rgvlm-studio"}
        key = os.environ.get(self.config.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        pool = self.config.concurrency * len(self._endpoints)
        return httpx.AsyncClient(
            headers=headers,
            timeout=httpx.Timeout(self.config.timeout_s),
            limits=httpx.Limits(max_connections=pool, max_keepalive_connections=pool),
        )

    def _bind_loop(self) -> None:
        """Pooled connections and the semaphore belong to one loop; start afresh in a new one."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop:
            self._client = self._new_client()  # the old pool's loop is gone: nothing to close it with
            self._semaphore = asyncio.Semaphore(self.config.concurrency)
        self._loop = loop

    def _use_schema(self, request: ChatRequest) -> bool:
        return request.json_schema is not None and self.config.json_schema is not False and self._schema_ok

    async def chat(self, request: ChatRequest) -> ChatResult:
        if self._closed:
            raise BackendError("the openai backend was closed (aclose) and cannot answer more queries")
        self._bind_loop()
        bodies: dict[bool, bytes] = {}
        attempts, retries, malformed = 0, 0, 0
        while True:
            attempts += 1
            schema = self._use_schema(request)
            if schema not in bodies:
                payload = build_payload(request, self.model, json_schema=schema, extra=self.config.extra)
                bodies[schema] = orjson.dumps(payload)
            try:
                result = await self._attempt(bodies[schema], schema)
                return ChatResult(**result, attempts=attempts)
            except _AttemptError as err:
                if err.kind == "schema" and schema and self.config.json_schema is None:
                    # The paper's rule: constrained output where offered, robust parsing otherwise.
                    self._schema_ok = False
                    log.warning("server rejected response_format (%s); sending without it from now on", err)
                    continue  # an extra attempt outside the retry budget, at most once per request
                retry = err.kind == "transient" or (err.kind == "malformed" and malformed < MALFORMED_RETRIES)
                if not retry or retries >= self.config.max_retries:
                    tried = f" (after {attempts} attempts)" if attempts > 1 else ""
                    retryable = err.kind in ("transient", "malformed")
                    raise BackendError(
                        f"{err.reason}{tried}", retryable=retryable, attempts=attempts
                    ) from None
                delay = backoff_s(retries, self.config.backoff_s, self._rng)
                if err.retry_after is not None:
                    delay = max(delay, err.retry_after)
                retries += 1
                malformed += err.kind == "malformed"
                log.info("attempt %d failed: %s; retrying in %.2fs", attempts, err.reason, delay)
                await asyncio.sleep(delay)

    async def _attempt(self, body: bytes, schema: bool) -> dict[str, Any]:
        """One HTTP exchange under the concurrency bound: the ChatResult fields, or _AttemptError."""
        url, userinfo = self._next_endpoint()
        auth = httpx.BasicAuth(*userinfo) if userinfo else httpx.USE_CLIENT_DEFAULT
        async with self._semaphore:
            start = time.perf_counter()
            try:
                response = await self._client.post(url, content=body, headers=_JSON_HEADERS, auth=auth)
            except httpx.TimeoutException:
                raise _AttemptError(
                    f"no answer within {self.config.timeout_s:g}s from {redact(url)}", "transient"
                ) from None
            except httpx.TransportError as exc:
                raise _AttemptError(f"cannot reach {redact(url)}: {exc!r}", "transient") from None
            latency = time.perf_counter() - start
        if response.status_code == 200:
            try:
                text, model, prompt, completion = parse_completion(response.content)
            except ValueError as exc:
                raise _AttemptError(f"malformed answer from {redact(url)}: {exc}", "malformed") from None
            return {
                "text": text,
                "model": model or self.model,
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "latency_s": latency,
            }
        raise self._status_error(response, redact(url), schema)

    def _status_error(self, response: httpx.Response, url: str, schema: bool) -> _AttemptError:
        status, message = response.status_code, self._scrub(error_message(response))
        if status in _RETRY_STATUSES or status >= 500:
            wait = retry_after_s(response.headers.get("retry-after"))
            return _AttemptError(f"HTTP {status} from {url}: {message}", "transient", wait)
        lowered = message.lower()
        if schema and status in (400, 422) and ("response_format" in lowered or "json_schema" in lowered):
            hint = "; set json_schema to auto (None) or False for this server"
            return _AttemptError(f"HTTP {status} from {url}: {message}{hint}", "schema")
        env = self.config.api_key_env
        if status in (401, 403):
            fix = f"the key in {env} was rejected" if self._key_set else f"set {env} to the server's API key"
            return _AttemptError(
                f"unauthorized (HTTP {status}) at {url}: {fix}; server said: {message}", "fatal"
            )
        if status == 404:
            fix = "check the base URL (usually ending in /v1) and the model name"
            return _AttemptError(f"not found (HTTP 404) at {url}: {message}; {fix}", "fatal")
        return _AttemptError(f"HTTP {status} from {url}: {message}", "fatal")

    def _scrub(self, text: str) -> str:
        """`text` without the API key or the URLs' credentials, should a server echo them back."""
        key = self._client.headers.get("authorization", "").removeprefix("Bearer ")
        for secret in [key, *self._url_secrets]:
            if secret:
                text = text.replace(secret, MASK)
        return redact(text)

    def describe(self) -> dict[str, Any]:
        """What makes the answers; no key, no URL credentials."""
        return {
            "backend": self.name,
            "model": self.model,
            # without userinfo at all (as runs have always recorded it), other keys masked
            "base_urls": [redact(split_userinfo(u)[0]) for u in self.config.base_urls],
            "json_schema": self.config.json_schema,
            "max_retries": self.config.max_retries,
            "extra": dict(self.config.extra),
        }

    async def aclose(self) -> None:
        """Close the connection pool; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        if self._loop is None or self._loop is asyncio.get_running_loop():
            await self._client.aclose()
