"""CLIP baseline labeller (VLM-RM style): a step's score is the similarity of a frame to the instruction.

An embedding-similarity baseline, not a vision-language model's analysis: each frame and the segment's
instruction are embedded with a CLIP model (`get_image_features` / `get_text_features`, unit-normalised),
their cosine similarity is taken, optionally with VLM-RM's baseline-prompt projection (Rocamonde et al.
2023, "Vision-Language Models are Zero-Shot Reward Models"), and mapped linearly from
[score_low, score_high] to an integer score 0..10.

Baseline projection. VLM-RM's reward is R = 1 - 1/2 |M (x - g)|^2 with x the frame embedding, g the goal
(instruction) embedding, b the baseline-prompt embedding ("a room"), P the projection onto the direction
g - b and M = alpha P + (1 - alpha) I. Writing w = (1 - alpha)^2 and c = x.g, it splits exactly into
R = w c + (1 - w) R1 with R1 = 1 - 1/2 |P (x - g)|^2. We report and map it in cosine units:
s = (R - (1 - w) R1_0) / w with R1_0 = 1 - |g - b|^2 / 8 (R1 for a frame as similar to the baseline as to
the goal). s orders frames exactly as R does, equals c when alpha is 0, and leaves a frame equally
similar to both prompts at its plain cosine, so one score range serves both modes. alpha must stay
below 1 (at 1 the frame-instruction cosine drops out and there is no cosine scale left).

The model loads once, at construction: a folder that cannot load raises `RGVLMError` there (the CLI
prints it before any work starts). Embedding runs in a worker thread under one lock. torch and
transformers are imported inside functions, so reading `ClipConfig` (CLI help) stays cheap.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.labeling.backends.hf_local import model_source_problem, resolve_device
from rgvlm_core.labeling.types import SCORE_MAX, SCORE_MIN, Segment, SegmentLabel, StepScore

log = logging.getLogger(__name__)

# Typical CLIP ViT-B/32 frame-text cosine similarities: unrelated pairs sit near 0.15, matching ones near
# 0.3 and rarely above 0.4 (CLIPScore, Hessel et al. 2021, rescales by 2.5 for this reason).
DEFAULT_SCORE_LOW = 0.15
DEFAULT_SCORE_HIGH = 0.35
NO_FRAMES = "no frames in this dataset: CLIP needs raw_images"


@dataclass(frozen=True)
class ClipConfig:
    """Settings of the CLIP labeller; the comments are the help texts of the CLI and the app."""

    model: str = ""  # CLIP model folder (save_pretrained layout) or a hub id already in the local cache
    device: str = "auto"  # cpu, cuda, cuda:N, or auto (cuda when available); always float32
    baseline_prompt: str | None = None  # VLM-RM baseline text, e.g. "a room"; None: plain cosine similarity
    # DEVIATION: VLM-RM allows alpha = 1; scores here are in cosine units (module docstring), which
    # alpha = 1 has none of, so alpha stays below 1.
    alpha: float = 0.5  # VLM-RM projection strength in [0, 1): 0 ignores the baseline
    score_low: float = DEFAULT_SCORE_LOW  # similarity (cosine units) scored 0: a typical unrelated pair
    score_high: float = DEFAULT_SCORE_HIGH  # similarity scored 10: a typical well-matched pair
    # DEFAULT (the paper is silent): a step's reward judges the state its action reaches, as VLM-RM
    # scores the observation after each step; 'before' scores the step's own frame instead.
    # DEVIATION: the frame after each action by default (VLM-RM); see docs/deviations.md
    frame: Literal["after", "before"] = "after"  # score the frame after each action (VLM-RM) or before it
    batch_size: int = 16  # frames embedded per forward pass

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha < 1.0:
            raise UsageError(f"alpha must be in [0, 1), got {self.alpha}")
        if not self.score_low < self.score_high:
            raise UsageError(f"score_low ({self.score_low}) must be below score_high ({self.score_high})")
        if self.batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.frame not in ("after", "before"):
            raise UsageError(f"frame must be 'after' or 'before', got {self.frame!r}")
        if self.baseline_prompt is not None and not self.baseline_prompt.strip():
            raise UsageError("baseline_prompt is empty; give a text such as 'a room' or leave it unset")


# ---- pure maths -----------------------------------------------------------------------------------


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def similarity(
    frames: np.ndarray, goal: np.ndarray, baseline: np.ndarray | None = None, alpha: float = 0.0
) -> np.ndarray:
    """Per frame, the (projected) similarity to the goal in cosine units (see the module docstring).

    `frames` is (n, d), `goal` and `baseline` are (d,); none needs to be normalised.
    DEVIATION: VLM-RM's reward R itself is rescaled per instruction to (R - (1 - w) R1_0) / w, an
    increasing affine map (same ranking of frames), so one score range fits with and without a baseline.
    """
    x, g = _unit(np.asarray(frames, dtype=np.float64)), _unit(np.asarray(goal, dtype=np.float64))
    cos = x @ g
    if baseline is None or alpha == 0.0:
        return cos
    direction = g - _unit(np.asarray(baseline, dtype=np.float64))
    gap = float(direction @ direction)  # |g - b|^2
    if gap < 1e-12:  # baseline text embeds like the goal: no direction to project on
        return cos
    v = x - g
    r1 = 1.0 - 0.5 * (v @ direction) ** 2 / gap  # 1 - |P v|^2 / 2
    w = (1.0 - alpha) ** 2
    return cos + (1.0 - w) / w * (r1 - (1.0 - gap / 8.0))


def vlmrm_reward(frames: np.ndarray, goal: np.ndarray, baseline: np.ndarray, alpha: float) -> np.ndarray:
    """VLM-RM's reward 1 - |M (x - g)|^2 / 2, written out; `similarity` is tested against it."""
    x, g, b = (_unit(np.asarray(a, dtype=np.float64)) for a in (frames, goal, baseline))
    d = _unit(g - b)
    projection = np.outer(d, d)
    m = alpha * projection + (1.0 - alpha) * np.eye(len(g))
    residual = (x - g) @ m.T
    return 1.0 - 0.5 * np.sum(residual**2, axis=-1)


