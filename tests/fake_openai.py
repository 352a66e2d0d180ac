"""A loopback server speaking the OpenAI chat-completions protocol, with faults injected on demand.

    with FakeOpenAI(delay_s=0.1) as fake:
        fake.script.extend(["429", "timeout"])  # the next two chat requests fail that way
        backend = OpenAIBackend(BackendConfig(base_urls=(fake.base_url,), model="fake-vlm"))

It is uvicorn + starlette in a background thread with an asyncio handler, so delayed requests
overlap instead of queueing. Endpoints: `POST /v1/chat/completions` and `GET /v1/models`.

Faults in `script` (one consumed per acceptable chat request, in order; an empty script means answer
normally; requests refused for their key or their body consume none):
- "429", "500", any other 3-digit status: an OpenAI-style error body with that status; 429 and 503
  carry `Retry-After: <retry_after>` when `retry_after` is set.
- "timeout": hold the request for `hang_s` (longer than the client's timeout), then answer.
- "malformed": status 200 with a body that is not JSON.
- "no_choices": status 200, valid JSON, `"choices": []`.
- "content_null": status 200 with `message.content` null.
- "bad_request_response_format": 400 saying response_format is not supported (only when the request
  has one; otherwise the request is answered normally, like a server that never saw the field).

Requests are validated like a strict server (400 with a message otherwise): a model, a non-empty list
of messages with roles, content a string or a list of text / image_url parts, and every image a
base64 `data:image/...` URI that decodes. With `api_key` set, a missing or wrong bearer key gets
401 (whose message echoes the wrong key, as a careless server might).

Answers come from `responder(body) -> str`. The default (`default_responder`):
- a scoring request (it has `response_format`, or it has no image and its last user text holds the
  JSON key `"scores"`) gets `{"scores": ...}` with one score per step. The steps are, in order of
  preference: the keys of the schema's `scores` object when they are step numbers (the keyed form
  `{"scores": {"3": {...}, ...}}`); the `enum` of the `step` (or `t`) property of the schema's array
  items; the step numbers of the lines starting with one (`3. `, `3) `, `3: `, `[3] `, `Step 3:`,
  `t=3:`) in the latest user message that has such lines, when their count agrees with the schema's
  `minItems` == `maxItems` (if given); `range(minItems)`; else a single step 0. Scores rise to 10 at
  the last step. A keyed schema gets the keyed form; array items that are objects get objects with
  `step`/`t` (the step number), `score` and `reason` as their properties ask; otherwise scores are
  plain integers.
- anything else gets a short analysis text.
`schema_responder(seed)` is a server that follows the schema to the letter and nothing more: a
constrained request gets a random instance of its JSON schema (tests/json_schema_instances.py, which
refuses the keywords it does not understand rather than ignore them), anything else the default answer.
A responder that raises is answered with HTTP 500 and recorded in `responder_errors`.
The answer is cut to `max_tokens` words (finish_reason "length"), like a real server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import hashlib
import json
import random
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.json_schema_instances import random_instance

Responder = Callable[[dict[str, Any]], str]

ANALYSIS_TEXT = (
    "The agent walks to the counter, picks up the apple and puts it in the fridge; each action moves "
    "it closer to the goal."
)
_STEP_LINE = re.compile(r"^\s*(?:\[\s*(\d+)\s*\]|(?:step\s*|t\s*=\s*)?(\d+)\s*[.:)])", re.I | re.M)
_DATA_URI = re.compile(r"^data:image/[a-z0-9.+-]+;base64,(.*)$", re.S)
_ERRORS = {
    400: "Bad request",
    401: "Incorrect API key provided",
    404: "The model does not exist",
    429: "Rate limit reached, slow down",
    500: "Internal server error",
    503: "Server overloaded, try again later",
}


# --- responders ----------------------------------------------------------------------------------


def _texts(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content or [] if p.get("type") == "text")


def _last_user_text(body: dict[str, Any]) -> str:
    users = [m for m in body.get("messages", []) if m.get("role") == "user"]
    return _texts(users[-1]) if users else ""


def _response_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    """The JSON schema of the request's response_format, or None when it asks for none."""
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) else None


def _scores_schema(body: dict[str, Any]) -> dict[str, Any]:
    """The JSON schema of `scores` in the request's response_format, or {}."""
    schema = _response_schema(body) or {}
    return (schema.get("properties") or {}).get("scores") or {}


