"""Shared set-up for the export tests: a small simulator workspace made as a user makes one.

`rgvlm sim generate` + `rgvlm import` + `rgvlm label --labeller reference` (ground truth, not an LVLM),
plus a noisy reference run that labels only a few episodes, so a reward source can have steps without a
VLM reward. Built once per session and copied per test, like tests/labeling_support.py.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rgvlm_core.rl.dataset import OfflineArrays, build_dataset, parse_reward_source, reward_rows
from rgvlm_core.rl.encoder import HashEncoder
from rgvlm_core.workspace import Workspace
from tests.cli_support import rgvlm

FEW_RUN = "few"  # the noisy reference run over 4 episodes
_TEMPLATE: list[Path] = []


def generated_workspace(tmp_path: Path, template_root: Path) -> Path:
    """A fresh copy of a workspace of 16 generated simulator trajectories, labelled twice."""
    if not _TEMPLATE:
        data, ws = template_root / "export-data", template_root / "export-ws"
        steps = [
            ("sim", "generate", "--episodes", "16", "--seed", "3", "--out", str(data), "--no-frames"),
            ("-w", str(ws), "import", str(data)),
            ("-w", str(ws), "label", "--labeller", "reference"),
            ("-w", str(ws), "label", "--labeller=reference", "--noise=0.3", "-n", "4", "--name", FEW_RUN),
        ]
        for args in steps:
            result = rgvlm(*args)
            assert result.returncode == 0, result.stderr
        _TEMPLATE.append(ws)
    target = tmp_path / "ws"
    shutil.copytree(_TEMPLATE[0], target)
    return target


@dataclass
class Trained:
    """What the trainer sees for a reward source: its arrays, and each row's episode and cut-off flag."""

    arrays: OfflineArrays
    episode_ids: list[str]
    cutoff: np.ndarray
    missing: np.ndarray


def trainer_view(workspace: Path, reward: str) -> Trained:
    """The trainer's dataset of every simulator episode under `reward`, read with the trainer's code."""
    reader = Workspace.open(workspace).reader()
    try:
        source = parse_reward_source(reward, reader)
        arrays = build_dataset(reader, source, HashEncoder())
        keys = reward_rows(reader, source)
    finally:
        reader.close()
    return Trained(
        arrays, keys["episode_id"].tolist(), keys["cutoff"].to_numpy(bool), keys["missing"].to_numpy(bool)
    )


def sim_episode_count(workspace: Path) -> int:
    reader = Workspace.open(workspace).reader()
    try:
        return int(reader.scalar("SELECT count(*) FROM episodes WHERE dataset = 'sim' AND n_steps > 0"))
    finally:
        reader.close()


def one_red_line(result: object) -> str:
    """The single `error: ...` line of a refused command (exit 1, no traceback)."""
    assert getattr(result, "returncode", None) == 1, result
    stderr = str(getattr(result, "stderr", ""))
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def alfred_workspace(tmp_path: Path) -> Path:
    """Two ALFRED trajectories of three annotations each, only the first with feat_conv.pt features
    (tests/alfred_factory.py; rows in the `low_actions+1` layout, row r's 7x7 maps all equal to r)."""
    import torch

    from rgvlm_core.importer import ImportConfig, import_alfred
    from tests.alfred_factory import build_document, write_trajectory

    data = tmp_path / "alfred"
    n_rows = len(build_document()["plan"]["low_actions"]) + 1
    for i in range(2):
        path = write_trajectory(data, trial=f"trial_T20190101_000000_{i:06d}")
        if i == 0:
            rows = torch.arange(n_rows, dtype=torch.float32)[:, None, None, None]
            torch.save(rows.expand(n_rows, 512, 7, 7).contiguous(), path.parent / "feat_conv.pt")
    ws = Workspace.open(tmp_path / "alfred-ws")
    for _ in import_alfred(ws, data, ImportConfig()):
        pass
    return ws.root
