"""Offline datasets on ALFRED ResNet features: pooled rows as states, data-defined actions, IQL end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.errors import RGVLMError
from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.labeling.reference import ReferenceLabeller
from rgvlm_core.labeling.runs import RunConfig, label_run
from rgvlm_core.rl.dataset import OfflineArrays, build_dataset, parse_reward_source
from rgvlm_core.rl.encoder import HashEncoder
from rgvlm_core.rl.iql import IQL, IQLConfig
from rgvlm_core.rl.runs import TrainSpec, evaluate_run, train_run
from rgvlm_core.workspace import Workspace
from tests.alfred_factory import FRAMES_PER_LOW_ACTION, build_document, write_trajectory

ROOT = Path(__file__).resolve().parents[1]
N_LOW = len(build_document()["plan"]["low_actions"])  # 8 steps in the factory's default plan
N_IMAGES = len(build_document()["images"])
ROWS = {"low_actions": N_LOW, "low_actions+1": N_LOW + 1, "images+10": N_IMAGES + 10}


def _ramp(n_rows: int) -> torch.Tensor:
    """Features whose 7x7 average is row + channel / 1000; the spatial pattern averages out."""
    rows = torch.arange(n_rows, dtype=torch.float32)[:, None, None, None]
    channels = torch.arange(512, dtype=torch.float32)[None, :, None, None] / 1000
    spatial = (torch.arange(7, dtype=torch.float32)[None, None, :, None] - 3) / 10
    return (rows + channels + spatial).expand(n_rows, 512, 7, 7).contiguous()


def _pooled(row: int) -> np.ndarray:
    return (row + np.arange(512, dtype=np.float32) / 1000).astype(np.float32)


def _workspace(tmp_path: Path, layouts: list[str | None]) -> Workspace:
    """One trajectory (3 annotations) per entry: feat_conv.pt in that layout, or none for None."""
    data = tmp_path / "alfred"
    for i, layout in enumerate(layouts):
        path = write_trajectory(data, trial=f"trial_T20190101_000000_{i:06d}")
        if layout is not None:
            torch.save(_ramp(ROWS[layout]), path.parent / "feat_conv.pt")
    ws = Workspace.open(tmp_path / "ws")
    for _ in import_alfred(ws, data, ImportConfig()):
        pass
    return ws


def _dataset(ws: Workspace, reward: str = "sparse", **kwargs: object) -> OfflineArrays:
    reader = ws.reader()
    try:
        source = parse_reward_source(reward, reader, 0.5)
        return build_dataset(reader, source, HashEncoder(), states="alfred", **kwargs)  # type: ignore[arg-type]
    finally:
        reader.close()


@pytest.mark.parametrize(
    ("layout", "step_row", "after_last"),
    [
        ("low_actions", lambda t: t, N_LOW - 1),  # no row after the last step: its own row
        ("low_actions+1", lambda t: t, N_LOW),  # the extra row is the view after the last action
        ("images+10", lambda t: FRAMES_PER_LOW_ACTION * t, N_IMAGES + 9),  # first image; last frame repeated
    ],
)
def test_states_are_the_pooled_feature_rows_of_each_step_and_of_the_step_after(
    tmp_path: Path, layout: str, step_row: Callable[[int], int], after_last: int
) -> None:
    data = _dataset(_workspace(tmp_path, [layout]))
    assert data.states.dtype == np.float32 and data.states.shape == (3 * N_LOW, 512)
    first_episode = slice(0, N_LOW)
    expected = np.stack([_pooled(step_row(t)) for t in range(N_LOW)])
    np.testing.assert_allclose(data.states[first_episode], expected, atol=1e-5)
    np.testing.assert_allclose(data.next_states[: N_LOW - 1], expected[1:], atol=1e-5)
    np.testing.assert_allclose(data.next_states[N_LOW - 1], _pooled(after_last), atol=1e-5)
    assert data.dones[N_LOW - 1] == 1.0 and data.info["states"] == "alfred"


def test_actions_index_the_alfred_tokens_present_and_every_action_is_allowed(tmp_path: Path) -> None:
    data = _dataset(_workspace(tmp_path, ["low_actions+1"]))
    plan = build_document()["plan"]["low_actions"]
    tokens = [data.action_tokens[a] for a in data.actions[:N_LOW]]
    assert [t.split("(")[0] for t in tokens] == [low["discrete_action"]["action"] for low in plan]
    assert "PickupObject(Apple)" in tokens and data.action_tokens == sorted(set(tokens))
    assert data.n_actions == len(data.action_tokens) == data.masks.shape[1] == data.info["n_actions"]
    assert data.info["action_tokens"] == data.action_tokens
    assert data.masks.all()


def test_rewards_and_dones_come_from_the_same_sources_as_for_the_simulator(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, ["low_actions+1"])
    for _ in label_run(ws, ReferenceLabeller(), RunConfig(name="ref")):
        pass
    sparse = _dataset(ws)
    both = _dataset(ws, "sparse+rgvlm:ref@raw")
    # the default plan has two subtasks: Pickup ends at step 3, Put at step 7
    assert list(np.flatnonzero(sparse.rewards[:N_LOW])) == [3, 7]
    assert list(np.flatnonzero(sparse.dones[:N_LOW])) == [3, 7]
    reader = ws.reader()
    scores = reader.query("SELECT score FROM labels WHERE run_id = 'ref' ORDER BY episode_id, t").column(0)
    reader.close()
    expected = sparse.rewards + 0.5 * np.asarray(scores.to_pylist(), np.float32) / 10
    assert both.rewards == pytest.approx(expected)


def test_episodes_without_features_are_skipped_and_counted(tmp_path: Path) -> None:
    data = _dataset(_workspace(tmp_path, ["images+10", None]))
    assert data.info["episodes_without_features"] == 3 and data.info["episodes"] == 3
    assert len(data) == 3 * N_LOW


def test_each_feature_file_is_read_once_however_many_annotations_tell_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rgvlm_core.alfred import features

    ws = _workspace(tmp_path, ["low_actions+1", "images+10"])
    loaded: list[str] = []
    real_load = features._load

    def counting(path: Path, where: str) -> object:
        loaded.append(str(path))
        return real_load(path, where)

    monkeypatch.setattr(features, "_load", counting)
    assert _dataset(ws).info["episodes"] == 6
    assert len(loaded) == len(set(loaded)) == 2


def test_a_workspace_without_features_is_refused_with_what_to_do(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, [None])
    with pytest.raises(RGVLMError, match=r"no ALFRED episode in .* has feat_conv\.pt features; import"):
        _dataset(ws)


def test_filters_still_select_the_episodes(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, ["low_actions+1"])
    reader = ws.reader()
    first = reader.rows("SELECT episode_id FROM episodes ORDER BY episode_id LIMIT 1")[0]["episode_id"]
    reader.close()
    data = _dataset(ws, flt=EpisodeFilter(episode_ids=(first,)))
    assert len(data) == N_LOW and data.info["episodes"] == 1


def test_iql_trains_on_alfred_features_and_the_simulator_refuses_to_evaluate_it(tmp_path: Path) -> None:
    ws = _workspace(tmp_path, ["low_actions+1", "images+10"])
    config = IQLConfig(steps=3, log_every=1, batch_size=8, hidden=16)
    progress = list(train_run(ws, TrainSpec(encoder="hash", states="alfred", name="alf"), config))
    assert [p.step for p in progress] == [1, 2, 3]
    reader = ws.reader()
    run = reader.rows("SELECT spec, dataset, checkpoint FROM train_runs WHERE run_id = 'alf'")[0]
    reader.close()
    dataset = json.loads(run["dataset"])
    assert json.loads(run["spec"])["states"] == "alfred" and dataset["states"] == "alfred"
    assert IQL.load(ws.root / run["checkpoint"]).dims["n_actions"] == dataset["n_actions"]
    with pytest.raises(RGVLMError, match="simulator cannot evaluate") as refused:
        list(evaluate_run(ws, "alf"))
    assert "\n" not in str(refused.value)


def test_the_cli_refuses_an_unknown_state_source_in_one_line(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "rgvlm_core.cli", "-w", str(tmp_path / "ws"), "train", "--states", "pixels"]
    bad = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 1 and "--states must be sim or alfred, got 'pixels'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
