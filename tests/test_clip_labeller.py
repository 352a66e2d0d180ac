"""The CLIP baseline labeller (VLM-RM style), on a tiny random CLIP built here and loaded for real."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.labeling.clip import (
    NO_FRAMES,
    ClipConfig,
    ClipLabeller,
    scored_frames,
    similarity,
    to_score,
    vlmrm_reward,
)
from rgvlm_core.labeling.types import SCORE_MAX, SCORE_MIN, Labeller, Segment, SegmentLabel, SegmentStep
from tests.tiny_models import build_tiny_clip


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """Five small JPEGs that differ in colour and in a drawn shape."""
    folder = tmp_path_factory.mktemp("frames")
    paths = []
    for i in range(5):
        img = Image.new("RGB", (64, 64), (40 * i, 200 - 30 * i, 90))
        ImageDraw.Draw(img).rectangle((8 * i, 8, 8 * i + 20, 40), fill=(250, 250, 10 * i))
        path = folder / f"{i:09d}.jpg"
        img.save(path, "JPEG")
        paths.append(str(path))
    return paths


def segment(frames: Sequence[str | None], final_frame: str | None = None) -> Segment:
    steps = tuple(SegmentStep(t=10 + i, action=f"Action{i}", frame=f) for i, f in enumerate(frames))
    return Segment(
        episode_id="ep-1",
        dataset="sim",
        unit="subtask",
        index=0,
        goal="Put a chilled apple on the counter.",
        instruction="Pick up the apple from the table.",
        kind="Pickup",
        steps=steps,
        final_frame=final_frame,
    )


def label(config: ClipConfig, seg: Segment) -> SegmentLabel:
    async def main() -> SegmentLabel:
        labeller = ClipLabeller(config)
        try:
            return await labeller.label(seg)
        finally:
            await labeller.aclose()

    return asyncio.run(main())


def similarities(result: SegmentLabel) -> list[float]:
    return json.loads(result.raw or "{}")["similarity"]


# ---- the tiny model --------------------------------------------------------------------------------


def test_tiny_clip_loads_through_the_auto_classes(clip_model: Path) -> None:
    from transformers import AutoModel, AutoProcessor, AutoTokenizer

    assert type(AutoModel.from_pretrained(clip_model)).__name__ == "CLIPModel"
    assert type(AutoProcessor.from_pretrained(clip_model)).__name__ == "CLIPProcessor"
    tokenizer = AutoTokenizer.from_pretrained(clip_model)
    assert type(tokenizer).__name__ == "CLIPTokenizer"
    ids = tokenizer("Put the Mug in the Fridge! 42 {x}").input_ids
    assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert tokenizer.eos_token_id not in ids[1:-1]  # the unknown token is end-of-text: nothing fell back
    assert build_tiny_clip(clip_model) == clip_model


# ---- labelling -------------------------------------------------------------------------------------


def test_each_step_with_a_frame_gets_an_integer_score_and_a_reason(
    clip_model: Path, frames: list[str]
) -> None:
    labeller = ClipLabeller(ClipConfig(model=str(clip_model), device="cpu", batch_size=2))
    assert isinstance(labeller, Labeller)
    seg = segment(frames[:4], final_frame=frames[4])
    result = asyncio.run(labeller.label(seg))
    assert result.status == "ok" and result.error is None
    assert [s.t for s in result.scores] == [10, 11, 12, 13]
    for score in result.scores:
        assert isinstance(score.score, int) and SCORE_MIN <= score.score <= SCORE_MAX
        assert score.reason.startswith("CLIP similarity ") and "to the instruction" in score.reason
    assert "not a vision-language model's analysis" in (result.analysis or "")
    assert len(similarities(result)) == 4
    assert result.calls == 1 + 2  # the instruction, then 4 frames in batches of 2


def test_a_segment_without_frames_fails_with_the_reason(clip_model: Path) -> None:
    result = label(ClipConfig(model=str(clip_model), device="cpu"), segment([None, None]))
    assert result.status == "failed" and result.scores == ()
    assert result.error is not None and result.error.startswith(NO_FRAMES)
    assert "t=10" in result.error


def test_a_frame_that_cannot_be_read_fails_the_segment(
    clip_model: Path, frames: list[str], tmp_path: Path
) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    config = ClipConfig(model=str(clip_model), device="cpu", frame="before")
    result = label(config, segment([frames[0], str(broken)]))
    assert result.status == "failed" and f"frame {broken} could not be read" in (result.error or "")
    result = label(config, segment([str(tmp_path / "gone.jpg")]))
    assert result.error == f"frame {tmp_path / 'gone.jpg'} does not exist"


def test_a_frame_replaced_by_a_fifo_or_dev_zero_fails_the_segment_without_hanging(
    clip_model: Path, tmp_path: Path
) -> None:
    fifo, zero = tmp_path / "fifo.jpg", tmp_path / "zero.jpg"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    config = ClipConfig(model=str(clip_model), device="cpu", frame="before")
    for bad, why in ((fifo, "FIFO"), (zero, "not a regular file|character device")):
        result = label(config, segment([str(bad)]))
        assert result.status == "failed" and re.search(why, result.error or ""), result.error


def test_a_model_failure_fails_the_segment_and_a_closed_labeller_refuses(
    clip_model: Path, frames: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def out_of_memory(*args: object) -> None:
        raise RuntimeError("CUDA out of memory (simulated)\ndetails")

    labeller = ClipLabeller(ClipConfig(model=str(clip_model), device="cpu"))
    monkeypatch.setattr(labeller, "_embed_images", out_of_memory)
    failed = asyncio.run(labeller.label(segment(frames[:2])))
    assert failed.error == "CLIP embedding failed: RuntimeError: CUDA out of memory (simulated)"
    asyncio.run(labeller.aclose())
    asyncio.run(labeller.aclose())
    assert asyncio.run(labeller.label(segment(frames[:2]))).error == "the CLIP labeller is closed"


def test_the_baseline_projection_changes_the_scores(clip_model: Path, frames: list[str]) -> None:
    seg = segment(frames[:4], final_frame=frames[4])
    plain = similarities(label(ClipConfig(model=str(clip_model), device="cpu"), seg))
    # A score range that spreads this random model's similarities over 0..10.
    config = ClipConfig(
        model=str(clip_model), device="cpu", score_low=min(plain) - 0.02, score_high=max(plain) + 0.02
    )
    without = label(config, seg)
    with_baseline = label(replace(config, baseline_prompt="a room", alpha=0.5), seg)
    assert similarities(without) == pytest.approx(plain)
    assert not np.allclose(similarities(with_baseline), plain, atol=1e-3)
    assert [s.score for s in with_baseline.scores] != [s.score for s in without.scores]
    assert "projected from 'a room' (alpha 0.5)" in with_baseline.scores[0].reason


def test_labels_are_deterministic(clip_model: Path, frames: list[str]) -> None:
    seg = segment(frames[:3], final_frame=frames[3])
    config = ClipConfig(model=str(clip_model), device="cpu", baseline_prompt="a room", score_low=-1)
    first, second = label(config, seg), label(config, seg)  # two labellers, each loading the model
    assert first.scores == second.scores and first.raw == second.raw


def test_describe_names_everything_that_shapes_the_scores(clip_model: Path) -> None:
    labeller = ClipLabeller(ClipConfig(model=str(clip_model), device="cpu", baseline_prompt="a room"))
    assert labeller.describe() == {
        "labeller": "clip",
        "model": str(clip_model),
        "baseline_prompt": "a room",
        "alpha": 0.5,
        "score_low": 0.15,
        "score_high": 0.35,
        "frame": "after",
    }


def test_a_model_that_cannot_load_is_an_error_at_construction(tmp_path: Path) -> None:
    with pytest.raises(RGVLMError, match="does not exist"):
        ClipLabeller(ClipConfig(model=str(tmp_path / "missing"), device="cpu"))
    (tmp_path / "config.json").write_text('{"model_type": "clip"}')
    with pytest.raises(RGVLMError, match="could not load"):
        ClipLabeller(ClipConfig(model=str(tmp_path), device="cpu"))


def test_settings_that_cannot_work_are_usage_errors() -> None:
    for bad in (
        {"alpha": 1.0},
        {"alpha": -0.1},
        {"score_low": 0.4},
        {"batch_size": 0},
        {"baseline_prompt": " "},
    ):
        with pytest.raises(UsageError):
            ClipConfig(**bad)


# ---- pure pieces -----------------------------------------------------------------------------------


def test_frames_after_each_action_are_scored_by_default() -> None:
    seg = segment(["f0", "f1", "f2"], final_frame="f3")
    assert [p for p, _ in scored_frames(seg, "after")] == ["f1", "f2", "f3"]
    assert [p for p, _ in scored_frames(seg, "before")] == ["f0", "f1", "f2"]
    no_final = scored_frames(segment(["f0", "f1"]), "after")
    assert no_final == [("f1", "after the action"), ("f1", "before the action: no later frame")]


def test_similarity_without_a_baseline_is_the_cosine() -> None:
    frames = np.array([[3.0, 4.0], [0.0, 2.0]])
    assert similarity(frames, np.array([1.0, 0.0])) == pytest.approx([0.6, 0.0])
    assert similarity(frames, np.array([1.0, 0.0]), np.array([0.0, 1.0]), alpha=0.0) == pytest.approx(
        [0.6, 0.0]
    )


def test_projected_similarity_matches_numbers_worked_by_hand() -> None:
    # g = (1, 0), b = (0, 1), x = (0.6, 0.8), alpha = 0.5: VLM-RM's M(x - g) = (-0.5, 0.7), so R = 0.63;
    # w = 0.25, R1_0 = 1 - |g - b|^2 / 8 = 0.75, so s = (0.63 - 0.75 * 0.75) / 0.25 = 0.27.
    x, g, b = np.array([[0.6, 0.8]]), np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert vlmrm_reward(x, g, b, alpha=0.5) == pytest.approx([0.63])
    assert similarity(x, g, b, alpha=0.5) == pytest.approx([0.27])


def test_projected_similarity_is_an_increasing_affine_map_of_the_vlmrm_reward() -> None:
    rng = np.random.default_rng(0)
    x, g, b = rng.normal(size=(20, 8)), rng.normal(size=8), rng.normal(size=8)
    gu, bu = g / np.linalg.norm(g), b / np.linalg.norm(b)
    for alpha in (0.25, 0.5, 0.9):
        w = (1 - alpha) ** 2
        r1_0 = 1 - np.sum((gu - bu) ** 2) / 8
        expected = (vlmrm_reward(x, g, b, alpha) - (1 - w) * r1_0) / w
        assert similarity(x, g, b, alpha) == pytest.approx(expected)


def test_similarities_map_linearly_onto_scores_and_clip_to_the_range() -> None:
    assert to_score(0.25, 0.15, 0.35) == 5
    assert to_score(0.33, 0.15, 0.35) == 9
    assert to_score(0.17, 0.15, 0.35) == 1
    assert to_score(0.10, 0.15, 0.35) == 0
    assert to_score(0.90, 0.15, 0.35) == 10
