"""The VLM reward mappings against hand-computed numbers, and shaping's invariance."""

from __future__ import annotations

import numpy as np
import pytest

from rgvlm_core.errors import UsageError
from rgvlm_core.labeling.rewards import (
    MAPPINGS,
    check_mapping,
    discounted_return,
    potentials,
    shaping,
    step_rewards,
    vlm_reward,
)

SCORES = [10, 7, 2, 0, 5]


def test_per_step_mappings_match_hand_computed_values() -> None:
    assert vlm_reward(SCORES, "raw").tolist() == pytest.approx([1.0, 0.7, 0.2, 0.0, 0.5])
    assert vlm_reward(SCORES, "cost").tolist() == pytest.approx([0.0, -0.3, -0.8, -1.0, -0.5])
    assert vlm_reward(SCORES, "centred").tolist() == pytest.approx([0.5, 0.2, -0.3, -0.5, 0.0])
    assert np.isnan(vlm_reward([np.nan], "cost")[0])


def test_combined_rewards_add_lambda_times_the_mapping_to_the_sparse_reward() -> None:
    sparse = [0, 0, 1]
    r, missing = step_rewards("cost", sparse, [7, np.nan, 10], lam=0.5)
    # 0 + 0.5 * (-0.3); a failed label gets no VLM reward and is reported missing; 1 + 0.5 * 0
    assert r.tolist() == pytest.approx([-0.15, 0.0, 1.0])
    assert missing.tolist() == [False, True, False]
    alone, _ = step_rewards("centred", sparse, [7, 2, 10], with_sparse=False)
    assert alone.tolist() == pytest.approx([0.2, -0.3, 0.5])


def test_shaped_rewards_match_hand_computed_values() -> None:
    # one segment of 3 steps: progress answers 4, 4, 10; the last step completes (terminal)
    r, missing = step_rewards(
        "shaped",
        [0, 0, 1],
        [0, 0, 0],
        progress=[4, 4, 10],
        segment_start=[True, False, False],
        terminal=[False, False, True],
        gamma=0.9,
    )
    # 0.9*0.4 - 0 ; 0.9*0.4 - 0.4 ; 1 + (0 - 0.4)
    assert r.tolist() == pytest.approx([0.36, -0.04, 0.6])
    assert not missing.any()


def test_shaping_is_unknown_only_where_a_potential_is_unknown() -> None:
    before, after = potentials([5, np.nan, 10], [True, False, False])
    out = shaping(before, after, [False, False, True], gamma=0.9)
    assert np.isfinite(out[0]) and np.isnan(out[1]) and np.isnan(out[2])  # step 2's phi(s) is unknown
    # a terminal step's own answer is never read
    assert np.isfinite(shaping([0.2], [np.nan], [True], 0.9)[0])


def _segment_return(progress: list[float], gamma: float) -> float:
    n = len(progress)
    sparse = [0.0] * (n - 1) + [1.0]
    r, _ = step_rewards(
        "shaped",
        sparse,
        [0] * n,
        progress=progress,
        segment_start=[True] + [False] * (n - 1),
        terminal=[False] * (n - 1) + [True],
        gamma=gamma,
    )
    return discounted_return(r, gamma)


def test_two_paths_to_the_same_completion_differ_only_by_discounting() -> None:
    gamma = 0.97
    direct = _segment_return([5, 10], gamma)  # two steps
    detour = _segment_return([5, 2, 7, 5, 10], gamma)  # a detour and an undone step on the way
    loop = _segment_return([5, 3, 5, 3, 5, 3, 5, 10], gamma)  # a loop, three times round
    # shaping telescopes: each return is the sparse one, gamma^(T-1), as phi(start) = phi(end) = 0
    assert direct == pytest.approx(gamma**1)
    assert detour == pytest.approx(gamma**4)
    assert loop == pytest.approx(gamma**7)
    assert direct > detour > loop


def test_raw_pays_a_loop_and_cost_does_not() -> None:
    gamma = 0.97
    steps = {"direct": [7, 10], "loop": [7, 2, 2, 2, 2, 7, 10]}
    out = {}
    for mapping in ("raw", "cost"):
        for name, scores in steps.items():
            sparse = [0.0] * (len(scores) - 1) + [1.0]
            r, _ = step_rewards(mapping, sparse, scores)
            out[mapping, name] = discounted_return(r, gamma)
    assert out["raw", "loop"] > out["raw", "direct"]
    assert out["cost", "direct"] > out["cost", "loop"]


def test_unknown_and_unusable_mappings_are_refused_by_name() -> None:
    with pytest.raises(UsageError, match=r"'squared'.*raw, cost, centred, shaped"):
        check_mapping("squared")
    with pytest.raises(UsageError, match="shaped mapping reshapes the sparse reward"):
        check_mapping("shaped", with_sparse=False)
    assert set(MAPPINGS) == {"raw", "cost", "centred", "shaped"}
