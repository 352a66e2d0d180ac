"""Low-level behaviour and `generate(level="low")`: expert, suboptimal and failed rollouts whose progress
flags are the expert's remaining plan, written as ALFRED-format data the reader imports."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import orjson
import pytest

from rgvlm_core.alfred import iter_alfred
from rgvlm_core.errors import UsageError
from rgvlm_core.sim.generate import MANIFEST, GenerateConfig, generate
from rgvlm_core.sim.low import expert
from rgvlm_core.sim.low.behaviour import LowBehaviourConfig, low_rollout
from rgvlm_core.sim.low.document import high_idxs
from rgvlm_core.sim.low.floorplan import layouts_dir, load_floor_plan
from rgvlm_core.sim.low.nav import N_NAV
from rgvlm_core.sim.low.scenes import lengths, randomize_low, sample_low_task
from rgvlm_core.sim.low.world import ACTION_INDEX, ACTION_TOKENS, apply, progress


def _layouts() -> None:
    if not (layouts_dir() / "FloorPlan1-layout.npy").is_file():
        pytest.skip(
            f"ALFRED layouts not found at {layouts_dir()} (../shared/alfred/layouts beside the checkout)"
        )


def _episodes(style: str, count: int, n: int = 3) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(count):
        rng = np.random.default_rng([7, i])
        task, s = sample_low_task(rng, n, None)
        if i % 2:
            s = randomize_low(s, rng)
        out.append(low_rollout(task, s, style, rng))  # type: ignore[arg-type]
    return out


def test_the_expert_completes_every_task_with_every_step_making_progress() -> None:
    for r in _episodes("expert", 20):
        assert r.completed == len(r.task.subtasks)
        assert len(r.steps) == r.expert_length
        assert all(st.progress and st.valid for st in r.steps)
        assert [st.cost_to_go for st in r.steps] == list(range(r.expert_length, 0, -1))


def test_progress_flags_and_costs_to_go_are_the_recomputed_expert_plan() -> None:
    """The rollout reuses the rest of the plan after an expert step; recomputing it must agree."""
    checked = 0
    for r in _episodes("suboptimal", 12):
        n, done = len(r.task.subtasks), 0
        states = [st.state for st in r.steps] + [r.final]
        for st, after in zip(r.steps, states[1:], strict=True):
            assert st.cost_to_go == len(expert.plan(st.state, r.task, done))
            done2 = progress(after.world, r.task, done) if st.valid else done
            left = len(expert.plan(after, r.task, done2)) if done2 < n else 0
            assert st.progress == (done2 > done or left < st.cost_to_go)
            assert st.reward == done2 - done
            done = done2
            checked += 1
        assert done == r.completed
    assert checked > 300


def test_suboptimal_episodes_take_detours_of_every_kind_and_mostly_finish() -> None:
    runs = _episodes("suboptimal", 40)
    ratio = np.mean([len(r.steps) / r.expert_length for r in runs])
    assert 1.2 < ratio < 2.5
    assert sum(r.completed == len(r.task.subtasks) for r in runs) >= 34
    tokens = Counter(t for r in runs for t in r.tokens)
    assert tokens["LookUp_15"] and tokens["LookDown_15"], "looking around"
    assert sum(not st.valid for r in runs for st in r.steps) > 0, "failed attempts"
    assert sum(not st.progress for r in runs for st in r.steps) > 0.1 * sum(len(r.steps) for r in runs)


def test_each_excursion_kind_alone_returns_to_the_task() -> None:
    kinds = ("wander", "wrong_turn", "look_around", "wrong_receptacle", "wrong_object", "undo")
    zero = {k: 0.0 for k in (*kinds, "failed_attempt")}
    for kind in kinds:
        config = LowBehaviourConfig(**{**zero, kind: 0.5})  # type: ignore[arg-type]
        longer = 0
        for i in range(12):
            rng = np.random.default_rng([11, i])
            task, s = sample_low_task(rng, 2, None)
            r = low_rollout(task, s, "suboptimal", rng, config)
            assert all(st.valid for st in r.steps), kind
            longer += len(r.steps) > r.expert_length
        assert longer >= 2, f"{kind} never left the expert's path"


def test_failed_episodes_never_complete_their_task_and_rollouts_repeat_for_a_seed() -> None:
    for r in _episodes("failed", 20):
        assert r.completed < len(r.task.subtasks)
    a, b = _episodes("suboptimal", 3), _episodes("suboptimal", 3)
    assert [x.tokens for x in a] == [y.tokens for y in b]


def test_undo_makes_the_experts_interaction_then_reverses_it() -> None:
    zero = dict.fromkeys(("wander", "wrong_turn", "look_around", "wrong_receptacle", "wrong_object"), 0.0)
    config = LowBehaviourConfig(**zero, failed_attempt=0.0, undo=1.0)  # type: ignore[arg-type]
    inverse = {"OpenObject": "CloseObject", "PickupObject": "PutObject"}
    seen = 0
    for i in range(6):
        rng = np.random.default_rng([5, i])
        task, s = sample_low_task(rng, 2, None)
        path = expert.plan(s, task)
        walk = next(k for k, a in enumerate(path) if a >= N_NAV)
        for a in path[:walk]:
            s, _ = apply(s, a)
        r = low_rollout(task, s, "suboptimal", rng, config)
        first, second = r.tokens[:2]
        assert first == ACTION_TOKENS[path[walk]]
        verb = first.partition("(")[0]
        if verb in inverse:
            assert second.startswith(inverse[verb]), (first, second)
            back, before = r.steps[2].state.world, r.steps[0].state.world
            assert back.held == before.held and back.opened == before.opened
            # (closing a fridge can make progress: it cools what is inside)
            assert r.steps[1].progress is False or first == "OpenObject(Fridge)"
            assert [(o.cls, o.loc, o.inside) for o in back.objects] == [
                (o.cls, o.loc, o.inside) for o in before.objects
            ]
            seen += 1
    assert seen >= 3


# -- generate(level="low") ---------------------------------------------------------------------------
def test_low_level_generation_writes_alfred_layout_that_the_reader_imports(tmp_path: Path) -> None:
    _layouts()
    config = GenerateConfig(episodes=18, seed=3, level="low", floor_plans=(1, 201), max_subtasks=4)
    written = list(generate(tmp_path / "d", config, workers=2))
    assert len(written) == 18
    results = list(iter_alfred(tmp_path / "d"))
    assert not [e for r in results for e in r.errors]
    for res in results:
        traj = res.trajectory
        assert traj is not None
        folder = Path(traj.source_dir)
        doc = orjson.loads((folder / "traj_data.json").read_bytes())
        assert doc["scene"]["floor_plan"] in ("FloorPlan1", "FloorPlan201")
        assert doc["scene"]["scene_num"] in (1, 201)
        low = doc["plan"]["low_actions"]
        high = doc["plan"]["high_pddl"]
        assert [h["discrete_action"]["action"] for h in high[0:-1:2]] == ["GotoLocation"] * (len(high) // 2)
        assert high[-1]["discrete_action"]["action"] == "NoOp"
        for a in low:
            name, args = a["discrete_action"]["action"], a["discrete_action"]["args"]
            assert (name if not args else f"{name}({args[0]})") in ACTION_INDEX
            api = a["api_action"]
            assert api["action"] == name.split("_")[0]
            if name == "PutObject":
                assert args[0] in api["receptacleObjectId"]  # Cabinet|..., or Sink|...|SinkBasin
        frames = sorted((folder / "raw_images").iterdir())
        assert len(frames) == len(low) + 1
        assert [s.action for s in traj.steps] == [_token(a) for a in low]
        idxs = [a["high_idx"] for a in low]
        assert idxs == high_idxs([ACTION_INDEX[_token(a)] for a in low], doc["rgvlm_sim"]["rewards"])
    manifest = json.loads((tmp_path / "d" / MANIFEST).read_text())
    assert "--level low --floor-plans 1,201" in manifest["command"]
    assert manifest["config"]["level"] == "low"


def _token(low_action: dict) -> str:  # type: ignore[type-arg]
    name, args = low_action["discrete_action"]["action"], low_action["discrete_action"]["args"]
    return f"{name}({args[0]})" if args else name


def test_low_level_generation_is_the_same_for_any_number_of_workers(tmp_path: Path) -> None:
    config = GenerateConfig(episodes=10, seed=5, level="low", frames=False)
    list(generate(tmp_path / "one", config, workers=1))
    list(generate(tmp_path / "two", config, workers=2))
    one = json.loads((tmp_path / "one" / MANIFEST).read_text())
    two = json.loads((tmp_path / "two" / MANIFEST).read_text())
    assert one["files"] == two["files"] and one["counts"]["episodes"] == 10


def test_floor_plans_that_pose_no_task_of_a_length_are_refused_naming_it(tmp_path: Path) -> None:
    _layouts()
    assert 5 not in lengths(load_floor_plan(301))
    with pytest.raises(UsageError, match="5 subtasks"):
        list(generate(tmp_path / "x", GenerateConfig(episodes=2, level="low", floor_plans=(301,))))
    with pytest.raises(UsageError, match="--level low"):
        list(generate(tmp_path / "y", GenerateConfig(episodes=2, floor_plans=(1,))))
    with pytest.raises(UsageError, match="FloorPlan999"):
        list(generate(tmp_path / "z", GenerateConfig(episodes=2, level="low", floor_plans=(999,))))
    assert not (tmp_path / "x").exists() or not any((tmp_path / "x").iterdir())


def test_the_cli_generates_low_level_data_and_refuses_bad_floor_plans_before_writing(tmp_path: Path) -> None:
    from tests.cli_support import rgvlm

    _layouts()
    done = rgvlm(
        "sim",
        "generate",
        "-n",
        "6",
        "--level",
        "low",
        "--floor-plans",
        "1,201",
        "--max-subtasks",
        "3",
        "--no-frames",
        "-o",
        str(tmp_path / "ok"),
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "ok" / MANIFEST).read_text())
    assert manifest["counts"]["episodes"] == 6 and "--level low --floor-plans 1,201" in manifest["command"]
    bad = rgvlm(
        "sim", "generate", "-n", "2", "--level", "low", "--floor-plans", "bedrooms", "-o", str(tmp_path / "b")
    )
    assert bad.returncode == 1 and "5 subtasks" in bad.stderr and not (tmp_path / "b").exists()
    wrong = rgvlm("sim", "generate", "-n", "2", "--floor-plans", "1", "-o", str(tmp_path / "w"))
    assert wrong.returncode == 1 and "--level low" in wrong.stderr and not (tmp_path / "w").exists()


def test_a_detour_on_the_way_is_part_of_the_walk_subgoal() -> None:
    move, pick, put = (
        ACTION_INDEX["MoveAhead_25"],
        ACTION_INDEX["PickupObject(Apple)"],
        ACTION_INDEX["PutObject(Fridge)"],
    )
    opened, look = ACTION_INDEX["OpenObject(Fridge)"], ACTION_INDEX["LookDown_15"]
    # subtask 0: a wrong pickup put back, then the walk and the pickup; subtask 1: open, put, walk, look,
    # and the episode stops there (the last walk has no manipulation yet)
    actions = [pick, put, move, move, pick, move, look, opened, put, move, look]
    rewards = [0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0]
    assert high_idxs(actions, rewards) == [0, 0, 0, 0, 1, 2, 2, 3, 3, 4, 4]
    assert high_idxs([pick], [1]) == [1]  # nothing walked: the GotoLocation owns no step


def test_per_floor_plan_caches_stay_bounded_over_many_generated_rooms() -> None:
    """Each generated room is a floor plan of its own: the caches keyed by plan must not grow with them."""
    from rgvlm_core.sim.low.encode import pose_table
    from rgvlm_core.sim.low.nav import navigator

    for i in range(150):
        _, s = sample_low_task(np.random.default_rng([9, i]), 1, None)
        pose_table(s.plan)
    assert navigator.cache_info().currsize <= 128 and pose_table.cache_info().currsize <= 128


def test_one_process_generates_datasets_of_other_lengths_one_after_the_other(tmp_path: Path) -> None:
    for k, (low, high) in enumerate(((1, 1), (2, 3))):
        config = GenerateConfig(episodes=2, level="low", min_subtasks=low, max_subtasks=high, frames=False)
        written = list(generate(tmp_path / str(k), config))
        assert {g.n_subtasks for g in written} <= set(range(low, high + 1))
