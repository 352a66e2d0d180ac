"""Replaying ALFRED trajectories in the symbolic household: the rules on a hand-made floor plan, real
trajectories reaching their subgoals, and the same trajectories with one thing changed failing, each with
the step and the reason."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rgvlm_core.alfred.replay import replay, replay_files, summarize, trajectory_files
from rgvlm_core.alfred.replay_scene import class_of, parse_location, thor_id
from tests.alfred_mutations import drop_first_open, drop_goto_turn, far_pickup, heat_unswitched
from tests.cli_support import rgvlm

FRIDGE = "Fridge|+00.00|+00.00|+01.50"
APPLE = thor_id("Apple", 0.25, 0.9, 1.25)
MUG = thor_id("Mug", -0.25, 0.9, 1.25)
MICROWAVE = "Microwave|+01.00|+01.00|+00.00"


# -- a hand-made floor plan: a 5 x 5 room, a fridge north, a microwave east, an apple and a mug ------
@pytest.fixture()
def layouts(tmp_path: Path) -> Path:
    folder = tmp_path / "layouts"
    folder.mkdir()
    points = [(x * 0.25, z * 0.25) for x in range(-2, 3) for z in range(-2, 3)]
    np.save(folder / "FloorPlan999-layout.npy", np.array(points))
    (folder / "FloorPlan999-openable.json").write_text(json.dumps({FRIDGE: [0.0, 0.5, 0, 0]}))
    (folder / "FloorPlan999-objects.json").write_text(json.dumps(["Apple", "Mug", "Fridge"]))
    return folder


def _traj(actions: list[tuple[int, dict[str, Any]]], subgoals: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "task_type": "pick_cool_then_place_in_recep",
        "scene": {
            "floor_plan": "FloorPlan999",
            "init_action": {
                "action": "TeleportFull",
                "x": 0.0,
                "y": 0.9,
                "z": 0.0,
                "rotation": 0,
                "horizon": 30,
            },
            "object_poses": [
                {"objectName": "Apple_1a2b", "position": {"x": 0.25, "y": 0.9, "z": 1.25}, "rotation": {}},
                {"objectName": "Mug_3c4d", "position": {"x": -0.25, "y": 0.9, "z": 1.25}, "rotation": {}},
            ],
            "object_toggles": [],
            "dirty_and_empty": False,
        },
        "plan": {
            "low_actions": [{"high_idx": h, "api_action": a} for h, a in actions],
            "high_pddl": [{"high_idx": i, **s} for i, s in enumerate(subgoals)],
        },
    }


def _goto(loc: str, name: str) -> dict[str, Any]:
    return {
        "discrete_action": {"action": "GotoLocation", "args": [name]},
        "planner_action": {"location": loc},
    }


MOVE = {"action": "MoveAhead", "moveMagnitude": 0.25}
COOL_ACTIONS = [
    (0, MOVE),
    (0, MOVE),  # (0, 0.5) facing the fridge: ALFRED's planner pose for it
    (1, {"action": "PickupObject", "objectId": APPLE}),  # 0.8 m ahead, a little right: in reach
    (2, {"action": "OpenObject", "objectId": FRIDGE}),
    (2, {"action": "PutObject", "objectId": APPLE, "receptacleObjectId": FRIDGE}),
    (2, {"action": "CloseObject", "objectId": FRIDGE}),
    (2, {"action": "OpenObject", "objectId": FRIDGE}),
    (2, {"action": "PickupObject", "objectId": APPLE}),
    (2, {"action": "CloseObject", "objectId": FRIDGE}),
]
COOL_SUBGOALS = [
    _goto("loc|0|2|0|30", "fridge"),
    {"discrete_action": {"action": "PickupObject", "args": ["apple"]}, "planner_action": {"objectId": APPLE}},
    {"discrete_action": {"action": "CoolObject", "args": ["apple"]}, "planner_action": {"objectId": FRIDGE}},
    {"discrete_action": {"action": "NoOp", "args": []}, "planner_action": {"action": "End"}},
]


def test_a_trajectory_that_follows_the_rules_reaches_every_subgoal(layouts: Path) -> None:
    r = replay(_traj(COOL_ACTIONS, COOL_SUBGOALS), layouts=layouts)
    assert r.failure is None
    assert (r.subgoals, r.reached) == (3, 3)  # NoOp is not a subgoal


@pytest.mark.parametrize(
    ("change", "step", "why"),
    [
        ("no_open", 3, "is closed"),  # put into the closed fridge
        ("no_close", 6, "is not cold"),  # the fridge never closed with the apple in it
        ("turned", 4, "degrees off the heading"),  # facing away, the apple is out of view
        ("walked_on", 2, "the agent is at"),  # one move too many: GotoLocation's pose missed
        ("pick_twice", 3, "already holding"),
        ("ghost", 2, "is not in the scene"),
    ],
)
def test_one_change_breaks_the_replay_at_the_step_with_the_reason(
    layouts: Path, change: str, step: int, why: str
) -> None:
    actions = list(COOL_ACTIONS)
    if change == "no_open":
        del actions[3]
    elif change == "no_close":
        del actions[5:7]
    elif change == "turned":  # after the goto subgoal ends: the pickup is what fails
        actions[2:2] = [(1, {"action": "RotateRight"}), (1, {"action": "RotateRight"})]
    elif change == "walked_on":
        actions.insert(2, (0, MOVE))
    elif change == "pick_twice":
        actions.insert(3, (1, {"action": "PickupObject", "objectId": MUG}))
    elif change == "ghost":
        actions[2] = (1, {"action": "PickupObject", "objectId": thor_id("Apple", 9.0, 0.9, 9.0)})
    r = replay(_traj(actions, COOL_SUBGOALS), layouts=layouts)
    assert r.failure is not None, change
    assert r.failure.step == step, r.failure
    assert why in r.failure.why, r.failure


def test_rules_of_the_world(layouts: Path) -> None:
    cases = {
        # the microwave switches on only when closed, and heats what is inside
        "open microwave": [
            (0, {"action": "RotateRight"}),
            (0, {"action": "MoveAhead"}),
            (0, {"action": "MoveAhead"}),
            (0, {"action": "OpenObject", "objectId": MICROWAVE}),
            (0, {"action": "ToggleObjectOn", "objectId": MICROWAVE}),
        ],
        "slice without a knife": [(0, {"action": "SliceObject", "objectId": APPLE})],
        "look too far up": [(0, {"action": "LookUp"})] * 5,
        "put what is not held": [
            (0, {"action": "PutObject", "objectId": APPLE, "receptacleObjectId": FRIDGE})
        ],
    }
    expected = {
        "open microwave": "the microwave is open",
        "slice without a knife": "not holding a knife",
        "look too far up": "cannot tilt to -45",
        "put what is not held": "not holding",
    }
    for name, actions in cases.items():
        r = replay(_traj(actions, []), layouts=layouts)
        assert r.failure is not None and expected[name] in r.failure.why, (name, r.failure)


def test_points_the_recorded_path_stands_on_are_floor_and_counted(layouts: Path) -> None:
    # ALFRED's layouts miss points its agents stood on; the recorded moves say they are floor
    r = replay(_traj([(0, MOVE)] * 4, []), layouts=layouts)
    assert r.failure is None and r.added_points == 2


def test_ids_and_locations_read_as_ai2thor_writes_them() -> None:
    assert thor_id("Apple", -1.6543, 0.8123, 0.5811) == "Apple|-01.65|+00.81|+00.58"
    assert class_of("Sink|-01.90|+00.97|-01.50|SinkBasin") == "SinkBasin"
    assert class_of("Tomato|-01.96|+00.95|-01.45|TomatoSliced_1") == "TomatoSliced"
    assert parse_location("loc|-6|-3|2|15") == (-6, -3, 180, 15)
    with pytest.raises(ValueError, match="not an ALFRED location"):
        parse_location("loc|1|2")


def test_a_file_without_a_plan_is_skipped_and_a_broken_one_is_a_failure(
    tmp_path: Path, layouts: Path
) -> None:
    (tmp_path / "test").mkdir()
    (tmp_path / "test" / "traj_data.json").write_text(json.dumps({"scene": {"floor_plan": "FloorPlan999"}}))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "traj_data.json").write_text("{not json")
    (tmp_path / "elsewhere").mkdir()  # a floor plan whose layout files are missing: its own failure
    missing = _traj(COOL_ACTIONS, COOL_SUBGOALS)
    missing["scene"]["floor_plan"] = "FloorPlan998"
    (tmp_path / "elsewhere" / "traj_data.json").write_text(json.dumps(missing))
    report = summarize(replay_files(trajectory_files(tmp_path), layouts=layouts))
    assert len(report["skipped"]) == 1 and report["trajectories"] == 2
    failures = {Path(f["file"]).parent.name: f for f in report["failures"]}
    assert failures["bad"]["action"] == "read"
    assert "FloorPlan998-layout.npy: ALFRED layout file not found" in failures["elsewhere"]["why"]


# -- real ALFRED trajectories -------------------------------------------------------------------------
def _real(shared_alfred: Path) -> list[Path]:
    root = shared_alfred / "json_2.1.0"
    return [p for split in ("train", "valid_seen", "valid_unseen") for p in trajectory_files(root / split)]


def test_real_trajectories_reach_their_subgoals_for_every_task_type(shared_alfred: Path) -> None:
    report = summarize(replay_files(_real(shared_alfred), layouts=shared_alfred / "layouts"))
    assert report["trajectories"] == 392
    for task_type, row in report["by_task_type"].items():
        assert row["fidelity"] >= 0.95, (task_type, report["failures"][:5])
    for failure in report["failures"]:  # every failure says where and why
        assert failure["file"] and failure["why"] and failure["action"]


@pytest.mark.parametrize(
    ("mutate", "caught"),
    [(drop_goto_turn, 0.95), (drop_first_open, 0.95), (heat_unswitched, 1.0), (far_pickup, 1.0)],
)
def test_real_trajectories_with_one_thing_wrong_fail(
    shared_alfred: Path, mutate: Any, caught: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RGVLM_ALFRED_LAYOUTS", str(shared_alfred / "layouts"))
    mutated = failed = 0
    for path in _real(shared_alfred):
        traj = json.loads(path.read_text())
        if not mutate(traj):
            continue
        mutated += 1
        r = replay(copy.deepcopy(traj), str(path), layouts=shared_alfred / "layouts")
        failed += r.failure is not None
    assert mutated >= 50
    assert failed / mutated >= caught, (failed, mutated)


def test_cli_prints_one_json_object_with_the_documented_keys(shared_alfred: Path) -> None:
    folder = shared_alfred / "json_2.1.0" / "valid_seen"
    done = rgvlm("alfred", "replay", str(folder), "--json", "--layouts", str(shared_alfred / "layouts"))
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert {"trajectories", "subgoals", "reached", "fidelity", "by_task_type", "failures"} <= set(doc)
    assert doc["trajectories"] == 56 and 0.95 <= doc["fidelity"] <= 1.0


def test_cli_names_a_missing_path_or_layouts_folder(tmp_path: Path) -> None:
    done = rgvlm("alfred", "replay", str(tmp_path / "nowhere"))
    assert done.returncode != 0
    assert "nowhere: no such file or folder" in done.stderr
    done = rgvlm("alfred", "replay", str(tmp_path), "--layouts", str(tmp_path / "no-layouts"))
    assert done.returncode != 0
    assert "no-layouts: ALFRED's layouts folder not found" in done.stderr
