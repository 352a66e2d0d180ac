"""The household simulator's Gymnasium environment: the Env contract, determinism, rules, tasks."""

from __future__ import annotations

import re
import warnings
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env, data_equivalence

from rgvlm_core.sim.env import ENV_ID, HouseholdEnv, register_envs, task_lengths
from rgvlm_core.sim.expert import PlanningError
from rgvlm_core.sim.language import HELD_OUT, SUBTASK_PHRASES
from rgvlm_core.sim.scenes import sample_task
from rgvlm_core.sim.tasks import TASK_TYPES
from rgvlm_core.sim.world import ACTION_TOKENS, ACTIONS, N_ACTIONS, apply

CONDITIONS = ("default", "randomized")


def _random_rollout(env: HouseholdEnv, rng: np.random.Generator, options: dict[str, Any] | None = None):
    """(observation, reward, terminated, truncated, info) of every step of one episode, reset included."""
    obs, info = env.reset(options=options)
    out: list[tuple[Any, ...]] = [(obs, 0.0, False, False, info)]
    ended = False
    while not ended:
        a = int(rng.choice(np.flatnonzero(info["action_mask"])))
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs, reward, terminated, truncated, info))
        ended = terminated or truncated
    return out


def _run_expert(env: HouseholdEnv) -> tuple[float, int, dict[str, Any], bool]:
    """(total reward, steps, last info, terminated) of following the expert to the end."""
    total, steps, ended, terminated = 0.0, 0, False, False
    info: dict[str, Any] = {}
    while not ended:
        _, reward, terminated, truncated, info = env.step(env.expert_plan()[0])
        total += float(reward)
        steps += 1
        ended = terminated or truncated
    return total, steps, info, terminated


# -- the Gymnasium contract -------------------------------------------------------------------------
@pytest.mark.parametrize("frames", [False, True])
@pytest.mark.parametrize("render_mode", [None, "rgb_array"])
def test_env_passes_gymnasiums_env_checker_without_warnings(frames: bool, render_mode: str | None) -> None:
    env = gymnasium.make(ENV_ID, render_mode=render_mode, frames=frames)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def test_gymnasium_make_builds_the_household_env_after_importing_the_module() -> None:
    register_envs()  # a second call is harmless
    env = gymnasium.make(ENV_ID, phrasing="unseen", max_subtasks=3)
    assert isinstance(env.unwrapped, HouseholdEnv)
    assert env.unwrapped.phrasing == "unseen"
    obs, info = env.reset(seed=0)
    assert obs in env.observation_space
    assert 1 <= info["n_subtasks"] <= 3


def test_observation_space_declares_the_frame_only_with_frames() -> None:
    assert set(HouseholdEnv().observation_space.spaces) == {"state", "instruction"}
    assert set(HouseholdEnv(frames=True).observation_space.spaces) == {"state", "instruction", "frame"}


def test_same_seed_gives_identical_random_rollouts_over_several_episodes() -> None:
    def episodes() -> list[list[tuple[Any, ...]]]:
        env, rng = HouseholdEnv(track_progress=True), np.random.default_rng(5)
        env.reset(seed=123)
        return [_random_rollout(env, rng, {"condition": CONDITIONS[k % 2]}) for k in range(6)]

    first, second = episodes(), episodes()
    assert data_equivalence(first, second, exact=True)
    assert len({r[0][4]["goal"] for r in first}) > 1  # the episodes differ from each other


def test_every_sampled_instruction_lies_in_the_instruction_space() -> None:
    space = HouseholdEnv().observation_space["instruction"]
    rng = np.random.default_rng(0)
    for k in range(600):
        task, _ = sample_task(rng, 1 + k % 6, phrasing=("seen", "unseen")[k % 2])
        for text in task.instructions:
            assert space.contains(text), text


# -- rules ----------------------------------------------------------------------------------------
def test_invalid_actions_leave_the_state_unchanged_and_say_why() -> None:
    env = HouseholdEnv()
    obs, info = env.reset(seed=3, options={"n_subtasks": 6})
    invalid = np.flatnonzero(info["action_mask"] == 0)
    for a in invalid[: env.max_steps - 2]:
        before = env.state
        obs2, reward, terminated, _, info2 = env.step(int(a))
        assert env.state is before
        assert isinstance(info2["invalid"], str) and info2["invalid"]
        assert info2["invalid"] == apply(before, int(a))[1]
        assert reward == 0.0 and not terminated
        np.testing.assert_array_equal(obs2["state"], obs["state"])
    valid = int(np.flatnonzero(env.step(int(invalid[0]))[4]["action_mask"])[0])
    assert env.step(valid)[4]["invalid"] is None


