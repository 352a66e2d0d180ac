"""The rules of a replayed ALFRED household: what each of ALFRED's low-level actions needs and changes, at
the level of object instances (AI2-THOR ids), as AI2-THOR and ALFRED's environment apply them.

- moves: the point ahead must be floor (`replay_scene` says what the floor is); looks stay within
  -30..60 degrees.
- interactions: the target must exist and be in view within reach. AI2-THOR's rule is "visible within
  1.5 m of the camera". A thing here is a disc around its id's position, of its class's half size
  (`HALF_SIZE`: a counter top is long, a key chain is small), and the rule is: the disc comes within
  `REACH` metres horizontally and reaches into the 90-degree field of view (45 degrees either side of the
  heading); or the agent stands at the pose ALFRED's planner uses for that receptacle. The camera's pitch
  is not checked: a floor lamp's position is its base, far below the switch one looks at.
- pickup: hand empty, the object movable, not inside a closed receptacle; put: holding that object, the
  receptacle a receptacle and open when it opens. ALFRED's puts all set forceAction, under which AI2-THOR
  does not apply its class table (recorded trajectories put knives in fridges and garbage cans), so the
  table (`thor_facts.RECEPTACLE_OBJECTS`) decides only which classes are receptacles. Open/close: the
  class opens and it is closed/open (laptops and boxes start open, as in AI2-THOR); toggle: the class
  switches and it is off/on, a microwave only when closed; slice: holding a knife, the class sliceable.
- state changes as ALFRED's environment records them (env/thor_env.py): switching a microwave on heats what
  is in it, closing a fridge cools what is in it, turning a faucet on cleans what is in the sink basin
  nearest it; slicing makes `Type|x|y|z|TypeSliced_N` pieces appear where the object was.

Each interaction is a check (None when possible on that target, else why not) and an effect: `step` runs
both, the ALFRED level's action mask (alfred.level) runs only the checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rgvlm_core.alfred.replay_scene import Point, Pose, ReplayScene, Thing, class_of, nearest, position_of
from rgvlm_core.alfred.thor_facts import ACTION_OBJECTS, KNIVES, OPENABLE, RECEPTACLE_OBJECTS, TOGGLEABLE
from rgvlm_core.sim.low.floorplan import GRID, STEP

REACH = 1.5  # metres: ALFRED's VISIBILITY_DISTANCE
HALF_VIEW = 45.0  # degrees either side of the heading: AI2-THOR's 90-degree field of view
HORIZON_LIMITS = (-30, 60)
# half the length of a thing, metres, for the reach rule: the long furniture ALFRED puts things on, then
# cabinets and the like; an object of any other class is a 0.1 m disc
HALF_SIZE = {
    "CounterTop": 2.0,
    "DiningTable": 1.0,
    "Bed": 1.0,
    "Sofa": 1.0,
    "Desk": 0.75,
    "Dresser": 0.75,
    "TVStand": 0.75,
    "Shelf": 0.5,
    "CoffeeTable": 0.5,
    "BathtubBasin": 0.6,
    "ArmChair": 0.4,
    "Fridge": 0.4,
    "Cabinet": 0.3,
    "Drawer": 0.3,
    "SideTable": 0.3,
    "Microwave": 0.3,
    "SinkBasin": 0.3,
    "Safe": 0.3,
}
OBJECT_HALF_SIZE = 0.1
# pieces AI2-THOR makes of a sliced object (ALFRED's trajectories pick up to TomatoSliced_6, LettuceSliced_7)
SLICES = {"Apple": 8, "Bread": 10, "Lettuce": 8, "Potato": 8, "Tomato": 7}
STARTS_OPEN = frozenset({"Laptop", "Box"})  # AI2-THOR sets them up open; ALFRED never opens a box
CHANGES = {"HeatObject": "hot", "CoolObject": "cold", "CleanObject": "clean"}


@dataclass
class World:
    """The mutable state of a replay: agent pose, what is held, where things are, their switches."""

    scene: ReplayScene
    pose: Pose
    held: str | None = None
    parent: dict[str, str] = field(default_factory=dict)  # object id -> receptacle id it was put in
    opened: set[str] = field(default_factory=set)
    on: set[str] = field(default_factory=set)
    sliced: set[str] = field(default_factory=set)
    changed: dict[str, set[str]] = field(
        default_factory=lambda: {"hot": set(), "cold": set(), "clean": set()}
    )
    things: dict[str, Thing] = field(default_factory=dict)
    last_target: str | None = None  # the instance the last valid interaction acted on

    def position(self, object_id: str) -> Point:
        """Where an object is now: in the hand, in what it was put in (recursively), or where it started."""
        seen: set[str] = set()
        while object_id not in seen:
            seen.add(object_id)
            if object_id == self.held:
                x, z = self.pose[0] * GRID, self.pose[1] * GRID
                return x, self.scene.camera_height, z
            if object_id in self.parent:
                object_id = self.parent[object_id]
                continue
            break
        return self.things[object_id].position

    def hidden(self, object_id: str) -> bool:
        """Inside a closed receptacle (at any depth)."""
        at = self.parent.get(object_id)
        while at is not None:
            if class_of(at) in OPENABLE and at not in self.opened:
                return True
            at = self.parent.get(at)
        return False


def new_world(scene: ReplayScene) -> World:
    on = {t.object_id for t in scene.things.values() if t.cls in scene.switched_on}
    opened = {t.object_id for t in scene.things.values() if t.cls in STARTS_OPEN}
    return World(scene, scene.start, on=on, opened=opened, things=dict(scene.things))


def resolve(w: World, object_id: str) -> str | None:
    """The id of the thing an action names: the id itself, a slice of a sliced object, a fixed object
    set up from its id, or a movable object whose rebuilt id differs in the last digit's rounding."""
    if object_id in w.things:
        return object_id
    cls = class_of(object_id)
    try:
        x, y, z = position_of(object_id)
    except ValueError:
        return None
    parts = object_id.split("|")
    if len(parts) > 4 and cls.endswith("Sliced"):
        whole = "|".join(parts[:4])
        if whole not in w.sliced:
            return None
        w.things[object_id] = Thing(object_id, cls, w.position(whole), movable=True)
        return object_id
    for t in w.things.values():
        if (
            t.cls == cls
            and t.movable
            and all(abs(a - b) <= 0.011 for a, b in zip(t.position, (x, y, z), strict=True))
        ):
            return t.object_id
    if any(t.cls == cls and t.movable for t in w.things.values()):
        return None  # a movable object ALFRED placed elsewhere: not in this scene
    w.things[object_id] = Thing(object_id, cls, (x, y, z))  # a fixed object, known by its id
    return object_id


