"""Evaluation at the low level (`EvalConfig(level="low")`, `rgvlm sim evaluate --level low`): the same
seeded tasks for every policy, the floor plan drawn by the episode's seed and recorded, the expert's
ceiling and the random floor, lockstep equivalence, config checks, and the command line."""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rgvlm_core.errors import UsageError
from rgvlm_core.sim.env import HouseholdEnv
from rgvlm_core.sim.evaluate import (
    EpisodeResult,
    EvalConfig,
    evaluate,
    expert_policy,
    make_env,
    n_actions,
    summarize,
)
from rgvlm_core.sim.evaluate_batch import evaluate_members, rowwise
from rgvlm_core.sim.low.env import LowHouseholdEnv
from rgvlm_core.sim.low.floorplan import layouts_dir
from rgvlm_core.sim.low.world import N_ACTIONS as LOW_ACTIONS
from rgvlm_core.sim.world import N_ACTIONS as SUBGOAL_ACTIONS
from tests.cli_support import rgvlm

PLANS = (1, 201)  # a kitchen (tasks of 1..6 subtasks) and a living room (1..4)
GENERATED = EvalConfig(lengths=(1, 5), episodes_per_length=2, level="low")


def _layouts() -> None:
    if not (layouts_dir() / "FloorPlan1-layout.npy").is_file():
        pytest.skip(
            f"ALFRED layouts not found at {layouts_dir()} (../shared/alfred/layouts beside the checkout)"
        )


def _low() -> EvalConfig:
    """Tasks of 1..4 subtasks on PLANS (made in the test: the config loads the floor plans)."""
    _layouts()
    return EvalConfig(lengths=(1, 2, 3, 4), episodes_per_length=3, level="low", floor_plans=PLANS)


def _task(r: EpisodeResult) -> tuple[Any, ...]:
    """What makes an episode's task: everything but how the policy did."""
    return (r.length, r.episode, r.seed, r.task_type, r.room, r.goal, r.n_subtasks, r.floor_plan, r.level)


def _first_of_hash(observation: dict[str, Any], mask: np.ndarray) -> int:
    """A deterministic policy that is neither the expert nor constant: a valid action picked by the state."""
    valid = np.flatnonzero(mask)
    return int(valid[int(observation["state"].sum() * 1000) % len(valid)])


# -- the same tasks, the expert and the random policy -------------------------------------------------
def test_two_policies_meet_the_same_tasks_on_the_same_floor_plans() -> None:
    _layouts()
    expert = list(evaluate("expert", _low()))
    random = list(evaluate("random", _low()))
    assert [_task(r) for r in expert] == [_task(r) for r in random]
    assert {r.floor_plan for r in expert} == {"FloorPlan1", "FloorPlan201"}  # the seed draws both
    assert {r.level for r in expert} == {"low"}
    assert {r.room for r in expert if r.floor_plan == "FloorPlan201"} == {"living room"}


def test_the_expert_completes_every_task_and_the_random_policy_far_fewer() -> None:
    _layouts()
    expert = summarize(evaluate("expert", _low()))
    random = summarize(evaluate("random", _low()))
    assert [row["length"] for row in expert] == [1, 2, 3, 4]
    assert all(row["mean_completed"] == 1.0 and row["success_rate"] == 1.0 for row in expert)
    assert sum(row["mean_completed"] for row in random) < 0.5 * len(random)


def test_the_randomized_condition_keeps_the_floor_plans_and_tasks_of_the_default_one() -> None:
    _layouts()
    default = list(evaluate("expert", _low()))
    moved = list(evaluate("expert", replace(_low(), condition="randomized")))
    assert [_task(r) for r in default] == [_task(r) for r in moved]
    assert all(r.success for r in moved)


def test_generated_rooms_need_no_layouts_and_pose_every_length() -> None:
    first = list(evaluate("expert", GENERATED))
    again = list(evaluate(_first_of_hash, GENERATED))
    assert [_task(r) for r in first] == [_task(r) for r in again]
    assert all(r.success for r in first)
    assert all(r.floor_plan is not None and r.floor_plan.startswith("Generated-") for r in first)
    assert [r.length for r in first] == [1, 1, 5, 5]


def test_a_subtask_budget_cuts_the_low_level_expert_off() -> None:
    # an expert subtask takes ~11 low-level steps, so a budget of 1 step ends every episode at once
    results = list(evaluate("expert", replace(GENERATED, subtask_budget=1)))
    assert all(r.steps == 1 and r.completed == 0 for r in results)


def test_subgoal_rows_say_their_level_and_no_floor_plan() -> None:
    rows = list(evaluate("expert", EvalConfig(lengths=(2,), episodes_per_length=2)))
    assert all(r.level == "subgoal" and r.floor_plan is None and r.success for r in rows)


# -- envs given to evaluate ---------------------------------------------------------------------------
def test_make_env_builds_the_low_env_with_the_configs_settings() -> None:
    _layouts()
    env = make_env(replace(_low(), subtask_budget=40, phrasing="seen"))
    assert isinstance(env, LowHouseholdEnv)
    assert (env.floor_plans, env.subtask_budget, env.phrasing) == (PLANS, 40, "seen")
    assert isinstance(make_env(EvalConfig()), HouseholdEnv)
    assert (n_actions("low"), n_actions("subgoal")) == (LOW_ACTIONS, SUBGOAL_ACTIONS)


