"""The expert planner: a shortest sensible action sequence that completes the remaining subtasks.

`plan` is also the simulator's measure of distance to the goal: a step made progress when the
expert's remaining plan got shorter (or a subtask was completed). The reference labeller and the
audit pages use that ground truth.
"""

from __future__ import annotations

from rgvlm_core.sim.catalog import KNIVES, LAMPS, MOVABLE, OPENABLE, fits
from rgvlm_core.sim.tasks import SubtaskSpec, Task, is_done
from rgvlm_core.sim.world import HELD, State, action_index, apply, pickup_choice


class PlanningError(RuntimeError):
    """The expert found no way to complete a subtask (a bug in the task sampler or the rules)."""


def plan(state: State, task: Task, done: int = 0) -> list[int]:
    """Actions that complete subtasks `done..` from `state`, in order."""
    actions: list[int] = []
    s = state
    for k in range(done, len(task.subtasks)):
        sub = task.subtasks[k]
        if is_done(s, sub):
            continue
        for token in _subtask(s, sub):
            a = action_index(token)
            s, err = apply(s, a)
            if err is not None:
                raise PlanningError(f"expert step {token} failed ({err}) on subtask {k} of {task.goal!r}")
            actions.append(a)
        if not is_done(s, sub):
            raise PlanningError(f"expert plan for subtask {k} ({sub}) does not complete it")
    return actions


def _subtask(s: State, sub: SubtaskSpec) -> list[str]:
    if sub.kind == "Pickup":
        return _get(s, sub.obj, sub.flags, sub.content, prefer_unmoved=True)
    if sub.kind == "Put":
        steps: list[str] = []
        for _ in range(sub.count):  # a count-2 Put may need two trips (e.g. after one was taken back)
            if is_done(s, sub):
                break
            # objects already counted for this Put stay where they are
            placed = {i for i, o in enumerate(s.objects) if o.moved and _in_target(s, i, sub)}
            fetch = _get(s, sub.obj, sub.flags, sub.content, prefer_unmoved=False, exclude=placed)
            s = _run(s, fetch)
            put = _put(s, sub.target or "")
            s = _run(s, put)
            steps += fetch + put
        return steps
    if sub.kind == "Toggle":
        return [*_goto(s, sub.obj), f"ToggleObject({sub.obj})"]
    if sub.kind == "Slice":
        steps = _ensure_knife(s)
        s2 = _run(s, steps)
        where = _find(s2, sub.obj, lambda i: not s2.objects[i].sliced)
        return steps + _reach(s2, where) + [f"SliceObject({sub.obj})"]
    verb, place = {
        "Heat": ("HeatObject", "Microwave"),
        "Cool": ("CoolObject", "Fridge"),
        "Clean": ("CleanObject", "SinkBasin"),
    }[sub.kind]
    steps = _ensure_holding(s, sub.obj, (), None)
    s2 = _run(s, steps)
    return steps + _goto(s2, place) + [f"{verb}({sub.obj})"]


def _run(s: State, tokens: list[str]) -> State:
    for token in tokens:
        s, err = apply(s, action_index(token))
        if err is not None:
            raise PlanningError(f"expert step {token} failed: {err}")
    return s


def _goto(s: State, loc: str) -> list[str]:
    return [] if s.agent == loc else [f"GotoLocation({loc})"]


def _reach(s: State, loc: str) -> list[str]:
    """Go to a location and open it if it is closed."""
    steps = _goto(s, loc)
    if loc in OPENABLE and loc not in s.opened:
        steps.append(f"OpenObject({loc})")
    return steps


def _matches(s: State, i: int, cls: str, flags: tuple[str, ...], content: str | None) -> bool:
    obj = s.objects[i]
    return (
        obj.cls == cls
        and obj.has(flags)
        and (content is None or any(s.objects[j].cls == content for j in s.contents(i)))
    )


def _find(s: State, cls: str, ok: object, *, prefer_unmoved: bool = True) -> str:
    """Where to go for an object of `cls` satisfying `ok` (not held): unmoved ones first, then open places."""
    assert callable(ok)
    best: tuple[tuple[int, int, int], str] | None = None
    for i, obj in enumerate(s.objects):
        where = s.where(i)
        if obj.cls != cls or where == HELD or not ok(i):
            continue
        key = (int(obj.moved and prefer_unmoved), int(where in OPENABLE and where not in s.opened), i)
        if best is None or key < best[0]:
            best = (key, where)
    if best is None:
        raise PlanningError(f"no {cls} available")
    return best[1]