def _keyed_steps(scores: dict[str, Any]) -> list[int] | None:
    """The steps of a keyed `scores` schema (`{"3": {...}, "4": {...}}`), or None for another form."""
    props = scores.get("properties") if scores.get("type") == "object" else None
    if not props or not all(isinstance(k, str) and k.isdigit() for k in props):
        return None
    return [int(k) for k in props]


def _numbered_steps(body: dict[str, Any]) -> list[int]:
    """Step numbers of the numbered lines in the latest user message that has some."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            found = [int(a or b) for a, b in _STEP_LINE.findall(_texts(message))]
            if found:
                return found
    return []


def image_count(body: dict[str, Any]) -> int:
    return sum(
        1
        for m in body.get("messages", [])
        if isinstance(m.get("content"), list)
        for p in m["content"]
        if p.get("type") == "image_url"
    )


def wants_scores(body: dict[str, Any]) -> bool:
    """A stage-two request: constrained output asked for, or a text-only prompt with a "scores" key."""
    if "response_format" in body:
        return True
    return image_count(body) == 0 and '"scores"' in _last_user_text(body)


def wants_progress(body: dict[str, Any]) -> bool:
    """Whether a stage-two request asks the progress question: its schema's per-step entries have a
    `progress` property, or (unconstrained) its prompt asks for a "progress" key."""
    scores = _scores_schema(body)
    entries = (scores.get("properties") or {}).values() if _keyed_steps(scores) is not None else []
    if any("progress" in (e.get("properties") or {}) for e in entries if isinstance(e, dict)):
        return True
    return "response_format" not in body and '"progress"' in _last_user_text(body)


def step_numbers(body: dict[str, Any]) -> list[int]:
    """The steps a scoring request covers (see the module docstring for the rule)."""
    scores = _scores_schema(body)
    keyed = _keyed_steps(scores)
    if keyed:
        return keyed
    n = scores.get("minItems") if scores.get("minItems") == scores.get("maxItems") else None
    props = (scores.get("items") or {}).get("properties") or {}
    for key in ("step", "t"):
        enum = (props.get(key) or {}).get("enum")
        if isinstance(enum, list) and enum and n in (None, len(enum)):
            return list(enum)
    found = _numbered_steps(body)
    if n is not None and len(found) != n:
        return list(range(n))
    return found or [0]


def progress_scores(n: int) -> list[int]:
    """n integer scores rising to 10 at the last step."""
    return [round(10 * (i + 1) / n) for i in range(n)]


def scores_json(body: dict[str, Any], scores: list[int]) -> str:
    """`{"scores": ...}` shaped like the request's schema asks: keyed by step, or a list of ints or
    of objects step/score/reason. Extra scores go to steps after the last; missing ones are left out."""
    steps = step_numbers(body)
    steps += list(range(max(steps) + 1, max(steps) + 1 + len(scores) - len(steps)))  # extra entries
    if _keyed_steps(_scores_schema(body)) is not None:
        keyed = {
            str(t): {"score": score, "reason": "fake reason"} for t, score in zip(steps, scores, strict=False)
        }
        if wants_progress(body):  # the progress question: how far the subtask is done after each step
            for i, entry in enumerate(keyed.values()):
                entry["progress"] = round(10 * (i + 1) / len(keyed))
        return json.dumps({"scores": keyed})
    items = _scores_schema(body).get("items") or {}
    props = items.get("properties") or {}
    if items.get("type") != "object" and not props:
        return json.dumps({"scores": scores})
    objects = []
    for t, score in zip(steps, scores, strict=False):
        obj: dict[str, Any] = {k: t for k in ("step", "t") if k in props}
        obj["score"] = score
        if "reason" in props:
            obj["reason"] = "fake reason"
        objects.append(obj)
    return json.dumps({"scores": objects})


def default_responder(body: dict[str, Any]) -> str:
    if wants_scores(body):
        return scores_json(body, progress_scores(len(step_numbers(body))))
    return ANALYSIS_TEXT


def text_responder(text: str) -> Responder:
    """Always answer `text` (e.g. non-JSON prose where scores were asked for)."""
    return lambda body: text


def non_json_responder(text: str = "The agent did well; I would give it a seven.") -> Responder:
    return text_responder(text)


def scores_responder(scores: list[int]) -> Responder:
    """Always answer these scores, whatever the prompt."""
    return lambda body: scores_json(body, list(scores))


def wrong_count_responder(delta: int = 1) -> Responder:
    """Scores for `delta` more (or, negative, fewer) steps than the prompt has, at least one."""
    return lambda body: scores_json(body, progress_scores(max(1, len(step_numbers(body)) + delta)))


def out_of_range_responder(value: int = 11, index: int = -1) -> Responder:
    """The default scores with the one at `index` replaced by `value` (e.g. 11 or -1)."""

    def respond(body: dict[str, Any]) -> str:
        scores = progress_scores(len(step_numbers(body)))
        scores[index] = value
        return scores_json(body, scores)

    return respond


def sequence_responder(*answers: str | Responder) -> Responder:
    """Answer with each in turn (texts or responders), repeating the last: e.g. a bad then a good one."""
    queue = collections.deque(answers)

    def respond(body: dict[str, Any]) -> str:
        answer = queue.popleft() if len(queue) > 1 else queue[0]
        return answer(body) if callable(answer) else answer

    return respond


def schema_responder(seed: int = 0) -> Responder:
    """A server that follows the request's JSON schema to the letter and nothing more: a constrained
    request gets a random instance of its schema (the same request the same answer, whatever the
    order of arrival); other requests get `default_responder`'s answer."""

    def respond(body: dict[str, Any]) -> str:
        schema = _response_schema(body)
        if schema is None:
            return default_responder(body)
        digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        return json.dumps(random_instance(schema, random.Random(f"{seed}/{digest}")))

    return respond


