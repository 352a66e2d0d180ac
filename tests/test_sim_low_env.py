"""The low-level household's Gymnasium environment: the Env contract, determinism, the exact action
mask, the expert on real floor plans, step budgets, and `gymnasium.make(..., level="low")`."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium
import numpy as np
import pytest
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env, data_equivalence

from rgvlm_core.sim.env import ENV_ID, HouseholdEnv
from rgvlm_core.sim.low.encode import encode
from rgvlm_core.sim.low.env import LowHouseholdEnv
from rgvlm_core.sim.low.floorplan import layouts_dir, load_floor_plan
from rgvlm_core.sim.low.scenes import lengths, sample_low_task
from rgvlm_core.sim.low.world import N_ACTIONS, apply, valid_mask

REAL = (1, 2, 201, 301, 401)  # two kitchens (tasks of 1..6 subtasks) and one plan of each other room


def _layouts() -> None:
    if not (layouts_dir() / "FloorPlan1-layout.npy").is_file():
        pytest.skip(
            f"ALFRED layouts not found at {layouts_dir()} (../shared/alfred/layouts beside the checkout)"
        )


def _floor_plans(kind: str) -> tuple[int, ...] | None:
    if kind == "real":
        _layouts()
        return REAL
    return None


def _random_rollout(env: LowHouseholdEnv, rng: np.random.Generator, options: dict[str, Any] | None = None):
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


def _run_expert(env: LowHouseholdEnv) -> tuple[float, int, dict[str, Any], bool]:
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
@pytest.mark.parametrize("kind", ["generated", "real"])
def test_low_env_passes_gymnasiums_env_checker_without_warnings(kind: str) -> None:
    env = gymnasium.make(ENV_ID, level="low", floor_plans=_floor_plans(kind))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []


def test_low_env_with_frames_and_rgb_rendering_passes_the_env_checker() -> None:
    pytest.importorskip("rgvlm_core.sim.low.render", reason="the low-level renderer has not landed")
    env = gymnasium.make(ENV_ID, level="low", frames=True, render_mode="rgb_array")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    assert [str(w.message) for w in caught] == []
    obs, _ = env.reset(seed=0)
    assert obs["frame"].shape == (300, 300, 3)
    assert env.render().shape == (300, 300, 3)


def test_gymnasium_make_builds_the_low_env_with_level_low_and_the_subgoal_env_by_default() -> None:
    low = gymnasium.make(ENV_ID, level="low", phrasing="unseen", max_subtasks=3)
    assert isinstance(low.unwrapped, LowHouseholdEnv)
    assert low.unwrapped.phrasing == "unseen"
    obs, info = low.reset(seed=0)
    assert obs in low.observation_space
    assert 1 <= info["n_subtasks"] <= 3
    assert info["floor_plan"].startswith("Generated-")
    assert type(gymnasium.make(ENV_ID).unwrapped) is HouseholdEnv
    assert type(gymnasium.make(ENV_ID, level="subgoal").unwrapped) is HouseholdEnv


def test_gymnasium_make_refuses_an_unknown_level_naming_it() -> None:
    with pytest.raises(ValueError, match=r"level='high'.*subgoal.*low"):
        gymnasium.make(ENV_ID, level="high")


def test_observation_space_declares_the_frame_only_with_frames() -> None:
    assert set(LowHouseholdEnv().observation_space.spaces) == {"state", "instruction"}
    assert set(LowHouseholdEnv(frames=True).observation_space.spaces) == {"state", "instruction", "frame"}
    assert LowHouseholdEnv().action_space.n == N_ACTIONS


@pytest.mark.parametrize("kind", ["generated", "real"])
def test_same_seed_gives_identical_random_rollouts_over_several_episodes(kind: str) -> None:
    floor_plans = _floor_plans(kind)

    def episodes() -> list[list[tuple[Any, ...]]]:
        env, rng = LowHouseholdEnv(track_progress=True, floor_plans=floor_plans), np.random.default_rng(5)
        env.reset(seed=123)
        return [_random_rollout(env, rng, {"condition": ("default", "randomized")[k % 2]}) for k in range(4)]

    first, second = episodes(), episodes()
    assert data_equivalence(first, second)
    assert len({r[0][4]["goal"] for r in first}) > 1  # the episodes differ from each other


# -- the action mask and the observation ------------------------------------------------------------
@pytest.mark.parametrize("kind", ["generated", "real"])
def test_action_mask_is_exact_and_the_state_vector_is_encode_over_random_rollouts(kind: str) -> None:
    env, rng = LowHouseholdEnv(floor_plans=_floor_plans(kind)), np.random.default_rng(0)
    env.reset(seed=7)
    checked = 0
    for k in range(6):
        obs, info = env.reset(options={"condition": ("default", "randomized")[k % 2]})
        ended = False
        while not ended:
            s = env.state
            mask = info["action_mask"].astype(bool)
            assert np.array_equal(mask, valid_mask(s))
            assert np.array_equal(obs["state"], encode(s))
            assert info["pose"] == s.pose and info["floor_plan"] == s.plan.name
            for a in range(N_ACTIONS):
                assert (apply(s, a)[1] is None) == mask[a], (a, s.pose, s.world.agent)
            # mostly valid actions, and now and then an invalid one (it must leave everything as it was)
            a = int(rng.choice(np.flatnonzero(mask if rng.random() < 0.9 else ~mask)))
            obs, _, terminated, truncated, info = env.step(a)
            assert (info["invalid"] is None) == mask[a]
            ended = terminated or truncated
            checked += 1
    assert checked > 100


def test_instruction_is_the_first_subtask_not_yet_done() -> None:
    env = LowHouseholdEnv()
    obs, info = env.reset(seed=3, options={"n_subtasks": 3})
    assert obs["instruction"] == info["instructions"][0]
    while True:
        obs, _, terminated, _, info = env.step(env.expert_plan()[0])
        if terminated:
            assert obs["instruction"] == info["instructions"][-1]
            break
        assert obs["instruction"] == info["instructions"][info["subtask_index"]]


# -- tasks, floor plans and the expert ---------------------------------------------------------------
@pytest.mark.parametrize("number", REAL)
def test_expert_completes_tasks_of_every_posed_length_on_real_floor_plans(number: int) -> None:
    _layouts()
    env = LowHouseholdEnv(floor_plans=(number,), track_progress=True)
    env.reset(seed=number)
    posed = lengths(load_floor_plan(number))
    assert posed[:4] == (1, 2, 3, 4)
    for n in posed:
        for condition in ("default", "randomized"):
            _, info = env.reset(options={"n_subtasks": n, "condition": condition})
            assert info["floor_plan"] == f"FloorPlan{number}" and info["n_subtasks"] == n
            total, steps, last, terminated = _run_expert(env)
            assert terminated and total == n and last["subtask_index"] == n
            assert steps == info["expert_length"]
            assert last["progress"] is True


def test_expert_completes_tasks_of_every_length_in_generated_rooms() -> None:
    env = LowHouseholdEnv()
    env.reset(seed=11)
    for n in range(1, 7):
        _, info = env.reset(options={"n_subtasks": n})
        total, steps, _, terminated = _run_expert(env)
        assert terminated and total == n and steps == info["expert_length"]


def test_a_length_the_drawn_plan_does_not_pose_is_drawn_on_a_plan_that_does() -> None:
    _layouts()
    env = LowHouseholdEnv(floor_plans=(201, 301, 1))  # only the kitchen poses six subtasks
    env.reset(seed=0)
    for _ in range(5):
        _, info = env.reset(options={"n_subtasks": 6})
        assert info["floor_plan"] == "FloorPlan1" and info["n_subtasks"] == 6
    drawn = {env.reset(options={"n_subtasks": 2})[1]["floor_plan"] for _ in range(30)}
    assert drawn == {"FloorPlan1", "FloorPlan201", "FloorPlan301"}


def test_a_length_no_plan_poses_is_refused_naming_the_length_and_the_plans() -> None:
    _layouts()
    env = LowHouseholdEnv(floor_plans=(201, 301))
    with pytest.raises(ValueError, match=r"6 subtasks.*FloorPlan201, FloorPlan301"):
        env.reset(seed=0, options={"n_subtasks": 6})


def test_floor_plan_option_picks_one_of_the_envs_plans_and_refuses_others() -> None:
    _layouts()
    env = LowHouseholdEnv(floor_plans=(1, 201))
    assert env.reset(seed=0, options={"floor_plan": 201})[1]["floor_plan"] == "FloorPlan201"
    with pytest.raises(ValueError, match="floor_plan=5"):
        env.reset(options={"floor_plan": 5})
    with pytest.raises(ValueError, match="floor_plan=1"):
        LowHouseholdEnv().reset(options={"floor_plan": 1})


def test_task_and_state_options_start_from_them() -> None:
    _layouts()
    plan = load_floor_plan(1)
    task, state = sample_low_task(np.random.default_rng(4), 3, plan)
    env = LowHouseholdEnv()
    _, info = env.reset(seed=0, options={"task": task, "state": state})
    assert env.task is task and env.state is state and info["floor_plan"] == "FloorPlan1"
    with pytest.raises(ValueError, match="go together"):
        env.reset(options={"task": task})


def test_bad_arguments_are_refused_naming_the_value() -> None:
    with pytest.raises(ValueError, match=r"floor_plans=.*99"):
        LowHouseholdEnv(floor_plans=(1, 99))
    with pytest.raises(ValueError, match="subtask_budget=0"):
        LowHouseholdEnv(subtask_budget=0)
    with pytest.raises(ValueError, match="max_subtasks=7"):
        LowHouseholdEnv(max_subtasks=7)
    env = LowHouseholdEnv()
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"room": "kitchen"})
    with pytest.raises(ValueError, match="n_subtasks=0"):
        env.reset(options={"n_subtasks": 0})


# -- episode end ---------------------------------------------------------------------------------------
def test_episode_truncates_after_twice_the_experts_plan_length() -> None:
    env = LowHouseholdEnv()
    _, info = env.reset(seed=2, options={"n_subtasks": 2})
    assert env.max_steps == 2 * info["expert_length"]
    steps, ended, truncated = 0, False, False
    while not ended:  # turning on the spot never completes anything
        _, _, terminated, truncated, info = env.step(1)
        steps += 1
        ended = terminated or truncated
    assert truncated and steps == env.max_steps
    with pytest.raises(ResetNeeded):
        env.step(1)


def test_subtask_budget_truncates_after_that_many_steps_on_one_subtask() -> None:
    budget = 60  # longer than any expert subtask, so the expert's first subtask fits in it
    env = LowHouseholdEnv(subtask_budget=budget)
    env.reset(seed=2, options={"n_subtasks": 3})
    expert = env.expert_plan()
    first = 0  # follow the expert through the first subtask, then turn on the spot
    while True:
        _, reward, _, truncated, _ = env.step(expert[first])
        first += 1
        assert not truncated
        if reward:
            break
    for k in range(1, budget + 1):
        _, _, terminated, truncated, _ = env.step(1)
        assert not terminated and truncated == (k == budget)


def test_stepping_before_reset_raises_reset_needed() -> None:
    with pytest.raises(ResetNeeded):
        LowHouseholdEnv().step(0)
