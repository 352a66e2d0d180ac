"""Read ALFRED trajectories (traj_data.json, raw_images/, feat_conv.pt) into the domain model.

One `ReadResult` per trajectory: the Trajectory and its Episodes (one per annotation), or the
reason it was refused. Bad data never raises: every problem becomes a one-line DataFormatError
naming the file (relative to the import root) and the field. A bad annotation is refused alone;
anything else wrong refuses the whole trajectory.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import orjson

from rgvlm_core.alfred.checks import (
    FieldError,
    as_dict,
    as_str,
    dict_member,
    json_type,
    list_member,
    member,
    one_line,
    short,
    str_member,
)
from rgvlm_core.alfred.files import MAX_JSON_BYTES, RefusedPath, read_capped
from rgvlm_core.alfred.observations import observe
from rgvlm_core.alfred.plan import Plan, build_steps, parse_plan
from rgvlm_core.alfred.simext import KEY as SIM_KEY
from rgvlm_core.alfred.simext import parse_sim_extension
from rgvlm_core.alfred.splits import (
    TEST_SPLITS,
    Entry,
    check_splits,
    find_alfred_root,
    load_splits,
    scan_trajectory_files,
    search_splits_file,
    trajectory_path,
)
from rgvlm_core.episodes import ALFRED_TASK_TYPES, Episode, Subtask, Trajectory
from rgvlm_core.errors import DataFormatError, UsageError

log = logging.getLogger(__name__)

DATASET = "alfred"
SIM_DATASET = "sim"
REQUIRED_KEYS: tuple[str, ...] = ("images", "plan", "scene", "task_id", "task_type", "turk_annotations")
TEST_REQUIRED_KEYS: tuple[str, ...] = ("task_id", "turk_annotations")
# Exceptions that malformed data can provoke in parsing code; they are reported, not raised.
_DATA_SHAPED = (KeyError, TypeError, IndexError, ValueError, AttributeError)


@dataclass(frozen=True)
class ReadResult:
    """What reading one trajectory gave: `trajectory` None means the whole trajectory was refused."""

    path: str  # traj_data.json relative to the import root (the splits file for splits-file errors)
    trajectory: Trajectory | None
    episodes: tuple[Episode, ...]
    errors: tuple[DataFormatError, ...]  # why it was refused, or the annotations refused alone
    # asked to replay (`replay=True`): why the trajectory has no simulator states (None: it has them)
    replay_failure: str | None = None


@dataclass(frozen=True)
class _Read:
    """read_trajectory's result before out-of-range repeat_idxs are turned into errors."""

    result: ReadResult
    n_annotations: int
    out_of_range: tuple[int, ...]


def read_trajectory(
    path: Path, split: str, root: Path, *, repeat_idxs: Sequence[int] | None = None, replay: bool = False
) -> ReadResult:
    """Read one traj_data.json; `repeat_idxs` picks annotations (None = every one); `replay` attaches
    the symbolic household's state to every step of a train/valid trajectory whose replay reaches every
    subgoal (alfred.level_state), and says why not in `replay_failure` otherwise.

    Never raises for bad data. A repeat_idx beyond the file's annotations is reported as an error
    on `turk_annotations.anns`; a trajectory left with no episode at all is refused.
    """
    read = _read(Path(path), split, Path(root), repeat_idxs, replay)
    if not read.out_of_range:
        return read.result
    result = read.result
    n = read.n_annotations
    errors = result.errors + tuple(
        DataFormatError(
            result.path,
            "turk_annotations.anns",
            f"annotation {r} was asked for but the file has {n} (repeat_idx 0..{n - 1})",
        )
        for r in read.out_of_range
    )
    trajectory = result.trajectory if result.episodes else None
    return ReadResult(result.path, trajectory, result.episodes, errors, result.replay_failure)


