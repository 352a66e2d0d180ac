"""Offline RL on the low level (issue 14): datasets of low-level simulator episodes (the low state vector,
ALFRED's low-level actions and their exact masks), the level and floor plans in the dataset's info, a mix
of levels refused, reference progress from the low-level expert, the reward check's part (a) without the
subgoal-level solve, and IQL training on it.

Low-level data comes from tests/test_sim_low_downstream.write_low_dataset (`rgvlm sim generate --level
low`: expert, suboptimal and failed episodes, without frames).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

import tests.test_sim_low_downstream as downstream
from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.errors import UsageError
from rgvlm_core.labeling.reference import ReferenceLabeller, progress_score
from rgvlm_core.labeling.runs import RunConfig, label_run
from rgvlm_core.reward_check import check_reward
from rgvlm_core.rl import dataset_cache
from rgvlm_core.rl.dataset import (
    OfflineArrays,
    build_dataset,
    dataset_floor_plans,
    parse_reward_source,
    sim_episode_levels,
)
from rgvlm_core.rl.encoder import HashEncoder
from rgvlm_core.sim.low.encode import STATE_DIM, encode
from rgvlm_core.sim.low.floorplan import layouts_dir
from rgvlm_core.sim.low.serialize import low_state_from_dict
from rgvlm_core.sim.low.world import ACTION_TOKENS, N_ACTIONS, valid_mask
from rgvlm_core.workspace import Workspace
from tests.alfred_factory import run_import

EPISODES = 18  # expert, suboptimal and failed in turn; lengths 1 and 2


@pytest.fixture(scope="module")
def low_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("low") / "data"
    downstream.write_low_dataset(out, EPISODES)
    return out


@pytest.fixture(scope="module")
def low_ws(low_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.open(tmp_path_factory.mktemp("low-ws") / "ws")
    run_import(ws, low_data)
    return ws


def _dataset(ws: Workspace, reward: str = "sparse", flt: EpisodeFilter = EpisodeFilter()) -> OfflineArrays:
    reader = ws.reader()
    try:
        return build_dataset(reader, parse_reward_source(reward, reader), HashEncoder(), flt)
    finally:
        reader.close()


def _steps(ws: Workspace) -> list[dict[str, Any]]:
    """Step rows in the dataset's order, with each trajectory's folder and its outcome."""
    reader = ws.reader()
    try:
        return reader.rows(
            "SELECT e.episode_id, t.source_dir, t.n_steps, t.behaviour, s.t, s.sparse_reward "
            "FROM episodes e JOIN trajectories t USING (trajectory_id) "
            "JOIN steps s ON s.trajectory_id = e.trajectory_id ORDER BY e.episode_id, s.t"
        )
    finally:
        reader.close()


def _file_states(source_dir: str) -> list[Any]:
    """The low-level states a trajectory's traj_data.json records (before each step, then the last),
    read from the file itself, the floor plan put back as the file's contract says."""
    sim = orjson.loads((Path(source_dir) / "traj_data.json").read_bytes())["rgvlm_sim"]
    return [low_state_from_dict({**doc, "plan": sim["plan"]}) for doc in sim["states"]]


# -- the dataset ---------------------------------------------------------------------------------------
def test_low_level_rows_hold_the_low_state_vector_the_low_action_and_its_exact_mask(
    low_ws: Workspace,
) -> None:
    data = _dataset(low_ws)
    steps = _steps(low_ws)
    assert len(data) == len(steps) > 100
    assert data.states.shape == (len(data), STATE_DIM) and data.next_states.shape == data.states.shape
    assert data.masks.shape == (len(data), N_ACTIONS) and data.n_actions == N_ACTIONS
    assert data.action_tokens == list(ACTION_TOKENS)
    files: dict[str, list[Any]] = {}
    for i, step in enumerate(steps):
        states = files.setdefault(step["source_dir"], _file_states(step["source_dir"]))
        traj = orjson.loads((Path(step["source_dir"]) / "traj_data.json").read_bytes())
        low = traj["plan"]["low_actions"][step["t"]]
        arg = low["discrete_action"]["args"]
        token = f"{low['discrete_action']['action']}({arg[0]})" if arg else low["discrete_action"]["action"]
        assert ACTION_TOKENS[data.actions[i]] == token
        np.testing.assert_array_equal(data.states[i], encode(states[step["t"]]))
        np.testing.assert_array_equal(data.next_states[i], encode(states[step["t"] + 1]))
        np.testing.assert_array_equal(data.masks[i], valid_mask(states[step["t"]]))
    # navigation is most of a low-level episode, and the pose block tells its states apart
    assert np.isin(data.actions, range(5)).mean() > 0.5
    assert len(np.unique(data.states, axis=0)) > 0.9 * len(data)


