"""The local transformers backend, on a tiny random LLaVA built here and loaded by the real loading code."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

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
from rgvlm_core.labeling.backends.hf_local import (
    TransformersBackend,
    completion_ids,
    model_source_problem,
    resolve_device,
    resolve_dtype,
    to_chat_messages,
)
from tests.fake_openai import run_backend as run
from tests.tiny_models import LLAVA_IMAGE_TOKENS, build_tiny_llava


@pytest.fixture(scope="module")
def llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("models") / "tiny-llava")


def config(folder: Path, **overrides: Any) -> BackendConfig:
    settings: dict[str, Any] = {"model": str(folder), "device": "cpu", "dtype": "float32", "batch_size": 2}
    return BackendConfig(**{**settings, **overrides})


def jpeg(colour: tuple[int, int, int], size: tuple[int, int] = (48, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG")
    return buffer.getvalue()


def ask(text: str, *images: bytes, max_tokens: int = 6, temperature: float = 0.0) -> ChatRequest:
    parts: tuple[TextPart | ImagePart, ...] = (*(ImagePart(img) for img in images), TextPart(text))
    return ChatRequest((Message("user", parts),), max_tokens=max_tokens, temperature=temperature)


def assert_answer(result: ChatResult, request: ChatRequest, folder: Path) -> None:
    assert isinstance(result.text, str)
    assert result.model == str(folder)
    assert result.prompt_tokens is not None and result.prompt_tokens > 0
    assert result.completion_tokens is not None and 1 <= result.completion_tokens <= request.max_tokens
    assert result.latency_s >= 0


# ---- the tiny model --------------------------------------------------------------------------------


def test_tiny_llava_loads_through_the_auto_classes_and_is_built_once(llava: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(llava)
    model = AutoModelForImageTextToText.from_pretrained(llava)
    assert type(model).__name__ == "LlavaForConditionalGeneration"
    assert type(processor).__name__ == "LlavaProcessor"
    assert processor.chat_template and processor.tokenizer.pad_token == "<pad>"
    assert model.config.image_token_id == processor.tokenizer.convert_tokens_to_ids("<image>")
    stamp = (llava / "model.safetensors").stat().st_mtime_ns
    assert build_tiny_llava(llava) == llava
    assert (llava / "model.safetensors").stat().st_mtime_ns == stamp


def test_the_backend_table_builds_the_transformers_backend(llava: Path) -> None:
    backend = make_backend("hf", config(llava))
    assert isinstance(backend, TransformersBackend) and isinstance(backend, Backend)
    assert backend.describe() == {
        "backend": "hf",
        "model": str(llava),
        "device": "cpu",
        "dtype": "float32",
        "batch_size": 2,
        "json_schema": False,
    }


# ---- answers -------------------------------------------------------------------------------------


def test_a_text_only_request_gets_an_answer(llava: Path) -> None:
    request = ask("Score each step from 0 to 10.")
    result = run(make_backend("hf", config(llava)), lambda b: b.chat(request))
    assert_answer(result, request, llava)


@pytest.mark.parametrize("n_images", [1, 2, 3])
def test_requests_with_images_get_answers_and_each_image_fills_its_tokens(llava: Path, n_images: int) -> None:
    images = [jpeg((60 * i, 200, 40)) for i in range(n_images)]
    with_images, text_only = ask("What happened?", *images), ask("What happened?")

    async def both(b: Backend) -> list[ChatResult]:
        return [await b.chat(with_images), await b.chat(text_only)]

    answered, plain = run(make_backend("hf", config(llava)), both)
    assert_answer(answered, with_images, llava)
    assert answered.prompt_tokens == (plain.prompt_tokens or 0) + n_images * LLAVA_IMAGE_TOKENS


def test_four_concurrent_requests_are_generated_in_batches_of_two(
    llava: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes: list[int] = []
    generate = TransformersBackend._generate

    def counting(self: TransformersBackend, loaded: Any, group: list[Any], temperature: float) -> Any:
        sizes.append(len(group))
        return generate(self, loaded, group, temperature)

    monkeypatch.setattr(TransformersBackend, "_generate", counting)
    requests = [ask(f"request {i}", *[jpeg((40 * i, 10, 10))] * (i % 2), max_tokens=3 + i) for i in range(4)]
    results = run(make_backend("hf", config(llava)), lambda b: asyncio.gather(*map(b.chat, requests)))
    assert sizes == [2, 2]
    for result, request in zip(results, requests, strict=True):
        assert_answer(result, request, llava)


def test_batched_answers_equal_one_by_one_answers_so_left_padding_is_right(llava: Path) -> None:
    requests = [
        ask("short", jpeg((200, 0, 0)), max_tokens=10),
        ask("a much longer question about the kitchen and the apple on the table", max_tokens=10),
    ]

    async def one_by_one(b: Backend) -> list[str]:
        return [(await b.chat(r)).text for r in requests]

    async def together(b: Backend) -> list[str]:
        return [r.text for r in await asyncio.gather(*map(b.chat, requests))]

    alone = run(make_backend("hf", config(llava, batch_size=1)), one_by_one)
    assert run(make_backend("hf", config(llava, batch_size=2)), together) == alone


def test_greedy_decoding_gives_the_same_answer_every_time(llava: Path) -> None:
    request = ask("Pick up the apple.", jpeg((200, 30, 30)), max_tokens=8)

    async def twice(b: Backend) -> list[str]:
        return [(await b.chat(request)).text, (await b.chat(request)).text]

    first, second = run(make_backend("hf", config(llava)), twice)
    again = run(make_backend("hf", config(llava)), lambda b: b.chat(request)).text
    assert first == second == again


def test_sampling_requests_are_answered_too(llava: Path) -> None:
    request = ask("Describe the room.", max_tokens=5, temperature=0.7)
    result = run(make_backend("hf", config(llava)), lambda b: b.chat(request))
    assert_answer(result, request, llava)


# ---- failures end as BackendError, never as a crash ----------------------------------------------


def test_a_corrupt_image_fails_only_its_own_request(llava: Path) -> None:
    good, broken = ask("fine", jpeg((1, 2, 3))), ask("broken", b"\xff\xd8 not really a jpeg")
    outcomes = run(
        make_backend("hf", config(llava)),
        lambda b: asyncio.gather(b.chat(good), b.chat(broken), return_exceptions=True),
    )
    assert isinstance(outcomes[0], ChatResult)
    assert isinstance(outcomes[1], BackendError)
    assert "image 1 of 1" in outcomes[1].reason and "does not decode" in outcomes[1].reason


def test_a_generation_failure_fails_each_request_of_the_batch(
    llava: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("CUDA out of memory (simulated)\nlong traceback text")

    backend = TransformersBackend(config(llava))
    backend.load()
    assert backend._loaded is not None
    monkeypatch.setattr(backend._loaded.model, "generate", explode)
    outcomes = run(
        backend, lambda b: asyncio.gather(b.chat(ask("a")), b.chat(ask("b")), return_exceptions=True)
    )
    reasons = [o.reason if isinstance(o, BackendError) else repr(o) for o in outcomes]
    assert reasons == ["generation failed: RuntimeError: CUDA out of memory (simulated)"] * 2


def test_a_missing_model_folder_is_a_backend_error_naming_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    backend = make_backend("hf", config(missing))
    with pytest.raises(BackendError, match="does not exist") as failure:
        run(backend, lambda b: b.chat(ask("hello")))
    assert str(missing) in failure.value.reason and "config.json" in failure.value.reason


def test_a_folder_that_is_not_a_model_is_a_backend_error_at_every_query(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"model_type": "llava"}')
    backend = TransformersBackend(config(tmp_path))
    with pytest.raises(BackendError, match="could not load the model"):
        backend.load()

    async def two(b: Backend) -> list[Any]:
        return list(await asyncio.gather(b.chat(ask("a")), b.chat(ask("b")), return_exceptions=True))

    outcomes = run(backend, two)
    assert all(isinstance(o, BackendError) and "could not load" in o.reason for o in outcomes)


def test_a_hub_id_that_is_not_cached_is_a_backend_error_offline() -> None:
    backend = make_backend("hf", BackendConfig(model="rgvlm-tests/not-a-cached-model", device="cpu"))
    with pytest.raises(BackendError, match="not-a-cached-model"):
        run(backend, lambda b: b.chat(ask("hello")))


def test_a_closed_backend_refuses_requests_and_closes_twice(llava: Path) -> None:
    async def close_then_chat(b: Backend) -> None:
        await b.chat(ask("warm up", max_tokens=1))
        await b.aclose()
        await b.aclose()
        await b.chat(ask("too late"))

    with pytest.raises(BackendError, match="closed"):
        run(make_backend("hf", config(llava)), close_then_chat)


def test_settings_that_cannot_work_are_usage_errors(llava: Path) -> None:
    for bad in ({"dtype": "float8"}, {"device": "tpu"}, {"batch_size": 0}, {"json_schema": True}):
        with pytest.raises(UsageError):
            TransformersBackend(config(llava, **bad))


# ---- pure helpers ---------------------------------------------------------------------------------


def test_messages_become_the_processors_chat_format() -> None:
    messages = (
        Message.text("system", "Be brief."),
        Message("user", (ImagePart(b"x"), TextPart("Step 0"), ImagePart(b"y"), TextPart("Step 1"))),
    )
    assert to_chat_messages(messages) == [
        {"role": "system", "content": [{"type": "text", "text": "Be brief."}]},
        {
            "role": "user",
            "content": [
                {"type": "image"},
                {"type": "text", "text": "Step 0"},
                {"type": "image"},
                {"type": "text", "text": "Step 1"},
            ],
        },
    ]


def test_device_and_dtype_auto_follow_the_hardware() -> None:
    assert resolve_device("auto", cuda_available=False) == "cpu"
    assert resolve_device("auto", cuda_available=True) == "cuda"
    assert resolve_device("cuda:1", cuda_available=True) == "cuda:1"
    with pytest.raises(UsageError, match="no CUDA GPU"):
        resolve_device("cuda", cuda_available=False)
    assert resolve_dtype("auto", "cpu", bf16_supported=True) == "float32"
    assert resolve_dtype("auto", "cuda", bf16_supported=True) == "bfloat16"
    assert resolve_dtype("auto", "cuda", bf16_supported=False) == "float16"
    assert resolve_dtype("float16", "cpu", bf16_supported=False) == "float16"


def test_completions_end_at_the_first_stop_token_and_the_request_limit() -> None:
    assert completion_ids([5, 6, 2, 0, 0], max_tokens=10, stop_ids={2}) == [5, 6, 2]
    assert completion_ids([5, 6, 7, 8], max_tokens=2, stop_ids={2}) == [5, 6]
    assert completion_ids([], max_tokens=3, stop_ids={2}) == []


def test_model_sources_are_checked_before_loading(tmp_path: Path) -> None:
    assert model_source_problem("org/model-name") is None  # a hub id
    assert "no model given" in (model_source_problem("  ") or "")
    assert "has no config.json" in (model_source_problem(str(tmp_path)) or "")
    assert "does not exist" in (model_source_problem(str(tmp_path / "gone")) or "")
    assert "does not exist" in (model_source_problem("./models/llava") or "")
    (tmp_path / "weights.bin").write_bytes(b"")
    assert "is a file" in (model_source_problem(str(tmp_path / "weights.bin")) or "")
