"""The household of one ALFRED trajectory, set up as ALFRED set it up: its floor plan, its objects where
ALFRED put them, its switches, and the agent where ALFRED started it.

What ALFRED's JSON says and what it leaves out:

- `scene.object_poses` places every movable object (name `Type_hash`, position). AI2-THOR names an object
  by its class and position when the scene is set up (`Apple|-01.65|+00.81|+00.58`), and that id stays
  with the object wherever it goes; so the ids the actions use are rebuilt from these poses.
- Receptacles and other fixed objects are not listed; their ids appear in the actions, and
  `FloorPlanN-openable.json` lists the receptacles ALFRED's planner knows, with the pose it stands at to
  use each. A fixed object named by an action is set up from its id (class and position), once.
- The reachable points come from `FloorPlanN-layout.npy`, computed by ALFRED in the floor plan's default
  arrangement. It is incomplete: about one in ten of the points ALFRED's recorded agents stood on are not
  in it (most one grid step outside it, some up to seven, along a room's edge; 59 of the 392 sample
  trajectories start outside it). AI2-THOR accepted every recorded move, so the points a trajectory's
  recorded path stands on are floor in that trajectory (`added` counts those the layout lacks). The replay
  therefore does not test where the agent can walk, only where it ends up (GotoLocation poses).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rgvlm_core.errors import UsageError
from rgvlm_core.sim.low.floorplan import GRID, STEP, layouts_dir

Cell = tuple[int, int]
Pose = tuple[int, int, int, int]  # (ix, iz, heading, horizon), as in the low-level household
Point = tuple[float, float, float]

_SLICE = re.compile(r"^(?P<cls>[A-Za-z]+)_\d+$")


@dataclass(frozen=True)
class Thing:
    """One object instance: its AI2-THOR id, class, position at set-up, and, for a receptacle ALFRED's
    planner knows, the pose it is used from."""

    object_id: str
    cls: str
    position: Point
    pose: Pose | None = None
    movable: bool = False  # listed in object_poses: it can be picked up


@dataclass(frozen=True)
class ReplayScene:
    """What a replay starts from; built by `scene_of`."""

    floor_plan: str
    cells: frozenset[Cell]
    added: frozenset[Cell]  # points of the recorded path next to the layout's floor (see the module doc)
    things: dict[str, Thing]
    start: Pose
    camera_height: float  # metres above the floor: agent height (init_action y) + ALFRED's 0.675
    switched_on: frozenset[str]  # classes object_toggles lists as on
    dirty: bool  # scene.dirty_and_empty: ALFRED made dirtyable objects dirty and emptied receptacles


def class_of(object_id: str) -> str:
    """`Apple|x|y|z` -> Apple; `Sink|x|y|z|SinkBasin` -> SinkBasin; `Tomato|x|y|z|TomatoSliced_1` ->
    TomatoSliced."""
    parts = object_id.split("|")
    if len(parts) > 4:
        last = parts[-1]
        match = _SLICE.match(last)
        return match.group("cls") if match else last
    return parts[0]


def position_of(object_id: str) -> Point:
    """The position an AI2-THOR id encodes (x, y, z in metres)."""
    parts = object_id.split("|")
    try:
        return float(parts[1]), float(parts[2]), float(parts[3])
    except (IndexError, ValueError):
        raise ValueError(f"{object_id!r} is not an AI2-THOR object id (Type|x|y|z)") from None


def thor_id(cls: str, x: float, y: float, z: float) -> str:
    """AI2-THOR's id of an object of class `cls` at (x, y, z): `Apple|-01.65|+00.81|+00.58`."""
    return f"{cls}|{x:+06.2f}|{y:+06.2f}|{z:+06.2f}"


def parse_location(text: str) -> Pose:
    """ALFRED's GotoLocation target `loc|x|z|rotation|horizon` (x, z in grid steps, rotation in quarter
    turns) as a pose."""
    parts = text.split("|")
    if len(parts) != 5 or parts[0] != "loc":
        raise ValueError(f"{text!r} is not an ALFRED location (loc|x|z|rotation|horizon)")
    x, z, rotation, horizon = (int(p) for p in parts[1:])
    return x, z, rotation * 90 % 360, horizon