def test_action_mask_is_true_exactly_for_the_actions_apply_accepts() -> None:
    env, rng = HouseholdEnv(), np.random.default_rng(1)
    env.reset(seed=11)
    checked = 0
    for k in range(12):
        _, info = env.reset(options={"condition": CONDITIONS[k % 2]})
        for _ in range(30):
            accepted = np.array([apply(env.state, a)[1] is None for a in range(N_ACTIONS)])
            assert info["action_mask"].dtype == np.int8
            np.testing.assert_array_equal(info["action_mask"].astype(bool), accepted)
            checked += 1
            _, _, terminated, truncated, info = env.step(int(rng.choice(np.flatnonzero(accepted))))
            if terminated or truncated:
                break
    assert checked > 100


# -- tasks and the expert ---------------------------------------------------------------------------
@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_expert_completes_every_task_type_at_every_available_length(condition: str, task_type: str) -> None:
    env = HouseholdEnv()
    lengths = task_lengths(None, task_type)
    assert lengths[0] == 1
    for n in lengths:
        for seed in range(3):
            _, info = env.reset(
                seed=seed, options={"task_type": task_type, "n_subtasks": n, "condition": condition}
            )
            assert (info["task_type"], info["n_subtasks"]) == (task_type, n)
            total, steps, last, terminated = _run_expert(env)
            assert terminated and last["subtask_index"] == n
            assert total == n  # the rewards sum to the number of subtasks
            assert steps == info["expert_length"]


def test_expert_rewards_one_per_subtask_in_order() -> None:
    env = HouseholdEnv()
    env.reset(seed=4, options={"n_subtasks": 6})
    rewards: list[float] = []
    indices: list[int] = []
    ended = False
    while not ended:
        _, reward, terminated, truncated, info = env.step(env.expert_plan()[0])
        rewards.append(float(reward))
        indices.append(info["subtask_index"])
        ended = terminated or truncated
    assert sum(rewards) == 6 and set(rewards) <= {0.0, 1.0}
    assert indices == sorted(indices) and indices[-1] == 6


def test_instruction_switches_to_the_next_subtask_after_a_completion() -> None:
    env = HouseholdEnv()
    obs, info = env.reset(seed=8, options={"n_subtasks": 4})
    instructions = info["instructions"]
    assert obs["instruction"] == instructions[0]
    ended = False
    while not ended:
        obs, _, terminated, truncated, info = env.step(env.expert_plan()[0])
        ended = terminated or truncated
        assert obs["instruction"] == instructions[min(info["subtask_index"], 3)]
    assert obs["instruction"] == instructions[-1]  # the last one stays once everything is done


def test_episode_truncates_at_twice_the_expert_length() -> None:
    env = HouseholdEnv()
    _, info = env.reset(seed=2, options={"n_subtasks": 3})
    limit = 2 * info["expert_length"]
    assert env.max_steps == limit
    gotos = [a for a in np.flatnonzero(info["action_mask"]) if ACTIONS[a][0] == "GotoLocation"]
    for step in range(1, limit + 1):
        # walking between two places never completes a subtask
        _, reward, terminated, truncated, info = env.step(int(gotos[step % 2]))
        assert reward == 0.0 and not terminated
        assert truncated == (step == limit)
    with pytest.raises(ResetNeeded):
        env.step(int(gotos[0]))


def test_stepping_before_reset_or_after_the_end_asks_for_a_reset() -> None:
    env = HouseholdEnv()
    with pytest.raises(ResetNeeded):
        env.step(0)
    with pytest.raises(ResetNeeded):
        _ = env.state
    env.reset(seed=0, options={"n_subtasks": 1})
    _run_expert(env)
    with pytest.raises(ResetNeeded, match="reset"):
        env.step(0)
    env.reset()
    env.step(0)


def test_reset_options_task_and_state_are_respected() -> None:
    task, state = sample_task(np.random.default_rng(9), 3, task_type="pick_heat_then_place_in_recep")
    env = HouseholdEnv()
    obs, info = env.reset(seed=1, options={"task": task, "state": state})
    assert env.task is task and env.state is state
    assert obs["instruction"] == task.instructions[0]
    assert info["goal"] == task.goal and info["instructions"] == task.instructions
    obs, info = env.reset(seed=1, options={"task": task, "state": state, "condition": "randomized"})
    assert env.task is task and env.state != state and env.state.room == state.room


def test_a_rejected_reset_leaves_the_running_episode_as_it_was() -> None:
    env = HouseholdEnv()
    env.reset(seed=5, options={"n_subtasks": 1})
    task = env.task
    _run_expert(env)
    finished = env.state
    env.reset(seed=6, options={"n_subtasks": 2})
    running = env.task, env.state
    with pytest.raises(ValueError, match="already completes"):
        env.reset(options={"task": task, "state": finished})
    assert (env.task, env.state) == running
    env.step(env.expert_plan()[0])


