"""Import an ALFRED-format folder into a workspace: read, convert to rows, commit in batches.

Idempotent by construction: under the workspace's `import` lock each batch drops the trajectories
and episodes the store already holds, then commits all four tables in one atomic commit. A killed
import leaves whole batches or nothing, so rerunning the same command completes it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from rgvlm_core.alfred import ReadResult, find_alfred_root, iter_alfred, scan_trajectory_files
from rgvlm_core.episodes import Episode, Trajectory
from rgvlm_core.workspace import StoreReader, Workspace
from rgvlm_core.workspace.schema import EPISODES, IMPORTS, STEPS, SUBTASKS, TRAJECTORIES

MAX_STORED_ERRORS = 1000


@dataclass(frozen=True)
class ImportConfig:
    """What to import and how strictly."""

    splits: tuple[str, ...] | None = None  # None: every split found
    limit: int | None = None  # at most this many trajectories
    annotation: int | None = (
        None  # keep only this repeat_idx per trajectory; None: all (or the splits file's)
    )
    splits_file: Path | None = None  # None: auto-detect oct21.json / splits*.json
    strict: bool = False  # stop at the first refused file, committing nothing
    batch_size: int = 1000  # trajectories per atomic commit
    replay: bool = False  # attach the symbolic household's states (alfred.level_state) where replayable


@dataclass(frozen=True)
class ImportProgress:
    """One trajectory handled: how far along, and any refusals it produced (one line each)."""

    done: int
    total: int
    path: str
    errors: tuple[str, ...] = ()


@dataclass
class ImportSummary:
    """What an import did; `errors` holds one line per refused file or annotation."""

    source: str
    trajectories: int = 0
    episodes: int = 0
    subtasks: int = 0
    steps: int = 0
    skipped_trajectories: int = 0
    skipped_episodes: int = 0
    refused_trajectories: int = 0
    refused_episodes: int = 0
    errors: list[str] = field(default_factory=list)
    replayed: int = 0  # new ALFRED trajectories imported with states (asked for with `replay`)
    replay_failures: list[str] = field(default_factory=list)  # "path: why" of those imported without

    @property
    def refused(self) -> int:
        return self.refused_trajectories + self.refused_episodes


class _Batch:
    """Rows of the four tables for a batch of trajectories, kept as columns."""

    def __init__(self) -> None:
        self.trajectories: dict[str, Trajectory] = {}
        self.episodes: list[Episode] = []
        self.replay_failures: dict[str, str] = {}  # trajectory id -> "path: why"

    def add(self, result: ReadResult) -> None:
        if result.trajectory is not None:
            self.trajectories[result.trajectory.id] = result.trajectory
            self.episodes.extend(result.episodes)
            if result.replay_failure is not None:
                self.replay_failures[result.trajectory.id] = f"{result.path}: {result.replay_failure}"

    def __len__(self) -> int:
        return len(self.trajectories)


def import_alfred(
    workspace: Workspace, path: Path, config: ImportConfig = ImportConfig()
) -> Generator[ImportProgress, None, ImportSummary]:
    """Import `path`, yielding progress per trajectory and returning the summary."""
    root = find_alfred_root(path)
    summary = ImportSummary(source=str(root))
    import_id = f"import-{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}"
    started = dt.datetime.now(dt.timezone.utc)
    total = len(scan_trajectory_files(root, config.splits))  # refused entries are progress too
    if config.limit is not None:
        total = min(total, config.limit)
    batch_size = 1 << 62 if config.strict else max(1, config.batch_size)
    reader = workspace.reader()
    batch = _Batch()
    done = 0
    results = iter_alfred(
        root,
        splits=config.splits,
        splits_file=config.splits_file if config.splits_file is not None else "auto",
        annotation=config.annotation,
        limit=config.limit,
        replay=config.replay,
    )
    try:
        for result in results:
            done += 1
            lines = tuple(str(err) for err in result.errors)
            if result.errors and config.strict:
                raise result.errors[0]
            _count_refusals(summary, result, lines)
            batch.add(result)
            if len(batch) >= batch_size:
                _flush(workspace, reader, batch, summary, import_id)
                batch = _Batch()
            yield ImportProgress(done=done, total=max(total, done), path=result.path, errors=lines)
        _flush(workspace, reader, batch, summary, import_id)
    finally:
        reader.close()
    workspace.commit({IMPORTS.name: _import_row(summary, import_id, started)}, message=import_id)
    return summary


def _count_refusals(summary: ImportSummary, result: ReadResult, lines: tuple[str, ...]) -> None:
    if not lines:
        return
    if result.trajectory is None:
        summary.refused_trajectories += 1
    else:
        summary.refused_episodes += len(lines)
    summary.errors.extend(lines)


def _flush(
    workspace: Workspace, reader: StoreReader, batch: _Batch, summary: ImportSummary, import_id: str
) -> None:
    """Commit the batch minus what the store already has, under the import lock."""
    if not batch.trajectories:
        return
    with workspace.lock("import"):
        have_traj = _present(reader, TRAJECTORIES.name, "trajectory_id", list(batch.trajectories))
        have_ep = _present(reader, EPISODES.name, "episode_id", [e.id for e in batch.episodes])
        new_traj = [t for tid, t in batch.trajectories.items() if tid not in have_traj]
        new_eps = [e for e in batch.episodes if e.id not in have_ep]
        summary.skipped_trajectories += len(batch.trajectories) - len(new_traj)
        summary.skipped_episodes += len(batch.episodes) - len(new_eps)
        if not new_traj and not new_eps:
            return
        rows = {
            TRAJECTORIES.name: _trajectory_rows(new_traj, import_id),
            STEPS.name: _step_rows(new_traj),
            EPISODES.name: _episode_rows(new_eps, import_id),
            SUBTASKS.name: _subtask_rows(new_eps),
        }
        workspace.commit(rows, message=import_id)
    summary.trajectories += len(new_traj)
    summary.replayed += sum(1 for t in new_traj if t.dataset == "alfred" and t.final_state is not None)
    summary.replay_failures += [
        batch.replay_failures[t.id] for t in new_traj if t.id in batch.replay_failures
    ]
    summary.steps += sum(len(t.steps) for t in new_traj)
    summary.episodes += len(new_eps)
    summary.subtasks += sum(len(e.subtasks) for e in new_eps)


def _present(reader: StoreReader, table: str, column: str, ids: Sequence[str]) -> set[str]:
    if not ids:
        return set()
    found = reader.query(f"SELECT {column} FROM {table} WHERE {column} IN (SELECT unnest(?))", [list(ids)])
    return set(found.column(0).to_pylist())


def _trajectory_rows(trajs: Sequence[Trajectory], import_id: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "trajectory_id": t.id,
                "dataset": t.dataset,
                "split": t.split,
                "task_type": t.task_type,
                "task_id": t.task_id,
                "scene": t.scene,
                "source_dir": t.source_dir,
                "n_steps": len(t.steps),
                "n_subtasks": None if t.task_only else len(t.subtask_spans),
                "has_frames": t.has_frames,
                "features_path": t.features_path,
                "features_layout": t.features_layout,
                "task_only": t.task_only,
                "completed_subtasks": t.completed_subtasks,
                "behaviour": t.behaviour,
                "condition": t.condition,
                "final_state": t.final_state,
                "import_id": import_id,
            }
            for t in trajs
        ],
        schema=TRAJECTORIES.schema,
    )


def _step_rows(trajs: Sequence[Trajectory]) -> pa.Table:
    cols: dict[str, list[object]] = {name: [] for name in STEPS.schema.names}
    for traj in trajs:
        n = len(traj.steps)
        cols["trajectory_id"].extend([traj.id] * n)
        for step in traj.steps:
            cols["t"].append(step.t)
            cols["action"].append(step.action)
            cols["high_idx"].append(step.high_idx)
            cols["subtask_idx"].append(step.subtask_index)
            cols["frame"].append(step.frame)
            cols["feature_row"].append(step.feature_row)
            cols["sparse_reward"].append(step.sparse_reward)
            cols["done"].append(step.done)
            cols["valid"].append(step.valid)
            cols["progress"].append(step.progress)
            cols["state"].append(step.state)
    return pa.table(cols, schema=STEPS.schema)


def _episode_rows(episodes: Sequence[Episode], import_id: str) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "episode_id": e.id,
                "trajectory_id": e.trajectory.id,
                "dataset": e.trajectory.dataset,
                "split": e.trajectory.split,
                "task_type": e.trajectory.task_type,
                "repeat_idx": e.repeat_idx,
                "goal": e.goal,
                "n_subtasks": e.n_subtasks,
                "n_steps": len(e.steps),
                "task_only": e.trajectory.task_only,
                "instructions": list(e.instructions),
                "import_id": import_id,
            }
            for e in episodes
        ],
        schema=EPISODES.schema,
    )


def _subtask_rows(episodes: Sequence[Episode]) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "episode_id": e.id,
                "trajectory_id": e.trajectory.id,
                "idx": s.index,
                "kind": s.kind,
                "instruction": s.instruction,
                "first_step": s.first_step,
                "last_step": s.last_step,
                "high_idxs": list(s.high_idxs),
                "completed": s.completed,
            }
            for e in episodes
            for s in e.subtasks
        ],
        schema=SUBTASKS.schema,
    )


def _import_row(summary: ImportSummary, import_id: str, started: dt.datetime) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "import_id": import_id,
                "source": summary.source,
                "started_at": started,
                "finished_at": dt.datetime.now(dt.timezone.utc),
                "trajectories": summary.trajectories,
                "episodes": summary.episodes,
                "steps": summary.steps,
                "skipped": summary.skipped_trajectories + summary.skipped_episodes,
                "refused": summary.refused,
                "errors": summary.errors[:MAX_STORED_ERRORS],
            }
        ],
        schema=IMPORTS.schema,
    )
