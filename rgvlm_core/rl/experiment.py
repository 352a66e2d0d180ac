"""Experiments: a grid of reward methods x training seeds, each trained and evaluated in the simulator.

An experiment is recorded as it goes (`experiments`: the plan; `experiment_runs`: one row per
method and seed once that run is trained *and* evaluated in every condition), so running the same
experiment name again resumes it: finished pairs are skipped, an interrupted one starts afresh
under a new run id (its partial metrics stay behind under the old id and are never compared).

Methods: any reward source of `rl.dataset.parse_reward_source`, plus `sparse+reference` (the newest
noise-free reference run added to the sparse reward) and `bc` (behaviour cloning: IQL's actor with
beta = 0, so every dataset action has weight 1; its critics, which could not change the actor, are
not trained). `reference` and `sparse+reference` are resolved to the concrete label run when the
experiment starts, so the stored runs name the labels they were trained on.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import pyarrow as pa

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.compare import BC, CONDITIONS, planned_methods
from rgvlm_core.errors import UsageError
from rgvlm_core.rl.config import SUBTASK_BUDGET
from rgvlm_core.rl.record import Finished
from rgvlm_core.rl.runs import slug
from rgvlm_core.rl.work import EvalPlan, Evaluating, Logged, RunTask
from rgvlm_core.workspace import StoreReader, Workspace
from rgvlm_core.workspace.schema import EXPERIMENTS

# Reported results and hyper-parameter choices never share tasks or training seeds: a split names the
# evaluation tasks' seed and where training seeds start.
SPLITS: dict[str, tuple[int, int]] = {"test": (0, 0), "validation": (1, 1000)}


def split_seeds(split: str, n: int) -> tuple[tuple[int, ...], int]:
    """(training seeds, evaluation seed) of `n` seeds in a split; UsageError naming the splits."""
    if split not in SPLITS:
        raise UsageError(f"split={split!r}: use {' or '.join(SPLITS)}")
    eval_seed, first = SPLITS[split]
    return tuple(range(first, first + n)), eval_seed


@dataclass(frozen=True)
class ExperimentSpec:
    """The grid and how each cell is trained and evaluated (the IQL config is passed alongside)."""

    methods: tuple[str, ...]
    seeds: tuple[int, ...] = (0, 1, 2)
    lam: float = 1.0  # lambda of every sparse+rgvlm method
    vlm_reward: str | None = None  # mapping of methods without an @MAPPING (None: the default)
    conditions: tuple[str, ...] = CONDITIONS
    episodes_per_length: int = 50
    eval_seed: int = 0  # the same evaluation tasks for every run (a split's own: see SPLITS)
    phrasings: tuple[str, ...] = ("unseen", "seen")
    subtask_budget: int | None = SUBTASK_BUDGET
    curve_every: int = 0  # evaluate the policy every N updates for a learning curve (0: never)
    curve_episodes: int = 5  # tasks per length, condition and phrasing at each curve checkpoint
    split: str = "test"
    encoder: str = "minilm"
    failed: str = "sparse"
    data_splits: tuple[str, ...] = ()  # train on the episodes of these splits only (empty: every split)
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
        from rgvlm_core.sim.evaluate import ALFRED_SPLITS

        alfred = [c for c in self.conditions if c in ALFRED_SPLITS]
        bad = [c for c in self.conditions if c not in CONDITIONS and c not in ALFRED_SPLITS]
        if bad or not self.conditions or (alfred and len(alfred) != len(self.conditions)):
            raise UsageError(
                f"conditions={list(self.conditions)}: use default and/or randomized, or ALFRED's splits "
                "(--eval-tasks alfred:valid_seen,alfred:valid_unseen) alone"
            )
        if self.episodes_per_length < 1:
            raise UsageError(f"episodes_per_length={self.episodes_per_length}: give a positive number")
        if self.failed not in ("sparse", "drop"):
            raise UsageError(f"failed={self.failed!r}: use sparse or drop")
        bad = [p for p in self.phrasings if p not in ("seen", "unseen")]
        if bad or not self.phrasings or len(set(self.phrasings)) != len(self.phrasings):
            raise UsageError(f"phrasings={list(self.phrasings)}: use unseen and/or seen, each once")
        if self.subtask_budget is not None and self.subtask_budget < 1:
            raise UsageError(f"subtask_budget={self.subtask_budget}: give at least 1 step (or none)")
        if self.curve_every < 0 or self.curve_episodes < 1:
            raise UsageError(
                f"curve_every={self.curve_every}, curve_episodes={self.curve_episodes}: "
                "give curve_every >= 0 (0: no curve) and curve_episodes >= 1"
            )
        if self.split not in SPLITS:
            raise UsageError(f"split={self.split!r}: use {' or '.join(SPLITS)}")


@dataclass(frozen=True)
class TaskProgress:
    """One running task: `label` (method and seeds), its phase and how far it is within it."""

    label: str
    phase: str  # starting | train | evaluate
    done: int = 0
    total: int = 0
    updates_per_s: float | None = None

    def text(self) -> str:
        if self.phase == "train":
            rate = f" at {self.updates_per_s:.0f} updates/s" if self.updates_per_s else ""
            return f"{self.label}: step {self.done}/{self.total}{rate}"
        if self.phase == "evaluate":
            return f"{self.label}: evaluating {self.done}/{self.total} episodes"
        return f"{self.label}: starting"


@dataclass(frozen=True)
class ExperimentProgress:
    """Where an experiment is: `finished` of `runs` runs stored, the tasks running now, an estimate of
    the time left (None until there is enough to go on), and the run that has just finished, if any."""

    experiment_id: str
    runs: int
    finished: int
    active: tuple[TaskProgress, ...] = ()
    fraction: float = 0.0
    eta_s: float | None = None
    finished_run: Finished | None = None
    phase: str = "running"  # running | finished (the last progress of a completed experiment)

    def text(self) -> str:
        """One line: runs done, each running task's step and speed, the time left."""
        parts = [f"runs {self.finished}/{self.runs}", *(t.text() for t in self.active)]
        if self.eta_s is not None and self.phase != "finished":
            parts.append(f"about {_duration(self.eta_s)} left")
        return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def resolve_methods(
    methods: Sequence[str],
    reader: StoreReader,
    lam: float = 1.0,
    mapping: str | None = None,
    gamma: float = 0.97,
) -> list[tuple[str, str]]:
    """(method as given, reward source to train on) for each method; unknown ones raise, naming them.

    The source is concrete and canonical: `reference` and `sparse+reference` name the label run they
    resolve to now, and every VLM source names its mapping, so the stored runs say what they used.
    """
    from rgvlm_core.rl.dataset import parse_reward_source

    out = []
    for method in methods:
        if method == BC:
            out.append((method, "sparse"))
            continue
        source = parse_reward_source(method, reader, lam, mapping, gamma)
        if source.run_id is not None and source.text.partition("@")[0] in ("reference", "sparse+reference"):
            head = "sparse+rgvlm" if source.kind == "sparse+vlm" else "rgvlm"
            out.append((method, f"{head}:{source.run_id}@{source.mapping}"))
            continue
        out.append((method, source.text))
    return out