def in_reach(w: World, object_id: str) -> str | None:
    """None when the agent can act on the object; otherwise why not."""
    thing = w.things[object_id]
    if thing.pose is not None and thing.pose == w.pose:
        return None
    x, _, z = w.position(object_id)
    ax, az = w.pose[0] * GRID, w.pose[1] * GRID
    distance = math.hypot(x - ax, z - az)
    bearing = (math.degrees(math.atan2(x - ax, z - az)) - w.pose[2] + 180.0) % 360.0 - 180.0
    half = HALF_SIZE.get(thing.cls, OBJECT_HALF_SIZE)
    if distance - half > REACH:
        return f"{distance:.2f} m away ({thing.cls}: reach {REACH} m + half size {half} m)"
    widening = math.degrees(math.asin(min(1.0, half / distance))) if distance > 0 else 180.0
    if abs(bearing) > HALF_VIEW + widening:
        return (
            f"{abs(bearing):.0f} degrees off the heading (field of view +-{HALF_VIEW:.0f}, "
            f"+{widening:.0f} for its half size {half} m)"
        )
    return None


def step(w: World, api: dict[str, Any]) -> str | None:
    """Apply one ALFRED `api_action`; None when valid, else why not (the world is then unchanged)."""
    action = api.get("action")
    if action == "MoveAhead":
        dx, dz = STEP[w.pose[2]]
        ahead = (w.pose[0] + dx, w.pose[1] + dz)
        if ahead not in w.scene.cells:
            return f"the point ahead ({ahead[0] * GRID:.2f}, {ahead[1] * GRID:.2f}) is not floor"
        w.pose = (*ahead, w.pose[2], w.pose[3])
        return None
    if action in ("RotateLeft", "RotateRight"):
        w.pose = (
            w.pose[0],
            w.pose[1],
            (w.pose[2] + (90 if action == "RotateRight" else -90)) % 360,
            w.pose[3],
        )
        return None
    if action in ("LookUp", "LookDown"):
        horizon = w.pose[3] + (15 if action == "LookDown" else -15)
        if not HORIZON_LIMITS[0] <= horizon <= HORIZON_LIMITS[1]:
            return f"the camera cannot tilt to {horizon} degrees"
        w.pose = (*w.pose[:3], horizon)
        return None
    if action not in INTERACTIONS:
        return f"unknown action {action!r}"
    named = api.get("receptacleObjectId") if action == "PutObject" else api.get("objectId")
    if not isinstance(named, str):
        return "no object id"
    target = resolve(w, named)
    if target is None:
        return f"{named} is not in the scene"
    if action == "PutObject" and w.held != resolve(w, str(api.get("objectId"))):
        return f"not holding {api.get('objectId')} (holding {w.held})"
    why = in_reach(w, target)
    if why is not None:
        return f"{target} is not in reach: {why}"
    check, effect = INTERACTIONS[action]
    why = check(w, target)
    if why is None:
        effect(w, target)
        w.last_target = target
    return why


