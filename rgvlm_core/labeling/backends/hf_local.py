"""Local transformers backend: any image-text-to-text model, loaded from a folder (or a cached hub id).

The model is loaded with `AutoProcessor` + `AutoModelForImageTextToText`; prompts are rendered with the
processor's chat template (image parts become the model's image placeholders), generation is greedy at
temperature 0, and only the new tokens are decoded.

Lifecycle: construction is cheap (it checks the settings and resolves device and dtype, no weights are
read); the model loads on the first `chat()`, or earlier with `load()` (the CLI calls it to fail fast).
A model that cannot load makes every `chat()` raise `BackendError` naming the folder and what a model
folder must hold; the failure is remembered, so a label run fails each query at once instead of retrying
the load. A hub id goes to transformers as is: read from the local cache, or downloaded where the network
allows (HF_HUB_OFFLINE=1 keeps it to the cache, as in this project's environment and tests).

Batching: concurrent `chat()` calls go into a queue; one worker task takes up to `batch_size` waiting
requests at a time, and generates them together (left padding) in a worker thread (`asyncio.to_thread`)
so the event loop stays free. One lock guards the model. Requests in a batch with different sampling
temperatures are generated in separate groups; different `max_tokens` share one generation and each
answer is cut at its own limit (exact for greedy decoding). A request that cannot be prepared (an image
that does not decode) fails alone; if a whole batch fails, its requests are retried one by one so one bad
request cannot fail its neighbours; whatever still fails ends as `BackendError`, never as a crash.

torch and transformers are imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rgvlm_core.errors import UsageError
from rgvlm_core.labeling.backends.base import (
    BackendConfig,
    BackendError,
    ChatRequest,
    ChatResult,
    ImagePart,
    Message,
)

log = logging.getLogger(__name__)

DTYPES = ("float32", "bfloat16", "float16")
EXPECTED_MODEL = (
    "a model folder holding config.json, the processor files (processor_config.json or "
    "preprocessor_config.json, tokenizer files, a chat template) and the weights (*.safetensors), "
    "as written by save_pretrained; or a hub id in the local Hugging Face cache"
)
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


# ---- pure helpers ---------------------------------------------------------------------------------


def model_source_problem(model: str) -> str | None:
    """Why `model` cannot be a model source (None when it is an existing folder or looks like a hub id)."""
    if not model.strip():
        return f"no model given; expected {EXPECTED_MODEL}"
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            return f"model folder {path} has no config.json; expected {EXPECTED_MODEL}"
        return None
    if path.exists():
        return f"{path} is a file, not a model folder; expected {EXPECTED_MODEL}"
    if not _HUB_ID.match(model) or model.startswith((".", "~")):
        return f"model folder {path} does not exist; expected {EXPECTED_MODEL}"
    return None


def resolve_device(device: str, cuda_available: bool) -> str:
    """`auto` -> `cuda` when available, else `cpu`; explicit devices are checked, not guessed."""
    name = device.strip().lower()
    if name == "auto":
        return "cuda" if cuda_available else "cpu"
    if name == "cpu":
        return name
    if re.fullmatch(r"cuda(:\d+)?", name):
        if not cuda_available:
            raise UsageError(f"device {device!r} asked for, but no CUDA GPU is visible; use cpu or auto")
        return name
    raise UsageError(f"unknown device {device!r}; use cpu, cuda, cuda:N or auto")


def resolve_dtype(dtype: str, device: str, bf16_supported: bool) -> str:
    """`auto` -> bfloat16 on a GPU that supports it (float16 on older GPUs), float32 on the CPU."""
    name = dtype.strip().lower()
    if name == "auto":
        if device == "cpu":
            return "float32"
        return "bfloat16" if bf16_supported else "float16"
    if name not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r}; use one of {', '.join(DTYPES)} or auto")
    return name


def to_chat_messages(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    """Our messages in the processors' chat format: content parts {"type": "image"} and {"type": "text"}."""
    return [
        {
            "role": m.role,
            "content": [
                {"type": "image"} if isinstance(p, ImagePart) else {"type": "text", "text": p.text}
                for p in m.parts
            ],
        }
        for m in messages
    ]


def completion_ids(ids: list[int], max_tokens: int, stop_ids: set[int]) -> list[int]:
    """The generated ids one request owns: at most `max_tokens`, ending at the first stop id (kept)."""
    ids = ids[:max_tokens]
    for i, token in enumerate(ids):
        if token in stop_ids:
            return ids[: i + 1]
    return ids


# ---- the backend ----------------------------------------------------------------------------------


@dataclass
class _Loaded:
    processor: Any
    model: Any
    stop_ids: set[int]


@dataclass
class _Pending:
    request: ChatRequest
    future: asyncio.Future[ChatResult]
    queued_at: float = field(default_factory=time.perf_counter)


