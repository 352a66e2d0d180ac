"""Labelling low-level episodes through the real LVLM path (a loopback server speaking the chat-completions
protocol): a subtask's walk and manipulation are one segment of ~10-60 ALFRED low-level steps, its frames
are subsampled to the query's limit, and every step, navigation included, gets its own score."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from rgvlm_core.sim.generate import GenerateConfig, generate
from rgvlm_core.workspace import Workspace
from tests.alfred_factory import run_import
from tests.cli_support import ROOT
from tests.fake_openai import FakeOpenAI, image_count, lvlm_label_args, step_numbers, wants_scores


def test_low_level_segments_are_labelled_step_by_step_with_subsampled_frames(tmp_path: Path) -> None:
    config = GenerateConfig(episodes=4, seed=2, level="low", min_subtasks=2, max_subtasks=2, annotations=1)
    list(generate(tmp_path / "data", config))
    ws = Workspace.open(tmp_path / "ws")
    run_import(ws, tmp_path / "data")
    with FakeOpenAI() as fake:
        done = subprocess.run(
            [sys.executable, "-m", "rgvlm_core.cli", "-w", str(ws.root), "label",
             *lvlm_label_args(fake.base_url, "low", "--max-frames", "8")],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
        )  # fmt: skip
        bodies = list(fake.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 failed" in done.stdout, done.stdout
    scoring = [b for b in bodies if wants_scores(b)]
    assert scoring and all(image_count(b) <= 8 for b in bodies)
    assert max(len(step_numbers(b)) for b in scoring) > 8, "every step is scored, not only those shown"
    reader = ws.reader()
    try:
        steps = reader.rows(
            "SELECT sum(t.n_steps) AS n FROM episodes e JOIN trajectories t USING (trajectory_id)"
        )[0]["n"]
        scored = reader.rows(
            "SELECT count(*) AS n FROM labels WHERE run_id = 'low' AND status = 'ok' AND score IS NOT NULL"
        )[0]["n"]
    finally:
        reader.close()
    assert scored == steps > 4 * 2 * 8  # every low-level step of every episode, walks included
    assert "MoveAhead_25" in json.dumps(scoring)
