"""The reference labeller reads ground truth; its noise is reproducible; rewards follow the formulas."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from rgvlm_core.labeling.reference import (
    COMPLETES,
    FAILED,
    NO_PROGRESS,
    PROGRESS,
    NoiseConfig,
    ReferenceLabeller,
)
from rgvlm_core.labeling.rewards import combined, normalise, vlm_reward
from rgvlm_core.labeling.store import load_segments


def test_top_scores_fall_exactly_where_subtasks_complete(sample_ws) -> None:  # type: ignore[no-untyped-def]
    reader = sample_ws.reader()
    segments = load_segments(reader)
    reader.close()
    labeller = ReferenceLabeller()
    seen = set()
    for seg in segments:
        label = labeller.label_now(seg)
        assert label.status == "ok" and "not from a vision-language model" in (label.analysis or "")
        for step, score in zip(seg.steps, label.scores, strict=True):
            assert (score.score == COMPLETES) == (step.sparse_reward > 0)
            expected = (
                FAILED
                if not step.valid
                else COMPLETES
                if step.sparse_reward
                else PROGRESS
                if step.progress
                else NO_PROGRESS
            )
            assert score.score == expected
            seen.add(score.score)
    assert seen == {COMPLETES, PROGRESS, NO_PROGRESS, FAILED}


def test_noise_is_reproducible_by_seed_and_changes_with_it(sample_ws) -> None:  # type: ignore[no-untyped-def]
    reader = sample_ws.reader()
    segments = load_segments(reader)[:120]
    reader.close()

    def scores(level: float, seed: int) -> list[int]:
        labeller = ReferenceLabeller(NoiseConfig.from_level(level, seed))
        return [s.score for seg in segments for s in asyncio.run(labeller.label(seg)).scores]

    clean = scores(0.0, 0)
    assert scores(0.3, 7) == scores(0.3, 7)
    assert scores(0.3, 7) != scores(0.3, 8)
    changed = np.mean(np.array(scores(0.3, 7)) != np.array(clean))
    assert 0.2 < changed < 0.9
    assert all(0 <= s <= 10 for s in scores(1.0, 1))


def test_rewards_match_hand_computed_numbers() -> None:
    assert vlm_reward([7, 10, 0]).tolist() == [0.7, 1.0, 0.0]
    assert np.isnan(vlm_reward([np.nan])[0])
    assert combined([0, 1, 0], [0.7, 1.0, 0.2], lam=0.5).tolist() == pytest.approx([0.35, 1.5, 0.1])
    assert normalise([1, 2, 3, 10, 10], ["a", "a", "a", "b", "b"]).tolist() == pytest.approx(
        [-1.224744871, 0.0, 1.224744871, 0.0, 0.0]
    )
    assert normalise([1, 3, 5], ["x", "x", "x"], "minmax").tolist() == [0.0, 0.5, 1.0]
