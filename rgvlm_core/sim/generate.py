"""Write simulator episodes as an ALFRED-format dataset that the ALFRED reader imports.

Each episode becomes `<split>/<task dir>/<trial>/traj_data.json` (ALFRED's keys, with the
simulator's subgoal-level actions as low actions and one subgoal per subtask) plus `raw_images/`
(one frame before each action and one after the last), and the `rgvlm_sim` key with what ALFRED
cannot hold: states, validity, progress and completion-based rewards. `MANIFEST.json` at the root
says how the dataset was made and lists every file's SHA-256, so a regeneration can be compared.

At the low level (`level="low"`) the episodes are ALFRED's low-level actions on ALFRED's floor plans
(`floor_plans`, numbers; None: generated rooms) and sim.low.document writes them in ALFRED's own
layout (a GotoLocation subgoal before each manipulation).

Deterministic for a seed: episode i draws everything from `default_rng([seed, i])`, whatever the
number of worker processes.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import platform
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from rgvlm_core.errors import UsageError
from rgvlm_core.sim.behaviour import STYLES, BehaviourConfig, Rollout, rollout
from rgvlm_core.sim.low.behaviour import LowBehaviourConfig
from rgvlm_core.sim.scenes import randomize, sample_task
from rgvlm_core.sim.serialize import state_to_dict
from rgvlm_core.sim.tasks import MAX_SUBTASKS, Task, paraphrase
from rgvlm_core.sim.world import ACTIONS, State

if TYPE_CHECKING:
    from PIL import Image

    from rgvlm_core.sim.low.floorplan import FloorPlan

MANIFEST = "MANIFEST.json"
SCENE_BASE = {"kitchen": 0, "living room": 200, "bedroom": 300, "bathroom": 400}  # ALFRED's numbering
VERB_OF = {
    "Pickup": "PickupObject",
    "Put": "PutObject",
    "Heat": "HeatObject",
    "Cool": "CoolObject",
    "Clean": "CleanObject",
    "Slice": "SliceObject",
    "Toggle": "ToggleObject",
}
DEFAULT_MIX = {"expert": 0.5, "suboptimal": 0.35, "failed": 0.15}
LEVELS = ("subgoal", "low")
_LOW_ONLY = ("level", "floor_plans", "low_behaviour")  # config keys a subgoal-level manifest leaves out


@dataclass(frozen=True)
class GenerateConfig:
    """How a dataset is made; written into its manifest."""

    episodes: int = 100
    seed: int = 0
    mix: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))  # share of each behaviour
    min_subtasks: int = 1
    max_subtasks: int = MAX_SUBTASKS
    randomized: float = 0.5  # share of episodes that start from a randomised initial state
    annotations: int = 2  # instruction paraphrases per trajectory (ALFRED has ~3 per trajectory)
    frames: bool = True
    jpeg_quality: int = 80
    split: str = "train"
    behaviour: BehaviourConfig = field(default_factory=BehaviourConfig)
    level: str = "subgoal"  # "low": ALFRED's low-level actions on a floor plan
    floor_plans: tuple[int, ...] | None = None  # low level: ALFRED floor plans (None: generated rooms)
    low_behaviour: LowBehaviourConfig = field(default_factory=LowBehaviourConfig)

    def check(self) -> None:
        if self.episodes < 1:
            raise UsageError(f"--episodes must be at least 1, got {self.episodes}")
        if not 1 <= self.min_subtasks <= self.max_subtasks <= MAX_SUBTASKS:
            raise UsageError(f"subtasks must satisfy 1 <= min <= max <= {MAX_SUBTASKS}")
        unknown = set(self.mix) - set(STYLES)
        if unknown or not self.mix or any(v < 0 for v in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise UsageError(f"--mix takes non-negative shares of {', '.join(STYLES)}, got {self.mix}")
        if not 0 <= self.randomized <= 1:
            raise UsageError(f"randomized share must be in [0, 1], got {self.randomized}")
        if self.level not in LEVELS:
            raise UsageError(f"--level must be one of {', '.join(LEVELS)}, got {self.level!r}")
        if self.level == "subgoal" and self.floor_plans is not None:
            raise UsageError("--floor-plans needs --level low (the subgoal level has no floor plans)")
        if self.level == "low":
            self.low_plans()

    def low_plans(self) -> dict[int, list[FloorPlan | None]]:
        """Per task length, the floor plans that pose it (None: a generated room); raises UsageError
        naming the length when none of the chosen floor plans poses it."""
        from rgvlm_core.sim.low.floorplan import load_floor_plan
        from rgvlm_core.sim.low.scenes import lengths

        if self.floor_plans is None:
            return {n: [None] for n in range(self.min_subtasks, self.max_subtasks + 1)}
        if not self.floor_plans:
            raise UsageError("--floor-plans names no floor plan")
        try:
            plans = [load_floor_plan(n) for n in self.floor_plans]
        except (OSError, ValueError) as exc:
            raise UsageError(f"--floor-plans: {exc}") from None
        out: dict[int, list[FloorPlan | None]] = {}
        for n in range(self.min_subtasks, self.max_subtasks + 1):
            out[n] = [p for p in plans if n in lengths(p)]
            if not out[n]:
                most = max(max(lengths(p), default=0) for p in plans)
                raise UsageError(
                    f"--floor-plans: none of the {len(plans)} floor plans poses a task of {n} subtasks "
                    f"(at most {most}; five and six subtasks slice, which needs a kitchen's knife and "
                    f"food); lower --max-subtasks or add kitchens"
                )
        return out


@dataclass(frozen=True)
class Generated:
    """One written episode."""

    index: int
    path: str
    style: str
    n_subtasks: int
    completed: int
    steps: int
    task_type: str


def parse_mix(text: str) -> dict[str, float]:
    """`expert=0.5,suboptimal=0.3,failed=0.2` -> dict (shares are normalised later)."""
    mix: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            if not sep:
                raise ValueError
            mix[key.strip()] = float(value)
        except ValueError:
            raise UsageError(f"--mix: expected NAME=SHARE pairs like expert=0.5, got {part!r}") from None
    return mix


def plan_episodes(config: GenerateConfig) -> list[tuple[str, int, bool]]:
    """(behaviour, number of subtasks, randomized) per episode: exact shares, seeded order."""
    n = config.episodes
    total = sum(config.mix.values())
    styles = _allocate({k: v / total for k, v in config.mix.items()}, n)
    lengths = list(range(config.min_subtasks, config.max_subtasks + 1))
    sizes = _allocate({str(k): 1 / len(lengths) for k in lengths}, n)
    randomized = _allocate({"1": config.randomized, "0": 1 - config.randomized}, n)
    rng = np.random.default_rng([config.seed, 2**31 - 1])
    for column in (styles, sizes, randomized):
        rng.shuffle(column)
    return [(s, int(k), r == "1") for s, k, r in zip(styles, sizes, randomized, strict=True)]


def _allocate(shares: dict[str, float], n: int) -> list[str]:
    """Largest-remainder allocation of n items to shares, in a fixed key order."""
    exact = {k: shares[k] * n for k in shares}
    counts = {k: math.floor(v) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (counts[k] - exact[k], k))[: n - sum(counts.values())]:
        counts[k] += 1
    return [k for k in shares for _ in range(counts[k])]


def generate(out: Path, config: GenerateConfig, *, workers: int = 1) -> Iterator[Generated]:
    """Write the dataset under `out` (episode by episode), then its manifest."""
    config.check()
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out}: folder exists and is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    plan = plan_episodes(config)
    jobs = [(out, config, i, *plan[i]) for i in range(config.episodes)]
    written: list[Generated] = []
    if workers <= 1:
        for job in jobs:
            written.append(_write_episode(*job))
            yield written[-1]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(_write_episode_job, jobs, chunksize=8):
                written.append(result)
                yield result
    write_manifest(out, config, written)


def _write_episode_job(job: tuple[Any, ...]) -> Generated:
    return _write_episode(*job)


def _write_episode(
    out: Path, config: GenerateConfig, index: int, style: str, n_subtasks: int, randomized: bool
) -> Generated:
    if config.level == "low":
        return _write_low_episode(out, config, index, style, n_subtasks, randomized)
    from rgvlm_core.sim.render import render_image

    rng = np.random.default_rng([config.seed, index])
    # Draw another task when the episode has no step (a failed one may stop before acting) or when
    # one step completes two subtasks at once (a detour can satisfy a later Put early): the later
    # subtask would own no action, which the ALFRED format cannot express.
    while True:
        task, state = sample_task(rng, n_subtasks, phrasing="seen")
        if randomized:
            state = randomize(state, rng)
        result = rollout(task, state, style, rng, config.behaviour)  # type: ignore[arg-type]
        if result.steps and all(step.reward <= 1 for step in result.steps):
            break
    extra = [paraphrase(task, "seen", rng) for _ in range(config.annotations - 1)]
    scene_num = SCENE_BASE[task.room] + 1 + int(rng.integers(30))
    trial = f"trial_S{config.seed:04d}_{index:06d}"
    return _save(out, config, index, result, trial, scene_num, randomized, extra, traj_document, render_image)


def _write_low_episode(
    out: Path, config: GenerateConfig, index: int, style: str, n_subtasks: int, randomized: bool
) -> Generated:
    from rgvlm_core.sim.low.behaviour import low_rollout
    from rgvlm_core.sim.low.document import low_traj_document
    from rgvlm_core.sim.low.render import render_low_image
    from rgvlm_core.sim.low.scenes import randomize_low, sample_low_task

    rng = np.random.default_rng([config.seed, index])
    plans = _low_plans(config)[n_subtasks]
    while True:  # as at the subgoal level: every subtask must own at least one action
        plan = plans[int(rng.integers(len(plans)))]
        task, state = sample_low_task(rng, n_subtasks, plan, phrasing="seen")
        if randomized:
            state = randomize_low(state, rng)
        result = low_rollout(task, state, style, rng, config.low_behaviour)  # type: ignore[arg-type]
        if result.steps and all(step.reward <= 1 for step in result.steps):
            break
    extra = [paraphrase(task, "seen", rng) for _ in range(config.annotations - 1)]
    number = int(plan.name.removeprefix("FloorPlan")) if plan is not None and is_alfred_plan(plan.name) else 0
    trial = f"trial_L{config.seed:04d}_{index:06d}"
    return _save(
        out, config, index, result, trial, number, randomized, extra, low_traj_document, render_low_image
    )


def _save(
    out: Path,
    config: GenerateConfig,
    index: int,
    result: Rollout[Any],
    trial: str,
    scene_num: int,
    randomized: bool,
    extra: list[tuple[str, tuple[str, ...]]],
    document: Callable[..., dict[str, Any]],
    render: Callable[[Any], Image.Image],
) -> Generated:
    """Write one episode of either level: traj_data.json from `document`, frames from `render`."""
    task = result.task
    trial_dir = out / config.split / _task_dir(task, scene_num) / trial
    trial_dir.mkdir(parents=True)
    doc = document(result, trial, scene_num, "randomized" if randomized else "default", extra)
    (trial_dir / "traj_data.json").write_bytes(orjson.dumps(doc))
    if config.frames:
        states = [s.state for s in result.steps] + [result.final]
        _write_images(trial_dir, [render(s) for s in states if s is not None], config.jpeg_quality)
    return Generated(
        index,
        str(trial_dir.relative_to(out)),
        result.style,
        len(task.subtasks),
        result.completed,
        len(result.steps),
        task.task_type,
    )


_LOW_PLANS: dict[tuple[Any, ...], dict[int, list[Any]]] = {}


def _low_plans(config: GenerateConfig) -> dict[int, list[Any]]:
    """GenerateConfig.low_plans, once per process and config (each worker loads the floor plans once)."""
    key = (config.floor_plans, config.min_subtasks, config.max_subtasks)
    if key not in _LOW_PLANS:
        _LOW_PLANS[key] = config.low_plans()
    return _LOW_PLANS[key]


def is_alfred_plan(name: str) -> bool:
    """Whether a floor plan's name is an ALFRED one (FloorPlanN), not a generated room's."""
    return name.startswith("FloorPlan") and name.removeprefix("FloorPlan").isdigit()


def _task_dir(task: Task, scene_num: int) -> str:
    p = task.params
    parts = [task.task_type, str(p["object_target"]), str(p["mrecep_target"] or "None")]
    parts.append(str(p["parent_target"] or p["toggle_target"] or "None"))
    return "-".join([*parts, str(scene_num)])


def traj_document(
    result: Rollout[State],
    trial: str,
    scene_num: int,
    condition: str,
    paraphrases: list[tuple[str, tuple[str, ...]]],
) -> dict[str, Any]:
    """The traj_data.json of a rollout, in ALFRED's layout plus the `rgvlm_sim` key."""
    task = result.task
    n = len(result.steps)
    high_pddl = [
        {
            "high_idx": k,
            "discrete_action": {
                "action": VERB_OF[s.kind],
                "args": [x.lower() for x in (s.obj, s.target) if x],
            },
            "planner_action": {
                "action": VERB_OF[s.kind],
                "objectId": s.obj,
                "receptacleObjectId": s.target or "",
            },
        }
        for k, s in enumerate(task.subtasks)
    ]
    high_pddl.append(
        {
            "high_idx": len(task.subtasks),
            "discrete_action": {"action": "NoOp", "args": []},
            "planner_action": {"action": "End"},
        }
    )
    low_actions = [
        {
            "high_idx": step.subtask_index,
            "discrete_action": {"action": ACTIONS[step.action][0], "args": [ACTIONS[step.action][1]]},
            "api_action": {"action": ACTIONS[step.action][0], "objectId": ACTIONS[step.action][1]},
        }
        for step in result.steps
    ]
    images = [
        {"low_idx": t, "high_idx": s.subtask_index, "image_name": f"{t:09d}.png"}
        for t, s in enumerate(result.steps)
    ]
    images.append({"low_idx": n, "high_idx": result.steps[-1].subtask_index, "image_name": f"{n:09d}.png"})
    anns = [(task.goal, task.instructions), *paraphrases]
    assert result.final is not None
    return {
        "images": images,
        "pddl_params": task.params,
        "plan": {"high_pddl": high_pddl, "low_actions": low_actions},
        "scene": {
            "floor_plan": f"Sim{task.room.title().replace(' ', '')}{scene_num}",
            "scene_num": scene_num,
            "init_action": {"action": "Start", "location": result.initial.agent or "door"},
            "object_poses": [{"objectName": o.cls, "location": o.loc} for o in result.initial.objects],
            "object_toggles": [],
            "dirty_and_empty": False,
        },
        "task_id": trial,
        "task_type": task.task_type,
        "turk_annotations": {
            "anns": [
                {"assignment_id": "rgvlm-sim", "task_desc": goal, "high_descs": list(descs), "votes": [1]}
                for goal, descs in anns
            ]
        },
        "rgvlm_sim": {
            "version": 1,
            **outcome(result, condition),
            "states": [state_to_dict(s.state) for s in result.steps] + [state_to_dict(result.final)],
        },
    }


