"""ALFRED as training data: `rgvlm import --replay` stores the replayed household's state on every step of
each trajectory whose replay reaches every subgoal (the rest imported without, counted and named), and
`rgvlm train --states sim` learns from them at the ALFRED level."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rgvlm_core.alfred import level
from rgvlm_core.importer import ImportSummary
from rgvlm_core.rl.dataset import RewardSource, build_dataset
from rgvlm_core.rl.encoder import make_encoder
from rgvlm_core.workspace import Workspace
from tests.alfred_factory import run_import
from tests.cli_support import rgvlm

VALID_SEEN = 56  # train/valid trajectories of the sample's valid_seen split


def _import(ws: Workspace, path: Path, **config: object) -> ImportSummary:
    summary = run_import(ws, path, **config)
    assert isinstance(summary, ImportSummary)
    return summary


@pytest.fixture()
def layouts(shared_alfred: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RGVLM_ALFRED_LAYOUTS", str(shared_alfred / "layouts"))
    return shared_alfred / "layouts"


def _copy_split(shared_alfred: Path, tmp_path: Path, split: str = "valid_seen") -> Path:
    out = tmp_path / "alfred"
    shutil.copytree(shared_alfred / "json_2.1.0" / split, out / split)
    return out


def test_replayed_steps_carry_states_and_train_at_the_alfred_level(
    shared_alfred: Path, layouts: Path, tmp_path: Path
) -> None:
    ws = Workspace.open(tmp_path / "ws")
    summary = _import(ws, shared_alfred / "json_2.1.0", splits=("valid_seen", "tests_seen"), replay=True)
    assert summary.replayed == VALID_SEEN and summary.replay_failures == []
    reader = ws.reader()
    try:
        missing = reader.scalar(
            "SELECT count(*) FROM steps s JOIN trajectories t USING (trajectory_id) WHERE s.state IS NULL"
        )
        arrays = build_dataset(reader, RewardSource("sparse"), make_encoder("hash"), states="sim")
        n_steps = reader.scalar("SELECT sum(n_steps) FROM episodes WHERE NOT task_only")
    finally:
        reader.close()
    assert missing == 0
    assert arrays.info["level"] == "alfred" and arrays.info["trajectories"] == VALID_SEEN
    assert all(name.startswith("FloorPlan") for name in arrays.info["floor_plans"])
    assert arrays.states.shape == (n_steps, level.STATE_DIM)
    assert list(arrays.action_tokens) == list(level.ACTION_TOKENS)
    # every recorded action is one the mask allows in the state it was taken in
    assert arrays.masks[np.arange(len(arrays.actions)), arrays.actions].all()
    assert np.abs(arrays.states).max() <= 2.0


def test_a_trajectory_whose_replay_fails_is_imported_without_states_and_named(
    shared_alfred: Path, layouts: Path, tmp_path: Path
) -> None:
    data = _copy_split(shared_alfred, tmp_path)
    broken = next(p for p in sorted(data.rglob("traj_data.json")) if "heat" in str(p))
    doc = json.loads(broken.read_text())
    low = doc["plan"]["low_actions"]
    first_open = next(i for i, a in enumerate(low) if a["api_action"]["action"] == "OpenObject")
    del low[first_open]
    broken.write_text(json.dumps(doc))
    ws = Workspace.open(tmp_path / "ws")
    summary = _import(ws, data, replay=True)
    assert summary.trajectories == VALID_SEEN and summary.replayed == VALID_SEEN - 1
    assert len(summary.replay_failures) == 1
    line = summary.replay_failures[0]
    assert broken.parent.name in line and "is closed" in line and f"step {first_open}" in line


def test_import_without_replay_stores_no_states(shared_alfred: Path, tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    summary = _import(ws, shared_alfred / "json_2.1.0", splits=("valid_seen",))
    assert summary.replayed == 0
    reader = ws.reader()
    try:
        assert reader.scalar("SELECT count(*) FROM steps WHERE state IS NOT NULL") == 0
    finally:
        reader.close()


def test_cli_replay_needs_the_layouts_and_says_where_it_looked(shared_alfred: Path, tmp_path: Path) -> None:
    done = rgvlm(
        "-w", str(tmp_path / "ws"), "import", str(shared_alfred / "json_2.1.0"), "--replay",
        "--layouts", str(tmp_path / "nowhere"),
    )  # fmt: skip
    assert done.returncode != 0
    assert "nowhere: ALFRED's layouts folder not found" in done.stderr
    assert not (tmp_path / "ws").exists() or not any((tmp_path / "ws").rglob("*.parquet"))


def test_cli_imports_with_replay_then_trains_on_alfreds_trajectories(
    shared_alfred: Path, tmp_path: Path
) -> None:
    data = _copy_split(shared_alfred, tmp_path)
    ws = str(tmp_path / "ws")
    done = rgvlm("-w", ws, "import", str(data), "--replay", "--layouts", str(shared_alfred / "layouts"))
    assert done.returncode == 0, done.stderr
    assert f"replayed: {VALID_SEEN} new trajectories have simulator states; 0 were imported without" in (
        done.stdout.replace("\n", " ")
    )
    env = {"RGVLM_ALFRED_LAYOUTS": str(shared_alfred / "layouts")}
    done = rgvlm(
        "-w",
        ws,
        "train",
        "--reward",
        "sparse",
        "--states",
        "sim",
        "--steps",
        "20",
        "--encoder",
        "hash",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert "trained" in done.stdout