# --- request validation --------------------------------------------------------------------------


def validation_error(body: Any) -> str | None:
    """What a strict server would reject in this body, or None."""
    if not isinstance(body, dict) or not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' is required"
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant"):
            return f"messages[{i}].role must be system, user or assistant"
        content = m.get("content")
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            return f"messages[{i}].content must be a string or a list of parts"
        for j, part in enumerate(content):
            problem = _part_error(part)
            if problem:
                return f"messages[{i}].content[{j}]: {problem}"
    return None


def _part_error(part: Any) -> str | None:
    if not isinstance(part, dict):
        return "a part must be an object"
    if part.get("type") == "text":
        return None if isinstance(part.get("text"), str) else "text part without text"
    if part.get("type") != "image_url":
        return f"unknown part type {part.get('type')!r}"
    url = (part.get("image_url") or {}).get("url")
    match = _DATA_URI.match(url) if isinstance(url, str) else None
    if not match:
        return "image_url.url must be a data:image/...;base64, URI"
    try:
        base64.b64decode(match.group(1), validate=True)
    except binascii.Error:
        return "image_url.url holds invalid base64"
    return None


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    err = {"message": message, "type": "fake_error", "code": status}
    return JSONResponse({"error": err}, status_code=status, headers=headers)


def _completion(body: dict[str, Any], content: Any, choices: bool = True) -> JSONResponse:
    words = content.split() if isinstance(content, str) else []
    limit = body.get("max_tokens")
    finish = "stop"
    if isinstance(limit, int) and len(words) > limit:
        words, finish = words[:limit], "length"
        content = " ".join(words)
    prompt = sum(len(_texts(m).split()) for m in body["messages"]) + 64 * image_count(body)
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}
    return JSONResponse(
        {
            "id": f"chatcmpl-fake-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [choice] if choices else [],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": len(words),
                "total_tokens": prompt + len(words),
            },
        }
    )


# --- the server ----------------------------------------------------------------------------------