def outcome(result: Rollout[Any], condition: str) -> dict[str, Any]:
    """The `rgvlm_sim` fields both levels write: how the episode was made and what each step did."""
    task = result.task
    return {
        "behaviour": result.style,
        "condition": condition,
        "room": task.room,
        "n_subtasks": len(task.subtasks),
        "completed": result.completed,
        "expert_length": result.expert_length,
        "subtasks": [asdict(s) for s in task.subtasks],
        "rewards": [s.reward for s in result.steps],
        "progress": [s.progress for s in result.steps],
        "valid": [s.valid for s in result.steps],
        "invalid_reasons": [s.reason for s in result.steps],
    }


def _write_images(trial_dir: Path, images: list[Image.Image], quality: int) -> None:
    """raw_images/000000000.jpg, ...: one frame before each action and one after the last."""
    frames = trial_dir / "raw_images"
    frames.mkdir()
    for t, image in enumerate(images):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=quality, optimize=False)
        (frames / f"{t:09d}.jpg").write_bytes(buffer.getvalue())


def write_manifest(out: Path, config: GenerateConfig, written: list[Generated]) -> dict[str, Any]:
    """MANIFEST.json: how the dataset was made, what is in it, and every file's SHA-256."""
    import PIL

    import rgvlm_core

    files = {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }
    cfg = asdict(config)
    if config.level == "subgoal":  # as before the low level existed: subgoal manifests stay as they were
        cfg = {k: v for k, v in cfg.items() if k not in _LOW_ONLY}
    doc = {
        "made_by": "rgvlm sim generate",
        "command": _command(config),
        "config": cfg,
        "versions": {
            "rgvlm": rgvlm_core.__version__,
            "python": platform.python_version(),
            "numpy": np.__version__,
            "pillow": PIL.__version__,
        },
        "counts": {
            "episodes": len(written),
            "steps": sum(g.steps for g in written),
            "by_behaviour": dict(sorted(Counter(g.style for g in written).items())),
            "by_n_subtasks": {str(k): v for k, v in sorted(Counter(g.n_subtasks for g in written).items())},
            "by_task_type": dict(sorted(Counter(g.task_type for g in written).items())),
        },
        "files": files,
    }
    (out / MANIFEST).write_text(json.dumps(doc, indent=1) + "\n")
    return doc


def _command(config: GenerateConfig) -> str:
    mix = ",".join(f"{k}={v:g}" for k, v in config.mix.items())
    return (
        f"rgvlm sim generate --episodes {config.episodes} --seed {config.seed} --mix {mix} "
        f"--min-subtasks {config.min_subtasks} --max-subtasks {config.max_subtasks} "
        f"--randomized {config.randomized:g} --annotations {config.annotations} --split {config.split}"
        + ("" if config.frames else " --no-frames")
        + (f" --jpeg-quality {config.jpeg_quality}" if config.frames and config.jpeg_quality != 80 else "")
        + (_low_options(config) if config.level == "low" else "")
    )


def _low_options(config: GenerateConfig) -> str:
    plans = "" if config.floor_plans is None else " --floor-plans " + ",".join(map(str, config.floor_plans))
    return " --level low" + plans
