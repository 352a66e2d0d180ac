"""The contract every LVLM backend keeps, checked against each one in BACKENDS.

`openai` runs against a loopback chat-completions server that answers a constrained request with a
random instance of the schema it received; `hf` against a tiny randomly initialised LLaVA saved to
disk and loaded through the real transformers code (built once per session).
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from pathlib import Path

import jsonschema  # installed with streamlit (altair needs it); not a dependency of ours
import pytest

from rgvlm_core.labeling.backends import BACKENDS, make_backend
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
from rgvlm_core.labeling.messages import scores_schema
from tests.fake_openai import FakeOpenAI, schema_responder
from tests.fake_openai import run_backend as run
from tests.tiny_models import build_tiny_llava

SECRET = "sk-contract-sentinel-4242"
SCHEMA = scores_schema([0, 1])  # what stage two sends


@pytest.fixture(scope="session")
def tiny_llava_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_llava(tmp_path_factory.mktemp("tiny_llava"))


@pytest.fixture(params=["openai", "hf"])
def contract_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Backend]:
    """A working backend of each kind, built while RGVLM_API_KEY holds a secret it must not reveal."""
    monkeypatch.setenv("RGVLM_API_KEY", SECRET)
    if request.param == "openai":
        with FakeOpenAI(api_key=SECRET, responder=schema_responder(seed=7)) as fake:
            backend = make_backend("openai", BackendConfig(base_urls=(fake.base_url,), model="fake-vlm"))
            yield backend
            asyncio.run(backend.aclose())
    else:
        folder = request.getfixturevalue("tiny_llava_folder")
        config = BackendConfig(model=str(folder), device="cpu", dtype="float32", batch_size=2)
        backend = make_backend("hf", config)
        yield backend
        asyncio.run(backend.aclose())


def jpeg(colour: tuple[int, int, int]) -> ImagePart:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (48, 40), colour).save(buffer, format="JPEG")
    return ImagePart(buffer.getvalue())


def ask(text: str, images: int = 0, **kw: object) -> ChatRequest:
    colours = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]
    parts = (TextPart(text), *(jpeg(colours[i % len(colours)]) for i in range(images)))
    return ChatRequest((Message("user", parts),), max_tokens=16, **kw)  # type: ignore[arg-type]


def assert_answer(result: ChatResult) -> None:
    assert isinstance(result, ChatResult)
    assert isinstance(result.text, str)
    assert isinstance(result.model, str) and result.model
    assert result.latency_s >= 0 and result.attempts >= 1


def test_every_table_entry_is_covered_by_the_contract() -> None:
    assert set(BACKENDS) == {"openai", "hf"}


def test_backend_follows_the_protocol(contract_backend: Backend) -> None:
    assert isinstance(contract_backend, Backend)
    assert contract_backend.name in BACKENDS


def test_a_text_only_chat_returns_a_result(contract_backend: Backend) -> None:
    request = ChatRequest((Message.text("system", "Be brief."), Message.text("user", "Describe a kitchen.")))
    assert_answer(run(contract_backend, lambda b: b.chat(request)))


@pytest.mark.parametrize("images", [1, 3])
def test_a_chat_with_images_returns_a_result(contract_backend: Backend, images: int) -> None:
    assert_answer(run(contract_backend, lambda b: b.chat(ask("What does the robot do?", images))))


def test_eight_concurrent_chats_all_return(contract_backend: Backend) -> None:
    requests = [ask(f"Question {i}: what happens?", images=i % 3) for i in range(8)]
    results = run(contract_backend, lambda b: asyncio.gather(*(b.chat(r) for r in requests)))
    assert len(results) == 8
    for result in results:
        assert_answer(result)


def test_describe_is_json_names_backend_and_model_and_holds_no_secret(contract_backend: Backend) -> None:
    described = contract_backend.describe()
    text = json.dumps(described)
    assert described["backend"] == contract_backend.name
    assert described["model"] == contract_backend.model
    assert SECRET not in text


def test_after_aclose_twice_the_backend_refuses_queries_with_a_clear_error(contract_backend: Backend) -> None:
    async def use_close_twice_then_ask(b: Backend) -> None:
        assert_answer(await b.chat(ask("Describe a kitchen.")))
        await b.aclose()
        await b.aclose()
        with pytest.raises(BackendError, match="closed"):
            await b.chat(ask("Still there?"))

    asyncio.run(use_close_twice_then_ask(contract_backend))
    assert contract_backend.describe()["backend"] == contract_backend.name, (
        "a closed backend still describes itself"
    )


def constrains_output(backend: Backend) -> bool:
    """Whether the backend asks for constrained output (its describe() says json_schema False if never)."""
    return backend.describe().get("json_schema") is not False


def test_a_request_with_a_json_schema_gets_json_that_fits_it_where_output_is_constrained(
    contract_backend: Backend,
) -> None:
    request = ask('Give scores as JSON {"scores": ...} for steps 0 and 1.', json_schema=SCHEMA)
    result = run(contract_backend, lambda b: b.chat(request))
    assert_answer(result)
    if constrains_output(contract_backend):
        assert result.text.strip(), "a constrained answer is never empty"
        jsonschema.validate(json.loads(result.text), SCHEMA)


def test_max_tokens_bounds_the_answer(contract_backend: Backend) -> None:
    request = ChatRequest((Message.text("user", "Tell me a long story about a kitchen."),), max_tokens=8)
    result = run(contract_backend, lambda b: b.chat(request))
    assert_answer(result)
    assert len(result.text.split()) <= 8 and len(result.text) <= 8 * 40
    # both backends under contract count tokens (the fake server reports usage; hf counts generated ids)
    assert result.completion_tokens is not None and 1 <= result.completion_tokens <= 8
