"""ALFRED's own trajectories as evaluation tasks: its floor plan, initial state, goal, its annotators'
instructions, and success by ALFRED's subgoals reached in order.

Tasks come from the train/valid trajectories whose replay reaches every subgoal (alfred.replay). Their
subtasks are the reader's (each GotoLocation merged into the manipulation after it) with the first
annotation's instructions; a whole ALFRED trajectory has 2 to 10 of them. As the offline-RL literature on
ALFRED does, a task of N subtasks (N = 1..6) is a chain of N consecutive subtasks of one trajectory,
starting where ALFRED's agent started the first of them: the household set up as ALFRED set it up, then
ALFRED's recorded actions up to that subtask replayed. Every chain of every trajectory is a task; they are
listed per length in an order fixed by a hash of (file, first subtask), so taking the first k spreads
over trajectories. A subtask is reached as ALFRED's subgoal says, at the level of classes (any apple will
do where ALFRED's planner picked one):

- Pickup X: the agent picks up an X; Put X in Y: the agent puts an X in a Y; Toggle X: switches an X on;
  Slice X: slices an X (each an action of the agent while the subtask is the current one, so the second
  of two puts is not reached by the first);
- Heat / Cool / Clean X: the agent holds an X that is hot / cold / clean.

The recorded actions are the task's expert (`AlfredTask.expert`, as ALFRED-level action indices).
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rgvlm_core.alfred.level import ACTION_INDEX, PICKUPABLE, token_of
from rgvlm_core.alfred.replay import replay
from rgvlm_core.alfred.replay_scene import class_of
from rgvlm_core.alfred.splits import EVAL_SPLITS, find_alfred_root
from rgvlm_core.alfred.world import CHANGES, World, new_world, step
from rgvlm_core.errors import UsageError
from rgvlm_core.sim.tasks import MAX_SUBTASKS

ALFRED_DATA_ENV = "RGVLM_ALFRED_DATA"
_BY_LOWER = {c.lower(): c for c in PICKUPABLE}


@dataclass(frozen=True)
class AlfredSubtask:
    """One subtask: its kind (Pickup, Put, ...), the object class, the receptacle class (Put) and its
    instruction."""

    kind: str
    obj: str
    receptacle: str | None
    instruction: str


@dataclass(frozen=True)
class AlfredTask:
    """One ALFRED trajectory as an evaluation task."""

    source: str  # the traj_data.json
    start: int  # the recorded low action the chain starts at (the state before it is the initial state)
    split: str
    task_type: str
    floor_plan: str
    room: str
    goal: str
    subtasks: tuple[AlfredSubtask, ...]
    expert: tuple[int, ...]  # the chain's recorded low actions, as ALFRED-level action indices

    def __len__(self) -> int:
        return len(self.subtasks)

    @property
    def instructions(self) -> tuple[str, ...]:
        return tuple(s.instruction for s in self.subtasks)


def data_root(root: str | Path | None = None) -> Path:
    """ALFRED's data folder (holding train/, valid_seen/, ...): `root`, else $RGVLM_ALFRED_DATA, else
    ../shared/alfred/json_2.1.0 beside the working folder or the checkout."""
    from rgvlm_core.sim.low.floorplan import shared_alfred

    return shared_alfred("json_2.1.0", ALFRED_DATA_ENV, root)


def parse_eval_tasks(text: str) -> tuple[str, ...]:
    """`alfred:valid_seen,alfred:valid_unseen` -> ("valid_seen", "valid_unseen"); UsageError naming the
    part that is not an ALFRED split."""
    splits = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        kind, _, split = part.partition(":")
        if kind != "alfred" or split not in EVAL_SPLITS:
            raise UsageError(
                f"--eval-tasks: {part!r} is not an ALFRED task set; use alfred:valid_seen, "
                "alfred:valid_unseen or alfred:train, separated by commas"
            )
        splits.append(split)
    if not splits:
        raise UsageError("--eval-tasks: name at least one task set, e.g. alfred:valid_seen")
    return tuple(dict.fromkeys(splits))


@functools.lru_cache(maxsize=8)
def load_tasks(root: str, split: str) -> dict[int, tuple[AlfredTask, ...]]:
    """The evaluation tasks of one split of the ALFRED folder `root`, by number of subtasks (1..6);
    trajectories whose replay fails are left out (`rgvlm alfred replay` lists them)."""
    from rgvlm_core.alfred.reader import read_trajectory
    from rgvlm_core.sim.low.floorplan import room_of

    folder = find_alfred_root(Path(root)) / split
    if not folder.is_dir():
        raise UsageError(
            f"{folder}: no ALFRED {split} folder (ALFRED's data: --alfred-data or ${ALFRED_DATA_ENV})"
        )
    out: dict[int, list[tuple[str, AlfredTask]]] = {}
    for path in sorted(folder.rglob("traj_data.json")):
        read = read_trajectory(path, split, folder.parent, repeat_idxs=(0,))
        if read.trajectory is None or not read.episodes or read.trajectory.task_only:
            continue
        doc = json.loads(path.read_text())
        if replay(doc, str(path)).failure is not None:
            continue
        try:
            tokens = [ACTION_INDEX[token_of(a["api_action"])] for a in doc["plan"]["low_actions"]]
        except KeyError:
            continue
        episode = read.episodes[0]
        high = doc["plan"]["high_pddl"]
        subtasks = [_subtask(s.kind, high[s.high_idxs[-1]], s.instruction) for s in episode.subtasks]
        spans = [(s.first_step, s.last_step) for s in episode.subtasks]
        floor_plan = str(doc["scene"]["floor_plan"])
        room = room_of(int(floor_plan.removeprefix("FloorPlan"))) or "room"
        relative = path.relative_to(folder.parent).as_posix()
        for n in range(1, min(MAX_SUBTASKS, len(subtasks)) + 1):
            for first in range(len(subtasks) - n + 1):
                chain = tuple(subtasks[first : first + n])
                start, stop = spans[first][0], spans[first + n - 1][1] + 1
                whole = n == len(subtasks)
                task = AlfredTask(
                    source=str(path.resolve()),
                    start=start,
                    split=split,
                    task_type=str(doc["task_type"]),
                    floor_plan=floor_plan,
                    room=room,
                    goal=episode.goal if whole else " Then ".join(s.instruction for s in chain),
                    subtasks=chain,
                    expert=tuple(tokens[start:stop]),
                )
                key = hashlib.sha1(f"{relative}:{first}".encode()).hexdigest()
                out.setdefault(n, []).append((key, task))
    return {n: tuple(t for _, t in sorted(tasks, key=lambda kt: kt[0])) for n, tasks in sorted(out.items())}


def _subtask(kind: str, subgoal: dict[str, Any], instruction: str) -> AlfredSubtask:
    """The class-level goal of a subtask from its manipulation subgoal (the last of its merged ones)."""
    planner = subgoal.get("planner_action") or {}
    if kind in ("Heat", "Cool", "Clean"):  # ALFRED names the appliance; the args name the object
        args = [str(a) for a in (subgoal.get("discrete_action") or {}).get("args") or [] if a]
        obj = _BY_LOWER.get(args[0].lower(), args[0]) if args else ""
        return AlfredSubtask(kind, obj, None, instruction)
    obj = class_of(str(planner.get("objectId")))
    receptacle = class_of(str(planner["receptacleObjectId"])) if kind == "Put" else None
    return AlfredSubtask(kind, obj, receptacle, instruction)


def start_world(task: AlfredTask) -> World:
    """The household where the task starts: set up as ALFRED set it up, then ALFRED's recorded actions
    before the chain's first subtask replayed."""
    from rgvlm_core.alfred.level_state import scene_from_source

    w = new_world(scene_from_source(task.source))
    for a in _low_actions(task.source)[: task.start]:
        why = step(w, a["api_action"])
        if why is not None:  # load_tasks keeps only trajectories whose replay succeeds
            raise RuntimeError(f"{task.source}: the replay failed before the task's start: {why}")
    return w