def _read(
    path: Path, split: str, root: Path, repeat_idxs: Sequence[int] | None, replay: bool = False
) -> _Read:
    check_splits((split,))  # an unknown split is the caller's mistake, not the data's
    source = _relative(path, root)
    try:  # a FIFO, a link to /dev/zero or a giant file is refused here, before any parsing
        doc = orjson.loads(read_capped(path, MAX_JSON_BYTES))
    except RefusedPath as exc:
        return _refused(source, DataFormatError(source, "", exc.reason))
    except orjson.JSONDecodeError as exc:
        problem = f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        return _refused(source, DataFormatError(source, "(json)", problem))
    section = [""]  # the part being parsed, for errors raised by data-shaped exceptions
    try:
        read = _parse_document(doc, path, split, source, repeat_idxs, section)
    except FieldError as exc:
        return _refused(source, DataFormatError(source, exc.field, exc.problem))
    except DataFormatError as exc:  # from inspect_features, already naming feat_conv.pt
        return _refused(source, exc)
    except _DATA_SHAPED as exc:
        log.debug("unexpected structure in %s", source, exc_info=True)
        problem = f"unexpected structure ({type(exc).__name__}: {one_line(exc, 100)})"
        return _refused(source, DataFormatError(source, section[0], problem))
    trajectory = read.result.trajectory
    if not replay or trajectory is None or trajectory.dataset != DATASET or trajectory.task_only:
        return read
    trajectory, failure = _with_states(doc, path, trajectory)
    return replace(read, result=replace(read.result, trajectory=trajectory, replay_failure=failure))


def _with_states(doc: dict[str, Any], path: Path, trajectory: Trajectory) -> tuple[Trajectory, str | None]:
    """The trajectory with the replayed household's state on every step, or unchanged and why not."""
    from rgvlm_core.alfred.level_state import replay_states
    from rgvlm_core.errors import RGVLMError

    try:
        states = replay_states(doc, os.path.abspath(path))
    except RGVLMError as exc:  # a floor plan's layout files missing or unreadable
        return trajectory, one_line(exc, 200)
    except _DATA_SHAPED as exc:
        log.debug("replay of %s failed", path, exc_info=True)
        return trajectory, f"replay: unexpected structure ({type(exc).__name__}: {one_line(exc, 100)})"
    if isinstance(states, str):
        return trajectory, states
    before, final = states
    steps = tuple(replace(step, state=before[step.t]) for step in trajectory.steps)
    return replace(trajectory, steps=steps, final_state=final), None


def _refused(source: str, error: DataFormatError) -> _Read:
    return _Read(ReadResult(source, None, (), (error,)), 0, ())


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _parse_document(
    doc: Any, path: Path, split: str, source: str, repeat_idxs: Sequence[int] | None, section: list[str]
) -> _Read:
    if type(doc) is not dict:
        raise FieldError("", f"expected a JSON object at the top level, got {json_type(doc)}")
    task_only = split in TEST_SPLITS
    for key in TEST_REQUIRED_KEYS if task_only else REQUIRED_KEYS:
        member(doc, key)
    trial_dir = path.parent
    name = f"{split}/{trial_dir.name}" if task_only else f"{split}/{trial_dir.parent.name}/{trial_dir.name}"
    is_sim = SIM_KEY in doc and not task_only
    dataset = SIM_DATASET if is_sim else DATASET
    trajectory = Trajectory(
        id=f"{dataset}:{name}",
        dataset=dataset,
        split=split,
        task_type=None if task_only else _task_type(doc),
        task_id=str_member(doc, "task_id"),
        scene=_floor_plan(doc.get("scene"), required=not task_only),
        source_dir=os.path.abspath(trial_dir),
        task_only=task_only,
    )
    plan = None
    if not task_only:
        section[0] = "plan"
        plan = parse_plan(dict_member(doc, "plan"), sim=is_sim)
        sim = None
        if is_sim:
            section[0] = SIM_KEY
            sim = parse_sim_extension(doc[SIM_KEY], len(plan.tokens), len(plan.spans))
        section[0] = "images"
        seen = observe(list_member(doc, "images"), len(plan.tokens), trial_dir, source)
        trajectory = replace(
            trajectory,
            steps=build_steps(plan, seen.frames, seen.feature_rows, sim),
            subtask_spans=plan.spans,
            completed_subtasks=sim.completed if sim else len(plan.spans),
            behaviour=sim.behaviour if sim else None,
            condition=sim.condition if sim else None,
            final_state=sim.final_state if sim else None,
            has_frames=seen.frames is not None,
            features_path=seen.features_path,
            features_layout=seen.features_layout,
        )
    section[0] = "turk_annotations"
    return _episodes(doc, trajectory, plan, source, repeat_idxs)