def _get(
    s: State,
    cls: str,
    flags: tuple[str, ...],
    content: str | None,
    *,
    prefer_unmoved: bool,
    exclude: frozenset[int] | set[int] = frozenset(),
) -> list[str]:
    """Free the hands if needed, then go and pick up a matching object (not one in `exclude`)."""
    if s.held is not None and _matches(s, s.held, cls, flags, content):
        return []
    steps = _drop(s)
    s2 = _run(s, steps)
    where = _find(
        s2,
        cls,
        lambda i: i not in exclude and _matches(s2, i, cls, flags, content),
        prefer_unmoved=prefer_unmoved,
    )
    steps += _reach(s2, where)
    s3 = _run(s2, _reach(s2, where))
    for _ in range(len(s3.objects)):
        chosen = pickup_choice(s3, cls)
        if chosen is None:
            raise PlanningError(f"no {cls} reachable at {where}")
        if chosen not in exclude and _matches(s3, chosen, cls, flags, content):
            break
        # another object of the class would be taken first: move it aside, then come back
        aside = [f"PickupObject({cls})"]
        s4 = _run(s3, aside)
        aside += _drop(s4, avoid=where)
        s4 = _run(s3, aside)
        aside += _reach(s4, where)
        s3 = _run(s3, aside)
        steps += aside
    else:
        raise PlanningError(f"could not reach a wanted {cls} at {where}")
    return [*steps, f"PickupObject({cls})"]


def _ensure_holding(s: State, cls: str, flags: tuple[str, ...], content: str | None) -> list[str]:
    return _get(s, cls, flags, content, prefer_unmoved=False)


def _in_target(s: State, i: int, sub: SubtaskSpec) -> bool:
    obj = s.objects[i]
    if obj.cls != sub.obj or not obj.has(sub.flags) or s.where(i) == HELD:
        return False
    if sub.target in MOVABLE:
        return obj.inside >= 0 and s.objects[obj.inside].cls == sub.target
    return obj.inside < 0 and obj.loc == sub.target


def _ensure_knife(s: State) -> list[str]:
    if s.held is not None and s.objects[s.held].cls in KNIVES:
        return []
    for knife in sorted(KNIVES):
        if any(o.cls == knife for o in s.objects):
            return _get(s, knife, (), None, prefer_unmoved=False)
    raise PlanningError("no knife in the room")


def _put(s: State, target: str) -> list[str]:
    if target in MOVABLE:
        where = _find(s, target, lambda i: s.objects[i].inside < 0, prefer_unmoved=False)
        return [*_reach(s, where), f"PutObject({target})"]
    return [*_reach(s, target), f"PutObject({target})"]


def _drop(s: State, avoid: str | None = None) -> list[str]:
    """Put down what the agent holds at the first fitting place without another of its class."""
    if s.held is None:
        return []
    cls = s.objects[s.held].cls
    occupied = {s.where(i) for i, o in enumerate(s.objects) if o.cls == cls and i != s.held}
    places = [
        loc
        for loc in s.locations
        if loc not in LAMPS and fits(cls, loc) and loc not in occupied and loc != avoid
    ]
    if s.agent in places:
        places.remove(s.agent)
        places.insert(0, s.agent)
    if not places:
        raise PlanningError(f"nowhere to put down the {cls}")
    return [*_reach(s, places[0]), f"PutObject({places[0]})"]


def subtask_remaining(state: State, sub: SubtaskSpec) -> int:
    """Length of the expert's plan that completes `sub` alone from `state` (0 once it is done).

    The simulator's ground truth of how far a subtask is from done; raises PlanningError if the
    expert finds no way (a bug in the rules or the sampler, never a normal outcome).
    """
    if is_done(state, sub):
        return 0
    return len(_subtask(state, sub))


def plan_fraction(remaining: int, remaining_at_start: int) -> float:
    """The fraction of the expert's plan for a subtask done: 1 - remaining / remaining at the start of
    the subtask's segment, clipped to 0..1 (a detour can make the plan longer than it was)."""
    if remaining_at_start <= 0:
        return 1.0
    return min(1.0, max(0.0, 1.0 - remaining / remaining_at_start))


def subtask_tokens(state: State, sub: SubtaskSpec) -> list[str]:
    """The subgoal-level action tokens that complete `sub` from `state` (the low level walks them)."""
    return _subtask(state, sub)


def get_tokens(state: State, cls: str, flags: tuple[str, ...]) -> list[str]:
    """Tokens that free the hands and pick up an object of `cls` with `flags` (wherever it is)."""
    return _get(state, cls, flags, None, prefer_unmoved=False)