class FakeOpenAI:
    """The server; settings are attributes a test may change between requests."""

    def __init__(
        self,
        *,
        delay_s: float = 0.0,
        responder: Responder | None = None,
        script: Iterable[str] = (),
        retry_after: float | None = None,
        hang_s: float = 5.0,
        api_key: str | None = None,
        model: str = "fake-vlm",
    ) -> None:
        self.delay_s = delay_s  # wait before answering each chat request
        self.responder: Responder = responder or default_responder
        self.script: collections.deque[str] = collections.deque(script)  # faults for the next requests
        self.retry_after = retry_after  # seconds sent as Retry-After on 429 and 503
        self.hang_s = hang_s  # how long a "timeout" fault holds its request
        self.api_key = api_key  # when set, requests need `Authorization: Bearer <api_key>`
        self.model = model
        self.requests: list[dict[str, Any]] = []  # parsed bodies of the chat requests, in arrival order
        self.headers: list[dict[str, str]] = []  # their headers (lower-case names)
        self.image_counts: list[int] = []  # images per chat request
        self.faults: list[str] = []  # the fault applied to each chat request ("" for none)
        self.responder_errors: list[str] = []  # what the responder raised, one line each
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._server: uvicorn.Server | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        """Back to a normal server with empty records (for a server shared by several tests)."""
        with self._lock:
            self.delay_s, self.responder, self.retry_after, self.api_key = 0.0, default_responder, None, None
            self.hang_s = 5.0
            self.script.clear()
            for records in (
                self.requests,
                self.headers,
                self.image_counts,
                self.faults,
                self.responder_errors,
            ):
                records.clear()
            self.max_in_flight = self.in_flight

    # --- lifecycle ---

    def __enter__(self) -> FakeOpenAI:
        # IPPROTO_TCP given explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP,
        # and without it every keep-alive answer waits 40 ms on Nagle + delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", loop="asyncio")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        self._wait_until_answering()
        return self

    def _wait_until_answering(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base_url}/models", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        self.__exit__()
        raise RuntimeError(f"FakeOpenAI did not start on port {self.port} within {timeout_s}s")

    def __exit__(self, *exc: object) -> None:
        self._stopping = True
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    # --- handlers ---

    async def _models(self, request: Request) -> JSONResponse:
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}
        return JSONResponse({"object": "list", "data": [model]})

    async def _chat(self, request: Request) -> Response:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _answer(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except ValueError:
            return _error(400, "request body is not JSON")
        given = request.headers.get("authorization", "")
        problem = validation_error(body)
        refused = (self.api_key is not None and given != f"Bearer {self.api_key}") or problem is not None
        fault = "" if refused else self._next_fault(body)  # faults apply to acceptable requests only
        with self._lock:
            self.requests.append(body)
            self.headers.append({k.lower(): v for k, v in request.headers.items()})
            self.image_counts.append(image_count(body) if isinstance(body, dict) else 0)
            self.faults.append(fault)
        if self.api_key is not None and given != f"Bearer {self.api_key}":
            # A careless server that echoes the key it got: the client must not repeat it.
            key = given.removeprefix("Bearer ")
            return _error(401, f"{_ERRORS[401]}: {key}" if key else "Missing bearer authentication")
        if problem:
            return _error(400, problem)
        await self._sleep(self.hang_s if fault == "timeout" else self.delay_s)
        return self._respond(body, fault)

    def _next_fault(self, body: dict[str, Any]) -> str:
        try:
            fault = self.script.popleft()
        except IndexError:
            return ""
        if fault == "bad_request_response_format" and "response_format" not in body:
            return ""
        return fault

    def _respond(self, body: dict[str, Any], fault: str) -> Response:
        if fault == "bad_request_response_format":
            return _error(400, "response_format of type json_schema is not supported by this server")
        if fault.isdigit():
            status = int(fault)
            retry = status in (429, 503) and self.retry_after is not None
            headers = {"Retry-After": f"{self.retry_after:g}"} if retry else None
            return _error(status, _ERRORS.get(status, f"fake error {status}"), headers)
        if fault == "malformed":
            return Response("<html>502 Bad Gateway</html>", media_type="application/json")
        if fault == "no_choices":
            return _completion(body, "", choices=False)
        if fault == "content_null":
            return _completion(body, None)
        if fault not in ("", "timeout"):
            raise ValueError(f"unknown FakeOpenAI fault {fault!r}")
        try:
            answer = self.responder(body)
        except Exception as exc:  # a test's responder (or a schema it cannot follow): visible, not fatal
            with self._lock:
                self.responder_errors.append(f"{type(exc).__name__}: {exc}")
            return _error(500, f"fake responder failed: {type(exc).__name__}: {exc}")
        return _completion(body, answer)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, but give up early when the server stops (so a hung request never blocks shutdown)."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(left, 0.25))


def main() -> None:
    """`python -m tests.fake_openai [--delay S]`: serve until killed; prints the base URL first.

    Benchmarks run the fake in its own process, as a real LVLM server would be, so its work does
    not compete with the client's in one interpreter.
    """
    import argparse
    import sys

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before each chat answer")
    args = ap.parse_args()
    with FakeOpenAI(delay_s=args.delay) as fake:
        print(fake.base_url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


if __name__ == "__main__":
    main()


# --- helpers for the tests that drive backends and label runs against this server ---------------------


def lvlm_label_args(base_url: str, name: str, *extra: str) -> list[str]:
    """`rgvlm label` arguments for an LVLM run against this fake server."""
    return ["--labeller", "lvlm", "--model", "fake-vlm", "--base-url", base_url, "--name", name, *extra]


def run_backend(backend: Any, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Run `work(backend)` in a fresh event loop and close the backend afterwards (as a label run does)."""

    async def main() -> Any:
        try:
            return await work(backend)
        finally:
            await backend.aclose()

    return asyncio.run(main())