@functools.lru_cache(maxsize=64)
def _low_actions(source: str) -> list[dict[str, Any]]:
    return list(json.loads(Path(source).read_text())["plan"]["low_actions"])


Event = tuple[str, str, str | None]  # (verb, target id, the id held before the action)
_VERB_OF = {"Pickup": "PickupObject", "Put": "PutObject", "Toggle": "ToggleObjectOn", "Slice": "SliceObject"}
_FLAG_OF = {"Heat": CHANGES["HeatObject"], "Cool": CHANGES["CoolObject"], "Clean": CHANGES["CleanObject"]}


def reached(sub: AlfredSubtask, w: World, event: Event | None) -> bool:
    """Whether the step that produced `event` (None: no valid interaction) reaches `sub`."""
    flag = _FLAG_OF.get(sub.kind)
    if flag is not None:
        if w.held is None or w.held not in w.changed[flag]:
            return False
        return not sub.obj or class_of(w.held).removesuffix("Sliced") == sub.obj.removesuffix("Sliced")
    if event is None or event[0] != _VERB_OF[sub.kind]:
        return False
    _, target, held_before = event
    if sub.kind == "Put":
        return (
            held_before is not None
            and class_of(held_before) == sub.obj
            and class_of(target) == sub.receptacle
        )
    return class_of(target) == sub.obj
