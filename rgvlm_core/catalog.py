"""Read-side questions about a workspace, shared by the CLI and the dashboard.

All answers are computed from the store at call time (never cached across snapshots), so what
the app and `rgvlm info` show is what the store holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from rgvlm_core.errors import RGVLMError
from rgvlm_core.workspace import StoreReader

# Tables that later subsystems add; counted as 0 until a workspace holds them.
RUN_TABLES = {"label_runs": "label_runs", "train_runs": "train_runs"}

EPISODE_COLUMNS = (
    "episode_id",
    "dataset",
    "split",
    "task_type",
    "n_subtasks",
    "n_steps",
    "repeat_idx",
    "task_only",
    "goal",
)
SORTABLE = frozenset(EPISODE_COLUMNS)


@dataclass(frozen=True)
class EpisodeFilter:
    """Which episodes to list; empty tuples mean no constraint."""

    splits: tuple[str, ...] = ()
    task_types: tuple[str, ...] = ()
    n_subtasks: tuple[int, ...] = ()
    datasets: tuple[str, ...] = ()
    text: str | None = None  # case-insensitive substring of the goal
    episode_ids: tuple[str, ...] = ()
    include_task_only: bool = True
    sort_by: str = "episode_id"
    descending: bool = False
    limit: int | None = None
    offset: int = 0


def count_rows(reader: StoreReader, table: str) -> int:
    """Rows of a table from Parquet footers alone (0 for a table this workspace does not hold)."""
    import pyarrow.parquet as pq

    snap = reader.refresh()
    return sum(pq.read_metadata(reader.workspace.path_of(f)).num_rows for f in snap.files(table))


def workspace_counts(reader: StoreReader) -> dict[str, Any]:
    """The figures of `rgvlm info` and the home page."""
    counts: dict[str, Any] = {
        "workspace": str(reader.workspace.root),
        "snapshot": reader.refresh().version,
        "episodes": count_rows(reader, "episodes"),
        "trajectories": count_rows(reader, "trajectories"),
        "steps": count_rows(reader, "steps"),
        "subtasks": count_rows(reader, "subtasks"),
        "imports": count_rows(reader, "imports"),
    }
    counts.update(_breakdown(reader, None))
    counts["by_dataset"] = dataset_sizes(reader)
    for key, table in RUN_TABLES.items():
        counts[key] = count_rows(reader, table)
    return counts


def dataset_sizes(reader: StoreReader) -> dict[str, int]:
    """Episodes per dataset (`sim`, `alfred`, ...), in name order."""
    return _group(reader, "dataset", None)


def dataset_counts(reader: StoreReader, dataset: str) -> dict[str, Any]:
    """The home page's figures for one dataset (simulator and ALFRED episodes are never summed in a chart).

    Keys: episodes, by_split, by_task_type, by_n_subtasks, task_only_episodes.
    """
    episodes = reader.scalar("SELECT count(*) FROM episodes WHERE dataset = ?", [dataset]) or 0
    return {"episodes": episodes, **_breakdown(reader, dataset)}


UNKNOWN_TASK_TYPE = "unknown (test split)"
# Selects the episodes of one dataset, or all of them when the (twice given) parameter is NULL.
_OF_DATASET = "(?::VARCHAR IS NULL OR dataset = ?)"


def _breakdown(reader: StoreReader, dataset: str | None) -> dict[str, Any]:
    """Episodes by split, task type and number of subtasks, and the task-only ones (one dataset or all)."""
    by_n = reader.rows(
        f"SELECT n_subtasks AS k, count(*) AS n FROM episodes "
        f"WHERE n_subtasks IS NOT NULL AND {_OF_DATASET} GROUP BY 1 ORDER BY 1",
        [dataset, dataset],
    )
    return {
        "by_split": _group(reader, "split", dataset),
        "by_task_type": _group(reader, "task_type", dataset),
        "by_n_subtasks": {str(r["k"]): r["n"] for r in by_n},
        "task_only_episodes": reader.scalar(
            f"SELECT count(*) FROM episodes WHERE task_only AND {_OF_DATASET}", [dataset, dataset]
        )
        or 0,
    }


def _group(reader: StoreReader, column: str, dataset: str | None) -> dict[str, int]:
    rows = reader.rows(
        f"SELECT {column} AS k, count(*) AS n FROM episodes WHERE {_OF_DATASET} "
        "GROUP BY 1 ORDER BY 1 NULLS LAST",
        [dataset, dataset],
    )
    return {UNKNOWN_TASK_TYPE if r["k"] is None else r["k"]: r["n"] for r in rows}


def recent_imports(reader: StoreReader, limit: int = 20) -> list[dict[str, Any]]:
    """The latest imports, newest first, with their counts and refusal lines."""
    return reader.rows(f"SELECT * FROM imports ORDER BY started_at DESC LIMIT {int(limit)}")


def list_episodes(reader: StoreReader, flt: EpisodeFilter = EpisodeFilter()) -> pa.Table:
    """Episodes matching the filter, with the columns of EPISODE_COLUMNS."""
    if flt.sort_by not in SORTABLE:
        raise RGVLMError(f"cannot sort by {flt.sort_by!r}; choose one of {', '.join(sorted(SORTABLE))}")
    where, params = episode_where(flt)
    order = f"{flt.sort_by} {'DESC' if flt.descending else 'ASC'}, episode_id"
    sql = f"SELECT {', '.join(EPISODE_COLUMNS)} FROM episodes {where} ORDER BY {order}"
    if flt.limit is not None:
        sql += f" LIMIT {int(flt.limit)}"
    if flt.offset:
        sql += f" OFFSET {int(flt.offset)}"
    return reader.query(sql, params)


def episode_where(flt: EpisodeFilter) -> tuple[str, list[Any]]:
    """The SQL WHERE clause (and its parameters) selecting the filter's episodes from `episodes`."""
    clauses: list[str] = []
    params: list[Any] = []

    def any_of(column: str, values: Sequence[Any]) -> None:
        if values:
            clauses.append(f"{column} IN (SELECT unnest(?))")
            params.append(list(values))

    any_of("split", flt.splits)
    any_of("task_type", flt.task_types)
    any_of("n_subtasks", flt.n_subtasks)
    any_of("dataset", flt.datasets)
    any_of("episode_id", flt.episode_ids)
    if flt.text:
        clauses.append("goal ILIKE ?")
        params.append(f"%{flt.text}%")
    if not flt.include_task_only:
        clauses.append("NOT task_only")
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


def get_episode(reader: StoreReader, episode_id: str) -> dict[str, Any]:
    """One episode's row joined with its trajectory; raises RGVLMError naming an unknown id."""
    rows = reader.rows(
        "SELECT e.*, t.scene, t.source_dir, t.has_frames, t.features_path, t.features_layout "
        "FROM episodes e JOIN trajectories t USING (trajectory_id) WHERE e.episode_id = ?",
        [episode_id],
    )
    if not rows:
        raise RGVLMError(
            f"no episode {episode_id!r} in {reader.workspace.root}; list them with `rgvlm episodes`"
        )
    return rows[0]


def episode_steps(reader: StoreReader, episode_id: str) -> pa.Table:
    """The steps of an episode in order (steps belong to its trajectory)."""
    return reader.query(
        "SELECT s.* FROM steps s WHERE s.trajectory_id = "
        "(SELECT trajectory_id FROM episodes WHERE episode_id = ?) ORDER BY s.t",
        [episode_id],
    )


def episode_subtasks(reader: StoreReader, episode_id: str) -> pa.Table:
    return reader.query("SELECT * FROM subtasks WHERE episode_id = ? ORDER BY idx", [episode_id])
