"""Replay a real ALFRED trajectory in the symbolic household (alfred.world's rules) and check its subgoals
where ALFRED says they end: the test of whether the world's rules are ALFRED's (AI2-THOR's) rules.

Subgoals (plan.high_pddl, NoOp excluded) are checked after the last low action of their `high_idx`:
GotoLocation at its `loc|x|z|rotation|horizon` pose; Pickup holding the object; Put the object in the
receptacle; Toggle the object on; Slice the object sliced; Heat/Cool/Clean holding an object of the
subgoal's class that is hot/cold/clean. The first action the rules refuse ends the replay of that
trajectory (the states after it would not be ALFRED's): its subgoals from there on count as not reached,
and the failure names the step, the action and the reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rgvlm_core.alfred.replay_scene import class_of, parse_location, scene_of
from rgvlm_core.alfred.world import CHANGES, World, new_world, resolve, step
from rgvlm_core.errors import RGVLMError

NO_PLAN = "no plan"  # a failure's `what` for a file without a plan (skipped in reports, not failed)


def subgoal_reached(w: World, subgoal: dict[str, Any]) -> str | None:
    """None when ALFRED's subgoal holds in the world; otherwise what does not hold."""
    planner = subgoal.get("planner_action") or {}
    action = (subgoal.get("discrete_action") or {}).get("action")
    if action == "GotoLocation":
        goal = parse_location(str(planner.get("location")))
        return None if w.pose == goal else f"the agent is at {w.pose}, not {goal}"
    if action in CHANGES:  # ALFRED names the appliance here; the object is the one the subgoal's args name
        # an empty arg (ALFRED has such a subgoal: valid_seen, a butter knife cooled) names no class
        wanted = [str(a).lower() for a in (subgoal.get("discrete_action") or {}).get("args") or [] if a]
        held = class_of(w.held).lower().removesuffix("sliced") if w.held else None
        if held is None or (wanted and held not in wanted):
            return f"not holding a {' or '.join(wanted)} (holding {w.held})"
        change = CHANGES[action]
        return None if w.held in w.changed[change] else f"{w.held} is not {change}"
    obj = resolve(w, str(planner.get("objectId")))
    if obj is None:
        return f"{planner.get('objectId')} is not in the scene"
    if action == "PickupObject":
        return None if w.held == obj else f"not holding {obj}"
    if action == "PutObject":
        receptacle = resolve(w, str(planner.get("receptacleObjectId")))
        return None if receptacle and w.parent.get(obj) == receptacle else f"{obj} is not in {receptacle}"
    if action == "ToggleObject":
        return None if obj in w.on else f"{obj} is not on"
    if action == "SliceObject":
        return None if obj in w.sliced else f"{obj} is not sliced"
    return f"unknown subgoal {action!r}"


