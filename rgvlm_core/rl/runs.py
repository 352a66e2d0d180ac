"""Training runs (IQL on a workspace and a reward source) and their evaluation in the simulator.

A training run stores, in the workspace: its resolved config, reward source, dataset figures, seed and
package versions (`train_runs`), metrics as they are logged (`train_metrics`), and a checkpoint under
`checkpoints/`. An evaluation stores one row per episode (`eval_results`): the task's number of
subtasks, how many were completed, success, steps, the condition and the seed.
"""

from __future__ import annotations

import functools
import json
import platform
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import EVAL_RESULTS


@dataclass(frozen=True)
class TrainSpec:
    """What to train on: the reward source and the data."""

    reward: str = "sparse"  # sparse, reference, rgvlm:RUN, sparse+rgvlm:RUN, clip:RUN
    lam: float = 1.0  # lambda of sparse+rgvlm
    vlm_reward: str | None = None  # mapping of VLM scores (labeling/rewards.py); None: the default
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
    The same work and records as one run of an experiment (rl.work, rl.record), without evaluation.
    """
    from rgvlm_core.rl.dataset import parse_reward_source
    from rgvlm_core.rl.dataset_cache import cached_dataset
    from rgvlm_core.rl.encoder import make_encoder
    from rgvlm_core.rl.iql import check_device
    from rgvlm_core.rl.record import RunRecorder
    from rgvlm_core.rl.work import Logged, RunTask, execute

    check_device(config.device)
    reader = workspace.reader()
    try:
        source = parse_reward_source(spec.reward, reader, spec.lam, spec.vlm_reward, config.gamma)
        # stored as resolved: the run says which mapping it trained on, whatever was the default then
        stored = replace(spec, reward=source.text, vlm_reward=source.mapping)
        encoder = make_encoder(spec.encoder)
        arrays = cached_dataset(reader, source, encoder, spec.filters, spec.failed, spec.states)  # type: ignore[arg-type]
        about = {"spec": stored, "encoder": encoder.name, "dataset": arrays.info,
                 "provenance": provenance(reader, source.run_id)}  # fmt: skip
    finally:
        reader.close()
    run_id = spec.name or default_run_name(spec.reward, config.seed)
    task = RunTask(source.text, source.text, (config.seed,), (run_id,), config, None, threads)
    recorder = RunRecorder(workspace, [task], lambda _: about)
    try:
        for event in execute(task, arrays):
            recorder.handle(0, event)
            if isinstance(event, Logged):
                yield TrainProgress(run_id, event.step, event.total, event.metrics[0])
    finally:
        recorder.flush()


@functools.cache
def code_commit() -> str | None:
    """The git commit of the running code, `+dirty` when it has uncommitted changes (None outside git):
    runs computed in parts, days apart, say which code computed each of them."""
    import subprocess

    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", str(here.parent)],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0 or not head.stdout.strip():
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def provenance(reader: Any, label_run: str | None) -> dict[str, Any]:
    """What a run was made with: package versions, the code's commit, the label run behind its rewards."""
    import torch

    import rgvlm_core

    info: dict[str, Any] = {
        "versions": {
            "rgvlm": rgvlm_core.__version__,
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "commit": code_commit(),
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
    from rgvlm_core.rl.record import eval_table
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
    checkpoint = workspace.root / rows[0]["checkpoint"]
    if not checkpoint.is_file():
        raise RGVLMError(
            f"run {run_id!r} has no checkpoint at {checkpoint} (merged from an export without "
            "--checkpoints, or deleted): its stored evaluations stay; train it again to evaluate anew"
        )
    # rollouts are batch-1 forward passes: the CPU is the right device, whatever the run trained on
    learner = IQL.load(checkpoint, device="cpu")
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

    from rgvlm_core.rl.dataset import dataset_floor_plans

    info = json.loads(rows[0]["dataset"] or "{}")
    level = str(info.get("level", "subgoal"))  # evaluated in the simulator (and floor plans) it learnt from
    from rgvlm_core.rl.experiment import check_held_out
    from rgvlm_core.sim.evaluate import ALFRED, ALFRED_SPLITS

    check_held_out(info, (condition,))

    if (level == ALFRED) != (condition in ALFRED_SPLITS):
        raise UsageError(
            f"run {run_id!r} learnt from replayed ALFRED trajectories: evaluate it on ALFRED's tasks with "
            f"--condition {' or '.join(ALFRED_SPLITS)}"
            if level == ALFRED
            else f"--condition {condition}: ALFRED's tasks are for runs trained on replayed ALFRED "
            f"trajectories; run {run_id!r} is at the {level} level: use default or randomized"
        )
    config = EvalConfig(
        lengths=lengths,
        episodes_per_length=episodes_per_length,
        condition=condition,
        seed=seed,
        level=level,  # type: ignore[arg-type]
        floor_plans=dataset_floor_plans(info) if level == "low" else None,
        alfred_root=info.get("alfred_root") if level == ALFRED else None,
    )
    buffer: list[Any] = []
    # One observation at a time: a thread pool only adds synchronisation to such tiny matmuls, and on a
    # busy machine (training alongside) its spin-waits made each forward pass ~100x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for result in evaluate(policy, config):
            buffer.append(result)
            yield result
    finally:
        torch.set_num_threads(threads)
    workspace.commit({EVAL_RESULTS.name: eval_table(run_id, buffer)})


__all__ = [
    "TrainProgress",
    "TrainSpec",
    "default_run_name",
    "evaluate_run",
    "provenance",
    "slug",
    "train_run",
]
