"""Tasks and initial states of the low-level household, on ALFRED's floor plans or generated rooms.

On a real floor plan the task is drawn among those its receptacles and object classes make possible
(ALFRED's five- and six-subtask tasks all slice, so only kitchens pose them: `lengths` says which
lengths a floor plan poses), the objects are placed where they fit, and the agent starts at the plan's
start pose (default condition) or at a random pose with the objects moved (randomised condition).
Without a floor plan the room is generated around a task of the subgoal level's sampler.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np

from rgvlm_core.sim.catalog import ROOM_KINDS
from rgvlm_core.sim.language import Phrasing
from rgvlm_core.sim.low.floorplan import HEADINGS, FloorPlan, generated_floor_plan
from rgvlm_core.sim.low.world import LowState, start
from rgvlm_core.sim.scenes import EXTRA_OBJECTS, make_task, place, randomize, sample_task, starts
from rgvlm_core.sim.tasks import (
    TASK_TYPES,
    Binding,
    Task,
    bindings,
    chain_lengths,
)
from rgvlm_core.sim.world import State


def sample_low_task(
    rng: np.random.Generator,
    n_subtasks: int,
    plan: FloorPlan | None,
    *,
    phrasing: Phrasing = "seen",
    room: str | None = None,
    task_type: str | None = None,
) -> tuple[Task, LowState]:
    """A task of exactly `n_subtasks` subtasks and its low-level initial state (default condition)."""
    if plan is None:
        task, state = sample_task(rng, n_subtasks, phrasing=phrasing, room=room, task_type=task_type)
        return task, start(generated_floor_plan(rng, task.room, state.locations), state)
    options = [
        (t, sliced)
        for t in TASK_TYPES
        for sliced, length in zip((False, True), chain_lengths(t), strict=False)
        if length >= n_subtasks and task_type in (None, t) and plan_bindings(plan, t, sliced)
    ]
    if not options:
        raise ValueError(f"{plan.name} poses no task of {n_subtasks} subtasks (task_type={task_type!r})")
    types = sorted({t for t, _ in options}, key=TASK_TYPES.index)
    t = types[int(rng.integers(len(types)))]
    of_type = [o for o in options if o[0] == t]
    t, sliced = of_type[int(rng.integers(len(of_type)))]
    candidates = plan_bindings(plan, t, sliced)
    b = candidates[int(rng.integers(len(candidates)))]
    task = make_task(rng, plan.room, t, sliced, b, n_subtasks, phrasing)
    return task, start(plan, _scene(rng, plan, t, b))


@functools.cache
def plan_bindings(plan: FloorPlan, task_type: str, sliced: bool) -> list[Binding]:
    """Bindings the floor plan makes possible, with enough starting places for every required object."""
    out = []
    for b in bindings(plan.room, task_type, sliced, locations=plan.locations, objects=plan.objects):
        need = [b.o] * (2 if task_type == "pick_two_obj_and_place" else 1) + [x for x in (b.m, b.knife) if x]
        if all(len(starts(cls, list(plan.locations), b.r)) >= need.count(cls) for cls in need):
            out.append(b)
    return out


@functools.cache
def lengths(plan: FloorPlan) -> tuple[int, ...]:
    """The subtask counts (1..6) for which the floor plan poses a task."""
    return tuple(
        n
        for n in range(1, 7)
        if any(
            plan_bindings(plan, t, sliced)
            for t in TASK_TYPES
            for sliced, length in zip((False, True), chain_lengths(t), strict=False)
            if length >= n
        )
    )


def _scene(rng: np.random.Generator, plan: FloorPlan, task_type: str, b: Binding) -> State:
    required = [b.o] * (2 if task_type == "pick_two_obj_and_place" else 1)
    required += [x for x in (b.m, b.knife) if x]
    n_extra = int(rng.integers(EXTRA_OBJECTS[0], EXTRA_OBJECTS[1] + 1))
    pool = plan.objects or ROOM_KINDS[plan.room].objects
    extras = [str(x) for x in rng.choice(pool, size=n_extra)]
    locations = list(plan.locations)
    objects = place(rng, required, extras, locations, avoid={b.o: b.r, (b.m or ""): b.r})
    return State(room=plan.room, locations=plan.locations, objects=tuple(objects))


def randomize_low(s: LowState, rng: np.random.Generator) -> LowState:
    """The randomised initial state: objects moved as at the subgoal level, the agent at a random point
    facing a random way, camera at horizon 30."""
    world = randomize(s.world, rng)
    cells = sorted(s.plan.cells)
    x, z = cells[int(rng.integers(len(cells)))]
    pose = (x, z, HEADINGS[int(rng.integers(len(HEADINGS)))], 30)
    return start(s.plan, replace(world, agent=None), pose)