def _task_type(doc: dict[str, Any]) -> str:
    task_type = str_member(doc, "task_type")
    if task_type not in ALFRED_TASK_TYPES:
        known = ", ".join(ALFRED_TASK_TYPES)
        raise FieldError("task_type", f"unknown task type {short(task_type)}; known: {known}")
    return task_type


def _floor_plan(scene: Any, *, required: bool) -> str | None:
    if scene is None and not required:
        return None
    scene = as_dict(scene, "scene")
    floor_plan = scene.get("floor_plan")
    return None if floor_plan is None else as_str(floor_plan, "scene.floor_plan")


def _episodes(
    doc: dict[str, Any],
    trajectory: Trajectory,
    plan: Plan | None,
    source: str,
    repeat_idxs: Sequence[int] | None,
) -> _Read:
    anns = list_member(dict_member(doc, "turk_annotations"), "anns", "turk_annotations")
    if not anns:
        raise FieldError("turk_annotations.anns", "empty array; expected at least one annotation")
    n = len(anns)
    wanted = range(n) if repeat_idxs is None else sorted(set(repeat_idxs))
    out_of_range = tuple(r for r in wanted if not 0 <= r < n)
    episodes: list[Episode] = []
    errors: list[DataFormatError] = []
    for r in wanted:
        if 0 <= r < n:
            try:
                episodes.append(_episode(anns[r], r, trajectory, plan))
            except FieldError as exc:
                errors.append(DataFormatError(source, exc.field, exc.problem))
            except _DATA_SHAPED as exc:
                problem = f"unexpected structure ({type(exc).__name__}: {one_line(exc, 100)})"
                errors.append(DataFormatError(source, f"turk_annotations.anns[{r}]", problem))
    kept = trajectory if episodes else None
    return _Read(ReadResult(source, kept, tuple(episodes), tuple(errors)), n, out_of_range)


def _episode(ann: Any, r: int, trajectory: Trajectory, plan: Plan | None) -> Episode:
    prefix = f"turk_annotations.anns[{r}]"
    ann = as_dict(ann, prefix)
    goal = str_member(ann, "task_desc", prefix).strip()
    descs = list_member(ann, "high_descs", prefix)
    for i, desc in enumerate(descs):
        as_str(desc, f"{prefix}.high_descs[{i}]")
    subtasks: tuple[Subtask, ...] = ()
    if plan is not None:
        expected = plan.n_described_subgoals
        if len(descs) != expected:
            noop = "with" if plan.has_noop else "without"
            raise FieldError(
                f"{prefix}.high_descs",
                f"expected {expected} sentences (one per subgoal; {len(plan.high_actions)} subgoals "
                f"{noop} a terminal NoOp), got {len(descs)}",
            )
        subtasks = tuple(
            Subtask(
                index=index,
                kind=kind,
                instruction=" ".join(descs[i].strip() for i in high_idxs).strip(),
                first_step=first,
                last_step=last,
                high_idxs=high_idxs,
                completed=trajectory.completed_subtasks is None or index < trajectory.completed_subtasks,
            )
            for index, (kind, first, last, high_idxs) in enumerate(plan.spans)
        )
    return Episode(
        id=f"{trajectory.id}#{r}",
        trajectory=trajectory,
        repeat_idx=r,
        goal=goal,
        subtasks=subtasks,
        instructions=tuple(descs),
    )


