"""The ALFRED level: ALFRED's own low-level actions on the instance-level household of a replayed
trajectory, as an action space, a state vector and an action mask a policy can learn and act in.

The generated household's low level (rgvlm_core/sim/low) keeps a small catalogue (29 object classes, one
receptacle per class): 38% of ALFRED's real trajectories use a class it lacks (a pencil, a garbage can,
a mug as a receptacle). The ALFRED level speaks ALFRED's classes instead (`thor_facts`):

- Actions (`ACTION_TOKENS`, 132): the 5 moves and looks, then `Verb(Class)` for every class the verb
  applies to: pick up 61 classes (slices included: `PickupObject(AppleSliced)`, as the importer writes
  ALFRED's steps), put in 36 receptacle classes, open and close 7, switch on and off 5, slice 6. An
  action names a class, as ALFRED's interaction mask points at one object in view: it acts on the nearest
  instance of that class in reach for which it is possible (`act`).
- State vector (`STATE_DIM`): heading and camera horizon (one-hot), the held class (one-hot), then per
  object class: how many are in the scene and in reach, where the nearest one is (ahead, to the right,
  metres / 4, clipped to [-2, 2]), and how many are hot, cold, clean, sliced; per fixed class (furniture,
  appliances, switches): whether the scene has one, whether one is in reach, the walk to the nearest
  point from which one is in reach (grid steps / 20, capped at 2), where the nearest is, whether it is
  open and switched on, and how many objects are in it. Every entry lies in [-2, 2].
- Mask (`valid_mask`): the actions `act` would accept.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass

import numpy as np

from rgvlm_core.alfred.replay_scene import ReplayScene, class_of
from rgvlm_core.alfred.thor_facts import ACTION_OBJECTS, OPENABLE, RECEPTACLE_OBJECTS, TOGGLEABLE
from rgvlm_core.alfred.world import (
    HALF_SIZE,
    HALF_VIEW,
    HORIZON_LIMITS,
    INTERACTIONS,
    OBJECT_HALF_SIZE,
    REACH,
    World,
    step,
)
from rgvlm_core.episodes import ALFRED_NAVIGATION
from rgvlm_core.sim.low.floorplan import GRID, HEADINGS, HORIZONS, STEP

PICKUPABLE: tuple[str, ...] = tuple(sorted(set().union(*RECEPTACLE_OBJECTS.values())))
RECEPTACLE_CLASSES: tuple[str, ...] = tuple(sorted(RECEPTACLE_OBJECTS))
FIXED: tuple[str, ...] = tuple(sorted((set(RECEPTACLE_OBJECTS) | TOGGLEABLE) - set(PICKUPABLE)))
_VERB_CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("PickupObject", PICKUPABLE),
    ("PutObject", RECEPTACLE_CLASSES),
    ("OpenObject", tuple(sorted(OPENABLE))),
    ("CloseObject", tuple(sorted(OPENABLE))),
    ("ToggleObjectOn", tuple(sorted(TOGGLEABLE))),
    ("ToggleObjectOff", tuple(sorted(TOGGLEABLE))),
    ("SliceObject", tuple(sorted(ACTION_OBJECTS["Sliceable"]))),
)
ACTIONS: tuple[tuple[str, str], ...] = tuple((n, "") for n in ALFRED_NAVIGATION) + tuple(
    (verb, cls) for verb, classes in _VERB_CLASSES for cls in classes
)
ACTION_TOKENS: tuple[str, ...] = tuple(f"{v}({c})" if c else v for v, c in ACTIONS)
ACTION_INDEX: dict[str, int] = {t: i for i, t in enumerate(ACTION_TOKENS)}
N_NAV = len(ALFRED_NAVIGATION)
_NAV_API = {"MoveAhead_25": "MoveAhead", "RotateLeft_90": "RotateLeft", "RotateRight_90": "RotateRight"}
_NAV_API |= {"LookUp_15": "LookUp", "LookDown_15": "LookDown"}

STEPS_SCALE, METRES_SCALE, CAP = 20.0, 4.0, 2.0
PER_OBJECT = 8  # count, in reach, ahead, right, hot, cold, clean, sliced
PER_FIXED = 8  # exists, in reach, walk, ahead, right, open, on, holds
_POSE = len(HEADINGS) + len(HORIZONS)
_HELD = _POSE
_OBJECTS = _HELD + len(PICKUPABLE) + 1
_FIXED = _OBJECTS + PER_OBJECT * len(PICKUPABLE)
STATE_DIM = _FIXED + PER_FIXED * len(FIXED)
_OBJ = {c: i for i, c in enumerate(PICKUPABLE)}
_FIX = {c: i for i, c in enumerate(FIXED)}


# -- what the agent can reach --------------------------------------------------------------------------
@dataclass(frozen=True)
class View:
    """Every thing of the world with its distance from the agent, bearing-relative coordinates and
    whether it is in reach (the replay's reach rule, for all things at once)."""

    ids: list[str]
    distance: np.ndarray
    ahead: np.ndarray
    right: np.ndarray
    reach: np.ndarray


def view(w: World) -> View:
    ids = list(w.things)
    pos = np.array([w.position(i) for i in ids], float).reshape(len(ids), 3)
    half = np.array([HALF_SIZE.get(w.things[i].cls, OBJECT_HALF_SIZE) for i in ids], float)
    ax, az = w.pose[0] * GRID, w.pose[1] * GRID
    dx, dz = pos[:, 0] - ax, pos[:, 2] - az
    fx, fz = STEP[w.pose[2]]
    ahead, right = dx * fx + dz * fz, dx * fz - dz * fx
    distance = np.hypot(dx, dz)
    bearing = np.degrees(np.abs(np.arctan2(right, ahead)))
    with np.errstate(divide="ignore", invalid="ignore"):
        widening = np.degrees(np.arcsin(np.minimum(1.0, np.where(distance > 0, half / distance, 1.0))))
    reach = (distance - half <= REACH) & (bearing <= HALF_VIEW + widening)
    at_pose = np.array([w.things[i].pose == w.pose for i in ids], bool)
    held = np.array([i == w.held for i in ids], bool)
    return View(ids, distance, ahead, right, (reach | at_pose) & ~held)


def enabled(w: World, v: View | None = None) -> dict[str, list[str]]:
    """Each interaction token the agent can do now, with the instances it would act on, nearest first."""
    v = v or view(w)
    out: dict[str, list[str]] = {}
    for k in np.argsort(v.distance, kind="stable"):
        if not v.reach[k]:
            continue
        target = v.ids[k]
        cls = class_of(target)
        for verb, (check, _) in INTERACTIONS.items():
            token = f"{verb}({cls})"
            if token in ACTION_INDEX and check(w, target) is None:
                out.setdefault(token, []).append(target)
    return out


def valid_mask(w: World, v: View | None = None) -> np.ndarray:
    """A boolean array over ACTION_TOKENS: True where `act` would accept the action (`v`: the world's
    view when already computed)."""
    mask = np.zeros(len(ACTION_TOKENS), bool)
    dx, dz = STEP[w.pose[2]]
    mask[0] = (w.pose[0] + dx, w.pose[1] + dz) in w.scene.cells
    mask[1:3] = True
    mask[3] = w.pose[3] - 15 >= HORIZON_LIMITS[0]
    mask[4] = w.pose[3] + 15 <= HORIZON_LIMITS[1]
    for token in enabled(w, v):
        mask[ACTION_INDEX[token]] = True
    return mask


def act(w: World, action: int) -> str | None:
    """Do action `action` (an index into ACTION_TOKENS) on the nearest instance it can act on; None when
    done, else why not (the world unchanged)."""
    verb, cls = ACTIONS[action]
    if not cls:
        return step(w, {"action": _NAV_API[verb]})
    targets = enabled(w).get(ACTION_TOKENS[action])
    if not targets:
        return f"no {cls} in reach that {verb} can act on"
    api = {"action": verb, "objectId": targets[0]}
    if verb == "PutObject":
        api = {"action": verb, "objectId": str(w.held), "receptacleObjectId": targets[0]}
    return step(w, api)


def token_of(api: dict[str, object]) -> str:
    """The ALFRED-level token of a recorded `api_action` (KeyError when it is not in the space)."""
    name = str(api.get("action"))
    for token, api_name in _NAV_API.items():
        if api_name == name:
            return token
    key = "receptacleObjectId" if name == "PutObject" else "objectId"
    token = f"{name}({class_of(str(api.get(key)))})"
    if token not in ACTION_INDEX:
        raise KeyError(f"{token} is not an ALFRED-level action")
    return token


# -- the state vector --------------------------------------------------------------------------------
def encode(w: World, v: View | None = None) -> np.ndarray:
    """The state vector (float32, length STATE_DIM)."""
    out = np.zeros(STATE_DIM, np.float32)
    out[HEADINGS.index(w.pose[2])] = 1.0
    out[len(HEADINGS) + HORIZONS.index(w.pose[3])] = 1.0
    held = class_of(w.held) if w.held else None
    out[_HELD + (_OBJ[held] if held in _OBJ else len(PICKUPABLE))] = 1.0
    v = v or view(w)
    walk = _walks(w.scene)
    cell = (w.pose[0], w.pose[1])
    nearest: dict[str, int] = {}
    for k in np.argsort(v.distance, kind="stable"):
        nearest.setdefault(class_of(v.ids[k]), int(k))
    for k, object_id in enumerate(v.ids):
        cls = class_of(object_id)
        if cls in _OBJ:
            base = _OBJECTS + PER_OBJECT * _OBJ[cls]
            if object_id != w.held:
                out[base] += 1.0
                out[base + 1] += float(v.reach[k])
            out[base + 4] += float(object_id in w.changed["hot"])
            out[base + 5] += float(object_id in w.changed["cold"])
            out[base + 6] += float(object_id in w.changed["clean"])
            out[base + 7] += float(object_id in w.sliced)
        elif cls in _FIX:
            base = _FIXED + PER_FIXED * _FIX[cls]
            out[base] = 1.0
            out[base + 1] = max(out[base + 1], float(v.reach[k]))
    contents: dict[str, int] = {}
    for parent in w.parent.values():
        contents[parent] = contents.get(parent, 0) + 1
    for cls, k in nearest.items():
        ahead = np.clip(v.ahead[k] / METRES_SCALE, -CAP, CAP)
        right = np.clip(v.right[k] / METRES_SCALE, -CAP, CAP)
        if cls in _OBJ:
            base = _OBJECTS + PER_OBJECT * _OBJ[cls]
            if v.ids[k] != w.held:
                out[base + 2], out[base + 3] = ahead, right
        elif cls in _FIX:
            base = _FIXED + PER_FIXED * _FIX[cls]
            steps = walk.get(cls, {}).get(cell)
            out[base + 2] = CAP if steps is None else min(steps / STEPS_SCALE, CAP)
            out[base + 3], out[base + 4] = ahead, right
            out[base + 5] = float(v.ids[k] in w.opened)
            out[base + 6] = float(v.ids[k] in w.on)
            out[base + 7] = contents.get(v.ids[k], 0)
    np.clip(out, -CAP, CAP, out=out)
    return out


_WALKS: OrderedDict[int, tuple[ReplayScene, dict[str, dict[tuple[int, int], int]]]] = OrderedDict()
_WALKS_MAX = 256  # scenes met by one process: bounded, as every trajectory has its own


def _walks(scene: ReplayScene) -> dict[str, dict[tuple[int, int], int]]:
    """The scene's walk fields, computed once per scene object (kept alive with its entry)."""
    hit = _WALKS.get(id(scene))
    if hit is not None and hit[0] is scene:
        _WALKS.move_to_end(id(scene))
        return hit[1]
    walks = _compute_walks(scene)
    _WALKS[id(scene)] = (scene, walks)
    while len(_WALKS) > _WALKS_MAX:
        _WALKS.popitem(last=False)
    return walks


def _compute_walks(scene: ReplayScene) -> dict[str, dict[tuple[int, int], int]]:
    """Per fixed class: grid steps from every floor point to the nearest point from which one of the
    class is within reach (breadth-first over the floor, turns not counted)."""
    out: dict[str, dict[tuple[int, int], int]] = {}
    by_class: dict[str, list[tuple[float, float, float]]] = {}
    for t in scene.things.values():
        if t.cls in _FIX:
            by_class.setdefault(t.cls, []).append(
                (t.position[0], t.position[2], HALF_SIZE.get(t.cls, OBJECT_HALF_SIZE))
            )
    for cls, spots in by_class.items():
        goals = [
            c
            for c in scene.cells
            if any(math.hypot(x - c[0] * GRID, z - c[1] * GRID) - h <= REACH for x, z, h in spots)
        ]
        dist = {c: 0 for c in goals}
        todo = deque(goals)
        while todo:
            c = todo.popleft()
            for dx, dz in STEP.values():
                nb = (c[0] + dx, c[1] + dz)
                if nb in scene.cells and nb not in dist:
                    dist[nb] = dist[c] + 1
                    todo.append(nb)
        out[cls] = dist
    return out