def test_low_level_rewards_and_dones_are_the_subgoal_levels_rules(low_ws: Workspace) -> None:
    data = _dataset(low_ws)
    steps = _steps(low_ws)
    sparse = np.asarray([s["sparse_reward"] for s in steps], np.float32)
    np.testing.assert_array_equal(data.rewards, sparse)
    last = np.asarray([s["t"] == s["n_steps"] - 1 for s in steps])
    # done where a subtask completes (a trajectory that completed its task ends on one); the last step of
    # a stopped (failed) or capped (suboptimal) trajectory is cut off, not terminal
    np.testing.assert_array_equal(data.dones, (sparse > 0).astype(np.float32))
    assert data.info["cut_off_steps"] == int((last & (sparse == 0)).sum()) > 0
    assert any(s["behaviour"] == "failed" for s in steps)


def test_the_info_records_the_level_and_the_floor_plans_of_generated_rooms(low_ws: Workspace) -> None:
    info = _dataset(low_ws).info
    assert info["states"] == "sim" and info["level"] == "low"
    # each generated room is one of its own: none is an ALFRED floor plan to evaluate on by number
    assert info["floor_plans"] == [] and info["generated_rooms"] == EPISODES
    assert dataset_floor_plans(info) is None


def test_alfred_floor_plans_are_recorded_by_name_for_the_evaluation(tmp_path: Path) -> None:
    if not (layouts_dir() / "FloorPlan1-layout.npy").is_file():
        pytest.skip(f"ALFRED layouts not found at {layouts_dir()}")
    downstream.write_low_dataset(tmp_path / "data", 6, lengths=(1,), floor_plans=(1, 201))
    ws = Workspace.open(tmp_path / "ws")
    run_import(ws, tmp_path / "data")
    info = _dataset(ws).info
    assert info["floor_plans"] == ["FloorPlan1", "FloorPlan201"] and info["generated_rooms"] == 0
    assert dataset_floor_plans(info) == (1, 201)


def test_a_workspace_mixing_levels_is_refused_with_the_counts_and_how_to_choose(
    low_data: Path, tmp_path: Path
) -> None:
    from rgvlm_core.sim.generate import GenerateConfig, generate

    for _ in generate(tmp_path / "high", GenerateConfig(episodes=4, frames=False, split="valid_seen")):
        pass
    ws = Workspace.open(tmp_path / "ws")
    run_import(ws, low_data)
    run_import(ws, tmp_path / "high")
    reader = ws.reader()
    n_high = reader.scalar("SELECT count(*) FROM episodes WHERE split = 'valid_seen'")
    assert sim_episode_levels(reader) == {"subgoal": n_high, "low": EPISODES}
    reader.close()
    with pytest.raises(UsageError) as refused:
        _dataset(ws)
    message = str(refused.value)
    assert f"{n_high} subgoal-level and {EPISODES} low-level episodes" in message
    assert "filter by split (the low level's: train; the subgoal level's: valid_seen)" in message
    assert _dataset(ws, flt=EpisodeFilter(splits=("train",))).info["level"] == "low"
    high = _dataset(ws, flt=EpisodeFilter(splits=("valid_seen",)))
    assert "level" not in high.info and high.states.shape[1] != STATE_DIM


def test_the_cache_serves_low_level_arrays_and_its_key_covers_the_low_levels_code(
    low_ws: Workspace,
) -> None:
    for name in ("encode", "world", "serialize", "floorplan", "nav"):
        assert f"rgvlm_core.sim.low.{name}" in dataset_cache._CODE_MODULES
    reader = low_ws.reader()
    try:
        cached = dataset_cache.cached_dataset(reader, parse_reward_source("sparse", reader), HashEncoder())
    finally:
        reader.close()
    built = _dataset(low_ws)
    assert dataset_cache.dataset_dir(cached) is not None and cached.info == json.loads(json.dumps(built.info))
    for name in dataset_cache.ARRAY_FIELDS:
        np.testing.assert_array_equal(getattr(cached, name), getattr(built, name))


# -- labels and the reward check --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(low_ws: Workspace) -> str:
    for _ in label_run(low_ws, ReferenceLabeller(), RunConfig(name="ref")):
        pass
    return "ref"


