"""Training runs (IQL on a workspace and a reward source) and their evaluation in the simulator.

A training run stores, in the workspace: its resolved config, reward source, dataset figures, seed and
package versions (`train_runs`), metrics as they are logged (`train_metrics`), and a checkpoint under
`checkpoints/`. An evaluation stores one row per episode (`eval_results`): the task's number of
subtasks, how many were completed, success, steps, the condition and the seed.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.errors import RGVLMError
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import EVAL_RESULTS, TRAIN_METRICS, TRAIN_RUNS


@dataclass(frozen=True)
class TrainSpec:
    """What to train on: the reward source and the data."""

    reward: str = "sparse"  # sparse, reference, rgvlm:RUN, sparse+rgvlm:RUN, clip:RUN
    lam: float = 1.0  # lambda of sparse+rgvlm
    encoder: str = "minilm"  # instruction encoder: minilm (all-MiniLM-L6-v2) or hash (tests)
    failed: str = "sparse"  # steps whose label failed: sparse (no VLM reward) or drop
    states: str = "sim"  # state features: sim (simulator episodes) or alfred (ALFRED ResNet features)
    name: str | None = None
    filters: EpisodeFilter = field(default_factory=EpisodeFilter)


@dataclass(frozen=True)
class TrainProgress:
    run_id: str
    step: int
    total: int
    metrics: dict[str, float]


def train_run(
    workspace: Workspace, spec: TrainSpec, config: Any, *, threads: int | None = None
) -> Iterator[TrainProgress]:
    """Train IQL (config: rl.iql.IQLConfig) and store the run; yields after every logged step.

    `threads`: torch's intra-op threads for this process (rl.threads: default 1, RGVLM_THREADS).
    """
    from rgvlm_core.rl.dataset import build_dataset, parse_reward_source
    from rgvlm_core.rl.encoder import make_encoder
    from rgvlm_core.rl.iql import check_device, train
    from rgvlm_core.rl.threads import apply_threads

    check_device(config.device)
    used_threads = apply_threads(threads)
    reader = workspace.reader()
    try:
        source = parse_reward_source(spec.reward, reader, spec.lam)
        encoder = make_encoder(spec.encoder)
        arrays = build_dataset(reader, source, encoder, spec.filters, spec.failed, spec.states)  # type: ignore[arg-type]
        provenance = {**_provenance(reader, source.run_id), "threads": used_threads}
    finally:
        reader.close()
    run_id = spec.name or default_run_name(spec.reward, config.seed)
    started = dt.datetime.now(dt.timezone.utc)
    learner = None
    for step, metrics, trained in train(arrays.to_tensors(), arrays.n_actions, config):
        learner = trained
        _store_metrics(workspace, run_id, step, metrics)
        yield TrainProgress(run_id, step, config.steps, metrics)
    if learner is None:
        raise RGVLMError("training produced no learner (steps must be at least 1)")
    checkpoint = workspace.root / "checkpoints" / f"{run_id}.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    learner.save(checkpoint)
    row = {
        "run_id": run_id,
        "reward_source": spec.reward,
        "lam": spec.lam,
        "seed": config.seed,
        "steps": config.steps,
        "encoder": encoder.name,
        "config": json.dumps(asdict(config)),
        "spec": json.dumps(asdict(spec), default=str),
        "dataset": json.dumps(arrays.info),
        "provenance": json.dumps(provenance, default=str),
        "checkpoint": str(checkpoint.relative_to(workspace.root)),
        "started_at": started,
        "finished_at": dt.datetime.now(dt.timezone.utc),
    }
    workspace.commit({TRAIN_RUNS.name: pa.Table.from_pylist([row], schema=TRAIN_RUNS.schema)})


def _store_metrics(workspace: Workspace, run_id: str, step: int, metrics: dict[str, float]) -> None:
    rows = [{"run_id": run_id, "step": step, "name": k, "value": float(v)} for k, v in metrics.items()]
    workspace.commit({TRAIN_METRICS.name: pa.Table.from_pylist(rows, schema=TRAIN_METRICS.schema)})


def _provenance(reader: Any, label_run: str | None) -> dict[str, Any]:
    import torch

    import rgvlm_core

    info: dict[str, Any] = {
        "versions": {
            "rgvlm": rgvlm_core.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
        }
    }
    if label_run:
        rows = reader.rows(
            "SELECT labeller, backend, model, prompt_id FROM label_runs WHERE run_id = ?", [label_run]
        )
        info["label_run"] = {"run_id": label_run, **(rows[0] if rows else {})}
    return info


def slug(text: str) -> str:
    """`text` as a run-id part: letters and digits kept, anything else a dash, at most 40 characters."""
    return "".join(c if c.isalnum() else "-" for c in text)[:40]


def default_run_name(reward: str, seed: int) -> str:
    """`iql-<reward slug>-s<seed>-<4 hex>`: the name of a run not given one (unique per attempt)."""
    return f"iql-{slug(reward)}-s{seed}-{uuid.uuid4().hex[:4]}"


def evaluate_run(
    workspace: Workspace,
    run_id: str,
    *,
    condition: str = "default",
    episodes_per_length: int = 20,
    seed: int = 0,
    lengths: tuple[int, ...] = (1, 2, 3, 4, 5, 6),
) -> Iterator[Any]:
    """Roll out a trained policy on seeded tasks with held-out instructions; store and yield each episode."""
    import torch

    from rgvlm_core.rl.encoder import encode_cached, make_encoder
    from rgvlm_core.rl.iql import IQL
    from rgvlm_core.sim.evaluate import EvalConfig, evaluate

    reader = workspace.reader()
    try:
        rows = reader.rows("SELECT checkpoint, encoder, dataset FROM train_runs WHERE run_id = ?", [run_id])
    finally:
        reader.close()
    if not rows:
        raise RGVLMError(f"no training run {run_id!r} in {workspace.root}; list them with `rgvlm train-runs`")
    if json.loads(rows[0]["dataset"] or "{}").get("states", "sim") != "sim":
        raise RGVLMError(
            f"run {run_id!r} was trained on ALFRED features, which the simulator cannot evaluate "
            "(ALFRED evaluation needs AI2-THOR, not available here)"
        )
    # rollouts are batch-1 forward passes: the CPU is the right device, whatever the run trained on
    learner = IQL.load(workspace.root / rows[0]["checkpoint"], device="cpu")
    encoder = make_encoder(rows[0]["encoder"])
    embedded: dict[str, np.ndarray] = {}

    def policy(obs: dict[str, Any], mask: np.ndarray) -> int:
        text = str(obs["instruction"])
        if text not in embedded:
            embedded[text] = encode_cached(encoder, [text], workspace.root / "rl_cache")[0]
        with torch.no_grad():
            action = learner.act(
                torch.as_tensor(obs["state"], dtype=torch.float32)[None],
                torch.as_tensor(embedded[text])[None],
                torch.as_tensor(mask, dtype=torch.bool)[None],
            )
        return int(action[0])

    config = EvalConfig(
        lengths=lengths,
        episodes_per_length=episodes_per_length,
        condition=condition,  # type: ignore[arg-type]  # checked by EvalConfig
        seed=seed,
    )
    buffer: list[dict[str, Any]] = []
    # One observation at a time: a thread pool only adds synchronisation to such tiny matmuls, and on a
    # busy machine (training alongside) its spin-waits made each forward pass ~100x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for result in evaluate(policy, config):
            buffer.append({"run_id": run_id, **asdict(result)})
            yield result
    finally:
        torch.set_num_threads(threads)
    table = pa.Table.from_pylist([_eval_row(r) for r in buffer], schema=EVAL_RESULTS.schema)
    workspace.commit({EVAL_RESULTS.name: table})


def _eval_row(row: dict[str, Any]) -> dict[str, Any]:
    keep = {name: row.get(name) for name in EVAL_RESULTS.schema.names}
    keep["evaluated_at"] = dt.datetime.now(dt.timezone.utc)
    return keep


__all__ = ["TrainProgress", "TrainSpec", "default_run_name", "evaluate_run", "slug", "train_run"]