def test_randomized_condition_keeps_the_task_and_moves_the_agent_and_objects() -> None:
    env = HouseholdEnv()
    _, default = env.reset(seed=21, options={"condition": "default"})
    start = env.state
    _, randomized = env.reset(seed=21, options={"condition": "randomized"})
    assert randomized["goal"] == default["goal"]
    assert start.agent is None and env.state.agent is not None


def test_unseen_phrasing_uses_only_held_out_templates() -> None:
    def templates_used(phrasing: str) -> set[str]:
        env, used = HouseholdEnv(phrasing=phrasing), set()  # type: ignore[arg-type]
        env.reset(seed=0)
        for _ in range(300):
            used |= {_template_of(text) for text in env.reset()[1]["instructions"]}
        return used

    held_out = {t for phrases in SUBTASK_PHRASES.values() for t in phrases[-HELD_OUT:]}
    seen, unseen = templates_used("seen"), templates_used("unseen")
    assert unseen and unseen <= held_out
    assert not seen & held_out


def _template_of(text: str) -> str:
    """The subtask template an instruction was written from: of those matching, the most specific."""
    templates = [t for phrases in SUBTASK_PHRASES.values() for t in phrases]
    matching = [t for t in templates if re.fullmatch(_ESCAPED_SLOT.sub("(.+)", re.escape(t)), text)]
    assert matching, text
    return max(matching, key=lambda t: len(_SLOT.sub("", t)))


_SLOT = re.compile(r"\{\w+\}")
_ESCAPED_SLOT = re.compile(r"\\\{\w+\\\}")


# -- progress, rendering, arguments -----------------------------------------------------------------
def test_progress_is_tracked_only_on_request() -> None:
    env = HouseholdEnv()
    _, info = env.reset(seed=0)
    assert info["progress"] is None
    env = HouseholdEnv(track_progress=True)
    _, info = env.reset(seed=0, options={"n_subtasks": 3})
    invalid = int(np.flatnonzero(info["action_mask"] == 0)[0])
    assert env.step(invalid)[4]["progress"] is False
    ended = False
    while not ended:
        _, _, terminated, truncated, info = env.step(env.expert_plan()[0])
        assert info["progress"] is True
        ended = terminated or truncated


def test_progress_falls_back_to_subtask_completion_where_the_expert_has_no_plan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = HouseholdEnv(track_progress=True)
    _, info = env.reset(seed=0, options={"n_subtasks": 2})
    steps = env.expert_plan()

    def no_plan(*args: Any) -> list[int]:
        raise PlanningError("no plan from here")

    monkeypatch.setattr("rgvlm_core.sim.env.plan", no_plan)
    rewards = []
    for a in steps:
        _, reward, *_, info = env.step(a)
        rewards.append(float(reward))
        assert info["progress"] is (float(reward) > 0)  # only a completed subtask counts as progress now
    assert sum(rewards) == 2.0 and rewards.count(0.0) > 0
    with pytest.raises(PlanningError):
        env.expert_plan()


def test_render_shows_the_state_captioned_with_the_last_action() -> None:
    from rgvlm_core.sim.render import render_frame

    assert HouseholdEnv().reset(seed=0) and HouseholdEnv().render() is None
    env = HouseholdEnv(render_mode="rgb_array", frames=True)
    env.reset(seed=0)
    np.testing.assert_array_equal(env.render(), render_frame(env.state, caption=None))
    a = env.expert_plan()[0]
    obs, *_ = env.step(a)
    frame = env.render()
    assert frame is not None and frame.shape == (300, 300, 3) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, render_frame(env.state, caption=ACTION_TOKENS[a]))
    np.testing.assert_array_equal(obs["frame"], render_frame(env.state))


@pytest.mark.parametrize(
    "kwargs",
    [{"render_mode": "human"}, {"phrasing": "novel"}, {"max_subtasks": 0}, {"max_subtasks": 7}],
)
def test_bad_constructor_arguments_raise_value_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        HouseholdEnv(**kwargs)


@pytest.mark.parametrize(
    "options",
    [
        {"n_subtasks": 0},
        {"n_subtasks": 4},  # above max_subtasks=3
        {"task_type": "make_coffee"},
        {"room": "garage"},
        {"condition": "shuffled"},
        {"colour": "red"},
        {"task_type": "look_at_obj_in_light", "n_subtasks": 3},
        {"task": "a task"},
    ],
)
def test_bad_reset_options_raise_value_errors(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        HouseholdEnv(max_subtasks=3).reset(seed=0, options=options)


def test_out_of_range_actions_raise_value_errors() -> None:
    env = HouseholdEnv()
    env.reset(seed=0)
    for bad in (-1, N_ACTIONS, 1.5, "GotoLocation(Fridge)"):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)  # type: ignore[arg-type]


def test_default_task_lengths_respect_max_subtasks() -> None:
    env = HouseholdEnv(max_subtasks=2)
    env.reset(seed=0)
    counts = {env.reset()[1]["n_subtasks"] for _ in range(60)}
    assert counts == {1, 2}