@dataclass
class _Prepared:
    index: int  # position in the batch
    request: ChatRequest
    text: str
    images: list[Any]


class TransformersBackend:
    """`hf`: a local transformers image-text-to-text model behind the Backend interface."""

    name = "hf"

    def __init__(self, config: BackendConfig) -> None:
        if config.batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {config.batch_size}")
        if config.json_schema:
            raise UsageError(
                "the transformers backend has no constrained JSON output; leave json_schema unset (auto)"
            )
        import torch

        cuda = torch.cuda.is_available()
        self.config = config
        self.model = config.model
        self.device = resolve_device(config.device, cuda)
        self.dtype = resolve_dtype(config.dtype, self.device, cuda and torch.cuda.is_bf16_supported())
        self._lock = threading.Lock()  # one user of the model at a time
        self._loaded: _Loaded | None = None
        self._load_error: str | None = None
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task[None] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model,
            "device": self.device,
            "dtype": self.dtype,
            "batch_size": self.config.batch_size,
            "json_schema": False,
        }

    def load(self) -> None:
        """Load the model now (blocking); raises BackendError when it cannot load."""
        with self._lock:
            self._load_locked()

    async def chat(self, request: ChatRequest) -> ChatResult:
        if self._closed:
            raise BackendError("the transformers backend is closed")
        loop = asyncio.get_running_loop()
        queue = self._ensure_worker(loop)
        pending = _Pending(request, loop.create_future())
        queue.put_nowait(pending)
        return await pending.future

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._loop is asyncio.get_running_loop():  # a worker of an ended loop has ended with it
            if self._worker is not None and not self._worker.done():
                self._worker.cancel()
            while self._queue is not None and not self._queue.empty():
                pending = self._queue.get_nowait()
                if not pending.future.done():
                    pending.future.set_exception(
                        BackendError("the backend was closed before this request ran")
                    )
        self._loop, self._queue, self._worker = None, None, None
        await asyncio.to_thread(self._release)

    # ---- batching ----

    def _ensure_worker(self, loop: asyncio.AbstractEventLoop) -> asyncio.Queue[_Pending]:
        if self._queue is None or self._loop is not loop or self._worker is None or self._worker.done():
            if self._loop is not loop or self._queue is None:
                self._queue = asyncio.Queue()
            self._loop = loop
            self._worker = loop.create_task(self._work(self._queue), name="rgvlm-hf-batcher")
        return self._queue

    async def _work(self, queue: asyncio.Queue[_Pending]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.config.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            batch = [p for p in batch if not p.future.done()]  # callers that gave up
            if not batch:
                continue
            try:
                outcomes = await asyncio.to_thread(self._run_batch, [p.request for p in batch])
            except asyncio.CancelledError:
                for p in batch:
                    if not p.future.done():
                        p.future.set_exception(BackendError("the backend was closed while this request ran"))
                raise
            except Exception as exc:  # a bug in the batching itself: fail the batch, keep serving
                log.exception("transformers batch failed")
                outcomes = [BackendError(f"batch failed: {_short(exc)}") for _ in batch]
            now = time.perf_counter()
            for p, outcome in zip(batch, outcomes, strict=True):
                if p.future.done():
                    continue
                if isinstance(outcome, BackendError):
                    p.future.set_exception(outcome)
                else:
                    p.future.set_result(
                        ChatResult(
                            text=outcome.text,
                            model=self.model,
                            prompt_tokens=outcome.prompt_tokens,
                            completion_tokens=outcome.completion_tokens,
                            latency_s=now - p.queued_at,
                        )
                    )

    # ---- work in the worker thread ----

    def _run_batch(self, requests: list[ChatRequest]) -> list[ChatResult | BackendError]:
        with self._lock:
            if self._closed:
                return [BackendError("the transformers backend is closed") for _ in requests]
            try:
                loaded = self._load_locked()
            except BackendError as exc:
                return [BackendError(exc.reason) for _ in requests]
            outcomes: list[ChatResult | BackendError | None] = [None] * len(requests)
            groups: dict[float, list[_Prepared]] = {}
            for i, request in enumerate(requests):
                try:
                    prepared = self._prepare(loaded, i, request)
                except Exception as exc:
                    outcomes[i] = BackendError(f"could not prepare the request: {_short(exc)}")
                else:
                    groups.setdefault(max(request.temperature, 0.0), []).append(prepared)
            for temperature, group in groups.items():
                answers = self._generate_or_split(loaded, group, temperature)
                for p, outcome in zip(group, answers, strict=True):
                    outcomes[p.index] = outcome
            return [o if o is not None else BackendError("request was not processed") for o in outcomes]

    def _generate_or_split(
        self, loaded: _Loaded, group: list[_Prepared], temperature: float
    ) -> list[ChatResult | BackendError]:
        try:
            return list(self._generate(loaded, group, temperature))
        except Exception as exc:
            if len(group) == 1:
                log.warning("transformers generation failed: %s", _short(exc))
                return [BackendError(f"generation failed: {_short(exc)}")]
            log.warning("batch of %d failed (%s); retrying one by one", len(group), _short(exc))
            return [r for p in group for r in self._generate_or_split(loaded, [p], temperature)]

    def _prepare(self, loaded: _Loaded, index: int, request: ChatRequest) -> _Prepared:
        from PIL import Image, UnidentifiedImageError

        images = []
        parts = [p for m in request.messages for p in m.parts if isinstance(p, ImagePart)]
        for n, part in enumerate(parts, start=1):
            try:
                with Image.open(io.BytesIO(part.data)) as img:
                    images.append(img.convert("RGB"))
            except Exception as exc:
                unreadable = isinstance(exc, UnidentifiedImageError)
                why = "not an image format PIL reads" if unreadable else _short(exc)
                raise ValueError(
                    f"image {n} of {len(parts)} ({part.mime}, {len(part.data)} bytes) does not decode: {why}"
                ) from exc
        text = loaded.processor.apply_chat_template(
            to_chat_messages(request.messages), add_generation_prompt=True, tokenize=False
        )
        return _Prepared(index, request, text, images)

    def _generate(self, loaded: _Loaded, group: list[_Prepared], temperature: float) -> list[ChatResult]:
        import torch

        texts, images = [p.text for p in group], [img for p in group for img in p.images]
        # A template that writes the BOS token itself must not get a second one (as transformers does).
        bos = loaded.processor.tokenizer.bos_token
        special = {"add_special_tokens": False} if bos and all(t.startswith(bos) for t in texts) else {}
        inputs = loaded.processor(
            text=texts, images=images or None, padding=True, return_tensors="pt", **special
        )
        dtype = getattr(torch, self.dtype)
        tensors = {
            k: v.to(self.device, dtype) if v.is_floating_point() else v.to(self.device)
            for k, v in inputs.items()
            if isinstance(v, torch.Tensor)
        }
        sampling: dict[str, Any] = {"do_sample": False}
        if temperature > 0:
            sampling = {"do_sample": True, "temperature": temperature}
        with torch.inference_mode():
            out = loaded.model.generate(
                **tensors, max_new_tokens=max(p.request.max_tokens for p in group), **sampling
            )
        prompt_len = tensors["input_ids"].shape[1]
        new_from = 0 if getattr(loaded.model.config, "is_encoder_decoder", False) else prompt_len
        mask = tensors.get("attention_mask")
        results = []
        for row, p in enumerate(group):
            ids = completion_ids(out[row, new_from:].tolist(), p.request.max_tokens, loaded.stop_ids)
            text = loaded.processor.tokenizer.decode(ids, skip_special_tokens=True)
            prompt_tokens = int(mask[row].sum()) if mask is not None else prompt_len
            results.append(ChatResult(text, self.model, prompt_tokens, len(ids)))
        return results

    def _load_locked(self) -> _Loaded:
        if self._loaded is not None:
            return self._loaded
        if self._load_error is not None:
            raise BackendError(self._load_error)
        problem = model_source_problem(self.model)
        if problem is None:
            try:
                self._loaded = self._read_model()
                return self._loaded
            except Exception as exc:
                problem = f"could not load the model {self.model!r}: {_short(exc)}; expected {EXPECTED_MODEL}"
        self._load_error = problem
        raise BackendError(problem)

    def _read_model(self) -> _Loaded:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        started = time.perf_counter()
        source = str(Path(self.model).expanduser()) if Path(self.model).expanduser().is_dir() else self.model
        processor = AutoProcessor.from_pretrained(source)
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is None:
            raise ValueError("its processor has no tokenizer (is this an image-text-to-text model?)")
        if not (getattr(processor, "chat_template", None) or getattr(tokenizer, "chat_template", None)):
            raise ValueError("it has no chat template (chat_template.jinja); prompts are rendered with it")
        tokenizer.padding_side = "left"  # decoder-only generation continues from the right edge
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model: Any = AutoModelForImageTextToText.from_pretrained(source, dtype=getattr(torch, self.dtype))
        model.to(self.device).eval()
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        eos = model.generation_config.eos_token_id
        stop_ids = {eos} if isinstance(eos, int) else set(eos or ())
        if tokenizer.eos_token_id is not None:
            stop_ids.add(tokenizer.eos_token_id)
        elapsed = time.perf_counter() - started
        log.info("loaded %s on %s (%s) in %.1f s", self.model, self.device, self.dtype, elapsed)
        return _Loaded(processor, model, stop_ids)

    def _release(self) -> None:
        with self._lock:
            had_model = self._loaded is not None
            self._loaded = None
        if had_model and self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


def _short(exc: BaseException) -> str:
    """One line for a reason: the exception's type and the first line of its message."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__