def run_experiment(
    workspace: Workspace,
    spec: ExperimentSpec,
    config: Any,
    *,
    threads: int | None = None,
    workers: int = 1,
    executor: str = "local",
    address: str | None = None,
    stack: int | None = None,
) -> Iterator[ExperimentProgress]:
    """Train and evaluate every (method, seed) not yet done; yields progress throughout.

    `config` is the `rl.iql.IQLConfig` of every run (its seed is replaced by each run's seed);
    `threads` is each worker's torch intra-op thread count (rl.threads); `workers` how many tasks run
    at once, on `executor` (local processes, or ray at `address`); `stack` how many seeds of one method
    train as one stacked model (default: see `plan_tasks`). Workers and executor never change what a run
    computes; a stack computes the same maths in another float summation order.
    """
    from rgvlm_core.rl.executors import make_executor
    from rgvlm_core.rl.record import RunRecorder

    spec.validate()
    config.validate()
    reader = workspace.reader()
    try:
        plan = resolve_methods(spec.methods, reader, spec.lam, spec.vlm_reward, config.gamma)
        experiment_id = spec.name or f"exp-{dt.datetime.now():%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:4]}"
        settings = _settings(spec, config, plan)
        _check_same_plan(reader, experiment_id, settings)
        finished = _finished(reader, experiment_id)
    finally:
        reader.close()
    cells = [(method, source, seed) for method, source in plan for seed in spec.seeds]
    todo = [cell for cell in cells if (cell[0], cell[2]) not in finished]
    done_before = len(cells) - len(todo)
    _record_plan(workspace, experiment_id, spec, settings)
    if not todo:
        yield ExperimentProgress(experiment_id, len(cells), len(cells), fraction=1.0, phase="finished")
        return
    evaluation = EvalPlan(
        spec.conditions,
        spec.episodes_per_length,
        spec.eval_seed,
        phrasings=spec.phrasings,
        subtask_budget=spec.subtask_budget,
        curve_every=spec.curve_every,
        curve_episodes=spec.curve_episodes,
    )
    tasks = plan_tasks(experiment_id, todo, config, evaluation, threads, workers, stack)
    runner = make_executor(executor, workers, address, tasks=len(tasks))
    yield ExperimentProgress(experiment_id, len(cells), done_before, fraction=done_before / len(cells))
    datasets, about, evaluation, embeddings = _prepare(workspace, spec, tasks, evaluation, config.gamma)
    tasks = [
        replace(task, evaluation=evaluation if task.evaluation else None, instructions=embeddings)
        for task in tasks
    ]
    recorder = RunRecorder(workspace, tasks, lambda task: about[task.source], experiment_id)
    tracker = _Tracker(experiment_id, tasks, len(cells), done_before)
    try:
        for index, event in runner.run(tasks, datasets):
            finished_run = recorder.handle(index, event)
            yield tracker.update(index, event, finished_run)
    finally:
        recorder.flush()
    if tracker.finished == len(cells):
        yield replace(tracker.progress(None), phase="finished", fraction=1.0)


