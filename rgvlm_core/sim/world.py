"""World rules of the household: state, the action space, and what each action does. Pure Python.

The state is immutable; `apply` returns a new state or the reason an action is invalid (the state is
then unchanged). `valid_mask` says which actions `apply` accepts, computed from the state directly
rather than by trying all of them, because the mask is needed on every step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from rgvlm_core.sim.catalog import (
    CLEAN_AT,
    CLEANABLE,
    COOL_AT,
    COOLABLE,
    HEAT_AT,
    HEATABLE,
    KNIVES,
    LAMPS,
    LOCATIONS,
    MOVABLE,
    OBJECTS,
    OPENABLE,
    RECEPTACLES,
    SLICEABLE,
    fits,
)

HELD = "@agent"
FLAGS: tuple[str, ...] = ("hot", "cold", "clean", "sliced")


@dataclass(frozen=True)
class Obj:
    """One object: its class, where it is (a location class, HELD, or inside object `inside`)."""

    cls: str
    loc: str
    inside: int = -1  # index of the movable receptacle holding it, or -1
    hot: bool = False
    cold: bool = False
    clean: bool = False
    sliced: bool = False
    moved: bool = False  # picked up at least once this episode (a Put only counts moved objects)

    def has(self, flags: tuple[str, ...]) -> bool:
        return all(getattr(self, f) for f in flags)


@dataclass(frozen=True)
class State:
    """Everything the rules need. `locations` are in layout order (the renderer's slots)."""

    room: str
    locations: tuple[str, ...]
    objects: tuple[Obj, ...]
    agent: str | None = None  # the location the agent stands at; None = at the door
    held: int | None = None
    opened: frozenset[str] = frozenset()
    lit: frozenset[str] = frozenset()

    def where(self, i: int) -> str:
        """The location of object i, following containers (HELD when it or its container is held)."""
        obj = self.objects[i]
        while obj.inside >= 0:
            obj = self.objects[obj.inside]
        return obj.loc

    def accessible(self, location: str) -> bool:
        return location not in OPENABLE or location in self.opened

    def at_agent(self) -> list[int]:
        """Objects the agent can reach where it stands (closed containers hide their contents)."""
        if self.agent is None or not self.accessible(self.agent):
            return []
        return [i for i in range(len(self.objects)) if self.where(i) == self.agent]

    def contents(self, container: int) -> list[int]:
        return [i for i, o in enumerate(self.objects) if o.inside == container]


# -- the action space: fixed across rooms -----------------------------------------------------------
def _build_actions() -> tuple[tuple[str, str], ...]:
    verbs: list[tuple[str, tuple[str, ...]]] = [
        ("GotoLocation", LOCATIONS),
        ("PickupObject", OBJECTS),
        ("PutObject", RECEPTACLES + MOVABLE),
        ("OpenObject", OPENABLE),
        ("CloseObject", OPENABLE),
        ("ToggleObject", LAMPS),
        ("SliceObject", tuple(o for o in OBJECTS if o in SLICEABLE)),
        ("HeatObject", tuple(o for o in OBJECTS if o in HEATABLE)),
        ("CoolObject", tuple(o for o in OBJECTS if o in COOLABLE)),
        ("CleanObject", tuple(o for o in OBJECTS if o in CLEANABLE)),
    ]
    return tuple((verb, arg) for verb, args in verbs for arg in args)


ACTIONS: tuple[tuple[str, str], ...] = _build_actions()
ACTION_TOKENS: tuple[str, ...] = tuple(f"{verb}({arg})" for verb, arg in ACTIONS)
ACTION_INDEX: dict[str, int] = {token: i for i, token in enumerate(ACTION_TOKENS)}
N_ACTIONS = len(ACTIONS)
_INDEX_OF: dict[tuple[str, str], int] = {va: i for i, va in enumerate(ACTIONS)}
_STATION = {"HeatObject": (HEAT_AT, HEATABLE, "hot"), "CoolObject": (COOL_AT, COOLABLE, "cold")}
_STATION["CleanObject"] = (CLEAN_AT, CLEANABLE, "clean")


def action_index(token: str) -> int:
    """Index of an action token; raises KeyError naming the token when it is not in the space."""
    try:
        return ACTION_INDEX[token]
    except KeyError:
        raise KeyError(f"unknown action {token!r}") from None


# -- rules ----------------------------------------------------------------------------------------
def apply(state: State, action: int) -> tuple[State, str | None]:
    """Do `action`: (new state, None), or (the same state, why the action is invalid)."""
    verb, arg = ACTIONS[action]
    handler = _HANDLERS[verb]
    result = handler(state, arg)
    return (state, result) if isinstance(result, str) else (result, None)


def _goto(s: State, loc: str) -> State | str:
    if loc not in s.locations:
        return f"there is no {loc} in this room"
    if s.agent == loc:
        return f"already at the {loc}"
    return replace(s, agent=loc)


def pickup_choice(s: State, cls: str) -> int | None:
    """Which of the reachable objects of a class `PickupObject(cls)` takes.

    Of several, the agent takes one it has not placed yet, then one it has worked on (sliced,
    heated, cooled, cleaned) or that holds something, then the first: the choice a person makes
    when told "pick up the apple" next to a bowl of apples they just sliced one of.
    """
    best, best_key = None, None
    for i in s.at_agent():
        obj = s.objects[i]
        if obj.cls != cls:
            continue
        worked = obj.hot + obj.cold + obj.clean + obj.sliced + bool(s.contents(i))
        key = (obj.moved, -worked, i)
        if best_key is None or key < best_key:
            best, best_key = i, key
    return best


def _pickup(s: State, cls: str) -> State | str:
    if s.held is not None:
        return "hands are full"
    i = pickup_choice(s, cls)
    if i is None:
        return f"no reachable {cls} here"
    objs = list(s.objects)
    objs[i] = replace(objs[i], loc=HELD, inside=-1, moved=True)
    return replace(s, objects=tuple(objs), held=i)


def _put(s: State, target: str) -> State | str:
    if s.held is None:
        return "holding nothing"
    held = s.objects[s.held]
    if s.agent is None or not s.accessible(s.agent):
        return "no open receptacle here"
    objs = list(s.objects)
    if target in MOVABLE:
        if held.cls in MOVABLE:
            return "receptacles do not nest"
        if not fits(held.cls, target):
            return f"a {held.cls} does not fit in a {target}"
        for i in s.at_agent():
            if s.objects[i].cls == target and s.objects[i].inside < 0:
                objs[s.held] = replace(held, loc=s.agent, inside=i)
                return replace(s, objects=tuple(objs), held=None)
        return f"no {target} here"
    if s.agent != target:
        return f"not at the {target}"
    if not fits(held.cls, target):
        return f"a {held.cls} does not go in the {target}"
    objs[s.held] = replace(held, loc=target, inside=-1)
    return replace(s, objects=tuple(objs), held=None)


def _open(s: State, loc: str) -> State | str:
    if s.agent != loc:
        return f"not at the {loc}"
    if loc in s.opened:
        return f"the {loc} is already open"
    return replace(s, opened=s.opened | {loc})


def _close(s: State, loc: str) -> State | str:
    if s.agent != loc:
        return f"not at the {loc}"
    if loc not in s.opened:
        return f"the {loc} is already closed"
    return replace(s, opened=s.opened - {loc})


def _toggle(s: State, lamp: str) -> State | str:
    if s.agent != lamp:
        return f"not at the {lamp}"
    return replace(s, lit=s.lit ^ {lamp})


def _slice(s: State, cls: str) -> State | str:
    if s.held is None or s.objects[s.held].cls not in KNIVES:
        return "slicing needs a knife in hand"
    for i in s.at_agent():
        obj = s.objects[i]
        if obj.cls == cls and not obj.sliced:
            objs = list(s.objects)
            objs[i] = replace(obj, sliced=True)
            return replace(s, objects=tuple(objs))
    return f"no whole {cls} here"


def _station(verb: str) -> Callable[[State, str], State | str]:
    place, _, flag = _STATION[verb]

    def change(s: State, cls: str) -> State | str:
        if s.held is None or s.objects[s.held].cls != cls:
            return f"not holding a {cls}"
        if s.agent != place:
            return f"{verb} needs the {place}"
        obj = s.objects[s.held]
        if getattr(obj, flag):
            return f"the {cls} is already {flag}"
        if flag == "hot":
            obj = replace(obj, hot=True, cold=False)
        elif flag == "cold":
            obj = replace(obj, cold=True, hot=False)
        else:
            obj = replace(obj, clean=True)
        objs = list(s.objects)
        objs[s.held] = obj
        return replace(s, objects=tuple(objs))

    return change


_HANDLERS = {
    "GotoLocation": _goto,
    "PickupObject": _pickup,
    "PutObject": _put,
    "OpenObject": _open,
    "CloseObject": _close,
    "ToggleObject": _toggle,
    "SliceObject": _slice,
    "HeatObject": _station("HeatObject"),
    "CoolObject": _station("CoolObject"),
    "CleanObject": _station("CleanObject"),
}


def valid_mask(s: State) -> np.ndarray:
    """A boolean array over ACTIONS: True where `apply` would accept the action."""
    mask = np.zeros(N_ACTIONS, dtype=bool)
    for loc in s.locations:
        if loc != s.agent:
            mask[_INDEX_OF[("GotoLocation", loc)]] = True
    here = s.agent
    if here is None:
        return mask
    if here in OPENABLE:
        mask[_INDEX_OF[("CloseObject" if here in s.opened else "OpenObject", here)]] = True
    if here in LAMPS:
        mask[_INDEX_OF[("ToggleObject", here)]] = True
    reachable = s.at_agent()
    if s.held is None:
        for i in reachable:
            mask[_INDEX_OF[("PickupObject", s.objects[i].cls)]] = True
        return mask
    held = s.objects[s.held]
    if s.accessible(here):
        if here in RECEPTACLES and fits(held.cls, here):
            mask[_INDEX_OF[("PutObject", here)]] = True
        if held.cls not in MOVABLE:
            for i in reachable:
                box = s.objects[i]
                if box.cls in MOVABLE and box.inside < 0 and fits(held.cls, box.cls):
                    mask[_INDEX_OF[("PutObject", box.cls)]] = True
    if held.cls in KNIVES:
        for i in reachable:
            obj = s.objects[i]
            if obj.cls in SLICEABLE and not obj.sliced:
                mask[_INDEX_OF[("SliceObject", obj.cls)]] = True
    for verb, (place, able, flag) in _STATION.items():
        if here == place and held.cls in able and not getattr(held, flag):
            mask[_INDEX_OF[(verb, held.cls)]] = True
    return mask
