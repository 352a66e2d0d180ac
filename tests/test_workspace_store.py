"""The store keeps every committed row through concurrent writers, readers and SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rgvlm_core.errors import WorkspaceError
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.files import PAUSE_ENV, PAUSE_MARKER_ENV
from rgvlm_core.workspace.schema import STEPS, TABLES
from tests.store_worker import step_rows

WORKER = Path(__file__).with_name("store_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _worker_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), **extra}


def _start_writer(ws: Path, name: str, batches: int, rows: int, **env: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, str(WORKER), str(ws), name, str(batches), str(rows)]
    return subprocess.Popen(cmd, env=_worker_env(**env), stderr=subprocess.PIPE)


def _kill_at(ws: Path, point: str, tmp_path: Path, batches: int = 3) -> None:
    """Start a writer that stops at `point` inside its first commit, and SIGKILL it there."""
    marker = tmp_path / f"paused-{point}"
    proc = _start_writer(ws, "victim", batches, 40_000, **{PAUSE_ENV: point, PAUSE_MARKER_ENV: str(marker)})
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, f"writer never reached {point}"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _steps(ws: Workspace) -> list[tuple[str, int]]:
    reader = ws.reader()
    try:
        rows = reader.rows("SELECT trajectory_id, t FROM steps ORDER BY 1, 2")
    finally:
        reader.close()
    return [(r["trajectory_id"], r["t"]) for r in rows]


def test_commit_makes_rows_visible_to_a_reader_opened_before_it(workspace_dir: Path) -> None:
    ws = Workspace.open(workspace_dir)
    reader = ws.reader()
    assert reader.scalar("SELECT count(*) FROM steps") == 0
    ws.commit({"steps": step_rows("a", 5)})
    assert reader.scalar("SELECT count(*) FROM steps") == 5
    ws.commit({"steps": step_rows("b", 7)})
    assert reader.scalar("SELECT count(*) FROM steps") == 12
    reader.close()


def test_every_shard_carries_its_table_schema_version(workspace_dir: Path) -> None:
    ws = Workspace.open(workspace_dir)
    ws.commit({"steps": step_rows("a", 3)})
    snap = ws.snapshot()
    assert snap.tables["steps"].schema_version == STEPS.version
    (shard,) = snap.files("steps")
    assert f"/v{STEPS.version}/" in f"/{shard}"
    meta = pq.read_schema(ws.path_of(shard)).metadata
    assert meta[b"rgvlm.table"] == b"steps"
    assert meta[b"rgvlm.schema_version"] == str(STEPS.version).encode()


def test_a_table_newer_than_this_code_is_refused_with_upgrade_advice(workspace_dir: Path) -> None:
    ws = Workspace.open(workspace_dir)
    ws.commit({"steps": step_rows("a", 3)})
    head = json.loads(ws.head_path.read_text())
    head["tables"]["steps"]["schema_version"] = STEPS.version + 1
    ws.head_path.write_text(json.dumps(head))
    with pytest.raises(WorkspaceError, match=r"'steps' has schema v2.*upgrade rgvlm"):
        ws.snapshot()


def test_a_folder_that_is_not_a_workspace_is_refused_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "cat.jpg").write_bytes(b"not ours")
    with pytest.raises(WorkspaceError, match="not an rgvlm workspace"):
        Workspace.open(folder)
    assert [p.name for p in folder.iterdir()] == ["cat.jpg"]


def test_opening_a_missing_workspace_without_create_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError, match="rgvlm import"):
        Workspace.open(tmp_path / "nowhere", create=False)


def test_rows_not_matching_the_table_schema_are_rejected_before_anything_is_written(
    workspace_dir: Path,
) -> None:
    ws = Workspace.open(workspace_dir)
    bad = step_rows("a", 3).drop_columns(["done"])
    with pytest.raises(ValueError, match="missing \\['done'\\]"):
        ws.commit({"steps": bad})
    assert ws.snapshot().version == 0


def test_two_writer_processes_and_a_reader_lose_no_rows(workspace_dir: Path) -> None:
    ws = Workspace.open(workspace_dir)
    batches, rows = 25, 200
    writers = [_start_writer(workspace_dir, name, batches, rows) for name in ("w1", "w2")]
    reader = ws.reader()
    seen: list[int] = []
    while any(w.poll() is None for w in writers):
        seen.append(reader.scalar("SELECT count(*) FROM steps"))
    for w in writers:
        assert w.wait() == 0, w.stderr.read().decode() if w.stderr else ""
    seen.append(reader.scalar("SELECT count(*) FROM steps"))
    reader.close()
    assert seen == sorted(seen), "a reader saw rows disappear"
    assert len(seen) > 3, "the reader did not overlap the writers"
    keys = _steps(ws)
    assert len(keys) == 2 * batches * rows
    assert len(set(keys)) == len(keys)
    assert ws.snapshot().version == 2 * batches


@pytest.mark.parametrize("point", ["shard-mid-write", "commit-shards-written", "atomic-write-before-rename"])
def test_a_writer_killed_mid_commit_leaves_the_last_complete_snapshot(
    workspace_dir: Path, tmp_path: Path, point: str
) -> None:
    ws = Workspace.open(workspace_dir)
    ws.commit({"steps": step_rows("before", 10)})
    _kill_at(workspace_dir, point, tmp_path)
    reopened = Workspace.open(workspace_dir)
    assert _steps(reopened) == [("before", t) for t in range(10)]
    # The dead writer's partial files are invisible, then collected; new commits work as before.
    assert reopened.collect_garbage() >= 1
    leftovers = [p for p in (workspace_dir / "store" / "data").rglob("*") if p.is_file()]
    assert len(leftovers) == len(reopened.snapshot().files("steps"))
    reopened.commit({"steps": step_rows("after", 2)})
    assert len(_steps(reopened)) == 12


def test_compaction_merges_shards_and_keeps_appends_made_during_it(workspace_dir: Path) -> None:
    ws = Workspace.open(workspace_dir)
    for i in range(5):
        ws.commit({"steps": step_rows(f"t{i}", 4)})
    reader = ws.reader()
    assert reader.scalar("SELECT count(*) FROM steps") == 20
    assert ws.compact("steps")
    ws.commit({"steps": step_rows("late", 3)})
    assert len(ws.snapshot().files("steps")) == 2
    assert reader.scalar("SELECT count(*) FROM steps") == 23
    # superseded shards stay during the grace period, for readers on an old snapshot
    assert ws.collect_garbage() == 0
    assert ws.collect_garbage(grace_s=0) == 5
    assert reader.scalar("SELECT count(*) FROM steps") == 23
    reader.close()


def test_garbage_collection_spares_unreferenced_shards_of_a_live_writer(workspace_dir: Path) -> None:
    ws = Workspace.open(workspace_dir)
    live = ws._write_shard(STEPS, step_rows("pending", 3))  # written by this (live) process, not committed
    assert ws.collect_garbage(grace_s=0) == 0
    assert ws.path_of(live).exists()


def test_known_tables_all_have_a_version_and_a_key_in_their_schema() -> None:
    # design.md's logical tables (jobs are records under jobs/, written by the process that runs them)
    design = {"episodes", "subtasks", "steps", "prompts", "label_runs", "labels", "analyses", "overrides"}
    assert design | {"train_runs", "train_metrics", "eval_results"} <= set(TABLES)
    for spec in TABLES.values():
        assert spec.version >= 1
        assert all(k in spec.schema.names for k in spec.key)


def test_a_path_that_cannot_be_a_workspace_is_a_workspace_error_naming_it(tmp_path: Path) -> None:
    """Every caller (the CLI, the dashboard) gets one error naming the path, never an OSError."""
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a workspace")
    for path in (a_file, a_file / "below"):
        with pytest.raises(WorkspaceError, match=rf"{path}: .*choose a folder you can read and write"):
            Workspace.open(path)
    assert a_file.read_text() == "not a workspace", "nothing is written over what was there"
