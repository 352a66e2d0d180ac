"""Experiments: a grid of reward methods x training seeds, each trained and evaluated in the simulator.

An experiment is recorded as it goes (`experiments`: the plan; `experiment_runs`: one row per
method and seed once that run is trained *and* evaluated in every condition), so running the same
experiment name again resumes it: finished pairs are skipped, an interrupted one starts afresh
under a new run id (its partial metrics stay behind under the old id and are never compared).

Methods: any reward source of `rl.dataset.parse_reward_source`, plus `sparse+reference` (the newest
noise-free reference run added to the sparse reward) and `bc` (behaviour cloning: IQL's actor with
beta = 0, so every dataset action has weight 1; its critics are trained but unused). `reference`
and `sparse+reference` are resolved to the concrete label run when the experiment starts, so the
stored runs name the labels they were trained on.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import pyarrow as pa

from rgvlm_core.compare import BC, CONDITIONS, LENGTHS, planned_methods
from rgvlm_core.errors import UsageError
from rgvlm_core.rl.runs import slug
from rgvlm_core.workspace import StoreReader, Workspace
from rgvlm_core.workspace.schema import EXPERIMENT_RUNS, EXPERIMENTS


@dataclass(frozen=True)
class ExperimentSpec:
    """The grid and how each cell is trained and evaluated (the IQL config is passed alongside)."""

    methods: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    lam: float = 1.0  # lambda of every sparse+rgvlm method
    conditions: tuple[str, ...] = CONDITIONS
    episodes_per_length: int = 20
    eval_seed: int = 0  # the same evaluation tasks for every run
    encoder: str = "minilm"
    failed: str = "sparse"
    name: str | None = None
    command: str = ""

    def validate(self) -> None:
        """Raise `UsageError` naming the first value that cannot work."""
        if not self.methods:
            raise UsageError("methods: give at least one method, e.g. sparse,reference,sparse+reference")
        if len(set(self.methods)) != len(self.methods):
            raise UsageError(f"methods={list(self.methods)}: give each method once")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise UsageError(f"seeds={list(self.seeds)}: give distinct non-negative seeds")
        bad = [c for c in self.conditions if c not in CONDITIONS]
        if bad or not self.conditions:
            raise UsageError(f"conditions={list(self.conditions)}: use default and/or randomized")
        if self.episodes_per_length < 1:
            raise UsageError(f"episodes_per_length={self.episodes_per_length}: give a positive number")
        if self.failed not in ("sparse", "drop"):
            raise UsageError(f"failed={self.failed!r}: use sparse or drop")


@dataclass(frozen=True)
class ExperimentProgress:
    """Where an experiment is: run `index` of `runs` (0-based), its phase and step within the phase."""

    experiment_id: str
    index: int
    runs: int
    method: str
    seed: int
    phase: str  # train | evaluate | skipped | finished
    done: int = 0
    total: int = 0
    run_id: str | None = None

    @property
    def fraction(self) -> float:
        """Share of the whole experiment done (training counts 3/4 of a run, evaluation 1/4)."""
        within = {
            "train": 0.75 * self.done / max(1, self.total),
            "evaluate": 0.75 + 0.25 * self.done / max(1, self.total),
        }
        return (self.index + within.get(self.phase, 1.0)) / max(1, self.runs)


def resolve_methods(methods: Sequence[str], reader: StoreReader, lam: float = 1.0) -> list[tuple[str, str]]:
    """(method as given, reward source to train on) for each method; unknown ones raise, naming them."""
    from rgvlm_core.rl.dataset import parse_reward_source

    out = []
    for method in methods:
        if method == BC:
            out.append((method, "sparse"))
            continue
        if method == "sparse+reference":
            run = parse_reward_source("reference", reader).run_id
            out.append((method, f"sparse+rgvlm:{run}"))
            continue
        source = parse_reward_source(method, reader, lam)
        out.append((method, f"rgvlm:{source.run_id}" if method == "reference" else method))
    return out


def run_experiment(
    workspace: Workspace, spec: ExperimentSpec, config: Any, *, threads: int | None = None
) -> Iterator[ExperimentProgress]:
    """Train and evaluate every (method, seed) not yet done; yields progress throughout.

    `config` is the `rl.iql.IQLConfig` of every run (its seed is replaced by each run's seed);
    `threads` is torch's intra-op thread count (rl.threads).
    """
    from rgvlm_core.rl.runs import TrainSpec, evaluate_run, train_run

    spec.validate()
    config.validate()
    reader = workspace.reader()
    try:
        plan = resolve_methods(spec.methods, reader, spec.lam)
        experiment_id = spec.name or f"exp-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
        finished = _finished(reader, experiment_id)
    finally:
        reader.close()
    _record_plan(workspace, experiment_id, spec, config, plan)
    cells = [(method, source, seed) for method, source in plan for seed in spec.seeds]
    for index, (method, source, seed) in enumerate(cells):
        progress = ExperimentProgress(experiment_id, index, len(cells), method, seed, "skipped")
        if (method, seed) in finished:
            yield progress
            continue
        run_config = replace(config, seed=seed, beta=0.0 if method == BC else config.beta)
        run_id = run_name(experiment_id, method, seed)
        train_spec = TrainSpec(
            reward=source, lam=spec.lam, encoder=spec.encoder, failed=spec.failed, name=run_id
        )
        for step in train_run(workspace, train_spec, run_config, threads=threads):
            yield replace(progress, phase="train", done=step.step, total=step.total, run_id=run_id)
        total = len(spec.conditions) * len(LENGTHS) * spec.episodes_per_length
        done = 0
        for condition in spec.conditions:
            for _ in evaluate_run(
                workspace,
                run_id,
                condition=condition,
                episodes_per_length=spec.episodes_per_length,
                seed=spec.eval_seed,
            ):
                done += 1
                if done % 10 == 0 or done == total:
                    yield replace(progress, phase="evaluate", done=done, total=total, run_id=run_id)
        row = {
            "experiment_id": experiment_id,
            "method": method,
            "seed": seed,
            "run_id": run_id,
            "finished_at": dt.datetime.now(dt.timezone.utc),
        }
        workspace.commit({EXPERIMENT_RUNS.name: pa.Table.from_pylist([row], schema=EXPERIMENT_RUNS.schema)})
        yield replace(progress, phase="finished", run_id=run_id)


def run_name(experiment_id: str, method: str, seed: int) -> str:
    """`<experiment>-<method slug>-s<seed>-<4 hex>`: unique per attempt, parsed back by `live_runs`."""
    return f"{experiment_id}-{slug(method)}-s{seed}-{uuid.uuid4().hex[:4]}"


_RUN_TAIL = re.compile(r"(?P<slug>.+)-s(?P<seed>\d+)-[0-9a-f]{4}")


def live_runs(reader: StoreReader, experiment_id: str) -> list[dict[str, Any]]:
    """Runs of an experiment that have logged metrics, finished or still training: run_id, method, seed.

    A run's `train_runs` row appears only when it finishes; while it trains only its metrics exist,
    so it is found by its name, and its method through the plan the experiment stored as it started.
    """
    plan = reader.rows(
        "SELECT config FROM experiments WHERE experiment_id = ? ORDER BY created_at DESC LIMIT 1",
        [experiment_id],
    )
    if not plan:
        return []
    methods = planned_methods(json.loads(plan[0]["config"]))
    by_slug = {slug(given): method for given, method in methods.items()}
    found = reader.rows(
        "SELECT DISTINCT run_id FROM train_metrics WHERE starts_with(run_id, ?) ORDER BY 1",
        [f"{experiment_id}-"],
    )
    out = []
    for row in found:
        tail = _RUN_TAIL.fullmatch(row["run_id"][len(experiment_id) + 1 :])
        if tail and tail["slug"] in by_slug:
            out.append({"run_id": row["run_id"], "method": by_slug[tail["slug"]], "seed": int(tail["seed"])})
    return out


def experiment_run_ids(reader: StoreReader, experiment_id: str) -> list[str]:
    """The finished runs of an experiment; raises naming the known experiments if there is none."""
    rows = reader.rows(
        "SELECT run_id FROM experiment_runs WHERE experiment_id = ? ORDER BY method, seed", [experiment_id]
    )
    if not rows:
        known = [r["experiment_id"] for r in reader.rows(
            "SELECT DISTINCT experiment_id FROM experiment_runs ORDER BY 1")]  # fmt: skip
        raise UsageError(
            f"experiment {experiment_id!r} has no finished run; known: {', '.join(known) or '(none yet)'}"
        )
    return [r["run_id"] for r in rows]


def list_experiments(reader: StoreReader) -> list[dict[str, Any]]:
    """Every experiment with its plan and how many of its runs are finished, newest first."""
    return reader.rows(
        "SELECT e.experiment_id, e.methods, e.seeds, e.config, e.created_at, "
        "count(DISTINCT r.run_id) AS finished "
        "FROM (SELECT * FROM experiments QUALIFY row_number() OVER (PARTITION BY experiment_id "
        "ORDER BY created_at DESC) = 1) e LEFT JOIN experiment_runs r USING (experiment_id) "
        "GROUP BY ALL ORDER BY e.created_at DESC"
    )


def _finished(reader: StoreReader, experiment_id: str) -> set[tuple[str, int]]:
    rows = reader.rows("SELECT method, seed FROM experiment_runs WHERE experiment_id = ?", [experiment_id])
    return {(r["method"], int(r["seed"])) for r in rows}


def _record_plan(
    workspace: Workspace, experiment_id: str, spec: ExperimentSpec, config: Any, plan: list[tuple[str, str]]
) -> None:
    settings = {
        "iql": asdict(config),
        "sources": dict(plan),
        **{k: v for k, v in asdict(spec).items() if k not in ("methods", "seeds", "name", "command")},
    }
    row = {
        "experiment_id": experiment_id,
        "methods": json.dumps(list(spec.methods)),
        "seeds": json.dumps(list(spec.seeds)),
        "config": json.dumps(settings),
        "command": spec.command,
        "created_at": dt.datetime.now(dt.timezone.utc),
    }
    workspace.commit({EXPERIMENTS.name: pa.Table.from_pylist([row], schema=EXPERIMENTS.schema)})


__all__ = [
    "ExperimentProgress",
    "ExperimentSpec",
    "experiment_run_ids",
    "list_experiments",
    "live_runs",
    "resolve_methods",
    "run_experiment",
    "run_name",
]
