"""The low-level expert: the subgoal level's plan, walked on the floor plan's shortest paths.

For each remaining subtask the subgoal-level expert says what to do (go to the fridge, open it, pick up
the apple); this module turns each of its actions into low-level ones: a `GotoLocation` into the shortest
path to the receptacle's pose (turns and looks included), `HeatObject` / `CoolObject` / `CleanObject`
into ALFRED's primitive sequences (microwave: open, put, close, switch on, switch off, open, pick up;
fridge: open, put, close, open, pick up; sink: put, faucet on, faucet off, pick up), the rest one to one.

Its length is the low level's distance to the goal: a step made progress when the expert's remaining
plan got shorter (or a subtask was completed), as at the subgoal level.
"""

from __future__ import annotations

from rgvlm_core.sim.expert import PlanningError, get_tokens, subtask_tokens
from rgvlm_core.sim.low.nav import navigator
from rgvlm_core.sim.low.world import ACTION_INDEX, FAUCET, LowState, apply, subtask_done
from rgvlm_core.sim.tasks import SubtaskSpec, Task, is_done
from rgvlm_core.sim.world import State

_FLAG_OF = {"Heat": "hot", "Cool": "cold", "Clean": "clean"}
_APPLIANCE = {"Heat": "Microwave", "Cool": "Fridge", "Clean": "SinkBasin"}
_VERB_OF = {"Heat": "HeatObject", "Cool": "CoolObject", "Clean": "CleanObject"}


def plan(s: LowState, task: Task, done: int = 0) -> list[int]:
    """Low-level actions that complete subtasks `done..` from `s`, in order."""
    actions: list[int] = []
    for k in range(done, len(task.subtasks)):
        sub = task.subtasks[k]
        if subtask_done(s.world, sub):
            continue
        steps, s = _run_subtask(s, sub, k, task)
        actions += steps
    return actions


def subtask_plan(s: LowState, sub: SubtaskSpec) -> list[int]:
    """Low-level actions that complete `sub` alone from `s` ([] once it is done)."""
    if subtask_done(s.world, sub):
        return []
    return _run_subtask(s, sub, 0, None)[0]


def subtask_remaining(s: LowState, sub: SubtaskSpec) -> int:
    """Length of the expert's plan that completes `sub` alone from `s` (0 once it is done)."""
    return len(subtask_plan(s, sub))


def _run_subtask(s: LowState, sub: SubtaskSpec, k: int, task: Task | None) -> tuple[list[int], LowState]:
    flag = _FLAG_OF.get(sub.kind)
    w = s.world
    if flag == "clean" and FAUCET in w.lit and w.held is None and _inside(w, sub.obj, "SinkBasin"):
        # washed, the water still running: ALFRED's sequence turns it off before the pickup
        tokens = ["GotoLocation(SinkBasin)", f"ToggleObjectOff({FAUCET})", f"PickupObject({sub.obj})"]
    elif flag is not None and is_done(w, sub):
        tokens = get_tokens(w, sub.obj, (flag,))  # changed already: fetch it back into the hand
    elif flag is not None and w.held is None and _inside(w, sub.obj, _APPLIANCE[sub.kind]):
        # half way through the primitive sequence (put in, not yet changed): carry on from there
        tokens = [f"GotoLocation({_APPLIANCE[sub.kind]})", f"{_VERB_OF[sub.kind]}({sub.obj})"]
    else:
        tokens = subtask_tokens(s.world, sub)
    out: list[int] = []
    for token in tokens:
        for a in expand(s, token):
            s, err = apply(s, a)
            if err is not None:
                where = f" of {task.goal!r}" if task is not None else ""
                raise PlanningError(f"low-level expert step failed ({err}) on subtask {k}{where}")
            out.append(a)
    if not subtask_done(s.world, sub):
        raise PlanningError(f"low-level expert plan for subtask {k} ({sub}) does not complete it")
    return out, s


def _inside(w: State, cls: str, place: str) -> bool:
    """Whether the agent has put an object of `cls` into `place` (one that was there from the start
    may not be the one the task means: a sliced apple, not the whole one in the microwave)."""
    return any(o.cls == cls and o.moved and w.where(i) == place for i, o in enumerate(w.objects))


def expand(s: LowState, token: str) -> list[int]:
    """The low-level actions that carry out one subgoal-level action from `s`.

    Heat, cool and clean start from the object in hand, or from the object already in the appliance
    (a sequence interrupted half way), and end with it back in hand."""
    verb, _, rest = token.partition("(")
    arg = rest.rstrip(")")
    w = s.world
    if verb in ("HeatObject", "CoolObject", "CleanObject") and w.held is None:
        return [ACTION_INDEX[t] for t in _resume(w, verb, arg)]
    if verb == "GotoLocation":
        return navigator(s.plan).path(s.pose, s.plan.receptacle(arg).pose)
    if verb == "ToggleObject":
        return [ACTION_INDEX[f"ToggleObjectOn({arg})" if arg not in w.lit else f"ToggleObjectOff({arg})"]]
    if verb == "OpenObject" and arg == "Microwave" and "Microwave" in w.lit:
        return [ACTION_INDEX["ToggleObjectOff(Microwave)"], ACTION_INDEX[token]]
    if verb == "HeatObject":
        steps = ["ToggleObjectOff(Microwave)"] if "Microwave" in w.lit else []
        steps += [] if "Microwave" in w.opened else ["OpenObject(Microwave)"]
        steps += ["PutObject(Microwave)", "CloseObject(Microwave)", "ToggleObjectOn(Microwave)"]
        steps += ["ToggleObjectOff(Microwave)", "OpenObject(Microwave)", f"PickupObject({arg})"]
        return [ACTION_INDEX[t] for t in steps]
    if verb == "CoolObject":
        steps = [] if "Fridge" in w.opened else ["OpenObject(Fridge)"]
        steps += ["PutObject(Fridge)", "CloseObject(Fridge)", "OpenObject(Fridge)", f"PickupObject({arg})"]
        return [ACTION_INDEX[t] for t in steps]
    if verb == "CleanObject":
        steps = [f"ToggleObjectOff({FAUCET})"] if FAUCET in w.lit else []
        steps += ["PutObject(SinkBasin)", f"ToggleObjectOn({FAUCET})", f"ToggleObjectOff({FAUCET})"]
        steps += [f"PickupObject({arg})"]
        return [ACTION_INDEX[t] for t in steps]
    return [ACTION_INDEX[token]]


def _resume(w: State, verb: str, arg: str) -> list[str]:
    """The rest of a heat, cool or clean sequence whose object is already in the appliance."""
    if verb == "HeatObject":
        steps = ["CloseObject(Microwave)"] if "Microwave" in w.opened else []
        steps += ["ToggleObjectOff(Microwave)"] if "Microwave" in w.lit else []
        return [
            *steps,
            "ToggleObjectOn(Microwave)",
            "ToggleObjectOff(Microwave)",
            "OpenObject(Microwave)",
            f"PickupObject({arg})",
        ]
    if verb == "CoolObject":
        steps = (
            ["CloseObject(Fridge)"] if "Fridge" in w.opened else ["OpenObject(Fridge)", "CloseObject(Fridge)"]
        )
        return [*steps, "OpenObject(Fridge)", f"PickupObject({arg})"]
    steps = [f"ToggleObjectOff({FAUCET})"] if FAUCET in w.lit else []
    return [*steps, f"ToggleObjectOn({FAUCET})", f"ToggleObjectOff({FAUCET})", f"PickupObject({arg})"]