def test_reference_progress_counts_the_low_level_experts_steps(low_ws: Workspace, reference: str) -> None:
    reader = low_ws.reader()
    rows = reader.rows(
        "SELECT l.episode_id, l.t, l.progress, sub.first_step, sub.last_step FROM labels l "
        "JOIN episodes e USING (episode_id) JOIN trajectories t USING (trajectory_id) "
        "JOIN subtasks sub ON sub.episode_id = l.episode_id AND l.t BETWEEN sub.first_step AND sub.last_step "
        "WHERE l.run_id = ? AND t.behaviour = 'expert' ORDER BY l.episode_id, l.t",
        [reference],
    )
    reader.close()
    assert len(rows) > 30
    # every expert step shortens the low-level expert's plan by one, navigation included
    for r in rows:
        n = r["last_step"] - r["first_step"] + 1
        assert r["progress"] == progress_score((r["t"] - r["first_step"] + 1) / n), r


def test_the_reward_check_reports_the_returns_and_says_the_solve_is_not_available_at_the_low_level(
    low_ws: Workspace, reference: str
) -> None:
    reader = low_ws.reader()
    check = check_reward(reader, "sparse+reference@raw", tasks_per_length=1, lengths=(1,))
    reader.close()
    doc = check.to_json()
    assert doc["level"] == "low" and doc["episodes_by_level"] == {"subgoal": 0, "low": EPISODES}
    assert check.tasks == () and doc["optimal_completes"] is None and doc["pays_loops"] is None
    assert check.returns is not None and check.returns.expert_segments > 0 < check.returns.other_segments
    assert "not available at the low level" in doc["verdict"][0]
    assert "state" in str(doc["solve_unavailable"]) and "50,000" in str(doc["solve_unavailable"])
    assert doc["verdict"][1].startswith(("expert segments earn", "non-expert segments earn"))


# -- training --------------------------------------------------------------------------------------------
def test_iql_trains_on_the_low_level_dataset_and_the_run_records_its_level(low_ws: Workspace) -> None:
    from rgvlm_core.rl.iql import IQL, IQLConfig
    from rgvlm_core.rl.runs import TrainSpec, train_run

    config = IQLConfig(steps=3, log_every=1, batch_size=16, hidden=16)
    progress = list(train_run(low_ws, TrainSpec(encoder="hash", name="low"), config, threads=1))
    assert [p.step for p in progress] == [1, 2, 3]
    assert all(np.isfinite(v) for p in progress for v in p.metrics.values())
    reader = low_ws.reader()
    run = reader.rows("SELECT dataset, checkpoint FROM train_runs WHERE run_id = 'low'")[0]
    reader.close()
    dataset = json.loads(run["dataset"])
    assert dataset["level"] == "low" and dataset["generated_rooms"] == EPISODES
    dims = IQL.load(low_ws.root / run["checkpoint"]).dims
    assert dims["state_dim"] == STATE_DIM and dims["n_actions"] == N_ACTIONS


def test_a_low_level_run_is_evaluated_in_the_low_level_simulator(low_ws: Workspace) -> None:
    from rgvlm_core.rl.iql import IQLConfig
    from rgvlm_core.rl.runs import TrainSpec, evaluate_run, train_run

    config = IQLConfig(steps=2, log_every=1, batch_size=16, hidden=16)
    list(train_run(low_ws, TrainSpec(encoder="hash", name="low-eval"), config, threads=1))
    results = list(evaluate_run(low_ws, "low-eval", episodes_per_length=2, lengths=(1, 2)))
    assert len(results) == 4
    assert {r.level for r in results} == {"low"}
    assert all(str(r.floor_plan).startswith("Generated") for r in results)  # trained on generated rooms
    assert all(r.steps >= 1 for r in results)


def test_an_experiments_evaluation_follows_its_datasets_level_and_floor_plans() -> None:
    from dataclasses import replace

    from rgvlm_core.rl.config import LOW_SUBTASK_BUDGET, SUBTASK_BUDGET
    from rgvlm_core.rl.work import EvalPlan

    plan = EvalPlan(("default",), 3, subtask_budget=SUBTASK_BUDGET)  # as `rgvlm experiment` makes it
    assert plan.at_level({"states": "sim"}) == plan  # subgoal-level data: unchanged
    low = plan.at_level({"states": "sim", "level": "low", "floor_plans": ["FloorPlan1", "FloorPlan201"]})
    assert (low.level, low.floor_plans) == ("low", (1, 201))
    assert plan.subtask_budget == SUBTASK_BUDGET and low.subtask_budget == LOW_SUBTASK_BUDGET
    assert replace(plan, subtask_budget=9).at_level({"level": "low"}).subtask_budget == 9  # asked for: kept
    generated = plan.at_level({"states": "sim", "level": "low", "floor_plans": [], "generated_rooms": 4})
    assert (generated.level, generated.floor_plans) == ("low", None)
    if not (layouts_dir() / "FloorPlan1-layout.npy").is_file():
        pytest.skip(f"ALFRED layouts not found at {layouts_dir()}")
    (config,) = low.configs()
    assert config.level == "low" and config.floor_plans == (1, 201)