def _even(n: int, parts: int) -> list[int]:
    """`n` split into `parts` sizes differing by at most one, larger first."""
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


TASKS_PER_WORKER = 4  # default split: enough tasks per worker that they finish close together
BC_COST = 0.2  # a behaviour-cloning seed trains only the actor: about 1/5 of an IQL seed's updates


def plan_tasks(
    experiment_id: str,
    cells: list[tuple[str, str, int]],
    config: Any,
    evaluation: EvalPlan | None,
    threads: int | None,
    workers: int,
    stack: int | None = None,
) -> list[RunTask]:
    """Group the (method, source, seed) cells into tasks, each training seeds of one method stacked,
    costliest first.

    On a CPU the default is one seed per task: stacking K seeds trains them only up to ~5% faster per
    seed there (bench/iql_speed.py), and a stack computes in a different float summation order than a
    run alone, which over thousands of updates grows into different (equally valid) numbers; with one
    seed per task an experiment's results do not depend on --workers or the executor (tested).
    `--stack K` (and the default on a GPU, where batching pays: ceil(runs / (4 x workers)) seeds, split
    evenly, e.g. 5 seeds as 3 + 2) trades that for fewer, larger tasks. Workers 0 (a cluster of unknown
    size): one seed per task. Tasks are ordered by cost (seeds; behaviour cloning at `BC_COST`), largest
    first, so the small ones fill the gaps at the end; among equals, round-robin over the methods (every
    method's first task, then every method's second...), so a long experiment stopped part-way has
    every method at about the same number of seeds, ready for paired comparison.
    """
    if stack is not None and stack < 1:
        raise UsageError(f"stack={stack}: give at least 1 seed per task")
    gpu = str(config.device).startswith("cuda")
    size = stack or (
        max(1, math.ceil(len(cells) / (TASKS_PER_WORKER * workers))) if workers > 0 and gpu else 1
    )
    by_method: dict[tuple[str, str], list[int]] = {}
    for method, source, seed in cells:
        by_method.setdefault((method, source), []).append(seed)
    tasks: list[RunTask] = []
    rank: list[int] = []  # each task's position among its method's tasks
    for (method, source), seeds in by_method.items():
        task_config = replace(config, beta=0.0 if method == BC else config.beta)
        # an explicit --stack is taken as given (5 seeds by 2: 2 + 2 + 1); the default splits evenly
        chunks = math.ceil(len(seeds) / size)
        sizes = (
            [min(size, len(seeds) - at) for at in range(0, len(seeds), size)]
            if stack
            else _even(len(seeds), chunks)
        )
        at = 0
        for length in sizes:
            group, at = tuple(seeds[at : at + length]), at + length
            run_ids = tuple(run_name(experiment_id, method, seed) for seed in group)
            rank.append(sum(t.method == method for t in tasks))
            tasks.append(RunTask(method, source, group, run_ids, task_config, evaluation, threads))
    order = sorted(
        range(len(tasks)),
        key=lambda i: (-len(tasks[i].seeds) * (BC_COST if tasks[i].config.beta == 0.0 else 1.0), rank[i]),
    )
    return [tasks[i] for i in order]


