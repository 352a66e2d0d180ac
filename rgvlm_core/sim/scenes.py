"""Procedural scenes and task sampling: a room that makes a sampled task possible, from a seed.

`sample_task` draws a task of N subtasks and the room it happens in (default initial state: the agent
at the door, objects where the scene put them). `randomize` gives the randomised initial state of
the same scene: the agent somewhere else and the objects moved to other places they fit.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from rgvlm_core.sim.catalog import LAMPS, MAX_LOCATIONS, MOVABLE, ROOM_KINDS, fits
from rgvlm_core.sim.language import Phrasing
from rgvlm_core.sim.tasks import (
    TASK_TYPES,
    Binding,
    Task,
    bindings,
    chain,
    chain_lengths,
    goal,
    instruction,
    room_locations,
)
from rgvlm_core.sim.world import Obj, State

EXTRA_OBJECTS = (3, 7)  # objects beyond those the task needs
IN_CONTAINER_P = 0.3


def sample_task(
    rng: np.random.Generator,
    n_subtasks: int,
    *,
    phrasing: Phrasing = "seen",
    room: str | None = None,
    task_type: str | None = None,
) -> tuple[Task, State]:
    """A task of exactly `n_subtasks` subtasks and its scene in the default initial state."""
    options = [
        (r, t, sliced)
        for r in ROOM_KINDS
        for t in TASK_TYPES
        for sliced, length in zip((False, True), chain_lengths(t), strict=False)
        if length >= n_subtasks
        and (room in (None, r))
        and (task_type in (None, t))
        and _bindings(r, t, sliced)
    ]
    if not options:
        raise ValueError(f"no task of {n_subtasks} subtasks for room={room!r}, task_type={task_type!r}")
    types = sorted({t for _, t, _ in options}, key=TASK_TYPES.index)  # task type first: balanced types
    t = types[int(rng.integers(len(types)))]
    of_type = [o for o in options if o[1] == t]
    r, t, sliced = of_type[int(rng.integers(len(of_type)))]
    candidates = _bindings(r, t, sliced)
    b = candidates[int(rng.integers(len(candidates)))]
    task = make_task(rng, r, t, sliced, b, n_subtasks, phrasing)
    return task, build_scene(rng, r, t, b)


def make_task(
    rng: np.random.Generator, room: str, t: str, sliced: bool, b: Binding, n_subtasks: int, phrasing: Phrasing
) -> Task:
    """The task of the first `n_subtasks` subtasks of a binding's chain, with drawn instructions and goal."""
    subtasks = chain(t, sliced, b)[:n_subtasks]
    texts = [instruction(s, phrasing, rng) for s in subtasks]
    full = n_subtasks == len(chain(t, sliced, b))
    return Task(
        task_type=t,
        room=room,
        subtasks=tuple(subtasks),
        instructions=tuple(texts),
        goal=goal(t, b, texts, full, sliced, phrasing, rng),
        params={
            "object_target": b.o,
            "parent_target": b.r,
            "mrecep_target": b.m or "",
            "toggle_target": b.lamp or "",
            "object_sliced": sliced,
        },
    )


def build_scene(rng: np.random.Generator, room: str, task_type: str, b: Binding) -> State:
    """A room holding what the binding needs plus random extras, each object where it fits."""
    kind = ROOM_KINDS[room]
    needed = [x for x in (b.r, b.lamp, b.knife_to) if x and x not in MOVABLE] + list(kind.required)
    locations = list(dict.fromkeys(needed))
    required = [b.o] * (2 if task_type == "pick_two_obj_and_place" else 1)
    required += [x for x in (b.m, b.knife) if x]
    for cls in dict.fromkeys(required):
        # enough distinct starting places for every required object, none of them the target
        while len(starts(cls, locations, b.r)) < required.count(cls):
            spare = [loc for loc in room_locations(room) if loc not in locations and fits(cls, loc)]
            locations.append(spare[int(rng.integers(len(spare)))])
    optional = [x for x in kind.optional if x not in locations]
    rng.shuffle(optional)
    locations += optional[: max(0, int(rng.integers(5, MAX_LOCATIONS + 1)) - len(locations))]
    n_extra = int(rng.integers(EXTRA_OBJECTS[0], EXTRA_OBJECTS[1] + 1))
    extras = [str(x) for x in rng.choice(kind.objects, size=n_extra)]
    rng.shuffle(locations)
    objects = place(rng, required, extras, locations, avoid={b.o: b.r, (b.m or ""): b.r})
    return State(room=room, locations=tuple(locations), objects=tuple(objects))


@functools.cache
def _bindings(room: str, task_type: str, sliced: bool) -> list[Binding]:
    """Bindings whose required objects all have enough starting places away from the target."""
    every = list(room_locations(room))
    out = []
    for b in bindings(room, task_type, sliced):
        need = [b.o] * (2 if task_type == "pick_two_obj_and_place" else 1) + [x for x in (b.m, b.knife) if x]
        if all(len(starts(cls, every, b.r)) >= need.count(cls) for cls in need):
            out.append(b)
    return out


def starts(cls: str, locations: list[str], target: str) -> list[str]:
    return [loc for loc in locations if loc not in LAMPS and loc != target and fits(cls, loc)]


def place(
    rng: np.random.Generator,
    required: list[str],
    extras: list[str],
    locations: list[str],
    avoid: dict[str, str],
) -> list[Obj]:
    objects: list[Obj] = []
    taken: set[tuple[str, str]] = set()  # one object of a class per place, so tokens stay unambiguous
    for k, cls in enumerate(required + extras):
        places = [
            loc for loc in locations if fits(cls, loc) and avoid.get(cls) != loc and (cls, loc) not in taken
        ]
        if not places:
            if k < len(required):
                raise AssertionError(f"scene builder found no place for required {cls}")
            continue
        loc = places[int(rng.integers(len(places)))]
        taken.add((cls, loc))
        objects.append(Obj(cls, loc))
    return _nest(rng, objects, set(required[:1]))


def _nest(rng: np.random.Generator, objects: list[Obj], keep_out: set[str]) -> list[Obj]:
    """Put some small objects inside movable receptacles at the same place, as people leave them."""
    out = list(objects)
    for i, obj in enumerate(out):
        if obj.cls in MOVABLE or obj.cls in keep_out or rng.random() >= IN_CONTAINER_P:
            continue
        hosts = [
            j
            for j, c in enumerate(out)
            if c.cls in MOVABLE and c.loc == obj.loc and c.inside < 0 and fits(obj.cls, c.cls)
        ]
        if hosts:
            out[i] = replace(obj, inside=hosts[int(rng.integers(len(hosts)))])
    return out


def randomize(state: State, rng: np.random.Generator) -> State:
    """The randomised initial state: agent at a random location, objects at random places they fit."""
    spots = [loc for loc in state.locations if loc not in LAMPS]
    objects = []
    taken: set[tuple[str, str]] = set()
    for obj in state.objects:
        places = [loc for loc in spots if fits(obj.cls, loc) and (obj.cls, loc) not in taken]
        loc = places[int(rng.integers(len(places)))] if places else obj.loc
        taken.add((obj.cls, loc))
        objects.append(Obj(obj.cls, loc))
    agent = state.locations[int(rng.integers(len(state.locations)))]
    return replace(state, objects=tuple(_nest(rng, objects, set())), agent=agent)
