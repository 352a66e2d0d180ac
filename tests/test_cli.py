"""The `rgvlm` command as a user runs it: a real process, its exit code, stdout and stderr."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.alfred_factory import write_test_trial, write_trajectory
from tests.cli_support import rgvlm

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    root = tmp_path / "alfred"
    write_trajectory(root, "train", trial="trial_T20190101_000000_000001")
    write_trajectory(
        root,
        "train",
        task_dir="pick_heat_then_place_in_recep-Potato-None-CounterTop-2",
        trial="trial_T20190101_000000_000002",
        subgoals=[
            ("GotoLocation", ["countertop"]),
            ("PickupObject", ["potato"]),
            ("GotoLocation", ["microwave"]),
            ("HeatObject", ["potato"]),
            ("GotoLocation", ["countertop"]),
            ("PutObject", ["potato", "countertop"]),
        ],
    )
    write_trajectory(root, "valid_seen", trial="trial_T20190101_000000_000003", n_annotations=2)
    write_test_trial(root, "tests_seen")
    return root


def _one_red_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def test_import_then_info_json_reports_the_counts_of_the_data(data: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    result = rgvlm("-w", str(ws), "import", str(data))
    assert result.returncode == 0, result.stderr
    assert "imported 4 trajectories, 11 episodes" in result.stdout
    info = json.loads(rgvlm("-w", str(ws), "info", "--json").stdout)
    for key in ("episodes", "steps", "subtasks", "by_split", "by_n_subtasks", "label_runs", "train_runs"):
        assert key in info
    assert info["episodes"] == 11
    assert info["by_split"] == {"train": 6, "valid_seen": 2, "tests_seen": 3}
    assert info["by_n_subtasks"] == {"2": 5, "3": 3}
    assert info["label_runs"] == 0 and info["train_runs"] == 0
    assert (
        info["steps"]
        == 8 + 8 + json.loads(rgvlm("-w", str(ws), "episodes", "--json", "-k", "3").stdout)[0]["n_steps"]
    )


def test_the_workspace_comes_from_the_environment_when_no_option_is_given(data: Path, tmp_path: Path) -> None:
    env = {"RGVLM_WORKSPACE": str(tmp_path / "from-env")}
    assert rgvlm("import", str(data), env=env).returncode == 0
    assert json.loads(rgvlm("info", "--json", env=env).stdout)["workspace"] == str(tmp_path / "from-env")


def test_episodes_filters_by_split_and_subtasks_and_prints_json(data: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    rgvlm("-w", str(ws), "import", str(data))
    rows = json.loads(rgvlm("-w", str(ws), "episodes", "--json", "--split", "train", "-k", "3").stdout)
    assert {r["episode_id"] for r in rows} == {
        f"alfred:train/pick_heat_then_place_in_recep-Potato-None-CounterTop-2/trial_T20190101_000000_000002#{i}"
        for i in range(3)
    }
    assert all(r["task_type"] == "pick_heat_then_place_in_recep" and r["n_subtasks"] == 3 for r in rows)
    table = rgvlm("-w", str(ws), "episodes", "--no-task-only")
    assert table.returncode == 0 and "8 episode(s)" in table.stdout


def test_a_refused_file_is_reported_on_one_line_and_the_rest_is_imported(data: Path, tmp_path: Path) -> None:
    bad = write_trajectory(data, "train", trial="trial_T20190101_000000_000009")
    bad.write_text(bad.read_text()[:300])
    result = rgvlm("-w", str(tmp_path / "ws"), "import", str(data))
    assert result.returncode == 0
    refused = [line for line in result.stderr.splitlines() if line.startswith("refused: ")]
    assert len(refused) == 1 and "trial_T20190101_000000_000009/traj_data.json" in refused[0]
    assert "imported 4 trajectories" in result.stdout and "refused 1 files" in result.stdout


def test_strict_import_exits_1_naming_the_bad_file(data: Path, tmp_path: Path) -> None:
    bad = write_trajectory(data, "train", trial="trial_T20190101_000000_000009")
    bad.write_text("{")
    line = _one_red_line(rgvlm("-w", str(tmp_path / "ws"), "import", str(data), "--strict"))
    assert "trial_T20190101_000000_000009/traj_data.json" in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["import", "/nonexistent/alfred"], "no such file or folder"),
        (["sim", "evaluate", "--policy", "clever"], "--policy must be expert or random"),
        (["episodes", "--sort", "nonsense"], None),
    ],
)
def test_user_errors_exit_1_with_one_red_line_and_no_traceback(
    tmp_path: Path, data: Path, args: list[str], expected: str | None
) -> None:
    ws = tmp_path / "ws"
    if args[0] == "episodes":
        rgvlm("-w", str(ws), "import", str(data))
        expected = "cannot sort by 'nonsense'"
    assert expected in _one_red_line(rgvlm("-w", str(ws), *args))


def test_importing_a_folder_that_is_not_alfred_says_what_was_expected(tmp_path: Path) -> None:
    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "notes.txt").write_text("hello")
    line = _one_red_line(rgvlm("-w", str(tmp_path / "ws"), "import", str(tmp_path / "random")))
    assert "not an ALFRED-format folder" in line


def test_a_folder_that_is_not_a_workspace_is_refused_and_untouched(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    assert "not an rgvlm workspace" in _one_red_line(rgvlm("-w", str(folder), "import", str(data)))
    assert [p.name for p in folder.iterdir()] == ["thesis.tex"]


def test_compact_merges_shards_without_changing_counts(data: Path, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    rgvlm("-w", str(ws), "import", str(data), "--batch-size", "1")
    before = json.loads(rgvlm("-w", str(ws), "info", "--json").stdout)
    result = rgvlm("-w", str(ws), "compact")
    assert result.returncode == 0 and "compacted steps" in result.stdout
    after = json.loads(rgvlm("-w", str(ws), "info", "--json").stdout)
    assert {k: v for k, v in after.items() if k != "snapshot"} == {
        k: v for k, v in before.items() if k != "snapshot"
    }


def test_a_new_workspace_opened_by_info_starts_with_the_sample_dataset(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RGVLM_NO_SAMPLE"}
    result = subprocess.run(
        [sys.executable, "-m", "rgvlm_core.cli", "-w", str(tmp_path / "new"), "info", "--json"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "added the bundled sample dataset" in result.stderr
    info = json.loads(result.stdout)
    assert info["by_dataset"] == {"sim": info["episodes"]} and info["episodes"] > 0
    assert set(info["by_n_subtasks"]) == {"1", "2", "3", "4", "5", "6"}


def test_sim_generate_writes_a_dataset_that_imports(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    result = rgvlm("sim", "generate", "--episodes", "12", "--seed", "5", "--out", str(out), "--no-frames")
    assert result.returncode == 0, result.stderr
    assert (out / "MANIFEST.json").is_file()
    imported = rgvlm("-w", str(tmp_path / "ws"), "import", str(out))
    assert imported.returncode == 0 and "imported 12 trajectories, 24 episodes" in imported.stdout


def test_sim_evaluate_prints_the_completion_table(tmp_path: Path) -> None:
    result = rgvlm("sim", "evaluate", "--policy", "expert", "-k", "3", "--json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [r["length"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert all(r["mean_completed"] == 1.0 for r in rows)
