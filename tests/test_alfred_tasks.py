"""ALFRED's tasks as evaluation: chains of 1-6 consecutive subtasks of replayed trajectories, reached by
ALFRED's subgoals in order; the recorded actions complete them, a random policy rarely does; `rgvlm sim
evaluate --eval-tasks` and trained runs are evaluated on them, seen and unseen scenes apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from rgvlm_core.alfred import level
from rgvlm_core.alfred.env import AlfredTaskEnv
from rgvlm_core.alfred.replay_scene import thor_id
from rgvlm_core.alfred.tasks import AlfredSubtask, load_tasks, parse_eval_tasks, reached
from rgvlm_core.alfred.world import World, new_world, step
from rgvlm_core.errors import UsageError
from rgvlm_core.sim.evaluate import EvalConfig, evaluate, summarize
from tests.cli_support import rgvlm


@pytest.fixture()
def data(shared_alfred: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RGVLM_ALFRED_LAYOUTS", str(shared_alfred / "layouts"))
    return shared_alfred / "json_2.1.0"


def test_tasks_are_chains_of_one_to_six_subtasks_from_every_trajectory(data: Path) -> None:
    tasks = load_tasks(str(data), "valid_seen")
    assert sorted(tasks) == [1, 2, 3, 4, 5, 6]
    whole = {t.source for t in tasks[1]}
    assert len(whole) == 56  # every replayed trajectory gives at least one chain
    n_subtasks = {t.source: 0 for t in tasks[1]}
    for t in tasks[1]:
        n_subtasks[t.source] += 1
    # a trajectory of k subtasks gives k - n + 1 chains of n
    for n, chains in tasks.items():
        assert len(chains) == sum(max(0, k - n + 1) for k in n_subtasks.values())
    first = tasks[2][0]
    assert len(first) == 2 and len(first.instructions) == 2 and first.expert
    assert all(0 <= a < len(level.ACTION_TOKENS) for a in first.expert)


def test_the_recorded_actions_complete_every_task_and_a_random_policy_few(data: Path) -> None:
    config = EvalConfig(lengths=(1, 3, 6), episodes_per_length=8, condition="valid_unseen", level="alfred",
                        alfred_root=str(data), subtask_budget=70)  # fmt: skip
    expert = list(evaluate("expert", config))
    assert len(expert) == 8 + 8 + 8
    assert all(r.success for r in expert)
    assert {r.floor_plan for r in expert} <= {f"FloorPlan{n}" for n in range(1, 431)}
    random = summarize(evaluate("random", config))
    assert max(line["mean_completed"] for line in random) < 0.6
    # the same tasks, in the same order, every time
    again = list(evaluate("expert", config))
    assert [(r.length, r.episode, r.goal) for r in again] == [(r.length, r.episode, r.goal) for r in expert]


def test_a_length_has_as_many_episodes_as_tasks_up_to_the_asked_number(data: Path) -> None:
    env = AlfredTaskEnv("valid_unseen", root=data)
    config = EvalConfig(lengths=(6,), episodes_per_length=50, condition="valid_unseen", level="alfred",
                        alfred_root=str(data))  # fmt: skip
    assert len(list(evaluate("expert", config))) == env.n_tasks(6) < 50


def test_the_env_follows_the_gymnasium_contract(data: Path) -> None:
    env = AlfredTaskEnv("valid_seen", root=data, subtask_budget=5)
    obs, info = env.reset(seed=3, options={"n_subtasks": 2, "episode": 0})
    assert obs["state"].shape == (level.STATE_DIM,) and env.observation_space.contains(obs)
    assert info["action_mask"].shape == (len(level.ACTION_TOKENS),) and info["subtask_index"] == 0
    assert obs["instruction"] == env.task.instructions[0]
    # a policy that only turns is cut off after the budget of its first subtask
    turns = 0
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(level.ACTION_INDEX["RotateLeft_90"])
        turns += 1
        done = terminated or truncated
    assert truncated and not terminated and turns == 5 and env.expert_plan() == []
    with pytest.raises(ValueError, match="episode=999"):
        env.reset(options={"n_subtasks": 2, "episode": 999})
    with pytest.raises(ValueError, match="valid_seen tasks"):
        env.reset(options={"n_subtasks": 2, "condition": "valid_unseen"})


def test_the_second_put_of_two_objects_needs_its_own_put(tmp_path: Path) -> None:
    # a Put subtask is reached by the agent's put while it is current, not by an earlier one
    put = AlfredSubtask("Put", "Apple", "Fridge", "put an apple in the fridge")
    w = World(scene=None, pose=(0, 0, 0, 30))  # type: ignore[arg-type]  # reached reads only events here
    apple = thor_id("Apple", 0, 0.9, 0)
    assert reached(put, w, ("PutObject", "Fridge|+00.00|+00.00|+01.50", apple))
    assert not reached(put, w, None)
    assert not reached(put, w, ("PutObject", "Microwave|+00.00|+00.00|+01.50", apple))
    assert not reached(put, w, ("PickupObject", apple, None))


def test_parse_eval_tasks_names_what_it_cannot_read() -> None:
    assert parse_eval_tasks("alfred:valid_seen, alfred:valid_unseen") == ("valid_seen", "valid_unseen")
    with pytest.raises(UsageError, match="'alfred:tests_seen' is not an ALFRED task set"):
        parse_eval_tasks("alfred:tests_seen")
    with pytest.raises(UsageError, match="condition='default': ALFRED's tasks come from a split"):
        EvalConfig(level="alfred", condition="default")


def test_cli_evaluates_on_alfreds_tasks_seen_and_unseen_apart(data: Path, shared_alfred: Path) -> None:
    env = {"RGVLM_ALFRED_LAYOUTS": str(shared_alfred / "layouts")}
    done = rgvlm("sim", "evaluate", "--eval-tasks", "alfred:valid_seen,alfred:valid_unseen", "--alfred-data",
                 str(data), "--lengths", "1,2", "-k", "3", "--json", env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["split"], r["length"]) for r in rows] == [
        ("valid_seen", 1), ("valid_seen", 2), ("valid_unseen", 1), ("valid_unseen", 2)
    ]  # fmt: skip
    assert all(r["mean_completed"] == 1.0 and r["n"] == 3 for r in rows)


def test_a_task_starts_where_alfreds_agent_started_its_first_subtask(data: Path) -> None:
    chain = next(t for t in load_tasks(str(data), "valid_seen")[1] if t.start > 0)
    from rgvlm_core.alfred.level_state import scene_from_source
    from rgvlm_core.alfred.tasks import start_world

    w = new_world(scene_from_source(chain.source))
    for a in json.loads(Path(chain.source).read_text())["plan"]["low_actions"][: chain.start]:
        assert step(w, a["api_action"]) is None
    started = start_world(chain)
    assert started.pose == w.pose and started.held == w.held and started.parent == w.parent
    assert np.array_equal(level.encode(started), level.encode(w))
