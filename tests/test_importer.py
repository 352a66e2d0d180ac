"""Import is idempotent, survives SIGKILL at any commit, and never duplicates under concurrency."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rgvlm_core.errors import DataFormatError
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.files import PAUSE_ENV, PAUSE_MARKER_ENV
from tests.alfred_factory import run_import, write_test_trial, write_trajectory

ROOT = Path(__file__).resolve().parents[1]
CONTENT_SQL = {
    "trajectories": "SELECT * EXCLUDE (import_id) FROM trajectories ORDER BY trajectory_id",
    "episodes": "SELECT * EXCLUDE (import_id) FROM episodes ORDER BY episode_id",
    "subtasks": "SELECT * FROM subtasks ORDER BY episode_id, idx",
    "steps": "SELECT * FROM steps ORDER BY trajectory_id, t",
}


def _dataset(root: Path, n: int = 24) -> Path:
    for i in range(n):
        write_trajectory(root, "train", trial=f"trial_T20190101_000000_{i:06d}", steps_per_subgoal=2 + i % 4)
    write_test_trial(root, "tests_seen")
    return root


def _content(ws: Workspace) -> dict[str, list[dict[str, object]]]:
    reader = ws.reader()
    try:
        return {name: reader.rows(sql) for name, sql in CONTENT_SQL.items()}
    finally:
        reader.close()


def _cli(ws: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "rgvlm_core.cli", "-w", str(ws), *args]
    return subprocess.Popen(
        cmd,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_importing_the_same_folder_twice_adds_nothing(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "alfred")
    ws = Workspace.open(tmp_path / "ws")
    first = run_import(ws, data, batch_size=5)
    before = _content(ws)
    second = run_import(ws, data, batch_size=5)
    assert first.trajectories == 25 and first.episodes == 75  # type: ignore[attr-defined]
    assert second.trajectories == 0 and second.episodes == 0  # type: ignore[attr-defined]
    assert second.skipped_trajectories == 25  # type: ignore[attr-defined]
    assert _content(ws) == before


@pytest.mark.parametrize(
    "point", ["shard-mid-write@6", "commit-shards-written@2", "atomic-write-before-rename@4"]
)
def test_an_import_killed_mid_write_then_rerun_equals_an_uninterrupted_import(
    tmp_path: Path, point: str
) -> None:
    data = _dataset(tmp_path / "alfred")
    clean = Workspace.open(tmp_path / "clean")
    run_import(clean, data, batch_size=5)

    victim = tmp_path / "victim"
    marker = tmp_path / "paused"
    proc = _cli(
        victim, "import", str(data), "--batch-size", "5", **{PAUSE_ENV: point, PAUSE_MARKER_ENV: str(marker)}
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "import never reached the pause point"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    partial = _content(Workspace.open(victim, create=False))
    assert 0 < len(partial["trajectories"]) < 25, "the kill should land after some batches committed"
    rerun = _cli(victim, "import", str(data), "--batch-size", "5")
    _, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err.decode()
    assert _content(Workspace.open(victim, create=False)) == _content(clean)


def test_two_imports_of_the_same_folder_at_once_store_everything_exactly_once(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "alfred", n=40)
    ws_path = tmp_path / "ws"
    Workspace.open(ws_path)
    procs = [_cli(ws_path, "import", str(data), "--batch-size", "3") for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    reader = Workspace.open(ws_path).reader()
    assert reader.scalar("SELECT count(*) - count(DISTINCT episode_id) FROM episodes") == 0
    assert reader.scalar("SELECT count(*) - count(DISTINCT trajectory_id) FROM trajectories") == 0
    assert reader.scalar(
        "SELECT count(*) FROM (SELECT DISTINCT trajectory_id, t FROM steps)"
    ) == reader.scalar("SELECT count(*) FROM steps")
    assert reader.scalar("SELECT count(*) FROM trajectories") == 41
    reader.close()


def test_strict_import_stops_at_the_first_bad_file_and_commits_nothing(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "alfred", n=4)
    bad = write_trajectory(data, "train", trial="trial_T20190101_000000_000099")
    bad.write_text(bad.read_text()[:200])
    ws = Workspace.open(tmp_path / "ws")
    with pytest.raises(DataFormatError, match=r"trial_T20190101_000000_000099/traj_data\.json"):
        run_import(ws, data, strict=True)
    assert ws.snapshot().version == 0


def test_without_strict_a_bad_file_is_refused_and_counted_and_the_rest_imported(tmp_path: Path) -> None:
    data = _dataset(tmp_path / "alfred", n=4)
    bad = write_trajectory(data, "train", trial="trial_T20190101_000000_000099")
    bad.write_text(bad.read_text()[:200])
    ws = Workspace.open(tmp_path / "ws")
    summary = run_import(ws, data)
    assert summary.trajectories == 5 and summary.refused_trajectories == 1  # type: ignore[attr-defined]
    (line,) = summary.errors  # type: ignore[attr-defined]
    assert "trial_T20190101_000000_000099/traj_data.json" in line
    reader = ws.reader()
    stored = reader.rows("SELECT refused, errors FROM imports")
    assert stored == [{"refused": 1, "errors": [line]}]
    reader.close()