def test_an_expert_built_on_a_given_low_env_is_evaluated_on_it() -> None:
    _layouts()
    env = LowHouseholdEnv(phrasing="unseen", floor_plans=PLANS)
    given = list(evaluate(expert_policy(env), _low(), env=env))
    assert [_task(r) for r in given] == [_task(r) for r in evaluate("random", _low())]
    assert all(r.success for r in given)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (lambda: HouseholdEnv(phrasing="unseen"), "subgoal level"),
        (lambda: LowHouseholdEnv(phrasing="unseen", floor_plans=(1,)), "floor plans"),
        (lambda: LowHouseholdEnv(phrasing="unseen"), "floor plans"),
    ],
    ids=["subgoal-env", "other-plans", "generated-rooms"],
)
def test_an_env_that_is_not_the_configs_is_a_usage_error(env: Any, expected: str) -> None:
    _layouts()
    with pytest.raises(UsageError, match=expected):
        next(evaluate("expert", _low(), env=env()))


# -- lockstep -----------------------------------------------------------------------------------------
def test_lockstep_evaluation_at_the_low_level_equals_one_at_a_time() -> None:
    _layouts()
    seen_shapes: set[tuple[int, ...]] = set()
    single = rowwise([_first_of_hash, _first_of_hash])

    def policy(observations: list[dict[str, Any]], masks: np.ndarray, rows: np.ndarray) -> np.ndarray:
        seen_shapes.add(masks.shape[1:])
        return single(observations, masks, rows)

    batched = sorted(
        evaluate_members(policy, 2, _low(), window=5), key=lambda mr: (mr[0], mr[1].length, mr[1].episode)
    )
    one = list(evaluate(_first_of_hash, _low()))
    assert [r for m, r in batched if m == 0] == one == [r for m, r in batched if m == 1]
    assert seen_shapes == {(LOW_ACTIONS,)}


def test_lockstep_refuses_an_action_beyond_the_low_levels_actions() -> None:
    _layouts()

    def too_far(observations: list[dict[str, Any]], masks: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.full(len(observations), LOW_ACTIONS)

    with pytest.raises(UsageError, match=rf"indices in \[0, {LOW_ACTIONS}\)"):
        next(evaluate_members(too_far, 1, _low()))


# -- config checks ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"level": "high"}, r"level='high'"),
        ({"floor_plans": (1,)}, r"floor_plans=\(1,\): floor plans are for level='low'"),
        ({"level": "low", "floor_plans": (31, 1)}, r"not floor plans: \[31\]"),
        ({"level": "low", "floor_plans": "1,2"}, r"floor_plans='1,2'"),
        ({"level": "low", "floor_plans": ()}, r"floor_plans=\(\)"),
    ],
)
def test_eval_config_rejects_bad_levels_and_floor_plans(kwargs: dict[str, Any], expected: str) -> None:
    with pytest.raises(UsageError, match=expected):
        EvalConfig(**kwargs)


def test_a_length_no_given_floor_plan_poses_is_named() -> None:
    _layouts()
    with pytest.raises(UsageError, match=r"no task of 5, 6 subtasks on floor plans 301, 302 .*at most 4"):
        EvalConfig(level="low", floor_plans=(301, 302))
    # one kitchen among them is enough: the env redraws among the plans that pose the length
    assert EvalConfig(level="low", floor_plans=[301, 1, 301]).floor_plans == (301, 1)


# -- the command line ---------------------------------------------------------------------------------
def _one_red_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_cli_evaluates_at_the_low_level_on_the_named_floor_plans() -> None:
    _layouts()
    args = ("sim", "evaluate", "--level", "low", "--floor-plans", "1,201", "--lengths", "1,4", "-k", "2")
    result = rgvlm(*args, "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["length"] for r in rows] == [1, 4]
    assert all(r["mean_completed"] == 1.0 and r["level"] == "low" for r in rows)
    assert all(set(r["floor_plans"]) <= {"FloorPlan1", "FloorPlan201"} for r in rows)
    assert [sum(r["floor_plans"].values()) for r in rows] == [2, 2]
    table = rgvlm(*args)
    assert table.returncode == 0, table.stderr
    assert "low level on 1,201" in table.stdout and "floor plans" in table.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--level", "low", "--floor-plans", "kitchenz"], "--floor-plans: 'kitchenz' is not a set"),
        (["--level", "low", "--floor-plans", "31"], "--floor-plans: 31 is not an ALFRED floor plan"),
        (["--floor-plans", "1"], "--floor-plans 1: floor plans are for --level low"),
        (["--level", "middle"], "--level must be subgoal or low, got 'middle'"),
    ],
)
def test_cli_bad_level_or_floor_plans_is_one_red_line(args: list[str], expected: str) -> None:
    assert expected in _one_red_line(rgvlm("sim", "evaluate", *args))


def test_cli_names_a_length_the_floor_plans_do_not_pose() -> None:
    _layouts()
    line = _one_red_line(rgvlm("sim", "evaluate", "--level", "low", "--floor-plans", "bedrooms"))
    assert "no task of 5, 6 subtasks" in line and "301" in line


def test_cli_names_the_floor_plan_whose_layout_is_missing(tmp_path: Path) -> None:
    result = rgvlm(
        "sim", "evaluate", "--level", "low", "--floor-plans", "7", env={"RGVLM_ALFRED_LAYOUTS": str(tmp_path)}
    )
    line = _one_red_line(result)
    assert "FloorPlan7" in line and str(tmp_path) in line
