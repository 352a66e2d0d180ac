"""What the Episodes page reads from the store, cached per store state.

Every cached read is keyed by `stamp(reader, tables...)`, which changes whenever one of those tables
gets a new shard, so labels written by a CLI run or an override show on the next run. Reads of one
episode filter on equality (`episode_id = ?`, `trajectory_id = ?`), and the labels and analyses of
an episode, spread over hundreds of shards, are read from the few shards that can hold it
(`episode_shards`), one query for every run at once. Per-step work is then plain Python over
small lists.

Results are cached with `st.cache_resource` (one shared object, no copy per hit): every value
returned here is treated as read-only by the page.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa
import streamlit as st

from rgvlm_app.episode_shards import shards_holding
from rgvlm_core.audit import episode_table, reference_run
from rgvlm_core.catalog import EpisodeFilter, get_episode
from rgvlm_core.labeling.store import effective_labels_sql
from rgvlm_core.workspace import StoreReader
from rgvlm_core.workspace.store import Snapshot

Stamp = tuple[str, str]

_SNAPSHOTS: dict[str, tuple[tuple[int, int, int], Snapshot, dict[tuple[str, ...], str]]] = {}
_SNAPSHOTS_LOCK = threading.Lock()


def _current(reader: StoreReader) -> tuple[tuple[int, int, int], Snapshot, dict[tuple[str, ...], str]]:
    """The store's snapshot, parsed again only when HEAD.json changes (one stat per call).

    Read from the file, not through the shared reader, which other sessions' threads use.
    """
    ws = reader.workspace
    stat = ws.head_path.stat()
    head = (stat.st_mtime_ns, stat.st_ino, stat.st_size)
    root = str(ws.root)
    with _SNAPSHOTS_LOCK:
        known = _SNAPSHOTS.get(root)
    if known is None or known[0] != head:
        known = (head, ws.snapshot(), {})
        with _SNAPSHOTS_LOCK:
            _SNAPSHOTS[root] = known
    return known


def stamp(reader: StoreReader, *tables: str) -> Stamp:
    """A cache key that changes whenever any of `tables` changes in the store.

    Short (the workspace and a digest of the tables' shard names), so hashing it on every cached
    call costs nothing, even with hundreds of label shards.
    """
    _, snap, digests = _current(reader)
    if tables not in digests:
        files = repr([snap.files(t) for t in tables]).encode()
        digests[tables] = hashlib.blake2b(files, digest_size=12).hexdigest()
    return str(reader.workspace.root), digests[tables]


def _episode_rows(
    reader: StoreReader, table: str, episode_id: str, sql: str, params: list[Any]
) -> list[dict]:
    """Rows of one episode from `table`: `sql` reads it as `{src}` after the parameters `params`
    (which come first), from only the shards that can hold the episode (see episode_shards)."""
    paths = shards_holding(reader.workspace, _current(reader)[1].files(table), episode_id)
    if not paths:
        return []
    try:
        return reader.rows(sql.format(src="read_parquet(?)"), [*params, paths, episode_id])
    except duckdb.IOException:  # a compaction removed a shard since the snapshot was read
        return reader.rows(sql.format(src=table), [*params, episode_id])


# -- one episode -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class EpisodeView:
    """What the page shows of one episode: its row, trajectory facts, steps and subtasks."""

    info: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    subtasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def episode_id(self) -> str:
        return str(self.info["episode_id"])

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    def subtask_of(self, t: int) -> dict[str, Any] | None:
        for sub in self.subtasks:
            if sub["first_step"] is not None and sub["first_step"] <= t <= sub["last_step"]:
                return sub
        return None


_STEPS_SQL = (
    "SELECT t, action, frame, sparse_reward, subtask_idx, valid, progress, "
    "CASE WHEN frame IS NULL THEN state END AS state FROM steps "  # a replayed state stands in for no frame
    "WHERE trajectory_id = ? ORDER BY t"
)


_EPISODE_SQL = (
    "SELECT e.*, t.scene, t.source_dir, t.has_frames, t.behaviour, t.condition, t.completed_subtasks "
    "FROM episodes e JOIN trajectories t USING (trajectory_id) WHERE e.episode_id = ?"
)


@st.cache_resource(max_entries=64, show_spinner=False)
def _episode(_reader: StoreReader, key: Stamp, episode_id: str) -> EpisodeView:
    found = _reader.rows(_EPISODE_SQL, [episode_id])
    info = found[0] if found else get_episode(_reader, episode_id)  # get_episode names an unknown id
    steps = _reader.rows(_STEPS_SQL, [info["trajectory_id"]])
    source = info.get("source_dir")
    for row in steps:
        row["frame_path"] = os.path.join(source, row["frame"]) if row["frame"] and source else None
    subtasks = _reader.rows("SELECT * FROM subtasks WHERE episode_id = ? ORDER BY idx", [episode_id])
    return EpisodeView(info, steps, subtasks)


def load_episode(reader: StoreReader, episode_id: str) -> EpisodeView:
    """An episode for the page (cached per store state); RGVLMError for an unknown id."""
    key = stamp(reader, "episodes", "trajectories", "steps", "subtasks")
    return _episode(reader, key, episode_id)


# -- label runs ------------------------------------------------------------------------------------
@st.cache_resource(max_entries=16, show_spinner=False)
def _runs(_reader: StoreReader, key: Stamp) -> list[dict[str, Any]]:
    return _reader.rows("SELECT run_id, labeller, model, created_at FROM label_runs ORDER BY created_at")


def run_options(reader: StoreReader) -> list[dict[str, Any]]:
    """Label runs, oldest first: run_id, labeller, model."""
    return _runs(reader, stamp(reader, "label_runs"))


# The effective labels of one episode for every run (labeling.store's rule: the latest override of a
# step wins). One scan per episode serves every run: with hundreds of label shards, each query costs
# about as much as opening them all, so `{src}` is only the shards that can hold the episode.
_LABELS_SQL = effective_labels_sql("episode_id", source="{src}")


def _by_run(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        out.setdefault(row.pop("run_id"), []).append(row)
    return out


@st.cache_resource(max_entries=128, show_spinner=False)
def _episode_labels(_reader: StoreReader, key: Stamp, episode_id: str) -> dict[str, list[dict[str, Any]]]:
    return _by_run(_episode_rows(_reader, "labels", episode_id, _LABELS_SQL, [episode_id]))


def episode_labels(reader: StoreReader, episode_id: str) -> dict[str, list[dict[str, Any]]]:
    """Every run's effective labels of one episode (overrides applied): run id -> rows by step."""
    return _episode_labels(reader, stamp(reader, "labels", "overrides"), episode_id)


def run_labels(reader: StoreReader, run_id: str | None, episode_id: str) -> list[dict[str, Any]] | None:
    """A run's effective labels of one episode (empty when it labels none), or None without a run."""
    if run_id is None:
        return None
    return episode_labels(reader, episode_id).get(run_id, [])


def runs_labelling(reader: StoreReader, episode_id: str) -> dict[str, int]:
    """The runs that label an episode -> how many of its steps each labels."""
    return {run: len(rows) for run, rows in episode_labels(reader, episode_id).items()}


@st.cache_resource(max_entries=128, show_spinner=False)
def _episode_analyses(_reader: StoreReader, key: Stamp, episode_id: str) -> dict[str, list[dict[str, Any]]]:
    sql = (
        "SELECT run_id, segment_id, first_step, last_step, status, error, analysis, raw FROM {src} "
        "WHERE episode_id = ? ORDER BY run_id, first_step"
    )
    return _by_run(_episode_rows(_reader, "analyses", episode_id, sql, []))


def segment_analysis(reader: StoreReader, run_id: str, episode_id: str, step: int) -> dict[str, Any] | None:
    """The stage-one analysis of the run's segment that contains `step` (None when not labelled)."""
    rows = _episode_analyses(reader, stamp(reader, "analyses"), episode_id).get(run_id, [])
    return next((r for r in rows if r["first_step"] <= step <= r["last_step"]), None)


# -- the list --------------------------------------------------------------------------------------
@st.cache_resource(max_entries=16, show_spinner=False)
def _reference(_reader: StoreReader, key: Stamp) -> str | None:
    return reference_run(_reader)


def reference(reader: StoreReader) -> str | None:
    """The reference run the list's disagreement column measures against (None without one)."""
    return _reference(reader, stamp(reader, "label_runs"))


@st.cache_resource(max_entries=16, show_spinner=False)
def _facets(_reader: StoreReader, key: Stamp) -> dict[str, dict[Any, int]]:
    out = {}
    for column in ("split", "task_type", "n_subtasks", "dataset"):
        rows = _reader.rows(
            f"SELECT {column} AS v, count(*) AS n FROM episodes "
            f"WHERE NOT task_only AND {column} IS NOT NULL GROUP BY 1 ORDER BY 1"
        )
        out[column] = {r["v"]: r["n"] for r in rows}
    return out


def facets(reader: StoreReader) -> dict[str, dict[Any, int]]:
    """The values each filter offers, with how many playable episodes have each."""
    return _facets(reader, stamp(reader, "episodes"))


# Every playable episode: the list filters this table in memory, so a filter pick costs no query.
ALL_PLAYABLE = EpisodeFilter(include_task_only=False)


@st.cache_resource(max_entries=16, show_spinner="Scoring the episodes…")
def _table(_reader: StoreReader, key: Stamp, run: str | None, ref: str | None) -> pa.Table:
    return episode_table(_reader, ALL_PLAYABLE, run, ref)


def scored_episodes(reader: StoreReader, run: str | None) -> pa.Table:
    """Every playable episode with the run's mean score, failed steps and disagreement with the
    reference (one aggregation over all labels per run and store state, shared by all sessions)."""
    key = stamp(reader, "episodes", "labels", "overrides", "label_runs")
    return _table(reader, key, run, reference(reader))
