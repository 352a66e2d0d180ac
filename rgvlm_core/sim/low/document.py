"""A low-level rollout as ALFRED's traj_data.json: subgoals in `high_pddl`, low actions in `low_actions`.

ALFRED's own layout: each subtask k is two subgoals, `GotoLocation` (high_idx 2k: the subtask's steps up
to its last move or look) and the manipulation (2k+1: the interactions after it), then `NoOp`. Each low
action carries its `discrete_action` (`MoveAhead_25` with no args, `PickupObject` with its target class)
and its `api_action` as AI2-THOR takes it (object ids
`Type|x|y|z` from the receptacle's position on real floor plans). The `rgvlm_sim` key is version 2,
level "low": the floor plan once ("plan", the compact string the states need; "floor_plan", the whole
plan with its furniture, for frames and the player) and each state without it (the reader puts it back).
"""

from __future__ import annotations

from typing import Any

from rgvlm_core.sim.behaviour import Rollout
from rgvlm_core.sim.generate import VERB_OF, outcome
from rgvlm_core.sim.low.floorplan import GRID
from rgvlm_core.sim.low.nav import N_NAV
from rgvlm_core.sim.low.serialize import floor_plan_document, low_state_to_dict, plan_to_string
from rgvlm_core.sim.low.world import ACTIONS, FAUCET, LowState
from rgvlm_core.sim.tasks import SubtaskSpec, Task

API_NAV: dict[str, dict[str, Any]] = {
    "MoveAhead_25": {"action": "MoveAhead", "forceAction": True, "moveMagnitude": 0.25},
    "RotateLeft_90": {"action": "RotateLeft", "forceAction": True},
    "RotateRight_90": {"action": "RotateRight", "forceAction": True},
    "LookUp_15": {"action": "LookUp", "forceAction": True},
    "LookDown_15": {"action": "LookDown", "forceAction": True},
}
_OBJECT_HEIGHT = 0.9  # metres: the y of an object id (the layouts give receptacles' x and z only)


def high_idxs(actions: list[int], rewards: list[int]) -> list[int]:
    """The subgoal of each step: subtask k's steps up to its last move or look before it completes (or
    before the episode ends) walk, `GotoLocation` (2k); the rest manipulate (2k+1). A detour or a wrong
    pickup on the way is thereby part of the walk, as in ALFRED, where a subgoal's last walk ends where
    its interactions begin."""
    segments: list[tuple[int, int]] = []
    first = 0
    for t, r in enumerate(rewards):
        if r:
            segments.append((first, t))
            first = t + 1
    if first < len(actions):
        segments.append((first, len(actions) - 1))
    out: list[int] = []
    for k, (a, b) in enumerate(segments):
        walked = [t for t in range(a, b + 1) if actions[t] < N_NAV]
        last = walked[-1] if walked else a - 1
        out += [2 * k if t <= last else 2 * k + 1 for t in range(a, b + 1)]
    return out


def object_id(cls: str, s: LowState, at: str | None = None) -> str:
    """An AI2-THOR style id for an object of class `cls` at the receptacle `at` (default: in front)."""
    r = s.plan.receptacle(at or s.world.agent or "")
    return f"{cls}|{r.x:+06.2f}|{_OBJECT_HEIGHT:+06.2f}|{r.z:+06.2f}"


def api_action(a: int, s: LowState) -> dict[str, Any]:
    """The AI2-THOR call of low action `a` taken in `s`."""
    verb, arg = ACTIONS[a]
    if not arg:
        return dict(API_NAV[verb])
    front = s.world.agent
    if front is None:  # an attempt with nothing in front: the call names the class alone
        return {
            "action": verb,
            "objectId": arg,
            **({"receptacleObjectId": arg} if verb == "PutObject" else {}),
        }
    if verb == "PutObject":
        held = s.world.objects[s.world.held].cls if s.world.held is not None else arg
        # into the receptacle in front, or into a container (a pan, a bowl) standing in it
        receptacle = s.plan.receptacle(front).object_id if arg == front else object_id(arg, s)
        return {"action": verb, "objectId": object_id(held, s), "receptacleObjectId": receptacle}
    if arg == FAUCET:
        return {"action": verb, "objectId": object_id(FAUCET, s)}
    if arg == front:
        return {"action": verb, "objectId": s.plan.receptacle(front).object_id}
    return {"action": verb, "objectId": object_id(arg, s)}


