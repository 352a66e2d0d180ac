"""From settings (CLI flags, dashboard widgets) to a ready labeller, and a run name derived from them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.labeling.types import Labeller
from rgvlm_core.workspace import Workspace

LABELLERS = ("lvlm", "reference", "clip")


BASE_URL_ENV = "RGVLM_BASE_URL"  # base URLs of the OpenAI-compatible servers, comma-separated


@dataclass(frozen=True)
class LabelSpec:
    """Everything needed to build a labeller."""

    labeller: str = "reference"
    backend: str = "openai"
    model: str = ""
    base_urls: tuple[str, ...] = ()
    api_key_env: str = "RGVLM_API_KEY"
    prompt: str | None = None
    # the progress question: None = the labeller's default (reference: on; lvlm: as the prompt
    # version says); True/False turn it on or off (lvlm: a version derived from the prompt)
    progress: bool | None = None
    concurrency: int = 8
    noise: float = 0.0
    noise_seed: int = 0
    max_frames: int = 16
    max_side: int = 336
    json_schema: bool | None = None
    price_prompt: float | None = None
    price_completion: float | None = None
    device: str = "auto"
    dtype: str = "auto"
    batch_size: int = 1


def build_labeller(workspace: Workspace, spec: LabelSpec) -> tuple[Labeller, str | None]:
    """The labeller and the prompt version it uses (stored in the workspace for provenance)."""
    if spec.labeller == "reference":
        from rgvlm_core.labeling.reference import NoiseConfig, ReferenceLabeller

        noise = NoiseConfig.from_level(spec.noise, spec.noise_seed)
        return ReferenceLabeller(noise, progress=spec.progress is not False), None
    if spec.labeller == "clip":
        from rgvlm_core.labeling.clip import ClipConfig, ClipLabeller

        if spec.progress:
            raise UsageError(
                "the clip labeller cannot answer the progress question (it measures similarity); "
                "use --labeller reference or lvlm, or drop --progress"
            )
        if not spec.model:
            raise UsageError("--model must name a local CLIP model folder for the clip labeller")
        return ClipLabeller(ClipConfig(model=spec.model, device=spec.device)), None
    if spec.labeller != "lvlm":
        raise UsageError(f"unknown labeller {spec.labeller!r}; choose one of {', '.join(LABELLERS)}")
    if not spec.model:
        raise UsageError(
            "--model is needed for the lvlm labeller (the model name the server knows, or a local folder)"
        )
    from rgvlm_core.labeling.backends import make_backend
    from rgvlm_core.labeling.backends.base import BackendConfig
    from rgvlm_core.labeling.lvlm import LvlmLabeller
    from rgvlm_core.labeling.messages import QueryConfig
    from rgvlm_core.labeling.prompts import with_progress
    from rgvlm_core.labeling.store import get_prompt, save_prompt

    if spec.backend == "openai" and not spec.base_urls:
        raise UsageError(
            "--base-url is needed for the openai backend (e.g. http://127.0.0.1:8000/v1 for vLLM)"
        )
    config = BackendConfig(
        model=spec.model,
        base_urls=spec.base_urls or BackendConfig().base_urls,
        api_key_env=spec.api_key_env,
        concurrency=spec.concurrency,
        json_schema=spec.json_schema,
        device=spec.device,
        dtype=spec.dtype,
        batch_size=spec.batch_size,
        price_prompt_per_1k=spec.price_prompt,
        price_completion_per_1k=spec.price_completion,
    )
    reader = workspace.reader()
    try:
        prompt = get_prompt(reader, spec.prompt)
    finally:
        reader.close()
    if spec.progress is not None:
        prompt = with_progress(prompt, spec.progress)
    save_prompt(workspace, prompt)
    query = QueryConfig(max_frames=spec.max_frames, max_side=spec.max_side)
    backend = make_backend(spec.backend, config)
    load = getattr(backend, "load", None)
    if callable(load):  # a local model: fail before the run rather than on every segment
        from rgvlm_core.labeling.backends.base import BackendError

        try:
            load()
        except BackendError as exc:
            raise RGVLMError(f"cannot load the model: {exc.reason}") from exc
    return LvlmLabeller(backend, prompt, query, config), prompt.prompt_id


def default_run_name(labeller: Labeller, unit: str, filters: EpisodeFilter) -> str:
    """A stable name for the same settings, so rerunning the same command resumes the same run."""
    doc = {"labeller": labeller.describe(), "unit": unit, "filters": asdict(filters)}
    digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:6]
    describe = labeller.describe()
    parts = [describe.get("labeller", labeller.name)]
    if describe.get("model"):
        parts.append(str(describe["model"]).rstrip("/").split("/")[-1])
    noise = describe.get("noise", {})
    if isinstance(noise, dict) and noise.get("flip"):
        parts.append(f"noise{noise['flip']:g}")
    return "-".join([*parts, digest])
