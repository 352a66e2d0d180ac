"""One unit of an experiment's work, runnable anywhere: train K seeds of one method, then evaluate them.

A `RunTask` carries everything the work needs except the dataset arrays (which executors ship their own
way: in memory, memory-mapped from the workspace cache, or through Ray's object store), and no path into
the workspace: the instruction embeddings of every evaluation task are computed by the driver and travel
with the task, so a worker needs no text encoder. `execute` yields `Event`s; only the driver writes them
into the workspace (rl.experiment), so a store has one writer however many workers run.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from rgvlm_core.errors import UsageError
from rgvlm_core.rl.config import IQLConfig


@dataclass(frozen=True)
class EvalPlan:
    """How every run is evaluated: the simulator's conditions and instruction phrasings, tasks per
    length, the tasks' seed, the step budget of each subtask (None: twice the expert's plan for the
    task), and the learning curve: every `curve_every` updates (0: never) the policy so far meets
    `curve_episodes` tasks per length of each condition and phrasing (the first ones of the final
    evaluation's tasks)."""

    conditions: tuple[str, ...]
    episodes_per_length: int
    seed: int = 0
    lengths: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
    phrasings: tuple[str, ...] = ("unseen",)
    subtask_budget: int | None = None
    curve_every: int = 0
    curve_episodes: int = 10
    level: str = "subgoal"  # the simulator level the runs' data is at (set from the dataset: at_level)
    floor_plans: tuple[int, ...] | None = None  # low level: the data's ALFRED floor plans (None: generated)
    alfred_root: str | None = None  # ALFRED level: the data folder whose splits' tasks are evaluated

    def at_level(self, info: dict[str, Any]) -> EvalPlan:
        """This plan at the level and on the floor plans of a dataset (its `OfflineArrays.info`): a policy
        is evaluated in the simulator its data came from, on the floor plans it was trained on. At the low
        level the default budget (SUBTASK_BUDGET, sized for subgoals) becomes LOW_SUBTASK_BUDGET: one
        low-level subtask alone takes the expert 12 steps on average."""
        from rgvlm_core.rl.config import LOW_SUBTASK_BUDGET, SUBTASK_BUDGET
        from rgvlm_core.rl.dataset import dataset_floor_plans
        from rgvlm_core.sim.evaluate import ALFRED, ALFRED_SPLITS

        level = str(info.get("level", "subgoal"))
        alfred_tasks = [c for c in self.conditions if c in ALFRED_SPLITS]
        budget = LOW_SUBTASK_BUDGET if self.subtask_budget == SUBTASK_BUDGET else self.subtask_budget
        if level == ALFRED:
            # ALFRED's own tasks, seen and unseen scenes apart, with its annotators' words (one phrasing)
            return replace(
                self,
                level=level,
                floor_plans=None,
                conditions=tuple(alfred_tasks) or ("valid_seen", "valid_unseen"),
                phrasings=("unseen",),
                alfred_root=self.alfred_root or info.get("alfred_root"),
                subtask_budget=budget,
            )
        if alfred_tasks:
            raise UsageError(
                f"evaluation on ALFRED's tasks ({', '.join(alfred_tasks)}) needs runs trained on replayed "
                f"ALFRED trajectories (`rgvlm import --replay`); this data is at the {level} level"
            )
        if level != "low":
            return replace(self, level=level, floor_plans=None)
        return replace(self, level=level, floor_plans=dataset_floor_plans(info), subtask_budget=budget)

    @property
    def episodes(self) -> int:
        return len(self.conditions) * len(self.phrasings) * len(self.lengths) * self.episodes_per_length

    def configs(self, episodes_per_length: int | None = None) -> list[Any]:
        """The `sim.evaluate.EvalConfig` of every condition and phrasing, in evaluation order."""
        from rgvlm_core.sim.evaluate import EvalConfig

        return [
            EvalConfig(
                lengths=self.lengths,
                episodes_per_length=episodes_per_length or self.episodes_per_length,
                condition=condition,
                seed=self.seed,
                phrasing=phrasing,  # type: ignore[arg-type]
                subtask_budget=self.subtask_budget,
                level=self.level,  # type: ignore[arg-type]
                floor_plans=self.floor_plans,
                alfred_root=self.alfred_root,
            )
            for condition in self.conditions
            for phrasing in self.phrasings
        ]


@dataclass(frozen=True)
class RunTask:
    """Seeds `seeds` of `method` (reward source `source`), as runs `run_ids`, trained then evaluated."""

    method: str
    source: str
    seeds: tuple[int, ...]
    run_ids: tuple[str, ...]
    config: IQLConfig  # of the whole stack; each run's stored config carries its own seed
    evaluation: EvalPlan | None  # None: train only
    threads: int | None = None
    # text -> embedding of every instruction the evaluation can show (rl.work.evaluation_embeddings)
    instructions: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"{self.method} seed{'s' if len(self.seeds) > 1 else ''} {','.join(map(str, self.seeds))}"


# --------------------------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Started:
    """The worker began the task (`threads`: its torch intra-op threads; `pid`: its process)."""

    threads: int
    pid: int


@dataclass(frozen=True)
class Logged:
    """Metrics of each seed averaged over the last `log_every` updates, at `step` of `total`."""

    step: int
    total: int
    metrics: list[dict[str, float]]
    updates_per_s: float


@dataclass(frozen=True)
class Trained:
    """Seed index `index` of the task finished training: its checkpoint (IQL.save) as bytes."""

    index: int
    checkpoint: bytes
    seconds: float


@dataclass(frozen=True)
class Evaluating:
    """`done` of `total` evaluation episodes (all seeds, all conditions) have ended."""

    done: int
    total: int


@dataclass(frozen=True)
class Evaluated:
    """Every evaluation episode of seed index `index`, all conditions (rows of sim.evaluate.EpisodeResult)."""

    index: int
    results: list[Any]


@dataclass(frozen=True)
class Curve:
    """The policies at `step` updates evaluated on the learning curve's tasks: per seed index, one row
    per (condition, phrasing, length) with episodes, proportion and success (`curve_rows`)."""

    step: int
    rows: list[list[dict[str, Any]]]


Event = Started | Logged | Trained | Evaluating | Evaluated | Curve


def execute(task: RunTask, arrays: Any) -> Iterator[Event]:
    """Train the task's seeds as one stacked learner on `arrays` (rl.dataset.OfflineArrays), then evaluate.

    Runs wherever it is called: in the driver, a local worker process or a Ray task.
    """
    from rgvlm_core.rl.iql import check_device, train_seeds
    from rgvlm_core.rl.threads import apply_threads

    check_device(task.config.device)
    yield Started(apply_threads(task.threads), os.getpid())
    data = arrays.to_tensors().with_sparse_states()
    learner = None
    started = last = time.perf_counter()
    last_step = 0
    plan = task.evaluation
    every = plan.curve_every if plan is not None else 0
    next_curve = every
    for step, metrics, trained in train_seeds(data, arrays.n_actions, task.config, task.seeds):
        learner = trained
        now = time.perf_counter()
        rate = (step - last_step) / max(now - last, 1e-9)
        yield Logged(step, task.config.steps, metrics, rate)
        if plan is not None and every and step >= next_curve and step < task.config.steps:
            yield Curve(step, _curve(task, learner, plan))
            next_curve = (step // every + 1) * every
        last, last_step = time.perf_counter(), step
    assert learner is not None  # steps >= 1 (IQLConfig.validate)
    seconds = time.perf_counter() - started
    for index in range(len(task.seeds)):
        buffer = io.BytesIO()
        learner.save(buffer, seed_index=index)
        yield Trained(index, buffer.getvalue(), seconds)
    if task.evaluation is not None:  # (IQL.act runs without autograd)
        yield from _evaluate(task, learner, task.evaluation)


def _policy(task: RunTask, learner: Any) -> Any:
    """The lockstep policy of a stack: greedy actions of every member (sim.evaluate_batch's signature)."""
    import torch

    def policy(observations: list[dict[str, Any]], masks: np.ndarray, members: np.ndarray) -> np.ndarray:
        states = torch.from_numpy(np.stack([np.asarray(o["state"], np.float32) for o in observations]))
        texts = [str(o["instruction"]) for o in observations]
        unknown = [t for t in texts if t not in task.instructions]
        if unknown:
            raise KeyError(f"instruction {unknown[0]!r} was not embedded before the evaluation")
        instr = torch.from_numpy(np.stack([task.instructions[t] for t in texts]))
        actions = learner.act(states, instr, torch.from_numpy(masks), members=torch.from_numpy(members))
        return actions.numpy()

    return policy


def _evaluate(task: RunTask, learner: Any, plan: EvalPlan) -> Iterator[Event]:
    """Every seed on the same tasks, all in lockstep (sim.evaluate_batch), greedy actions."""
    from rgvlm_core.sim.evaluate_batch import evaluate_members

    k = len(task.seeds)
    policy = _policy(task, learner)
    results: list[list[Any]] = [[] for _ in range(k)]
    done, total = 0, k * plan.episodes
    for config in plan.configs():
        for member, result in evaluate_members(policy, k, config):
            results[member].append(result)
            done += 1
            if done % 50 == 0:
                yield Evaluating(done, total)
    yield Evaluating(total, total)
    for index, rows in enumerate(results):
        rows.sort(key=lambda r: (r.condition, r.phrasing, r.length, r.episode))
        yield Evaluated(index, rows)


def _curve(task: RunTask, learner: Any, plan: EvalPlan) -> list[list[dict[str, Any]]]:
    """Every seed of the stack on the learning curve's tasks: `curve_rows` per seed index."""
    from rgvlm_core.sim.evaluate_batch import evaluate_members

    k = len(task.seeds)
    policy = _policy(task, learner)
    results: list[list[Any]] = [[] for _ in range(k)]
    for config in plan.configs(min(plan.curve_episodes, plan.episodes_per_length)):
        for member, result in evaluate_members(policy, k, config):
            results[member].append(result)
    return [curve_rows(rows) for rows in results]


def curve_rows(results: list[Any]) -> list[dict[str, Any]]:
    """Evaluated episodes (sim.evaluate.EpisodeResult) aggregated per (condition, phrasing, length):
    episodes, mean proportion of subtasks completed, share of tasks completed in full."""
    groups: dict[tuple[str, str, int], list[Any]] = {}
    for r in results:
        groups.setdefault((r.condition, r.phrasing, r.length), []).append(r)
    return [
        {
            "condition": condition,
            "phrasing": phrasing,
            "length": length,
            "episodes": len(rows),
            "proportion": float(np.mean([r.proportion for r in rows])),
            "success": float(np.mean([r.success for r in rows])),
        }
        for (condition, phrasing, length), rows in sorted(groups.items())
    ]


def evaluation_embeddings(plan: EvalPlan, encoder: Any, cache_dir: Any) -> dict[str, np.ndarray]:
    """Embeddings of every instruction `plan`'s evaluation can show a policy (encoded once, cached)."""
    from rgvlm_core.rl.encoder import encode_cached
    from rgvlm_core.sim.evaluate import evaluation_instructions

    texts: list[str] = []
    for config in plan.configs():
        texts += evaluation_instructions(config)
    unique = sorted(set(texts))
    vectors = encode_cached(encoder, unique, cache_dir)
    return dict(zip(unique, vectors, strict=True))


def with_seed(config: IQLConfig, seed: int) -> IQLConfig:
    """The config one run of a stack stores: the stack's, with that run's seed."""
    return replace(config, seed=seed)


__all__ = [
    "Curve",
    "EvalPlan",
    "Evaluated",
    "Evaluating",
    "Event",
    "Logged",
    "RunTask",
    "Started",
    "Trained",
    "curve_rows",
    "evaluation_embeddings",
    "execute",
    "with_seed",
]