def _subgoals(task: Task, places: dict[int, str]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for k, sub in enumerate(task.subtasks):
        where = places.get(k) or _goto_target(sub)
        out.append(
            {
                "high_idx": 2 * k,
                "discrete_action": {"action": "GotoLocation", "args": [where.lower()]},
                "planner_action": {"action": "GotoLocation", "location": where},
            }
        )
        out.append(
            {
                "high_idx": 2 * k + 1,
                "discrete_action": {
                    "action": VERB_OF[sub.kind],
                    "args": [x.lower() for x in (sub.obj, sub.target) if x],
                },
                "planner_action": {
                    "action": VERB_OF[sub.kind],
                    "objectId": sub.obj,
                    "receptacleObjectId": sub.target or "",
                },
            }
        )
    n = len(task.subtasks)
    out.append(
        {
            "high_idx": 2 * n,
            "discrete_action": {"action": "NoOp", "args": []},
            "planner_action": {"action": "End"},
        }
    )
    return out


def _completed_at(result: Rollout[LowState]) -> dict[int, str]:
    """Subtask -> the receptacle the agent faced when its step completed it (where ALFRED's
    GotoLocation for it leads: the pickup's receptacle, the put's target, the microwave...)."""
    out: dict[int, str] = {}
    for st in result.steps:
        if st.reward and st.state.world.agent is not None:
            out[st.subtask_index] = st.state.world.agent
    return out


def _goto_target(sub: SubtaskSpec) -> str:
    """Where an uncompleted subtask's walk goes: the receptacle it uses, else its object."""
    place = {"Heat": "Microwave", "Cool": "Fridge", "Clean": "SinkBasin"}.get(sub.kind)
    return place or sub.target or sub.obj


def low_traj_document(
    result: Rollout[LowState],
    trial: str,
    scene_num: int,
    condition: str,
    paraphrases: list[tuple[str, tuple[str, ...]]],
) -> dict[str, Any]:
    """The traj_data.json of a low-level rollout, in ALFRED's layout plus the `rgvlm_sim` key."""
    task, steps = result.task, result.steps
    assert result.final is not None and steps
    actions = [st.action for st in steps]
    idxs = high_idxs(actions, [st.reward for st in steps])
    low = [
        {
            "high_idx": h,
            "discrete_action": {"action": ACTIONS[a][0], "args": [ACTIONS[a][1]] if ACTIONS[a][1] else {}},
            "api_action": api_action(a, st.state),
        }
        for a, h, st in zip(actions, idxs, steps, strict=True)
    ]
    images = [{"low_idx": t, "high_idx": h, "image_name": f"{t:09d}.png"} for t, h in enumerate(idxs)]
    images.append({"low_idx": len(idxs), "high_idx": idxs[-1], "image_name": f"{len(idxs):09d}.png"})
    plan = result.initial.plan
    x, z, heading, horizon = result.initial.pose
    states = [st.state for st in steps] + [result.final]
    anns = [(task.goal, task.instructions), *paraphrases]
    return {
        "images": images,
        "pddl_params": task.params,
        "plan": {"high_pddl": _subgoals(task, _completed_at(result)), "low_actions": low},
        "scene": {
            "floor_plan": plan.name,
            "scene_num": scene_num,
            "init_action": {
                "action": "TeleportFull",
                "x": x * GRID,
                "y": _OBJECT_HEIGHT,
                "z": z * GRID,
                "rotation": heading,
                "horizon": horizon,
            },
            "object_poses": [{"objectName": o.cls, "location": o.loc} for o in result.initial.world.objects],
            "object_toggles": [],
            "dirty_and_empty": False,
        },
        "task_id": trial,
        "task_type": task.task_type,
        "turk_annotations": {
            "anns": [
                {"assignment_id": "rgvlm-sim", "task_desc": goal, "high_descs": _descs(descs), "votes": [1]}
                for goal, descs in anns
            ]
        },
        "rgvlm_sim": {
            "version": 2,
            "level": "low",
            "plan": plan_to_string(plan),
            "floor_plan": floor_plan_document(plan),
            **outcome(result, condition),
            "states": [_without_plan(low_state_to_dict(s)) for s in states],
        },
    }


def _descs(descs: tuple[str, ...]) -> list[str]:
    """One instruction per subgoal as ALFRED has it: the walk's (empty: the subtask's instruction says
    where to go) and the manipulation's."""
    return [d for text in descs for d in ("", text)]


def _without_plan(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k != "plan"}
