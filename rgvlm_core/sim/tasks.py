"""Tasks: ALFRED's seven task types as chains of subtasks, their completion tests, and sampling.

A task of N subtasks is the first N subtasks of a task type's chain (its sliced variant when it
needs more): ALFRED's chains run from 2 to 7 subtasks, so every length from 1 to 6 exists.
Completion is checked in order on the state alone; a Put counts only objects the agent moved, so a
task is never done before the agent acts, whatever the initial placement.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    MOVABLE,
    ROOM_KINDS,
    SLICEABLE,
    fits,
)
from rgvlm_core.sim.language import (
    GOAL_PHRASES,
    PREFIX_GOAL,
    SUBTASK_PHRASES,
    Phrasing,
    article,
    name,
    phrasings,
    plural,
)
from rgvlm_core.sim.world import HELD, State

TASK_TYPES: tuple[str, ...] = tuple(GOAL_PHRASES)
MAX_SUBTASKS = 6


@dataclass(frozen=True)
class SubtaskSpec:
    """One subtask: `kind` on object class `obj`; for Put, into `target`, counting moved objects."""

    kind: str
    obj: str
    target: str | None = None
    count: int = 1
    flags: tuple[str, ...] = ()  # states the object must have (hot, cold, clean, sliced)
    content: str | None = None  # for a Put or Pickup of a movable receptacle: what it must hold


@dataclass(frozen=True)
class Task:
    """A task: type, room, subtasks with instructions, a goal sentence, and ALFRED-style parameters."""

    task_type: str
    room: str
    subtasks: tuple[SubtaskSpec, ...]
    instructions: tuple[str, ...]
    goal: str
    params: dict[str, object] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.subtasks)


def is_done(state: State, sub: SubtaskSpec) -> bool:
    """Whether the state satisfies the subtask (checked only once earlier subtasks are done)."""
    objs = state.objects
    if sub.kind == "Pickup":
        if state.held is None:
            return False
        held = objs[state.held]
        return held.cls == sub.obj and held.has(sub.flags) and _holds(state, state.held, sub.content)
    if sub.kind == "Put":
        n = sum(
            1
            for i, o in enumerate(objs)
            if o.cls == sub.obj
            and o.moved
            and o.has(sub.flags)
            and _in(state, i, sub.target)
            and _holds(state, i, sub.content)
        )
        return n >= sub.count
    if sub.kind == "Toggle":
        return sub.obj in state.lit
    flag = {"Heat": "hot", "Cool": "cold", "Clean": "clean", "Slice": "sliced"}[sub.kind]
    return any(o.cls == sub.obj and getattr(o, flag) for o in objs)


def _in(state: State, i: int, target: str | None) -> bool:
    obj = state.objects[i]
    if target in MOVABLE:
        return obj.inside >= 0 and state.objects[obj.inside].cls == target and state.where(i) != HELD
    return obj.inside < 0 and obj.loc == target


def _holds(state: State, container: int, content: str | None) -> bool:
    return content is None or any(state.objects[i].cls == content for i in state.contents(container))


def progress(state: State, task: Task, done: int) -> int:
    """Subtasks completed after this state, given `done` were completed before (in order)."""
    while done < len(task.subtasks) and is_done(state, task.subtasks[done]):
        done += 1
    return done


# -- chains ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Binding:
    """The classes a chain is built from: object, receptacle, movable receptacle, lamp, knife."""

    o: str
    r: str
    m: str | None = None
    lamp: str | None = None
    knife: str | None = None
    knife_to: str | None = None


def chain(task_type: str, sliced: bool, b: Binding) -> list[SubtaskSpec]:
    """The full subtask chain of a task type for a binding (ALFRED's subgoal order)."""
    s: tuple[str, ...] = ("sliced",) if sliced else ()
    head: list[SubtaskSpec] = []
    if sliced:
        assert b.knife and b.knife_to
        head = [
            SubtaskSpec("Pickup", b.knife),
            SubtaskSpec("Slice", b.o),
            SubtaskSpec("Put", b.knife, b.knife_to),
        ]
    pickup = SubtaskSpec("Pickup", b.o, flags=s)
    if task_type == "pick_and_place_simple":
        return [*head, pickup, SubtaskSpec("Put", b.o, b.r, flags=s)]
    if task_type == "pick_two_obj_and_place":
        return [pickup, SubtaskSpec("Put", b.o, b.r), pickup, SubtaskSpec("Put", b.o, b.r, count=2)]
    if task_type == "look_at_obj_in_light":
        assert b.lamp
        return [pickup, SubtaskSpec("Toggle", b.lamp)]
    if task_type == "pick_and_place_with_movable_recep":
        assert b.m
        return [
            *head,
            pickup,
            SubtaskSpec("Put", b.o, b.m, flags=s),
            SubtaskSpec("Pickup", b.m, content=b.o),
            SubtaskSpec("Put", b.m, b.r, content=b.o),
        ]
    kind, flag = {
        "pick_clean_then_place_in_recep": ("Clean", "clean"),
        "pick_heat_then_place_in_recep": ("Heat", "hot"),
        "pick_cool_then_place_in_recep": ("Cool", "cold"),
    }[task_type]
    return [*head, pickup, SubtaskSpec(kind, b.o), SubtaskSpec("Put", b.o, b.r, flags=(*s, flag))]


_ABLE = {
    "pick_clean_then_place_in_recep": (CLEANABLE, CLEAN_AT),
    "pick_heat_then_place_in_recep": (HEATABLE, HEAT_AT),
    "pick_cool_then_place_in_recep": (COOLABLE, COOL_AT),
}
_SLICEABLE_TYPES = frozenset({"pick_and_place_simple", "pick_and_place_with_movable_recep", *_ABLE})


def chain_lengths(task_type: str) -> tuple[int, ...]:
    """Lengths of a type's chains: (plain,) or (plain, sliced)."""
    plain = {"pick_two_obj_and_place": 4, "look_at_obj_in_light": 2, "pick_and_place_with_movable_recep": 4}
    n = plain.get(task_type, 2 if task_type == "pick_and_place_simple" else 3)
    return (n, n + 3) if task_type in _SLICEABLE_TYPES else (n,)


def room_locations(room: str) -> tuple[str, ...]:
    kind = ROOM_KINDS[room]
    return kind.required + kind.optional


def bindings(
    room: str,
    task_type: str,
    sliced: bool,
    *,
    locations: tuple[str, ...] | None = None,
    objects: tuple[str, ...] | None = None,
) -> list[Binding]:
    """Every binding of classes that makes the chain possible in a room of this kind (or, given
    `locations` and `objects`, in a room holding exactly those: a real floor plan)."""
    kind = ROOM_KINDS[room]
    objects = kind.objects if objects is None else objects
    locs = room_locations(room) if locations is None else locations
    out: list[Binding] = []
    lamps = [lamp for lamp in LAMPS if lamp in locs]
    knives: list[str | None] = [k for k in objects if k in KNIVES] if sliced else [None]
    for o in objects:
        if o in MOVABLE or o in KNIVES or (sliced and o not in SLICEABLE):
            continue
        able, station = _ABLE.get(task_type, (None, None))
        if able is not None and (o not in able or station not in locs):
            continue
        places = [r for r in locs if r not in LAMPS and r != station and fits(o, r)]
        for knife in knives:
            knife_to: list[str | None] = [r for r in locs if knife and fits(knife, r)] or [None]
            if task_type == "look_at_obj_in_light":
                out += [Binding(o, "", lamp=lamp, knife=knife, knife_to=knife_to[0]) for lamp in lamps]
            elif task_type == "pick_and_place_with_movable_recep":
                for m in (m for m in objects if m in MOVABLE and fits(o, m)):
                    out += [
                        Binding(o, r, m, None, knife, knife_to[0])
                        for r in locs
                        if r not in LAMPS and fits(m, r)
                    ]
            else:
                out += [Binding(o, r, None, None, knife, knife_to[0]) for r in places]
    return out


def instruction_variants(sub: SubtaskSpec, phrasing: Phrasing) -> list[str]:
    """Every instruction the seen (or held-out) phrasings give for this subtask."""
    obj = name(sub.obj, "sliced" in sub.flags)
    if sub.content:
        obj = f"{name(sub.obj)} with the {name(sub.content)}"
    return [
        t.format(o=obj, r=name(sub.target or sub.obj)) for t in phrasings(SUBTASK_PHRASES[sub.kind], phrasing)
    ]


def instruction(sub: SubtaskSpec, phrasing: Phrasing, rng: np.random.Generator) -> str:
    options = instruction_variants(sub, phrasing)
    return options[int(rng.integers(len(options)))]


def goal_variants(
    task_type: str, b: Binding, texts: list[str], full: bool, sliced: bool, phrasing: Phrasing
) -> list[str]:
    """Every goal sentence the phrasings give: the type's own for a whole chain, else its steps in order."""
    if full:
        o = name(b.o, sliced)
        fields = {
            "o": o,
            "a_o": article(o),
            "os": plural(o),
            "r": name(b.lamp or b.r),
            "a_m": article(name(b.m or "")),
        }
        return [t.format(**fields) for t in phrasings(GOAL_PHRASES[task_type], phrasing)]
    steps = ", then ".join(t.rstrip(".")[0].lower() + t.rstrip(".")[1:] for t in texts)
    out = [t.format(steps=steps) for t in phrasings(PREFIX_GOAL, phrasing)]
    return [text[0].upper() + text[1:] for text in out]


def goal(
    task_type: str,
    b: Binding,
    texts: list[str],
    full: bool,
    sliced: bool,
    phrasing: Phrasing,
    rng: np.random.Generator,
) -> str:
    options = goal_variants(task_type, b, texts, full, sliced, phrasing)
    return options[int(rng.integers(len(options)))]


def paraphrase(task: Task, phrasing: Phrasing, rng: np.random.Generator) -> tuple[str, tuple[str, ...]]:
    """Another annotation of the same task: a goal and instructions drawn again from the phrasings."""
    p = task.params
    b = Binding(
        str(p["object_target"]),
        str(p["parent_target"]),
        str(p["mrecep_target"]) or None,
        str(p["toggle_target"]) or None,
    )
    sliced = bool(p["object_sliced"])
    texts = [instruction(sub, phrasing, rng) for sub in task.subtasks]
    full = len(task.subtasks) == chain_lengths(task.task_type)[int(sliced)]
    return goal(task.task_type, b, texts, full, sliced, phrasing, rng), tuple(texts)