def start_pose(init_action: dict[str, Any]) -> Pose:
    """The agent's pose from ALFRED's `init_action` (TeleportFull x, z in metres, rotation, horizon)."""
    try:
        x, z = float(init_action["x"]), float(init_action["z"])
        rotation, horizon = float(init_action["rotation"]), float(init_action["horizon"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"scene.init_action {init_action!r}: expected x, z, rotation and horizon") from None
    return round(x / GRID), round(z / GRID), round(rotation / 90.0) % 4 * 90, round(horizon / 15.0) * 15


def path_cells(start: Pose, low_actions: Iterable[dict[str, Any]]) -> list[Cell]:
    """The points the recorded moves stand on (each MoveAhead taken as ALFRED recorded it)."""
    x, z, heading, _ = start
    out = [(x, z)]
    for step in low_actions:
        action = step.get("api_action", {}).get("action")
        if action == "MoveAhead":
            dx, dz = STEP[heading]
            x, z = x + dx, z + dz
            out.append((x, z))
        elif action in ("RotateLeft", "RotateRight"):
            heading = (heading + (90 if action == "RotateRight" else -90)) % 360
    return out


def _layout(floor_plan: str, folder: Path) -> tuple[frozenset[Cell], dict[str, Pose]]:
    points_path, openable_path = folder / f"{floor_plan}-layout.npy", folder / f"{floor_plan}-openable.json"
    for path in (points_path, openable_path):
        if not path.is_file():
            raise UsageError(f"{path}: ALFRED layout file not found (needed to replay {floor_plan})")
    try:
        points = np.load(points_path)
        openable = json.loads(openable_path.read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{folder}/{floor_plan}-*: cannot read the layout: {e}") from None
    cells = frozenset((round(x / GRID), round(z / GRID)) for x, z in np.asarray(points).tolist())
    poses: dict[str, Pose] = {}
    for object_id, value in openable.items():
        px, pz, rotation, horizon = (float(v) for v in value)
        poses[object_id] = (round(px / GRID), round(pz / GRID), round(rotation / 90) % 4 * 90, round(horizon))
    return cells, poses


def scene_of(traj: dict[str, Any], layouts: str | Path | None = None) -> ReplayScene:
    """Set up the household of a train/valid `traj_data.json` (already parsed). Raises ValueError naming
    the field when the file lacks what a replay needs, UsageError when the layouts are missing."""
    scene = traj.get("scene")
    if not isinstance(scene, dict) or not isinstance(scene.get("floor_plan"), str):
        raise ValueError("scene.floor_plan is missing")
    plan = traj.get("plan")
    if not isinstance(plan, dict) or not isinstance(plan.get("low_actions"), list):
        raise ValueError("plan.low_actions is missing (test files carry no plan and cannot be replayed)")
    floor_plan = scene["floor_plan"]
    cells, planner_poses = _layout(floor_plan, layouts_dir(layouts))
    start = start_pose(scene.get("init_action") or {})
    walked = set(path_cells(start, plan["low_actions"]))
    added = frozenset(walked - cells)
    things: dict[str, Thing] = {}
    for object_id, pose in planner_poses.items():
        things[object_id] = Thing(object_id, class_of(object_id), position_of(object_id), pose)
    for entry in scene.get("object_poses") or []:
        try:
            name, p = entry["objectName"], entry["position"]
            cls = name.split("_")[0]
            x, y, z = float(p["x"]), float(p["y"]), float(p["z"])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"scene.object_poses: {entry!r} lacks objectName or position x, y, z") from None
        object_id = thor_id(cls, x, y, z)
        things[object_id] = Thing(object_id, cls, (x, y, z), movable=True)
    movable_classes = {t.cls for t in things.values() if t.movable}
    for object_id in _named_ids(plan):  # fixed objects the trajectory names: known from the start
        cls = class_of(object_id)
        if object_id not in things and not cls.endswith("Sliced") and cls not in movable_classes:
            try:
                things[object_id] = Thing(object_id, cls, position_of(object_id))
            except ValueError:
                continue  # the replay reports the action that names it
    on = frozenset(
        str(t.get("objectType"))
        for t in scene.get("object_toggles") or []
        if isinstance(t, dict) and t.get("isOn")
    )
    height = float((scene.get("init_action") or {}).get("y", 0.9)) + 0.675
    return ReplayScene(
        floor_plan, cells | added, added, things, start, height, on, bool(scene.get("dirty_and_empty"))
    )


def _named_ids(plan: dict[str, Any]) -> list[str]:
    """Every object id the plan's low actions and subgoals name, in order of first mention."""
    out: dict[str, None] = {}
    entries = [s.get("api_action") for s in plan.get("low_actions") or [] if isinstance(s, dict)]
    entries += [s.get("planner_action") for s in plan.get("high_pddl") or [] if isinstance(s, dict)]
    for entry in entries:
        if isinstance(entry, dict):
            for key in ("objectId", "receptacleObjectId"):
                if isinstance(entry.get(key), str):
                    out[entry[key]] = None
    return list(out)


def nearest(things: Iterable[Thing], cls: str, to: Point) -> Thing | None:
    """The thing of class `cls` nearest `to` (horizontally), or None."""
    best: tuple[float, Thing] | None = None
    for t in things:
        if t.cls == cls:
            d = math.hypot(t.position[0] - to[0], t.position[2] - to[2])
            if best is None or d < best[0]:
                best = (d, t)
    return best[1] if best else None
