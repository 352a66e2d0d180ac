"""Real ALFRED trajectories with one thing broken, for checking that the replay refuses what AI2-THOR
would (tests/test_alfred_replay.py asserts the rates, bench/alfred_replay.py prints them). Each mutation
changes a parsed traj_data.json in place and says whether it applied to that trajectory."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from rgvlm_core.alfred.replay_scene import class_of, scene_of

Mutation = Callable[[dict[str, Any]], bool]


def drop_goto_turn(traj: dict[str, Any]) -> bool:
    """Drop the last turn or look of a GotoLocation subgoal: its end pose must then be missed."""
    high = traj["plan"]["high_pddl"]
    gotos = {s["high_idx"] for s in high if s["discrete_action"]["action"] == "GotoLocation"}
    low = traj["plan"]["low_actions"]
    for i in range(len(low) - 1, -1, -1):
        if low[i]["high_idx"] in gotos and low[i]["api_action"]["action"] in (
            "RotateLeft",
            "RotateRight",
            "LookUp",
        ):
            del low[i]
            return True
    return False


def drop_first_open(traj: dict[str, Any]) -> bool:
    """Drop the first OpenObject (not of a laptop, which starts open): a put into it must be refused."""
    low = traj["plan"]["low_actions"]
    for i, a in enumerate(low):
        if a["api_action"]["action"] == "OpenObject" and class_of(a["api_action"]["objectId"]) != "Laptop":
            del low[i]
            return True
    return False


def heat_unswitched(traj: dict[str, Any]) -> bool:
    """A heat task without switching the microwave: the heat subgoal must be missed."""
    if traj["task_type"] != "pick_heat_then_place_in_recep":
        return False
    low = traj["plan"]["low_actions"]
    low[:] = [a for a in low if not a["api_action"]["action"].startswith("ToggleObject")]
    return True


def far_pickup(traj: dict[str, Any]) -> bool:
    """Aim the first pickup at a movable object of the scene at least 3 m away: out of reach."""
    scene = scene_of(traj)
    for a in traj["plan"]["low_actions"]:
        api = a["api_action"]
        if api["action"] == "PickupObject" and api["objectId"] in scene.things:
            here = scene.things[api["objectId"]].position
            for t in scene.things.values():
                if t.movable and math.hypot(t.position[0] - here[0], t.position[2] - here[2]) >= 3.0:
                    api["objectId"] = t.object_id
                    return True
            return False
    return False


MUTATIONS: dict[str, Mutation] = {
    "last turn/look of a GotoLocation dropped": drop_goto_turn,
    "first OpenObject dropped": drop_first_open,
    "heat task without switching the microwave": heat_unswitched,
    "first pickup of an object >= 3 m away": far_pickup,
}
