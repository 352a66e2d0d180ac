"""`rgvlm migrate`: tables written by an older schema are upgraded in place, losing nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rgvlm_core.errors import WorkspaceError
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import LABELS


def _write_v1_labels(ws: Workspace, rows: list[dict[str, object]]) -> None:
    """Labels as an rgvlm of schema v1 wrote them: no progress column, v1 in the snapshot and file."""
    v1 = pa.schema([f for f in LABELS.schema if f.name != "progress"])
    table = pa.Table.from_pylist(rows, schema=v1)
    rel = Path("data") / "labels" / "v1" / f"{time.time_ns()}-1-old.parquet"
    path = ws.store_dir / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {b"rgvlm.table": b"labels", b"rgvlm.schema_version": b"1"}
    pq.write_table(table.replace_schema_metadata(meta), path)
    head = json.loads(ws.head_path.read_text())
    head["tables"]["labels"] = {"schema_version": 1, "files": [str(rel)]}
    ws.head_path.write_text(json.dumps(head))


ROWS = [
    {"run_id": "r", "episode_id": "e", "t": t, "segment_id": "subtask0", "score": 7, "reward": 0.7,
     "status": "ok", "reason": "why"}
    for t in range(3)
]  # fmt: skip


def test_an_old_table_is_refused_until_migrated_then_reads_with_its_new_column(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    _write_v1_labels(ws, ROWS)
    with pytest.raises(WorkspaceError, match=r"'labels' has schema v1.*rgvlm migrate"):
        ws.snapshot()
    assert ws.migrate() == {"labels": (1, LABELS.version)}
    reader = ws.reader()
    try:
        rows = reader.rows("SELECT t, score, progress, reason FROM labels ORDER BY t")
    finally:
        reader.close()
    assert rows == [{"t": t, "score": 7, "progress": None, "reason": "why"} for t in range(3)]
    assert ws.migrate() == {}  # nothing left to do
    ws.commit({"labels": pa.Table.from_pylist([{**ROWS[0], "t": 9, "progress": 4}], schema=LABELS.schema)})


def test_the_cli_migrates_and_says_what_it_did(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from rgvlm_core.cli import app

    ws = Workspace.open(tmp_path / "ws", create=True)
    _write_v1_labels(ws, ROWS)
    result = CliRunner().invoke(app, ["-w", str(ws.root), "migrate"])
    assert result.exit_code == 0, result.output
    assert "migrated labels: schema v1 -> v2" in result.output