def check_held_out(info: dict[str, Any], conditions: tuple[str, ...]) -> None:
    """Refuse to evaluate on ALFRED tasks whose trajectories are in the training data."""
    shared = sorted(set(info.get("splits", ())) & set(conditions)) if info.get("level") == "alfred" else []
    if shared:
        raise UsageError(
            f"the training data holds ALFRED's {', '.join(shared)} trajectories, which are the evaluation "
            f"tasks: train on other splits (--data-split train)"
        )


def _prepare(
    workspace: Workspace, spec: ExperimentSpec, tasks: list[RunTask], evaluation: EvalPlan, gamma: float
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], EvalPlan, dict[str, Any]]:
    """The dataset of every reward source (built once, cached), what each run records about it, the
    evaluation at the data's level (subgoal, or low on the data's floor plans) and the embeddings of
    every evaluation instruction."""
    from rgvlm_core.rl.dataset import parse_reward_source
    from rgvlm_core.rl.dataset_cache import cached_dataset
    from rgvlm_core.rl.encoder import make_encoder
    from rgvlm_core.rl.runs import TrainSpec, provenance
    from rgvlm_core.rl.work import evaluation_embeddings

    encoder = make_encoder(spec.encoder)
    datasets: dict[str, Any] = {}
    about: dict[str, dict[str, Any]] = {}
    reader = workspace.reader()
    try:
        for source_text in dict.fromkeys(task.source for task in tasks):
            source = parse_reward_source(source_text, reader, spec.lam, gamma=gamma)
            flt = EpisodeFilter(splits=spec.data_splits)
            arrays = cached_dataset(reader, source, encoder, flt, failed=spec.failed)  # type: ignore[arg-type]
            if not datasets:  # refused at the first dataset, before the others are built
                check_held_out(arrays.info, evaluation.at_level(arrays.info).conditions)
            datasets[source_text] = arrays
            train_spec = TrainSpec(
                reward=source.text,
                lam=spec.lam,
                vlm_reward=source.mapping,
                encoder=spec.encoder,
                failed=spec.failed,
            )
            about[source_text] = {
                "spec": train_spec,
                "encoder": encoder.name,
                "dataset": arrays.info,
                "provenance": provenance(reader, source.run_id),
            }
    finally:
        reader.close()
    if datasets:
        info = next(iter(datasets.values())).info
        evaluation = evaluation.at_level(info)
    embeddings = evaluation_embeddings(evaluation, encoder, workspace.root / "rl_cache")
    return datasets, about, evaluation, embeddings


