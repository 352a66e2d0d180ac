"""What every LVLM backend speaks: chat requests with text and image parts, results, and failures.

Backends are asynchronous so one label run can keep many queries in flight. A backend either
returns a `ChatResult` or raises `BackendError` with a one-line reason; it never invents an answer.
Retries (on 429, 5xx, timeouts) happen inside the backend, bounded by its config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    """An encoded image (JPEG or PNG bytes), sent as a base64 data URI over HTTP."""

    data: bytes
    mime: str = "image/jpeg"


@dataclass(frozen=True)
class Message:
    role: Role
    parts: tuple[TextPart | ImagePart, ...]

    @classmethod
    def text(cls, role: Role, text: str) -> Message:
        return cls(role, (TextPart(text),))

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if isinstance(p, ImagePart))


@dataclass(frozen=True)
class ChatRequest:
    """One query. `json_schema` asks for constrained output where the backend offers it."""

    messages: tuple[Message, ...]
    max_tokens: int = 1024
    temperature: float = 0.0
    json_schema: dict[str, Any] | None = None
    request_id: str = ""


@dataclass(frozen=True)
class ChatResult:
    text: str
    model: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    attempts: int = 1


class BackendError(Exception):
    """A query that could not be answered (after the backend's own retries): `reason` says why."""

    def __init__(self, reason: str, *, retryable: bool = False, attempts: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.attempts = attempts


@dataclass(frozen=True)
class BackendConfig:
    """Settings shared by backends; each reads the fields it needs. Help texts feed the CLI and app."""

    model: str = ""  # model name (HTTP) or local folder / hub id (transformers)
    base_urls: tuple[str, ...] = ("http://127.0.0.1:8000/v1",)  # several spread the load (scale-out)
    api_key_env: str = "RGVLM_API_KEY"  # environment variable holding the API key; never stored
    concurrency: int = 8  # queries in flight at once
    timeout_s: float = 120.0  # per attempt
    max_retries: int = 4  # extra attempts on 429, 5xx and timeouts, with exponential backoff
    backoff_s: float = 0.5  # first backoff; doubles each retry, with jitter
    json_schema: bool | None = None  # None: use constrained JSON output when the server offers it
    device: str = "auto"  # transformers: cpu, cuda, cuda:1, auto
    dtype: str = "auto"  # transformers: float32, bfloat16, float16, auto
    batch_size: int = 1  # transformers: queries generated together
    price_prompt_per_1k: float | None = None  # cost accounting, in your currency per 1,000 tokens
    price_completion_per_1k: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # passed through to the server's request body


@runtime_checkable
class Backend(Protocol):
    """The interface every backend implements (see tests/test_backend_contract.py)."""

    name: str
    model: str

    async def chat(self, request: ChatRequest) -> ChatResult: ...

    async def aclose(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        """What made the answers (backend, model, settings) for provenance and cache keys; no secrets."""
        ...


BackendFactory = Callable[[BackendConfig], Backend]


def cost(config: BackendConfig, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
    """Cost of one answer when prices are configured (None otherwise)."""
    if config.price_prompt_per_1k is None and config.price_completion_per_1k is None:
        return None
    return (prompt_tokens or 0) / 1000 * (config.price_prompt_per_1k or 0.0) + (
        completion_tokens or 0
    ) / 1000 * (config.price_completion_per_1k or 0.0)
