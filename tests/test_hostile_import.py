"""Import folders we cannot trust: links, FIFOs, devices, folders and giant files where data belongs.

Each hostile entry must become one refusal naming its path and what it is, beside valid files that
still import; never a hang (a FIFO), a MemoryError (a link to /dev/zero), or a silent skip (a loop).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from rgvlm_core.alfred import iter_alfred, load_splits, read_trajectory
from rgvlm_core.alfred.files import MAX_FEATURES_BYTES, MAX_JSON_BYTES
from rgvlm_core.errors import DataFormatError
from rgvlm_core.workspace import Workspace
from tests.alfred_factory import (
    DEFAULT_TASK_DIR,
    run_import,
    write_splits_file,
    write_test_trial,
    write_trajectory,
)

ROOT = Path(__file__).resolve().parents[1]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
pytestmark = pytest.mark.timeout(120)  # a regression here hangs (a FIFO): fail instead of waiting forever


def _sparse(path: Path, size: int) -> None:
    """A file of `size` bytes that takes no disk space: reading it all would take hours."""
    with open(path, "wb") as f:
        f.truncate(size)


def _unreadable(path: Path) -> None:
    path.write_text("{}")
    path.chmod(0)


@dataclass(frozen=True)
class Hostile:
    """Something other than a readable traj_data.json where one belongs, and the words naming it."""

    name: str
    make: Callable[[Path], None]  # makes the entry at the given path
    reason: str


HOSTILE_FILES = (
    Hostile("symlink_loop", lambda p: os.symlink(p.name, p), "symbolic link loop"),
    Hostile("dangling_link", lambda p: os.symlink(p.parent / "gone.json", p), "dangling link"),
    Hostile("fifo", lambda p: os.mkfifo(p), "FIFO"),
    Hostile("link_to_dev_zero", lambda p: os.symlink("/dev/zero", p), "character device"),
    Hostile("folder", lambda p: p.mkdir(), "a folder"),
    Hostile("oversize", lambda p: _sparse(p, 1 << 40), f"larger than {MAX_JSON_BYTES >> 20} MiB"),
)
UNREADABLE = Hostile("unreadable", _unreadable, "Permission denied")


def _trial(i: int) -> str:
    return f"trial_T20190101_000000_{i:06d}"


def _hostile_trial(root: Path, i: int, hostile: Hostile) -> str:
    """A trial folder whose traj_data.json is `hostile`; returns its path relative to `root`."""
    trial_dir = root / "train" / DEFAULT_TASK_DIR / _trial(i)
    trial_dir.mkdir(parents=True)
    hostile.make(trial_dir / "traj_data.json")
    return f"train/{DEFAULT_TASK_DIR}/{_trial(i)}/traj_data.json"


def _refusal(results: list, path: str) -> str:  # type: ignore[type-arg]
    lines = [str(err) for r in results for err in r.errors if str(err).startswith(f"{path}: ")]
    assert len(lines) == 1, f"expected one refusal naming {path}, got {lines}"
    return lines[0]


@pytest.mark.parametrize("hostile", HOSTILE_FILES, ids=[h.name for h in HOSTILE_FILES])
def test_a_traj_data_json_that_is_not_a_readable_file_is_refused_naming_what_it_is(
    tmp_path: Path, hostile: Hostile
) -> None:
    write_trajectory(tmp_path, trial=_trial(1))
    path = _hostile_trial(tmp_path, 2, hostile)
    results = list(iter_alfred(tmp_path, splits_file=None))
    assert [r.path for r in results if r.trajectory is not None] == [
        f"train/{DEFAULT_TASK_DIR}/{_trial(1)}/traj_data.json"
    ]
    line = _refusal(results, path)
    assert hostile.reason in line and "\n" not in line


@pytest.mark.skipif(IS_ROOT, reason="root reads files whatever their mode")
def test_an_unreadable_traj_data_json_is_refused_naming_the_permission(tmp_path: Path) -> None:
    path = _hostile_trial(tmp_path, 2, UNREADABLE)
    (result,) = iter_alfred(tmp_path, splits_file=None)
    assert result.path == path and UNREADABLE.reason in str(result.errors[0])


def test_a_link_to_a_regular_traj_data_json_is_read(tmp_path: Path) -> None:
    real = write_trajectory(tmp_path / "elsewhere", trial=_trial(9))
    trial_dir = tmp_path / "data" / "train" / DEFAULT_TASK_DIR / _trial(1)
    trial_dir.mkdir(parents=True)
    (trial_dir / "traj_data.json").symlink_to(real)
    (result,) = iter_alfred(tmp_path / "data", splits_file=None)
    assert result.trajectory is not None and not result.errors


def test_the_reader_reads_at_most_the_cap_of_a_growing_or_lying_file(tmp_path: Path) -> None:
    path = write_trajectory(tmp_path, trial=_trial(1))
    _sparse(path, MAX_JSON_BYTES + 1)
    result = read_trajectory(path, "train", tmp_path)
    assert result.trajectory is None and "larger than" in str(result.errors[0])


# --- entries that should be folders ------------------------------------------------------------


def test_entries_that_should_be_folders_are_refused_by_name(tmp_path: Path) -> None:
    write_trajectory(tmp_path, trial=_trial(1))
    write_test_trial(tmp_path, "tests_seen")
    os.mkfifo(tmp_path / "train" / "a_fifo_task")  # where a task folder belongs
    (tmp_path / "train" / DEFAULT_TASK_DIR / _trial(2)).symlink_to(tmp_path / "gone")  # a trial
    (tmp_path / "tests_seen" / "trial_T20190101_000000_000099").write_text("{}")  # a test trial
    (tmp_path / "train" / ".DS_Store").write_text("hidden files are not entries")
    (tmp_path / "valid_seen").symlink_to("valid_seen")  # a whole split
    results = list(iter_alfred(tmp_path, splits_file=None))
    assert sum(r.trajectory is not None for r in results) == 2
    assert "a FIFO" in _refusal(results, "train/a_fifo_task")
    assert "dangling link" in _refusal(results, f"train/{DEFAULT_TASK_DIR}/{_trial(2)}")
    assert "a regular file" in _refusal(results, "tests_seen/trial_T20190101_000000_000099")
    assert "symbolic link loop" in _refusal(results, "valid_seen")
    assert len([r for r in results if r.errors]) == 4


# --- files beside traj_data.json ---------------------------------------------------------------


FEATURE_HOSTILES = (
    Hostile("fifo", lambda p: os.mkfifo(p), "FIFO"),
    Hostile("link_to_dev_zero", lambda p: os.symlink("/dev/zero", p), "character device"),
    Hostile("symlink_loop", lambda p: os.symlink(p.name, p), "symbolic link loop"),
    Hostile(
        "oversize",
        lambda p: _sparse(p, MAX_FEATURES_BYTES + 1),
        f"larger than {MAX_FEATURES_BYTES >> 20} MiB",
    ),
)


@pytest.mark.parametrize("hostile", FEATURE_HOSTILES, ids=[h.name for h in FEATURE_HOSTILES])
def test_a_feat_conv_pt_that_is_not_a_readable_file_refuses_its_trajectory(
    tmp_path: Path, hostile: Hostile
) -> None:
    path = write_trajectory(tmp_path, trial=_trial(1))
    hostile.make(path.parent / "feat_conv.pt")
    result = read_trajectory(path, "train", tmp_path)
    assert result.trajectory is None
    line = str(result.errors[0])
    assert line.startswith(f"train/{DEFAULT_TASK_DIR}/{_trial(1)}/feat_conv.pt: ") and hostile.reason in line


@pytest.mark.parametrize("hostile", FEATURE_HOSTILES[:3], ids=[h.name for h in FEATURE_HOSTILES[:3]])
def test_a_frame_that_is_not_a_regular_file_refuses_its_trajectory(tmp_path: Path, hostile: Hostile) -> None:
    path = write_trajectory(tmp_path, trial=_trial(1), frames=True)
    frame = path.parent / "raw_images" / "000000004.jpg"
    frame.unlink()
    hostile.make(frame)
    result = read_trajectory(path, "train", tmp_path)
    assert result.trajectory is None
    error = result.errors[0]
    assert error.field == "images[4].image_name" and "raw_images/000000004.jpg" in str(error)
    assert hostile.reason in str(error)


# --- splits files ------------------------------------------------------------------------------


@pytest.mark.parametrize("hostile", HOSTILE_FILES, ids=[h.name for h in HOSTILE_FILES])
def test_a_splits_file_that_is_not_a_readable_file_is_refused_naming_what_it_is(
    tmp_path: Path, hostile: Hostile
) -> None:
    path = tmp_path / "oct21.json"
    hostile.make(path)
    with pytest.raises(DataFormatError, match=hostile.reason) as caught:
        load_splits(path)
    assert caught.value.source == str(path)


@pytest.mark.parametrize("hostile", HOSTILE_FILES, ids=[h.name for h in HOSTILE_FILES])
def test_an_auto_detected_splits_file_that_is_not_readable_is_named_and_the_import_goes_on(
    tmp_path: Path, hostile: Hostile
) -> None:
    data = tmp_path / "data"
    write_trajectory(data, trial=_trial(1))
    hostile.make(data / "oct21.json")
    results = list(iter_alfred(data))
    assert sum(r.trajectory is not None for r in results) == 1
    assert hostile.reason in _refusal(results, str(data / "oct21.json"))


def test_a_listed_trial_whose_file_is_a_fifo_is_refused_as_a_fifo_not_as_missing(tmp_path: Path) -> None:
    write_trajectory(tmp_path, trial=_trial(1))
    path = _hostile_trial(tmp_path, 2, HOSTILE_FILES[2])
    splits = write_splits_file(
        tmp_path / "splits.json",
        {"train": [(f"{DEFAULT_TASK_DIR}/{_trial(1)}", 0), (f"{DEFAULT_TASK_DIR}/{_trial(2)}", 0)]},
    )
    results = list(iter_alfred(tmp_path, splits_file=splits))
    assert "FIFO" in _refusal(results, path)


# --- the import as a whole ---------------------------------------------------------------------


def _hostile_folder(root: Path) -> dict[str, str]:
    """Two valid trials beside every hostile kind; returns hostile path -> expected reason."""
    write_trajectory(root, trial=_trial(1), frames=True)
    write_trajectory(root, trial=_trial(2), features="low_actions")
    kinds = [*HOSTILE_FILES, *([] if IS_ROOT else [UNREADABLE])]
    expected = {_hostile_trial(root, 10 + i, h): h.reason for i, h in enumerate(kinds)}
    os.mkfifo(root / "train" / "a_fifo_task")
    expected["train/a_fifo_task"] = "a FIFO"
    return expected


def test_an_import_beside_every_hostile_kind_imports_the_valid_files_and_names_each_refusal(
    tmp_path: Path,
) -> None:
    expected = _hostile_folder(tmp_path / "data")
    ws = Workspace.open(tmp_path / "ws")
    summary = run_import(ws, tmp_path / "data")
    assert summary.trajectories == 2 and summary.refused_trajectories == len(expected)  # type: ignore[attr-defined]
    errors: list[str] = summary.errors  # type: ignore[attr-defined]
    for path, reason in expected.items():
        (line,) = [e for e in errors if e.startswith(f"{path}: ")]
        assert reason in line
    reader = ws.reader()
    stored = reader.rows("SELECT refused, errors FROM imports")
    reader.close()
    assert stored == [{"refused": len(expected), "errors": errors}]


def test_real_alfred_trials_linked_beside_hostile_entries_import_and_each_hostile_is_named(
    tmp_path: Path, shared_alfred: Path
) -> None:
    real = sorted((shared_alfred / "json_2.1.0" / "train").glob("*/*/traj_data.json"))[:3]
    data = tmp_path / "data"
    for path in real:  # links to the real, read-only trial folders: links to folders are fine
        task_dir = data / "train" / path.parent.parent.name
        task_dir.mkdir(parents=True, exist_ok=True)
        (task_dir / path.parent.name).symlink_to(path.parent)
    expected = {_hostile_trial(data, 10 + i, h): h.reason for i, h in enumerate(HOSTILE_FILES)}
    summary = run_import(Workspace.open(tmp_path / "ws"), data)
    assert summary.trajectories == 3 and summary.refused_trajectories == len(expected)  # type: ignore[attr-defined]
    for path, reason in expected.items():
        (line,) = [e for e in summary.errors if e.startswith(f"{path}: ")]  # type: ignore[attr-defined]
        assert reason in line


def _cli(ws: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rgvlm_core.cli", "-w", str(ws), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=100,
        env={**os.environ, "PYTHONPATH": str(ROOT), "RGVLM_NO_SAMPLE": "1"},
    )


def test_the_import_command_names_each_hostile_file_and_strict_stops_at_the_first(tmp_path: Path) -> None:
    expected = _hostile_folder(tmp_path / "data")
    done = _cli(tmp_path / "ws", "import", str(tmp_path / "data"))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert "imported 2 trajectories" in done.stdout and f"refused {len(expected)} files" in done.stdout
    for path in expected:
        assert f"refused: {path}: " in done.stderr
    strict = _cli(tmp_path / "strict", "import", str(tmp_path / "data"), "--strict")
    assert strict.returncode == 1 and "Traceback" not in strict.stderr, strict.stderr
    (line,) = strict.stderr.strip().splitlines()
    assert line.startswith("error: train/a_fifo_task: ") and "a FIFO" in line, (
        "the first refusal, in path order"
    )


def test_the_import_command_refuses_a_splits_file_that_is_a_fifo_in_one_line(tmp_path: Path) -> None:
    write_trajectory(tmp_path / "data", trial=_trial(1))
    os.mkfifo(tmp_path / "fifo.json")
    done = _cli(
        tmp_path / "ws", "import", str(tmp_path / "data"), "--splits-file", str(tmp_path / "fifo.json")
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "fifo.json" in line and "FIFO" in line
