"""Lockstep evaluation of several members: the same results as one-at-a-time evaluation, checked calls."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from rgvlm_core.errors import UsageError
from rgvlm_core.sim.env import Condition, HouseholdEnv
from rgvlm_core.sim.evaluate import (
    EpisodeResult,
    EvalConfig,
    Policy,
    evaluate,
    evaluation_instructions,
    expert_policy,
)
from rgvlm_core.sim.evaluate_batch import BatchPolicy, evaluate_members, rowwise
from rgvlm_core.sim.world import N_ACTIONS

CONFIG = EvalConfig(lengths=(1, 2, 3, 4, 5, 6), episodes_per_length=3, seed=7)


def _key(obs: dict[str, Any]) -> tuple[str, bytes]:
    return str(obs["instruction"]), np.asarray(obs["state"]).tobytes()


def _expert_table(config: EvalConfig) -> Policy:
    """The expert as a pure function of the observation: its actions on `config`, looked up.

    `expert_policy` reads its env, which a batch policy cannot see; replaying the expert's recorded
    answers by observation gives a row-wise policy that behaves as the expert on these episodes."""
    env = HouseholdEnv(phrasing=config.phrasing)
    expert = expert_policy(env)
    table: dict[tuple[str, bytes], int] = {}

    def record(obs: dict[str, Any], mask: np.ndarray) -> int:
        action = expert(obs, mask)
        assert table.setdefault(_key(obs), action) == action, "the expert is not a function of obs"
        return action

    list(evaluate(record, config, env=env))

    def act(obs: dict[str, Any], mask: np.ndarray) -> int:
        return table[_key(obs)]

    return act


def _hashed_random(obs: dict[str, Any], mask: np.ndarray) -> int:
    """A random valid action, seeded by the observation itself (so it does not depend on call order)."""
    text, state = _key(obs)
    digest = hashlib.sha256(text.encode() + state).digest()
    valid = np.flatnonzero(mask)
    return int(valid[np.random.default_rng(list(digest[:8])).integers(len(valid))])


def _first_valid(obs: dict[str, Any], mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def _by_member(pairs: Iterable[tuple[int, EpisodeResult]], members: int) -> list[Counter[EpisodeResult]]:
    out: list[Counter[EpisodeResult]] = [Counter() for _ in range(members)]
    for member, result in pairs:
        out[member][result] += 1
    return out


@pytest.mark.parametrize("condition", ["default", "randomized"])
def test_each_member_gets_exactly_the_results_evaluate_gives_its_own_policy(condition: Condition) -> None:
    config = replace(CONFIG, condition=condition)
    policies = [_expert_table(config), _hashed_random, _first_valid]
    assert list(evaluate(policies[0], config)) == list(evaluate("expert", config))
    got = _by_member(evaluate_members(rowwise(policies), 3, config), 3)
    for member, policy in enumerate(policies):
        assert got[member] == Counter(evaluate(policy, config)), f"member {member}"
    assert sum(got[0].values()) == 6 * 3
    assert all(r.success for r in got[0])  # the expert member really is the expert
    assert not all(r.success for r in got[2])  # and the members really differ


def test_a_window_smaller_than_the_episodes_bounds_the_batch_and_keeps_the_results() -> None:
    config = replace(CONFIG, lengths=(1, 2, 3), episodes_per_length=5)
    batch = rowwise([_hashed_random, _first_valid])
    sizes: list[int] = []

    def counting(obs: list[dict[str, Any]], masks: np.ndarray, members: np.ndarray) -> np.ndarray:
        sizes.append(len(obs))
        return batch(obs, masks, members)

    got = _by_member(evaluate_members(counting, 2, config, window=4), 2)
    assert max(sizes) == 4
    assert got[0] == Counter(evaluate(_hashed_random, config))
    assert got[1] == Counter(evaluate(_first_valid, config))


def test_all_live_episodes_advance_together_one_policy_call_per_tick() -> None:
    calls: list[np.ndarray] = []
    batch = rowwise([_hashed_random] * 3)

    def counting(obs: list[dict[str, Any]], masks: np.ndarray, members: np.ndarray) -> np.ndarray:
        assert masks.dtype == np.bool_ and masks.shape == (len(obs), N_ACTIONS)
        calls.append(members.copy())
        return batch(obs, masks, members)

    results = [r for _, r in evaluate_members(counting, 3, CONFIG)]
    assert len(results) == 3 * 6 * 3
    assert len(calls) == max(r.steps for r in results)  # every episode started at tick 0
    assert sorted(calls[0].tolist()) == sorted([0, 1, 2] * 6 * 3)


@pytest.mark.parametrize(
    "config",
    [CONFIG, replace(CONFIG, condition="randomized", phrasing="seen", seed=3)],
    ids=["unseen", "seen"],
)
def test_every_instruction_a_policy_sees_is_in_evaluation_instructions(config: EvalConfig) -> None:
    listed = evaluation_instructions(config)
    assert len(listed) == len(set(listed)) and listed
    seen: set[str] = set()
    expert = _expert_table(config)

    def recording(obs: dict[str, Any], mask: np.ndarray) -> int:
        seen.add(obs["instruction"])
        return expert(obs, mask)

    list(evaluate(recording, config))
    list(evaluate_members(rowwise([recording, _first_valid]), 2, config))
    assert seen <= set(listed), sorted(seen - set(listed))
    assert seen == set(listed)  # the expert completes every subtask, so it is shown every instruction


def test_instructions_follow_the_configs_phrasing() -> None:
    unseen, seen = (evaluation_instructions(replace(CONFIG, phrasing=p)) for p in ("unseen", "seen"))
    assert unseen != seen


@pytest.mark.parametrize("members", [0, -2, True, 1.5])
def test_members_must_be_a_positive_integer(members: Any) -> None:
    with pytest.raises(UsageError, match=f"members={members!r}"):
        list(evaluate_members(rowwise([_first_valid]), members, CONFIG))


@pytest.mark.parametrize("window", [0, -1, 2.0])
def test_window_must_be_a_positive_integer(window: Any) -> None:
    with pytest.raises(UsageError, match=f"window={window!r}"):
        list(evaluate_members(rowwise([_first_valid]), 1, CONFIG, window=window))


def _answering(answer: Any) -> BatchPolicy:
    def act(obs: list[dict[str, Any]], masks: np.ndarray, members: np.ndarray) -> np.ndarray:
        return answer(len(obs))

    return act


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda n: np.zeros(n + 1, dtype=np.int64), r"shape \(37,\) for 36 observations"),
        (lambda n: np.zeros((n, 1), dtype=np.int64), r"shape \(36, 1\) for 36 observations"),
        (lambda n: np.full(n, 3.0), "dtype float64"),
        (lambda n: np.full(n, N_ACTIONS), f"action {N_ACTIONS} for row 0 .member 0."),
        (lambda n: np.r_[np.zeros(n - 1, dtype=np.int64), -1], r"action -1 for row 35 \(member 1\)"),
    ],
)
def test_a_policy_answer_that_is_not_one_action_index_per_row_is_refused(answer: Any, message: str) -> None:
    config = replace(CONFIG, episodes_per_length=3)
    with pytest.raises(UsageError, match=message):
        list(evaluate_members(_answering(answer), 2, config))


def test_an_action_the_mask_forbids_costs_a_step_as_in_evaluate() -> None:
    def forbidden(obs: dict[str, Any], mask: np.ndarray) -> int:
        return int(np.flatnonzero(~np.asarray(mask, dtype=bool))[0])

    config = replace(CONFIG, lengths=(2,))
    got = _by_member(evaluate_members(rowwise([forbidden]), 1, config), 1)
    assert got[0] == Counter(evaluate(forbidden, config))
    assert all(r.completed == 0 for r in got[0])