# -- replaying files ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """Why a trajectory's replay went wrong: the step (index into low_actions; -1 before any) and the
    action or subgoal."""

    path: str
    step: int
    what: str
    why: str


@dataclass(frozen=True)
class TrajectoryReplay:
    path: str
    task_type: str
    floor_plan: str
    subgoals: int
    reached: int
    added_points: int
    failure: Failure | None
    states: tuple[World, ...] = ()  # the world at the start and after each low action (`keep_states`)


def replay(
    traj: dict[str, Any], path: str = "", *, layouts: str | Path | None = None, keep_states: bool = False
) -> TrajectoryReplay:
    """Replay one parsed train/valid trajectory; see the module doc for the rules."""
    task_type = str(traj.get("task_type", ""))
    if not isinstance(traj.get("plan"), dict):  # ALFRED's test splits: nothing to replay
        return TrajectoryReplay(
            path, task_type, "", 0, 0, 0, Failure(path, -1, NO_PLAN, "the file has no plan")
        )
    try:
        scene = scene_of(traj, layouts)
        subgoals = [
            s for s in traj["plan"]["high_pddl"] if (s.get("discrete_action") or {}).get("action") != "NoOp"
        ]
        low = traj["plan"]["low_actions"]
        ends = {int(a["high_idx"]): i for i, a in enumerate(low)}
    except (
        ValueError,
        KeyError,
        TypeError,
        AttributeError,
        RGVLMError,
    ) as e:  # a layout missing, a bad field
        return TrajectoryReplay(path, task_type, "", 0, 0, 0, Failure(path, -1, "set-up", str(e)))
    w = new_world(scene)
    start = scene.start
    states: list[World] = []
    reached, failure = 0, None
    if start[:2] not in scene.cells:
        failure = Failure(path, -1, "start", f"the start point {start[:2]} is not floor")
    by_end: dict[int, list[dict[str, Any]]] = {}
    for s in subgoals:
        by_end.setdefault(ends.get(int(s.get("high_idx", -1)), -2), []).append(s)
    if keep_states:
        states.append(_copy(w))
    if failure is None:
        for i, a in enumerate(low):
            api = a.get("api_action") or {}
            why = step(w, api)
            if why is not None:
                failure = Failure(path, i, _describe(api), why)
                break
            if keep_states:
                states.append(_copy(w))
            for s in by_end.get(i, []):
                missing = subgoal_reached(w, s)
                if missing is not None:
                    failure = Failure(path, i, f"subgoal {s.get('high_idx')} {_subgoal_name(s)}", missing)
                    break
                reached += 1
            if failure is not None:
                break
    if failure is None and -2 in by_end:
        failure = Failure(path, len(low), "subgoals", "a subgoal has no low-level actions")
    return TrajectoryReplay(
        path, task_type, scene.floor_plan, len(subgoals), reached, len(scene.added), failure, tuple(states)
    )


def _copy(w: World) -> World:
    return replace(
        w,
        parent=dict(w.parent),
        opened=set(w.opened),
        on=set(w.on),
        sliced=set(w.sliced),
        changed={k: set(v) for k, v in w.changed.items()},
        things=w.things,
    )


def _describe(api: dict[str, Any]) -> str:
    action = str(api.get("action"))
    if "objectId" in api:
        action += f"({api['objectId']}"
        action += f" -> {api['receptacleObjectId']})" if "receptacleObjectId" in api else ")"
    return action


def _subgoal_name(s: dict[str, Any]) -> str:
    d = s.get("discrete_action") or {}
    return f"{d.get('action')}({', '.join(str(a) for a in d.get('args') or [])})"


def trajectory_files(root: Path) -> Iterator[Path]:
    """Every traj_data.json under `root` (or `root` itself), sorted."""
    if root.is_file():
        yield root
        return
    yield from sorted(root.rglob("traj_data.json"))


def replay_files(paths: Iterable[Path], *, layouts: str | Path | None = None) -> Iterator[TrajectoryReplay]:
    """Replay each file; unreadable files and test files (no plan) become failures, not exceptions."""
    for path in paths:
        try:
            traj = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            yield TrajectoryReplay(str(path), "", "", 0, 0, 0, Failure(str(path), -1, "read", str(e)))
            continue
        yield replay(traj, str(path), layouts=layouts)


def summarize(results: Iterable[TrajectoryReplay]) -> dict[str, Any]:
    """The replay report: totals, fidelity (subgoals reached / subgoals) overall, per task type and per
    split, and every failure. Files without a plan (ALFRED's test splits) are counted as skipped."""
    totals = {"trajectories": 0, "subgoals": 0, "reached": 0}
    groups: dict[str, dict[str, dict[str, int]]] = {"by_task_type": {}, "by_split": {}}
    failures: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    added = 0
    for r in results:
        if r.failure is not None and r.failure.what == NO_PLAN:
            skipped.append({"file": r.path, "why": r.failure.why})
            continue
        added += r.added_points
        keys = {"by_task_type": r.task_type or "unknown", "by_split": _split_of(r.path)}
        rows = [
            groups[g].setdefault(k, {"trajectories": 0, "subgoals": 0, "reached": 0}) for g, k in keys.items()
        ]
        for row in (*rows, totals):
            row["trajectories"] += 1
            row["subgoals"] += r.subgoals
            row["reached"] += r.reached
        if r.failure is not None:
            f = r.failure
            failures.append({"file": f.path, "step": f.step, "action": f.what, "why": f.why})
    out: dict[str, Any] = {**totals, "fidelity": _fidelity(totals)}
    for group, by_key in groups.items():
        out[group] = {k: {**v, "fidelity": _fidelity(v)} for k, v in sorted(by_key.items())}
    out["failures"] = failures
    out["skipped"] = skipped
    out["points_added_to_layouts"] = added
    return out


def _fidelity(row: dict[str, int]) -> float:
    return row["reached"] / row["subgoals"] if row["subgoals"] else 0.0


def _split_of(path: str) -> str:
    from rgvlm_core.alfred.splits import ALFRED_SPLITS

    for part in reversed(Path(path).parts):
        if part in ALFRED_SPLITS:
            return part
    return "other"