def iter_alfred(
    root: Path,
    *,
    splits: Sequence[str] | None = None,
    splits_file: Path | Literal["auto"] | None = "auto",
    annotation: int | None = None,
    limit: int | None = None,
    replay: bool = False,
) -> Iterator[ReadResult]:
    """One ReadResult per trajectory under `root` (or its only ALFRED child folder); `replay` as in
    `read_trajectory`.

    With a splits file ("auto" looks for one, see find_splits_file; None reads every file found),
    only the listed (task, repeat_idx) entries of the chosen splits are read; a listed trajectory
    missing on disk, or a repeat_idx beyond its annotations, gives a ReadResult with trajectory
    None whose error names the splits file and entry (`train[4].task`). `annotation=k` keeps only
    repeat_idx k. `limit` caps the number of trajectories visited (a listed trajectory missing on
    disk counts as one). Arguments are checked at once; reading happens as the iterator advances.

    Nothing under `root` is trusted (files.py): a traj_data.json that is not a regular file of at
    most MAX_JSON_BYTES, an entry where a folder belongs that is not one, and an auto-detected splits
    file that cannot be read safely each give a ReadResult with trajectory None naming the path and
    what it is. An unreadable `splits_file` given explicitly raises DataFormatError.
    """
    root = find_alfred_root(Path(root))
    chosen = check_splits(splits)
    if annotation is not None and annotation < 0:
        raise UsageError(f"annotation must be >= 0, got {annotation}")
    if limit is not None and limit < 0:
        raise UsageError(f"limit must be >= 0, got {limit}")
    refused: tuple[ReadResult, ...] = ()
    if splits_file == "auto":
        search = search_splits_file(root)
        listing_path = search.path
        refused = tuple(ReadResult(err.source, None, (), (err,)) for err in search.refused)
    else:
        listing_path = splits_file
    if listing_path is None:
        return itertools.chain(refused, _iter_found(root, chosen, annotation, limit, replay))
    listing = load_splits(Path(listing_path))
    listed = _iter_listed(root, chosen, Path(listing_path), listing, annotation, limit, replay)
    return itertools.chain(refused, listed)


def _iter_found(
    root: Path, chosen: Sequence[str], annotation: int | None, limit: int | None, replay: bool
) -> Iterator[ReadResult]:
    wanted = None if annotation is None else (annotation,)
    for count, entry in enumerate(scan_trajectory_files(root, chosen)):
        if limit is not None and count >= limit:
            return
        if entry.problem is not None:
            yield _refused_entry(entry, root)
        else:
            yield read_trajectory(entry.path, entry.split, root, repeat_idxs=wanted, replay=replay)


def _refused_entry(entry: Entry, root: Path) -> ReadResult:
    """An entry where a folder belongs that is not one, reported like a refused file."""
    source = _relative(entry.path, root)
    return ReadResult(source, None, (), (DataFormatError(source, "", entry.problem or ""),))


def _iter_listed(
    root: Path,
    chosen: Sequence[str],
    listing_path: Path,
    listing: dict[str, list[tuple[str, int]]],
    annotation: int | None,
    limit: int | None,
    replay: bool,
) -> Iterator[ReadResult]:
    source = str(listing_path)
    count = 0
    for split in chosen:
        by_task: dict[str, dict[int, int]] = {}  # task -> repeat_idx -> first entry index
        for i, (task, r) in enumerate(listing.get(split, [])):
            if annotation is None or r == annotation:
                by_task.setdefault(task, {}).setdefault(r, i)
        for task in sorted(by_task):
            if limit is not None and count >= limit:
                return
            count += 1
            entries = by_task[task]
            path = trajectory_path(root, split, task)
            if not os.path.lexists(path):  # anything else there (a FIFO, a loop) is refused by _read
                first = min(entries.values())
                problem = (
                    f"{task!r} is listed ({len(entries)} entries) but {_relative(path, root)} does not exist"
                )
                yield ReadResult(
                    source, None, (), (DataFormatError(source, f"{split}[{first}].task", problem),)
                )
                continue
            read = _read(path, split, root, sorted(entries), replay)
            if read.result.episodes or read.result.errors:
                yield read.result
            n = read.n_annotations
            for r in read.out_of_range:
                problem = (
                    f"repeat_idx {r} of {task!r} is out of range: the file has {n} annotations (0..{n - 1})"
                )
                error = DataFormatError(source, f"{split}[{entries[r]}].repeat_idx", problem)
                yield ReadResult(source, None, (), (error,))
