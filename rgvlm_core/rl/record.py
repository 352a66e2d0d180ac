"""The driver's side of training: writes the events of tasks (rl.work) into the workspace, alone.

Whatever runs the work (this process, local workers, a Ray cluster), one recorder in the driving process
turns its events into store rows: `train_metrics` as they arrive (gathered into one commit per second,
so many runs logging at once do not make many tiny shards), a checkpoint file and the `train_runs` row
when a run's training ends, `eval_curves` rows at each learning-curve checkpoint (and the final
evaluation's, which compare_fair.eval_curves narrows to the checkpoints' tasks), and `eval_results`
(then `experiment_runs`) when its evaluation ends. A run therefore appears in the store exactly as a run
trained by itself would.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from rgvlm_core.rl.work import (
    Curve,
    Evaluated,
    Event,
    Logged,
    RunTask,
    Started,
    Trained,
    curve_rows,
    with_seed,
)
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import EVAL_CURVES, EVAL_RESULTS, EXPERIMENT_RUNS, TRAIN_METRICS, TRAIN_RUNS

FLUSH_S = 1.0


@dataclass(frozen=True)
class Finished:
    """A run whose training (and evaluation, if planned) is stored: one line of the job log."""

    run_id: str
    method: str
    seed: int
    metrics: dict[str, float]
    results: list[Any] | None

    def line(self) -> str:
        """The run, its final losses and the share of subtasks it completed in evaluation."""
        named = {"losses/q": "q loss", "losses/actor": "actor loss"}  # behaviour cloning has no q loss
        losses = "final " + ", ".join(
            f"{label} {self.metrics[k]:.3g}" for k, label in named.items() if k in self.metrics
        )
        text = f"finished {self.method} seed {self.seed} ({self.run_id}): {losses}"
        if self.results:
            mean = sum(r.completed / r.n_subtasks for r in self.results) / len(self.results)
            text += f"; {mean:.2f} of subtasks completed over {len(self.results)} evaluation episodes"
        return text


@dataclass
class _TaskState:
    started: dt.datetime
    threads: int | None = None
    last: list[dict[str, float]] = field(default_factory=list)


class RunRecorder:
    """Stores the events of `tasks`; `about(task)` gives what each run records besides its results:
    keys spec (TrainSpec), encoder (its model name), dataset (figures) and provenance."""

    def __init__(
        self,
        workspace: Workspace,
        tasks: list[RunTask],
        about: Callable[[RunTask], dict[str, Any]],
        experiment_id: str | None = None,
    ):
        self.workspace, self.tasks, self.about, self.experiment_id = workspace, tasks, about, experiment_id
        self._state: dict[int, _TaskState] = {}
        self._metrics: list[dict[str, Any]] = []
        self._flushed = time.monotonic()

    def handle(self, index: int, event: Event) -> Finished | None:
        """Store what `event` of task `index` says; returns the run it finished, if any."""
        task = self.tasks[index]
        state = self._state.setdefault(index, _TaskState(dt.datetime.now(dt.timezone.utc)))
        if isinstance(event, Started):
            state.threads = event.threads
        elif isinstance(event, Logged):
            state.last = event.metrics
            for run_id, metrics in zip(task.run_ids, event.metrics, strict=True):
                self._metrics += [
                    {"run_id": run_id, "step": event.step, "name": k, "value": float(v)}
                    for k, v in metrics.items()
                ]
            if time.monotonic() - self._flushed >= FLUSH_S:
                self.flush()
        elif isinstance(event, Trained):
            self.flush()
            self._store_run(task, event, state)
            if task.evaluation is None:
                return self._finished(task, event.index, state, None)
        elif isinstance(event, Curve):
            rows = [
                {"run_id": run_id, "step": event.step, **row}
                for run_id, seed_rows in zip(task.run_ids, event.rows, strict=True)
                for row in seed_rows
            ]
            self.workspace.commit({EVAL_CURVES.name: pa.Table.from_pylist(rows, schema=EVAL_CURVES.schema)})
        elif isinstance(event, Evaluated):
            self._store_results(task, event)
            return self._finished(task, event.index, state, event.results)
        return None

    def flush(self) -> None:
        """Commit the metrics gathered so far (call before reading them back, and at the end)."""
        if self._metrics:
            table = pa.Table.from_pylist(self._metrics, schema=TRAIN_METRICS.schema)
            self.workspace.commit({TRAIN_METRICS.name: table})
            self._metrics = []
        self._flushed = time.monotonic()

    def _store_run(self, task: RunTask, event: Trained, state: _TaskState) -> None:
        run_id, seed = task.run_ids[event.index], task.seeds[event.index]
        about = self.about(task)
        checkpoint = self.workspace.root / "checkpoints" / f"{run_id}.pt"
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        tmp = checkpoint.with_suffix(".pt.tmp")
        tmp.write_bytes(event.checkpoint)
        tmp.replace(checkpoint)
        spec = {**asdict(about["spec"]), "name": run_id}
        provenance = {**about["provenance"], "threads": state.threads, "stacked_seeds": list(task.seeds)}
        row = {
            "run_id": run_id,
            "reward_source": about["spec"].reward,
            "lam": about["spec"].lam,
            "seed": seed,
            "steps": task.config.steps,
            "encoder": about["encoder"],
            "config": json.dumps(asdict(with_seed(task.config, seed))),
            "spec": json.dumps(spec, default=str),
            "dataset": json.dumps(about["dataset"]),
            "provenance": json.dumps(provenance, default=str),
            "checkpoint": str(checkpoint.relative_to(self.workspace.root)),
            "started_at": state.started,
            "finished_at": dt.datetime.now(dt.timezone.utc),
        }
        self.workspace.commit({TRAIN_RUNS.name: pa.Table.from_pylist([row], schema=TRAIN_RUNS.schema)})

    def _store_results(self, task: RunTask, event: Evaluated) -> None:
        run_id, seed = task.run_ids[event.index], task.seeds[event.index]
        now = dt.datetime.now(dt.timezone.utc)
        final = [{"run_id": run_id, "step": task.config.steps, **row} for row in curve_rows(event.results)]
        tables = {
            EVAL_RESULTS.name: eval_table(run_id, event.results),
            EVAL_CURVES.name: pa.Table.from_pylist(final, schema=EVAL_CURVES.schema),
        }
        if self.experiment_id is not None:
            done = {
                "experiment_id": self.experiment_id,
                "method": task.method,
                "seed": seed,
                "run_id": run_id,
                "finished_at": now,
            }
            tables[EXPERIMENT_RUNS.name] = pa.Table.from_pylist([done], schema=EXPERIMENT_RUNS.schema)
        self.workspace.commit(tables)

    def _finished(self, task: RunTask, index: int, state: _TaskState, results: list[Any] | None) -> Finished:
        metrics = state.last[index] if state.last else {}
        return Finished(task.run_ids[index], task.method, task.seeds[index], metrics, results)


def eval_table(run_id: str, results: list[Any]) -> pa.Table:
    """`eval_results` rows of a run's evaluated episodes (sim.evaluate.EpisodeResult)."""
    now = dt.datetime.now(dt.timezone.utc)
    rows = []
    for result in results:
        row = {"run_id": run_id, **asdict(result), "evaluated_at": now}
        rows.append({name: row.get(name) for name in EVAL_RESULTS.schema.names})
    return pa.Table.from_pylist(rows, schema=EVAL_RESULTS.schema)


__all__ = ["FLUSH_S", "Finished", "RunRecorder", "eval_table"]