def _can_pickup(w: World, target: str) -> str | None:
    if w.held is not None:
        return f"already holding {w.held}"
    if target in w.sliced:
        return "it is in slices (pick up a slice)"
    if not w.things[target].movable:
        return f"{class_of(target)} cannot be picked up"
    if w.hidden(target):
        return f"it is inside the closed {w.parent[target]}"
    return None


def _pickup(w: World, target: str) -> None:
    w.parent.pop(target, None)
    w.held = target


def _can_put(w: World, target: str) -> str | None:
    if w.held is None:
        return "not holding anything"
    cls, obj = class_of(target), class_of(w.held)
    if target == w.held or w.parent.get(target) == w.held:
        return f"{target} is in the hand"
    if cls not in RECEPTACLE_OBJECTS:
        return f"{cls} is not a receptacle (cannot take a {obj})"
    if cls in OPENABLE and target not in w.opened:
        return f"{target} is closed"
    return None


def _put(w: World, target: str) -> None:
    w.parent[str(w.held)] = target
    w.held = None


def _can_open(w: World, target: str) -> str | None:
    if class_of(target) not in OPENABLE:
        return f"{class_of(target)} does not open"
    return "it is open already" if target in w.opened else None


def _open(w: World, target: str) -> None:
    w.opened.add(target)


def _can_close(w: World, target: str) -> str | None:
    if class_of(target) not in OPENABLE:
        return f"{class_of(target)} does not open"
    return None if target in w.opened else "it is closed already"


def _close(w: World, target: str) -> None:
    w.opened.discard(target)
    if class_of(target) == "Fridge":
        w.changed["cold"] |= _inside(w, target)


def _can_toggle(w: World, target: str, on: bool) -> str | None:
    cls = class_of(target)
    if cls not in TOGGLEABLE:
        return f"{cls} does not switch on and off"
    if (target in w.on) == on:
        return f"it is {'on' if on else 'off'} already"
    if on and cls == "Microwave" and target in w.opened:
        return "the microwave is open"
    return None


def _toggle(w: World, target: str, on: bool) -> None:
    cls = class_of(target)
    (w.on.add if on else w.on.discard)(target)
    if on and cls == "Microwave":
        w.changed["hot"] |= _inside(w, target)
    if on and cls == "Faucet":
        basin = nearest(w.things.values(), "SinkBasin", w.things[target].position)
        if basin is not None:
            w.changed["clean"] |= _inside(w, basin.object_id)


def _can_slice(w: World, target: str) -> str | None:
    if w.held is None or class_of(w.held) not in KNIVES:
        return "not holding a knife"
    if class_of(target) not in ACTION_OBJECTS["Sliceable"]:
        return f"{class_of(target)} cannot be sliced"
    return "it is sliced already" if target in w.sliced else None


def _slice(w: World, target: str) -> None:
    """The whole becomes AI2-THOR's pieces (`Apple|x|y|z|AppleSliced_0..7`) where it lay."""
    w.sliced.add(target)
    cls = class_of(target)
    for i in range(SLICES.get(cls, 0)):
        piece = f"{target}|{cls}Sliced_{i}"
        w.things[piece] = Thing(piece, f"{cls}Sliced", w.position(target), movable=True)
        if target in w.parent:
            w.parent[piece] = w.parent[target]


def _inside(w: World, receptacle: str) -> set[str]:
    return {o for o, p in w.parent.items() if p == receptacle}


Check = Callable[[World, str], "str | None"]
Effect = Callable[[World, str], None]
INTERACTIONS: dict[str, tuple[Check, Effect]] = {
    "PickupObject": (_can_pickup, _pickup),
    "PutObject": (_can_put, _put),
    "OpenObject": (_can_open, _open),
    "CloseObject": (_can_close, _close),
    "ToggleObjectOn": (lambda w, t: _can_toggle(w, t, True), lambda w, t: _toggle(w, t, True)),
    "ToggleObjectOff": (lambda w, t: _can_toggle(w, t, False), lambda w, t: _toggle(w, t, False)),
    "SliceObject": (_can_slice, _slice),
}