class _Tracker:
    """Turns task events into `ExperimentProgress`: runs finished, running tasks, the time left."""

    def __init__(self, experiment_id: str, tasks: list[RunTask], runs: int, finished: int):
        self.experiment_id, self.tasks, self.runs = experiment_id, tasks, runs
        self.finished = self.finished_before = finished
        self.active: dict[int, TaskProgress] = {}
        self.share: dict[int, float] = {}  # fraction of each task done
        self.runs_done: dict[int, int] = {}  # runs of each task stored
        self.started = time.monotonic()

    def update(self, index: int, event: Any, finished_run: Finished | None) -> ExperimentProgress:
        task = self.tasks[index]
        train_share = 0.8 if task.evaluation is not None else 1.0
        if isinstance(event, Logged):
            self.active[index] = TaskProgress(
                task.label, "train", event.step, event.total, event.updates_per_s
            )
            self.share[index] = train_share * event.step / event.total
        elif isinstance(event, Evaluating):
            self.active[index] = TaskProgress(task.label, "evaluate", event.done, event.total)
            self.share[index] = train_share + (1 - train_share) * event.done / max(1, event.total)
        elif index not in self.active:
            self.active[index] = TaskProgress(task.label, "starting")
        if finished_run is not None:
            self.finished += 1
            self.runs_done[index] = self.runs_done.get(index, 0) + 1
            if self.runs_done[index] == len(task.seeds):
                self.active.pop(index, None)
                self.share[index] = 1.0
        return self.progress(finished_run)

    def progress(self, finished_run: Finished | None) -> ExperimentProgress:
        todo = sum(len(t.seeds) for t in self.tasks)
        done_now = sum(self.share.get(i, 0.0) * len(t.seeds) for i, t in enumerate(self.tasks))
        fraction = (self.finished_before + done_now) / max(1, self.runs)
        elapsed = time.monotonic() - self.started
        share = done_now / max(1, todo)
        eta = elapsed * (1 - share) / share if share >= 0.02 and elapsed >= 2 else None
        return ExperimentProgress(
            self.experiment_id,
            self.runs,
            self.finished,
            tuple(self.active.values()),
            fraction,
            eta,
            finished_run,
        )


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


def _settings(spec: ExperimentSpec, config: Any, plan: list[tuple[str, str]]) -> dict[str, Any]:
    """What the stored plan records besides methods and seeds, as JSON would read it back."""
    settings = {
        "iql": asdict(config),
        "sources": dict(plan),
        **{k: v for k, v in asdict(spec).items() if k not in ("methods", "seeds", "name", "command")},
    }
    return dict(json.loads(json.dumps(settings)))


def _check_same_plan(reader: StoreReader, experiment_id: str, settings: dict[str, Any]) -> None:
    """Resuming (or adding methods or seeds to) an experiment under settings that change what a run
    computes would put unlike runs in one comparison: refused, naming each difference."""
    from rgvlm_core.rl.experiment_io import plan_differences, plan_settings

    stored = plan_settings(reader, experiment_id)
    differ = plan_differences(stored, settings) if stored is not None else []
    if differ:
        raise UsageError(
            f"experiment {experiment_id!r} was planned with other settings (stored vs now): "
            f"{'; '.join(differ)}; run it as it was planned, or give a new --name"
        )


def _record_plan(
    workspace: Workspace, experiment_id: str, spec: ExperimentSpec, settings: dict[str, Any]
) -> None:
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
    "SPLITS",
    "SUBTASK_BUDGET",
    "ExperimentProgress",
    "ExperimentSpec",
    "TaskProgress",
    "experiment_run_ids",
    "list_experiments",
    "live_runs",
    "plan_tasks",
    "resolve_methods",
    "run_experiment",
    "run_name",
    "split_seeds",
]
