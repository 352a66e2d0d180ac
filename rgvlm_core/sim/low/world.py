"""World rules of the low-level household: ALFRED's low-level actions on a floor plan. Pure Python.

A low-level state is the symbolic state of the subgoal level (objects, what is held, open, switched on)
plus the agent's pose on a floor plan. The symbolic state's `agent` is the receptacle in front of the
agent, so every interaction follows the subgoal level's rules exactly, where the agent stands.

The rule for interactions: an interaction's target is in reach and in front when the agent stands at
the receptacle's pose: its grid point, facing its way, with the camera at its horizon (ALFRED's own
interaction pose where the layouts give one). Objects are reached through the receptacle they are in.

Heating, cooling and cleaning are ALFRED's primitive sequences, and these world rules decide when an
object has changed:
- hot: it is in the microwave when the microwave is switched on (the microwave must be closed to switch
  on, and switched off to open);
- cold: it is in the fridge when the fridge is closed;
- clean: it is in the sink basin when the faucet is switched on.
The heat, cool and clean subtasks of the low level are done once the agent holds the changed object
(ALFRED's subgoal ends with the pickup); the others are checked as at the subgoal level.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from rgvlm_core.sim.catalog import (
    CLEANABLE,
    COOLABLE,
    HEATABLE,
    LAMPS,
    MOVABLE,
    OBJECTS,
    OPENABLE,
    RECEPTACLES,
    SLICEABLE,
)
from rgvlm_core.sim.low.floorplan import FloorPlan, Pose
from rgvlm_core.sim.low.nav import N_NAV, NAV_ACTIONS, navigator
from rgvlm_core.sim.tasks import SubtaskSpec, Task, is_done
from rgvlm_core.sim.world import ACTION_INDEX as HIGH_INDEX
from rgvlm_core.sim.world import State
from rgvlm_core.sim.world import apply as high_apply
from rgvlm_core.sim.world import valid_mask as high_valid_mask

FAUCET = "Faucet"  # switched on and off at the sink basin
TOGGLEABLE: tuple[str, ...] = (*LAMPS, "Microwave", FAUCET)
_SWITCH_AT = {FAUCET: "SinkBasin"}  # where a toggle target is used, when that is not the target itself


def _build_actions() -> tuple[tuple[str, str], ...]:
    verbs: list[tuple[str, tuple[str, ...]]] = [
        ("PickupObject", OBJECTS),
        ("PutObject", RECEPTACLES + MOVABLE),
        ("OpenObject", OPENABLE),
        ("CloseObject", OPENABLE),
        ("ToggleObjectOn", TOGGLEABLE),
        ("ToggleObjectOff", TOGGLEABLE),
        ("SliceObject", tuple(o for o in OBJECTS if o in SLICEABLE)),
    ]
    return tuple((nav, "") for nav in NAV_ACTIONS) + tuple((v, a) for v, args in verbs for a in args)


ACTIONS: tuple[tuple[str, str], ...] = _build_actions()
ACTION_TOKENS: tuple[str, ...] = tuple(f"{v}({a})" if a else v for v, a in ACTIONS)
ACTION_INDEX: dict[str, int] = {t: i for i, t in enumerate(ACTION_TOKENS)}
N_ACTIONS = len(ACTIONS)
# low actions that are the subgoal level's own (same token, same rule where the agent stands)
_SHARED = {i: HIGH_INDEX[t] for i, t in enumerate(ACTION_TOKENS) if t in HIGH_INDEX}
_LOW_OF_HIGH = np.full(max(HIGH_INDEX.values()) + 1, -1, dtype=np.int64)
for _low, _high in _SHARED.items():
    _LOW_OF_HIGH[_high] = _low


def action_index(token: str) -> int:
    """Index of a low-level action token; raises KeyError naming the token when it is not in the space."""
    try:
        return ACTION_INDEX[token]
    except KeyError:
        raise KeyError(f"unknown low-level action {token!r}") from None


@dataclass(frozen=True)
class LowState:
    """The symbolic state (its `agent`: the receptacle in front, or None) and the pose on `plan`."""

    plan: FloorPlan
    world: State
    pose: Pose


def start(plan: FloorPlan, world: State, pose: Pose | None = None) -> LowState:
    """A low-level state on `plan` at `pose` (the plan's start by default) with `world`'s objects."""
    pose = plan.start if pose is None else pose
    return LowState(plan, replace(world, agent=plan.front(pose)), pose)


def apply(s: LowState, action: int) -> tuple[LowState, str | None]:
    """Do `action`: (new state, None), or (the same state, why the action is invalid)."""
    if action < N_NAV:
        pose = navigator(s.plan).move(s.pose, action)
        if pose is None:
            return s, _blocked(action)
        front = s.plan.front(pose)
        world = s.world if front == s.world.agent else replace(s.world, agent=front)
        return LowState(s.plan, world, pose), None
    verb, arg = ACTIONS[action]
    w = s.world
    if w.agent is None:
        return s, "nothing in reach in front of the agent"
    if verb in ("ToggleObjectOn", "ToggleObjectOff"):
        result = _toggle(w, arg, verb == "ToggleObjectOn")
    elif verb == "OpenObject" and arg == "Microwave" and "Microwave" in w.lit:
        result = "switch the microwave off before opening it"
    else:
        new, err = high_apply(w, _SHARED[action])
        result = err if err is not None else new
        if err is None and verb == "CloseObject" and arg == "Fridge":
            result = _change(new, "Fridge", COOLABLE, "cold")
    return (s, result) if isinstance(result, str) else (LowState(s.plan, result, s.pose), None)


def _blocked(action: int) -> str:
    return {
        0: "blocked: no reachable point ahead",
        3: "cannot look further up",
        4: "cannot look further down",
    }.get(action, "cannot turn")


def _toggle(w: State, target: str, on: bool) -> State | str:
    place = _SWITCH_AT.get(target, target)
    if w.agent != place:
        return f"the {target} is not in reach in front of the agent"
    if (target in w.lit) == on:
        return f"the {target} is already {'on' if on else 'off'}"
    if on and target == "Microwave" and "Microwave" in w.opened:
        return "close the microwave before switching it on"
    w = replace(w, lit=w.lit | {target} if on else w.lit - {target})
    if on and target == "Microwave":
        return _change(w, "Microwave", HEATABLE, "hot")
    if on and target == FAUCET:
        return _change(w, "SinkBasin", CLEANABLE, "clean")
    return w


def _change(w: State, place: str, able: frozenset[str], flag: str) -> State:
    """Every object of a class that can take `flag` and is in `place` (following containers) takes it."""
    objs = list(w.objects)
    for i, obj in enumerate(objs):
        if obj.cls in able and w.where(i) == place and not getattr(obj, flag):
            changes: dict[str, bool] = {flag: True}
            if flag in ("hot", "cold"):
                changes["cold" if flag == "hot" else "hot"] = False
            objs[i] = replace(obj, **changes)  # type: ignore[arg-type]
    return replace(w, objects=tuple(objs))


def valid_mask(s: LowState) -> np.ndarray:
    """A boolean array over ACTIONS: True where `apply` would accept the action."""
    mask = np.zeros(N_ACTIONS, dtype=bool)
    nav = navigator(s.plan)
    mask[:N_NAV] = nav.can_move[nav.index(s.pose)]
    w = s.world
    if w.agent is None:
        return mask
    high = np.flatnonzero(high_valid_mask(w))
    low = _LOW_OF_HIGH[high]
    mask[low[low >= 0]] = True
    if w.agent == "Microwave" and "Microwave" in w.lit:
        mask[ACTION_INDEX["OpenObject(Microwave)"]] = False
    for target in TOGGLEABLE:
        if _SWITCH_AT.get(target, target) != w.agent:
            continue
        on = target in w.lit
        if on:
            mask[ACTION_INDEX[f"ToggleObjectOff({target})"]] = True
        elif not (target == "Microwave" and "Microwave" in w.opened):
            mask[ACTION_INDEX[f"ToggleObjectOn({target})"]] = True
    return mask


# -- completion ------------------------------------------------------------------------------------
_FLAG_OF = {"Heat": "hot", "Cool": "cold", "Clean": "clean"}


def subtask_done(w: State, sub: SubtaskSpec) -> bool:
    """Whether the symbolic state satisfies a subtask at the low level (heat, cool and clean need the
    changed object in hand; the rest as at the subgoal level)."""
    flag = _FLAG_OF.get(sub.kind)
    if flag is None:
        return is_done(w, sub)
    if w.held is None:
        return False
    held = w.objects[w.held]
    return held.cls == sub.obj and bool(getattr(held, flag))


def progress(w: State, task: Task, done: int) -> int:
    """Subtasks completed after this state, given `done` were completed before (in order)."""
    while done < len(task.subtasks) and subtask_done(w, task.subtasks[done]):
        done += 1
    return done