def to_score(value: float, low: float, high: float) -> int:
    """Linear map of [low, high] onto SCORE_MIN..SCORE_MAX, rounded half up and clipped to the range."""
    scaled = SCORE_MIN + (SCORE_MAX - SCORE_MIN) * (value - low) / (high - low)
    return int(min(max(np.floor(scaled + 0.5), SCORE_MIN), SCORE_MAX))


def scored_frames(segment: Segment, frame: str) -> list[tuple[str, str]]:
    """Per step, the frame to embed and where it sits relative to the step's action."""
    steps = segment.steps
    if frame == "before":
        return [(s.frame or "", "before the action") for s in steps]
    chosen = []
    for i, step in enumerate(steps):
        later = steps[i + 1].frame if i + 1 < len(steps) else segment.final_frame
        if later:
            chosen.append((later, "after the action"))
        else:
            chosen.append((step.frame or "", "before the action: no later frame"))
    return chosen


# ---- the labeller ---------------------------------------------------------------------------------


class ClipLabeller:
    """`clip`: VLM-RM-style CLIP similarity between frames and the instruction (a baseline, not an LVLM)."""

    name = "clip"

    def __init__(self, config: ClipConfig) -> None:
        self.config = config
        problem = model_source_problem(config.model)
        if problem is not None:
            raise RGVLMError(f"CLIP labeller: {problem}")
        import torch

        self.device = resolve_device(config.device, torch.cuda.is_available())
        self._lock = threading.Lock()
        self._text_cache: dict[str, np.ndarray] = {}
        self._calls = 0  # forward passes so far; a label reports its own share
        self._processor, self._model = self._load()

    def describe(self) -> dict[str, Any]:
        keys = ("model", "baseline_prompt", "alpha", "score_low", "score_high", "frame")
        settings = asdict(self.config)
        return {"labeller": self.name, **{k: settings[k] for k in keys}}

    async def label(self, segment: Segment) -> SegmentLabel:
        missing = [s.t for s in segment.steps if not s.frame]
        if not segment.steps:
            return SegmentLabel.failed("the segment has no steps to score")
        if missing:
            return SegmentLabel.failed(f"{NO_FRAMES} (step t={missing[0]} has no frame)")
        started = time.perf_counter()
        try:
            sims, calls = await asyncio.to_thread(self._similarities, segment)
        except _SegmentError as exc:
            return SegmentLabel.failed(str(exc), latency_s=time.perf_counter() - started)
        except Exception as exc:  # e.g. out of GPU memory: this segment fails, the run goes on
            log.exception("CLIP embedding failed for %s/%s", segment.episode_id, segment.segment_id)
            reason = f"CLIP embedding failed: {type(exc).__name__}: {exc}".splitlines()[0]
            return SegmentLabel.failed(reason, latency_s=time.perf_counter() - started)
        return self._label_from(segment, sims, calls, time.perf_counter() - started)

    async def aclose(self) -> None:
        """Release the model (idempotent); later segments fail with 'closed'."""
        await asyncio.to_thread(self._release)

    def _release(self) -> None:
        with self._lock:
            self._model = None
            self._text_cache.clear()

    # ---- internals ----

    def _label_from(self, segment: Segment, sims: np.ndarray, calls: int, latency: float) -> SegmentLabel:
        cfg = self.config
        frames = scored_frames(segment, cfg.frame)
        projected = ""
        if cfg.baseline_prompt:
            projected = f" projected from {cfg.baseline_prompt!r} (alpha {cfg.alpha})"
        scores = tuple(
            StepScore(
                t=step.t,
                score=to_score(float(sim), cfg.score_low, cfg.score_high),
                reason=f"CLIP similarity {sim:.3f}{projected} to the instruction, frame {where}",
            )
            for step, sim, (_, where) in zip(segment.steps, sims, frames, strict=True)
        )
        analysis = (
            "Embedding-similarity baseline (CLIP, VLM-RM style), not a vision-language model's analysis: "
            f"each step scores the cosine similarity between the frame {cfg.frame} its action and the "
            f"instruction {self._instruction(segment)!r}{projected}, mapped linearly from "
            f"[{cfg.score_low}, {cfg.score_high}] to {SCORE_MIN}..{SCORE_MAX}."
        )
        raw = json.dumps({"similarity": [round(float(s), 6) for s in sims]})
        return SegmentLabel(
            status="ok", scores=scores, analysis=analysis, raw=raw, latency_s=latency, calls=calls
        )

    @staticmethod
    def _instruction(segment: Segment) -> str:
        return segment.instruction.strip() or segment.goal

    def _similarities(self, segment: Segment) -> tuple[np.ndarray, int]:
        paths = [path for path, _ in scored_frames(segment, self.config.frame)]
        images = [_open_frame(p) for p in paths]
        with self._lock:
            if self._model is None:
                raise _SegmentError("the CLIP labeller is closed")
            calls_before = self._calls
            goal = self._text(self._instruction(segment))
            baseline = self._text(self.config.baseline_prompt) if self.config.baseline_prompt else None
            size = self.config.batch_size
            batches = [images[i : i + size] for i in range(0, len(images), size)]
            frames = np.concatenate([self._embed_images(batch) for batch in batches])
            calls = self._calls - calls_before
        return similarity(frames, goal, baseline, self.config.alpha), calls

    def _text(self, text: str) -> np.ndarray:
        if text not in self._text_cache:
            import torch

            text_config = getattr(self._model.config, "text_config", self._model.config)
            max_length = int(getattr(text_config, "max_position_embeddings", 77))
            inputs = self._processor(
                text=[text], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
            with torch.inference_mode():
                out = self._model.get_text_features(**{k: v.to(self.device) for k, v in inputs.items()})
            self._calls += 1
            self._text_cache[text] = _features(out)[0]
        return self._text_cache[text]

    def _embed_images(self, images: list[Any]) -> np.ndarray:
        import torch

        inputs = self._processor(images=images, return_tensors="pt")
        with torch.inference_mode():
            out = self._model.get_image_features(pixel_values=inputs["pixel_values"].to(self.device))
        self._calls += 1
        return _features(out)

    def _load(self) -> tuple[Any, Any]:
        from transformers import AutoModel, AutoProcessor

        started = time.perf_counter()
        source = self.config.model
        if Path(source).expanduser().is_dir():
            source = str(Path(source).expanduser())
        try:
            processor = AutoProcessor.from_pretrained(source)
            model: Any = AutoModel.from_pretrained(source)
        except Exception as exc:
            raise RGVLMError(
                f"CLIP labeller: could not load {self.config.model!r} ({type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}); expected a CLIP model "
                "folder (config.json, model.safetensors, tokenizer and preprocessor files) as written by "
                "CLIPModel.save_pretrained and CLIPProcessor.save_pretrained"
            ) from exc
        if not (hasattr(model, "get_image_features") and hasattr(model, "get_text_features")):
            raise RGVLMError(
                f"CLIP labeller: {self.config.model!r} is a {type(model).__name__}, which has no "
                "get_image_features/get_text_features; give a CLIP-like (dual encoder) model"
            )
        model.float().to(self.device).eval()
        elapsed = time.perf_counter() - started
        log.info("loaded CLIP %s on %s in %.1f s", self.config.model, self.device, elapsed)
        return processor, model


class _SegmentError(Exception):
    """A segment that cannot be scored (a frame that cannot be read): it fails with this reason."""


def _open_frame(path: str) -> Any:
    from PIL import Image

    from rgvlm_core.alfred.files import MAX_FRAME_BYTES, RefusedPath, read_capped

    try:  # capped and non-blocking: a frame replaced by a FIFO or /dev/zero fails, it does not hang
        data = read_capped(Path(path), MAX_FRAME_BYTES)
    except RefusedPath as exc:
        if not Path(path).exists():
            raise _SegmentError(f"frame {path} does not exist") from None
        raise _SegmentError(f"frame {path} could not be read: {exc.reason}") from None
    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.convert("RGB")
    except Exception as exc:
        raise _SegmentError(f"frame {path} could not be read: {type(exc).__name__}: {exc}") from None


def _features(out: Any) -> np.ndarray:
    """Embeddings as float64 numpy: transformers 5 returns an output with `pooler_output`, 4.x a tensor."""
    tensor = out if hasattr(out, "detach") else out.pooler_output
    return tensor.detach().float().cpu().numpy().astype(np.float64)
