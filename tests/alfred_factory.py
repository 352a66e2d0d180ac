"""Synthetic ALFRED data for tests: valid traj_data.json files, raw_images/ frames and feat_conv.pt.

Stable helpers shared by the reader, CLI, store and bench tests:

- `write_trajectory(root, ...)` writes `<root>/<split>/<task_dir>/<trial>/traj_data.json`, a VALID
  train/valid trajectory shaped like the real release (alfred-format.md): GotoLocation subgoals walk
  with MoveAhead_25/Rotate*/Look*, manipulation subgoals carry their interaction actions with
  AI2-THOR object ids, two frames per low action in `images`, annotations with task_desc,
  high_descs, votes and assignment_id. `mutate(doc)` edits the dict before it is written.
- `write_test_trial(root, ...)` writes a test-split trial (scene, task_id, turk_annotations only).
- `write_features`, `write_splits_file`, `drop_low_actions`, `task_name` help build variants.

Default plan (pick_and_place_simple, 4 subgoals + NoOp, 8 low actions, 2 subtasks):
    GotoLocation(diningtable) 3 steps, PickupObject(apple) 1, GotoLocation(countertop) 3, PutObject 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

DEFAULT_TASK_DIR = "pick_and_place_simple-Apple-None-CounterTop-1"
DEFAULT_TRIAL = "trial_T20190101_000000_000001"
DEFAULT_TEST_TRIAL = "trial_T20190101_000000_000002"
DEFAULT_SUBGOALS: tuple[tuple[str, list[str]], ...] = (
    ("GotoLocation", ["diningtable"]),
    ("PickupObject", ["apple"]),
    ("GotoLocation", ["countertop"]),
    ("PutObject", ["apple", "countertop"]),
)
FRAMES_PER_LOW_ACTION = 2
FRAME_SIZE = 300  # ALFRED frames are 300x300
FEATURE_LAYOUTS = ("low_actions", "low_actions+1", "images+10")

_NAVIGATION_CYCLE = (
    "MoveAhead_25",
    "RotateLeft_90",
    "MoveAhead_25",
    "RotateRight_90",
    "MoveAhead_25",
    "LookDown_15",
)
# Object classes of lower-case subgoal arguments (the release writes them lower-case).
_CLASSES = {
    "countertop": "CounterTop",
    "diningtable": "DiningTable",
    "sinkbasin": "SinkBasin",
    "desklamp": "DeskLamp",
    "floorlamp": "FloorLamp",
    "butterknife": "ButterKnife",
    "applesliced": "AppleSliced",
    "tomatosliced": "TomatoSliced",
    "coffeetable": "CoffeeTable",
    "sidetable": "SideTable",
    "alarmclock": "AlarmClock",
    "soapbar": "SoapBar",
}
_PHRASES = {
    "GotoLocation": ("Walk to the {0}.", "Go over to the {0}.", "Turn around and head to the {0}."),
    "PickupObject": ("Pick up the {0}.", "Grab the {0}.", "Take the {0}."),
    "PutObject": ("Put the {0} on the {1}.", "Place the {0} on the {1}.", "Set the {0} down on the {1}."),
    "ToggleObject": ("Turn on the {0}.", "Switch the {0} on.", "Light the {0}."),
    "SliceObject": ("Slice the {0}.", "Cut the {0}.", "Cut the {0} into slices."),
    "HeatObject": ("Heat the {0} in the microwave.", "Warm the {0} up.", "Cook the {0} in the microwave."),
    "CoolObject": (
        "Chill the {0} in the fridge.",
        "Cool the {0} down.",
        "Put the {0} in the fridge to cool.",
    ),
    "CleanObject": ("Rinse the {0} in the sink.", "Wash the {0}.", "Clean the {0} off in the sink."),
}


def object_class(arg: str) -> str:
    """The AI2-THOR class of a subgoal argument: "countertop" -> "CounterTop", "apple" -> "Apple"."""
    return _CLASSES.get(arg, arg[:1].upper() + arg[1:])


def object_id(arg: str) -> str:
    """A realistic object id: "Apple|+01.00|+00.90|-01.00"; basins and slices name their class last."""
    cls = object_class(arg)
    x = sum(map(ord, cls)) % 300 / 100
    coords = f"+{x:05.2f}|+00.90|-01.00"
    if cls.endswith("Basin"):
        return f"{cls[: -len('Basin')]}|{coords}|{cls}"
    if cls.endswith("Sliced"):
        return f"{cls[: -len('Sliced')]}|{coords}|{cls}_1"
    return f"{cls}|{coords}"


def task_name(path: Path) -> str:
    """The splits-file `task` of a traj_data.json: "<task_dir>/<trial>" (or "<trial>" for tests)."""
    trial_dir = path.parent
    if trial_dir.parent.name.startswith("tests_"):
        return trial_dir.name
    return f"{trial_dir.parent.name}/{trial_dir.name}"


def _interaction(name: str, arg: str, receptacle: str | None = None) -> dict[str, Any]:
    api: dict[str, Any] = {"action": name, "forceAction": True, "objectId": object_id(arg)}
    if name == "PutObject":
        api["receptacleObjectId"] = object_id(receptacle or "countertop")
        api["placeStationary"] = True
    mask = [[45100, 20], [45400, 22], [45700, 18]]
    args = {"bbox": [100, 150, 122, 153], "mask": mask, "point": [111, 151]}
    return {"api_action": api, "discrete_action": {"action": name, "args": args}}


def _manipulation(action: str, args: Sequence[str]) -> list[dict[str, Any]]:
    """The interaction actions the planner emits for one manipulation subgoal."""
    obj = args[0] if args else "apple"
    if action == "PickupObject":
        return [_interaction("PickupObject", obj)]
    if action == "PutObject":
        return [_interaction("PutObject", obj, args[1] if len(args) > 1 else "countertop")]
    if action == "ToggleObject":
        return [_interaction("ToggleObjectOn", obj)]
    if action == "SliceObject":
        return [_interaction("SliceObject", obj)]
    box = {"HeatObject": "microwave", "CoolObject": "fridge"}.get(action)
    if box is not None:
        cycle = ["OpenObject", "CloseObject", "ToggleObjectOn", "ToggleObjectOff", "OpenObject"]
        if action == "CoolObject":
            cycle = ["OpenObject", "CloseObject", "OpenObject"]
        steps = [_interaction("OpenObject", box), _interaction("PutObject", obj, box)]
        steps += [_interaction(name, box) for name in cycle[1:]]
        return [*steps, _interaction("PickupObject", obj), _interaction("CloseObject", box)]
    if action == "CleanObject":
        steps = [_interaction("PutObject", obj, "sinkbasin"), _interaction("ToggleObjectOn", "faucet")]
        return [*steps, _interaction("ToggleObjectOff", "faucet"), _interaction("PickupObject", obj)]
    raise ValueError(f"factory cannot plan subgoal action {action!r}")


def _low_actions(action: str, args: Sequence[str], n_navigation: int, start: int) -> list[dict[str, Any]]:
    if action == "NoOp":
        return []
    if action != "GotoLocation":
        return _manipulation(action, args)
    steps = []
    for k in range(n_navigation):
        name = _NAVIGATION_CYCLE[(start + k) % len(_NAVIGATION_CYCLE)]
        api = {"action": name.split("_")[0], "forceAction": True}
        steps.append({"api_action": api, "discrete_action": {"action": name, "args": {}}})
    return steps


def _planner_action(action: str, args: Sequence[str], i: int) -> dict[str, Any]:
    if action == "GotoLocation":
        return {"action": "GotoLocation", "location": f"loc|{i}|{-i}|0|45"}
    if action == "NoOp":
        return {"action": "End", "value": 1}
    return {"action": action, "objectId": object_id(args[0] if args else "apple"), "forceVisible": True}


def _annotation(subgoals: Sequence[tuple[str, list[str]]], r: int, goal_object: str) -> dict[str, Any]:
    descs = [
        _PHRASES[action][r % 3].format(*args, "it", "it") for action, args in subgoals if action != "NoOp"
    ]
    verb = ("Move", "Bring", "Take")[r % 3]
    return {
        "assignment_id": f"A{r:03d}FACTORY_{r}",
        "high_descs": descs,
        "task_desc": f"{verb} the {goal_object} where it belongs.",
        "votes": [1, 1],
    }


def build_document(
    task_dir: str = DEFAULT_TASK_DIR,
    trial: str = DEFAULT_TRIAL,
    subgoals: Sequence[tuple[str, list[str]]] | None = None,
    *,
    n_annotations: int = 3,
    noop: bool = True,
    steps_per_subgoal: int = 3,
) -> dict[str, Any]:
    """The traj_data.json dict that `write_trajectory` writes (no files touched)."""
    plan_goals = list(subgoals if subgoals is not None else DEFAULT_SUBGOALS)
    if noop:
        plan_goals.append(("NoOp", []))
    parts = task_dir.split("-")
    task_type = parts[0]
    scene_num = int(parts[-1]) if parts[-1].isdigit() else 1
    high_pddl: list[dict[str, Any]] = []
    low_actions: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    for i, (action, args) in enumerate(plan_goals):
        high_pddl.append(
            {
                "discrete_action": {"action": action, "args": list(args)},
                "high_idx": i,
                "planner_action": _planner_action(action, args, i),
            }
        )
        for low in _low_actions(action, args, steps_per_subgoal, len(low_actions)):
            for _ in range(FRAMES_PER_LOW_ACTION):
                name = f"{len(images):09d}.png"
                images.append({"high_idx": i, "image_name": name, "low_idx": len(low_actions)})
            low_actions.append({**low, "high_idx": i})
    goal_object = parts[1].lower() if len(parts) > 1 else "apple"
    anns = [_annotation(plan_goals, r, goal_object) for r in range(n_annotations)]
    return {
        "images": images,
        "pddl_params": {
            "mrecep_target": "",
            "object_sliced": False,
            "object_target": parts[1] if len(parts) > 1 else "Apple",
            "parent_target": parts[3] if len(parts) > 3 else "CounterTop",
            "toggle_target": "",
        },
        "plan": {"high_pddl": high_pddl, "low_actions": low_actions},
        "scene": _scene(scene_num),
        "task_id": trial,
        "task_type": task_type,
        "turk_annotations": {"anns": anns},
    }


def _scene(scene_num: int) -> dict[str, Any]:
    return {
        "dirty_and_empty": False,
        "floor_plan": f"FloorPlan{scene_num}",
        "init_action": {
            "action": "TeleportFull",
            "horizon": 30,
            "rotation": 90,
            "x": 0.25,
            "y": 0.9,
            "z": -1.0,
        },
        "object_poses": [],
        "object_toggles": [],
        "random_seed": 1234,
        "scene_num": scene_num,
    }


def write_trajectory(
    root: Path,
    split: str = "train",
    *,
    task_dir: str = DEFAULT_TASK_DIR,
    trial: str = DEFAULT_TRIAL,
    subgoals: Sequence[tuple[str, list[str]]] | None = None,
    n_annotations: int = 3,
    noop: bool = True,
    frames: bool = False,
    features: str | None = None,
    steps_per_subgoal: int = 3,
    mutate: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Write a valid synthetic trajectory under `root`; returns its traj_data.json path.

    subgoals: (high action, lower-case args) pairs, e.g. ("PutObject", ["apple", "countertop"]);
      the terminal NoOp is appended when `noop`. GotoLocation gets `steps_per_subgoal` navigation
      steps; manipulations get their real interaction sequence (1 step, Heat 8, Cool 6, Clean 4).
    frames: also write raw_images/<n>.jpg (300x300 JPEG) for every `images` entry.
    features: also write feat_conv.pt, zeros [T, 512, 7, 7] in that layout (see FEATURE_LAYOUTS).
    Frames and features follow the document as built, BEFORE `mutate` edits it.
    """
    doc = build_document(
        task_dir, trial, subgoals, n_annotations=n_annotations, noop=noop, steps_per_subgoal=steps_per_subgoal
    )
    trial_dir = Path(root) / split / task_dir / trial
    n_low, n_images = len(doc["plan"]["low_actions"]), len(doc["images"])
    if mutate is not None:
        mutate(doc)
    path = _write_json(trial_dir, doc)
    if frames:
        write_frames(trial_dir, n_images)
    if features is not None:
        rows = {"low_actions": n_low, "low_actions+1": n_low + 1, "images+10": n_images + 10}[features]
        write_features(trial_dir, rows)
    return path


def write_test_trial(
    root: Path,
    split: str = "tests_seen",
    *,
    trial: str = DEFAULT_TEST_TRIAL,
    n_annotations: int = 3,
    mutate: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """A test-split trial: only scene, task_id and turk_annotations (without votes/assignment_id)."""
    full = build_document(trial=trial, n_annotations=n_annotations)
    anns = [
        {"high_descs": a["high_descs"], "task_desc": a["task_desc"]} for a in full["turk_annotations"]["anns"]
    ]
    doc = {"scene": full["scene"], "task_id": trial, "turk_annotations": {"anns": anns}}
    if mutate is not None:
        mutate(doc)
    return _write_json(Path(root) / split / trial, doc)


def _write_json(trial_dir: Path, doc: Any) -> Path:
    trial_dir.mkdir(parents=True, exist_ok=True)
    path = trial_dir / "traj_data.json"
    path.write_text(json.dumps(doc, indent=1))
    return path


def write_frames(trial_dir: Path, n_images: int) -> None:
    """raw_images/000000000.jpg ... as small real JPEGs, each a different shade."""
    from PIL import Image

    folder = Path(trial_dir) / "raw_images"
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(n_images):
        shade = (40 + 7 * n % 200, 90, 160)
        Image.new("RGB", (FRAME_SIZE, FRAME_SIZE), shade).save(folder / f"{n:09d}.jpg", quality=60)


def write_features(
    trial_dir: Path,
    n_rows: int,
    row_shape: Sequence[int] = (512, 7, 7),
    *,
    dtype: str = "float32",
    legacy: bool = False,
) -> Path:
    """feat_conv.pt holding zeros [n_rows, *row_shape]; `legacy` uses the pre-zip format (no mmap)."""
    import torch

    tensor = torch.zeros(n_rows, *row_shape, dtype=getattr(torch, dtype))
    path = Path(trial_dir) / "feat_conv.pt"
    torch.save(tensor, path, _use_new_zipfile_serialization=not legacy)
    return path


def write_splits_file(path: Path, entries: Mapping[str, Sequence[tuple[str, int]]]) -> Path:
    """A splits file (oct21.json shape): split -> [{"repeat_idx": r, "task": task}]."""
    doc = {split: [{"repeat_idx": r, "task": task} for task, r in items] for split, items in entries.items()}
    Path(path).write_text(json.dumps(doc, indent=1))
    return Path(path)


def drop_low_actions(doc: dict[str, Any], high_idxs: Sequence[int]) -> None:
    """Remove the low actions (and their images) of the given subgoals, renumbering low_idx."""
    plan = doc["plan"]
    kept = [t for t, low in enumerate(plan["low_actions"]) if low["high_idx"] not in high_idxs]
    new_index = {t: i for i, t in enumerate(kept)}
    plan["low_actions"] = [plan["low_actions"][t] for t in kept]
    images = [dict(image) for image in doc["images"] if image["low_idx"] in new_index]
    for image in images:
        image["low_idx"] = new_index[image["low_idx"]]
    doc["images"] = images


def run_import(ws: Any, data: Path, **config: object) -> object:
    """Import `data` into the workspace `ws` to the end; the import's summary (the generator's return)."""
    from rgvlm_core.importer import ImportConfig, import_alfred

    run = import_alfred(ws, data, ImportConfig(**config))  # type: ignore[arg-type]
    while True:
        try:
            next(run)
        except StopIteration as stop:
            return stop.value
