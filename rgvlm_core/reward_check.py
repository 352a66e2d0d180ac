"""The reward sanity check: before anyone trains on a reward, does it keep the task's optimal policy?

A reward that pays every step (r = score/10, with `done` ending each subtask) makes delaying completion
optimal: loops pay. Two measurements say so for a reward source (`rl.dataset` syntax, any mapping):

(a) on the data: the mean discounted return of completed subtask segments of expert trajectories
    against the others, over the subtask kinds both completed (`reward_returns`), from the rewards
    training would use (`rl.dataset.reward_rows`, the label run's own scores).
(b) on the simulator: an exact solve of the MDP of sampled evaluation tasks under that reward
    (`sim.solve`): the share of tasks whose optimal policy completes every subtask, and its path length
    against the expert's. The scorer there is the reference labeller's ground-truth rule
    (`labeling.reference.truth`: 10 completes the subtask, 7 makes progress, 2 a valid step without)
    applied to every transition, because a label run's own scores exist only on the data's steps;
    its noise model is not applied. So (b) judges the mapping, (a) the labels.

(b) is the subgoal level's: on low-level data (ALFRED's actions on floor plans) the check reports (a)
and says that the exact solve is not available there, and why (see LOW_LEVEL_SOLVE).

No torch and no streamlit here: the CLI and the dashboard's Audit page both call `check_reward`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.labeling.reference import progress_score, truth
from rgvlm_core.labeling.rewards import step_rewards
from rgvlm_core.labeling.types import SegmentStep
from rgvlm_core.reward_returns import BehaviourReturns, NoComparison, behaviour_returns
from rgvlm_core.rl.dataset import RewardSource, parse_reward_source, reward_rows, sim_episode_levels
from rgvlm_core.sim.expert import plan_fraction
from rgvlm_core.sim.solve import (
    DEFAULT_GAMMA,
    DEFAULT_MAX_STATES,
    SCOPES,
    Scope,
    SubtaskGraph,
    TaskSolve,
    solve_task,
)
from rgvlm_core.sim.tasks import MAX_SUBTASKS
from rgvlm_core.sim.world import ACTION_TOKENS
from rgvlm_core.workspace import StoreReader

logger = logging.getLogger(__name__)
FloatArray = npt.NDArray[np.float64]
SCORER = (
    "the reference labeller's ground-truth rule (not an LVLM), applied to every transition of the "
    "simulator; noise is not applied"
)

LOW_LEVEL_SOLVE = (
    "the exact solve is not available at the low level: it enumerates every reachable state of a subtask "
    "under the subgoal level's actions (sim.solve), and at the low level each of those states comes in "
    "every pose of the agent on the floor plan (about 2,400 to 5,700 poses on ALFRED's floor plans: "
    "points x 4 headings x 7 camera horizons), far beyond the solver's bound of {max_states:,} states; "
    "the expert-against-other returns are the check at this level"
)
LOW_LEVEL_RETURNS = (
    "The returns are of the data's {n:,} low-level episodes, under the rewards training would use "
    "(the label run's own scores)."
)

SCOPE_SENTENCE = {
    "subtask": "Scope subtask: in each subtask the agent may do to objects only what the expert does (a "
    "sub-MDP of the simulator's, whose loops are the simulator's; loops that need other objects are "
    "not searched).",
    "full": "Scope full: every valid action of the simulator.",
}


@dataclass(frozen=True)
class CheckConfig:
    """How the check runs. The help texts are the CLI's and the dashboard's."""

    mapping: str | None = field(
        default=None, metadata={"help": "VLM reward mapping for a source without @MAPPING (raw, cost, ...)."}
    )
    lam: float = field(default=1.0, metadata={"help": "Weight lambda of the VLM reward."})
    gamma: float = field(default=DEFAULT_GAMMA, metadata={"help": "Discount of returns and of the solve."})
    tasks_per_length: int = field(default=2, metadata={"help": "Simulator tasks solved per task length."})
    seed: int = field(
        default=7, metadata={"help": "Seed of the sampled tasks (not the experiments' evaluation seed 0)."}
    )
    max_states: int = field(
        default=DEFAULT_MAX_STATES, metadata={"help": "A subtask with more reachable states is skipped."}
    )
    lengths: tuple[int, ...] = field(
        default=tuple(range(1, MAX_SUBTASKS + 1)), metadata={"help": "Task lengths to sample."}
    )
    scope: Scope = field(
        default="subtask",
        metadata={"help": "subtask: the agent handles only the subtask's objects; full: every object."},
    )

    def __post_init__(self) -> None:
        if not 0 < self.gamma < 1:
            raise UsageError(f"gamma={self.gamma!r}: give a discount between 0 and 1 (exclusive)")
        if self.tasks_per_length < 1 or self.max_states < 1:
            raise UsageError("tasks per length and the state bound must be positive integers")
        if not self.lengths or any(not 1 <= n <= MAX_SUBTASKS for n in self.lengths):
            raise UsageError(f"lengths={self.lengths!r}: give task lengths from 1 to {MAX_SUBTASKS}")
        if self.scope not in SCOPES:
            raise UsageError(f"scope={self.scope!r}: use {' or '.join(SCOPES)}")


# -- the reward of a simulator transition --------------------------------------------------------------
@dataclass(frozen=True)
class RewardModel:
    """A reward source's arithmetic on simulator transitions: the sparse reward (1 where the step
    completes the subtask), the reference rule's score, and `rewards.step_rewards` under the mapping."""

    kind: str  # sparse, vlm or sparse+vlm (rl.dataset.RewardSource)
    mapping: str | None
    lam: float = 1.0
    gamma: float = DEFAULT_GAMMA

    @classmethod
    def of(cls, source: RewardSource, gamma: float) -> RewardModel:
        return cls(source.kind, source.mapping, source.lam, gamma)

    def __call__(self, graph: SubtaskGraph) -> FloatArray:
        sparse = graph.terminal[graph.dst].astype(np.float64)
        if self.kind == "sparse":
            return sparse
        with_sparse = self.kind == "sparse+vlm"
        if self.mapping == "shaped":
            return self._shaped(graph, sparse, with_sparse)
        scores = reference_scores(graph)
        rewards, _ = step_rewards(
            str(self.mapping), sparse, scores, lam=self.lam, gamma=self.gamma, with_sparse=with_sparse
        )
        return rewards

    def _shaped(self, graph: SubtaskGraph, sparse: FloatArray, with_sparse: bool) -> FloatArray:
        """`step_rewards` reads consecutive steps, phi before a step being the progress answered after
        the previous one. So each transition s -> s' is laid out as the two steps of a segment: one
        that reached s (a segment start only when s is the start state, whose phi is 0), then s -> s'."""
        phi = potential_scores(graph)
        n = graph.src.size
        progress = np.empty(2 * n)
        progress[0::2], progress[1::2] = phi[graph.src], phi[graph.dst]
        starts = np.ones(2 * n, bool)
        starts[1::2] = graph.src == 0
        terminal = np.zeros(2 * n, bool)
        terminal[1::2] = graph.terminal[graph.dst]
        paid = np.zeros(2 * n)
        paid[1::2] = sparse
        rewards, _ = step_rewards(
            "shaped",
            paid,
            np.full(2 * n, np.nan),
            progress=progress,
            segment_start=starts,
            terminal=terminal,
            lam=self.lam,
            gamma=self.gamma,
            with_sparse=with_sparse,
        )
        return rewards[1::2]


def made_progress(graph: SubtaskGraph) -> npt.NDArray[np.bool_]:
    """Per transition: the expert's remaining plan for the subtask got shorter (unknown counts as not)."""
    before, after = graph.remaining[graph.src], graph.remaining[graph.dst]
    return (before >= 0) & (after >= 0) & (after < before)


def reference_scores(graph: SubtaskGraph) -> FloatArray:
    """The reference labeller's score of every transition, from `reference.truth` itself: each distinct
    (action, completes, progress) is one SegmentStep, scored once."""
    completes = graph.terminal[graph.dst]
    key = graph.action * 4 + completes * 2 + made_progress(graph)
    distinct, inverse = np.unique(key, return_inverse=True)
    scored = [
        truth(SegmentStep(0, ACTION_TOKENS[int(k) // 4], None, float(k // 2 % 2), True, bool(k % 2)))[0]
        for k in distinct
    ]
    return np.asarray(scored, np.float64)[inverse.reshape(-1)]


def potential_scores(graph: SubtaskGraph) -> FloatArray:
    """The reference labeller's progress answer (0..10) in every state: the share of the expert's plan
    for the subtask done since the start state (0 at the start, and where the expert finds no plan)."""
    start = int(graph.remaining[0])
    return np.asarray(
        [0 if r < 0 else progress_score(plan_fraction(int(r), start)) for r in graph.remaining], np.float64
    )


# -- part (b): simulator tasks ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskRow:
    """One sampled evaluation task and its solve."""

    length: int
    episode: int
    seed: int
    task_type: str
    room: str
    goal: str
    solve: TaskSolve

    def to_json(self) -> dict[str, Any]:
        s = self.solve
        ratio = (
            None if s.optimal_length is None or not s.expert_length else s.optimal_length / s.expert_length
        )
        return {
            "length": self.length,
            "episode": self.episode,
            "seed": self.seed,
            "task_type": self.task_type,
            "room": self.room,
            "goal": self.goal,
            "status": s.status,
            "expert_length": s.expert_length,
            "optimal_length": s.optimal_length,
            "length_ratio": ratio,
            "subtasks": [
                {**vars(sub), "value": None if sub.skipped else sub.value, "loop": list(sub.loop)}
                for sub in s.subtasks
            ],
        }


def solve_sim_tasks(model: RewardModel, config: CheckConfig) -> Iterator[TaskRow]:
    """Each sampled task solved under `model`, as it is done (the evaluation's own sampler, own seed)."""
    from rgvlm_core.sim.env import HouseholdEnv
    from rgvlm_core.sim.evaluate import EvalConfig, episodes, start_episode

    sampled = EvalConfig(
        lengths=config.lengths, episodes_per_length=config.tasks_per_length, seed=config.seed
    )
    env = HouseholdEnv(phrasing=sampled.phrasing)
    for length, episode, seed in episodes(sampled):
        start_episode(env, length, sampled.condition, seed)
        task = env.task
        solved = solve_task(
            task, env.state, model, gamma=config.gamma, max_states=config.max_states, scope=config.scope
        )
        logger.debug("reward check task %s/%s: %s", length, episode, solved.status)
        yield TaskRow(length, episode, seed, task.task_type, task.room, task.goal, solved)


# -- the check -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardCheck:
    """What the check found; `verdict()` says it in words, `to_json()` as one object."""

    source: RewardSource
    config: CheckConfig
    tasks: tuple[TaskRow, ...]
    returns: BehaviourReturns | None
    returns_unavailable: str | None  # why part (a) could not be measured
    seconds: float
    run_id: str | None = None
    level: str = "subgoal"  # the data's simulator level: subgoal, low, or mixed (both)
    solve_unavailable: str | None = None  # why part (b) was not run (the low level)
    episodes_by_level: dict[str, int] = field(default_factory=dict)

    def _count(self, status: str) -> int:
        return sum(t.solve.status == status for t in self.tasks)

    @property
    def solved(self) -> int:
        return len(self.tasks) - self._count("skipped")

    @property
    def optimal_completes(self) -> float | None:
        """The share of solved tasks whose optimal policy completes every subtask (None: none solved)."""
        return self._count("completes") / self.solved if self.solved else None

    @property
    def length_ratio(self) -> float | None:
        """Mean optimal / expert path length over the tasks whose optimal policy completes."""
        ratios = [
            t.solve.optimal_length / t.solve.expert_length
            for t in self.tasks
            if t.solve.optimal_length is not None and t.solve.expert_length
        ]
        return float(np.mean(ratios)) if ratios else None

    @property
    def pays_loops(self) -> bool | None:
        share = self.optimal_completes
        return None if share is None else share < 1.0

    def example_loop(self) -> tuple[TaskRow, tuple[str, ...]] | None:
        """The first task whose optimal policy loops, and the actions it repeats."""
        for row in self.tasks:
            for sub in row.solve.subtasks:
                if sub.loop:
                    return row, sub.loop
        return None

    def verdict(self) -> list[str]:
        """The findings in sentences: the solve's, the data's, what the solve's scorer is, and its scope
        (at the low level: the solve's absence, the data's, where the returns come from, the level)."""
        if self.solve_unavailable is not None:
            low = self.episodes_by_level.get("low", 0)
            return [
                f"{self.source.text}: {self.solve_unavailable}",
                self._returns_sentence(),
                LOW_LEVEL_RETURNS.format(n=low),
                "Level low: the data's episodes act in ALFRED's low-level actions on floor plans.",
            ]
        sentences = [
            self._solve_sentence(),
            self._returns_sentence(),
            f"The solve's scorer is {SCORER}: a label run's own scores exist only on the data's steps, "
            "which the expert-against-other returns measure.",
            SCOPE_SENTENCE[self.config.scope],
        ]
        if self.level == "mixed":
            counts = self.episodes_by_level
            sentences[1] += (
                f" (pooled over {counts.get('subgoal', 0):,} subgoal-level and {counts.get('low', 0):,} "
                "low-level episodes; the solve speaks for the subgoal level only)"
            )
        return sentences

    def _solve_sentence(self) -> str:
        name, n, skipped = self.source.text, len(self.tasks), self._count("skipped")
        aside = f" ({skipped} skipped: more than {self.config.max_states:,} states)" if skipped else ""
        if not self.solved:
            return (
                f"{name}: the solve says nothing; all {n} simulator tasks were skipped (more than "
                f"{self.config.max_states:,} states); raise the bound or use the subtask scope"
            )
        completes = self._count("completes")
        if completes < self.solved:
            example = self.example_loop()
            loop = f"; e.g. it repeats {', '.join(example[1])} forever" if example else ""
            return (
                f"{name} pays loops: the optimal policy completes {completes} of {self.solved} tasks "
                f"solved{aside}{loop}"
            )
        ratio = self.length_ratio
        length = f", in {ratio:.2f}x the expert's steps" if ratio is not None else ""
        return (
            f"{name} keeps completion optimal: the optimal policy completes all {self.solved} tasks "
            f"solved{aside}{length}"
        )

    def _returns_sentence(self) -> str:
        r = self.returns
        if r is None:
            return f"Expert against other segments: unavailable ({self.returns_unavailable})"
        counts = f"{r.expert_segments:,} expert and {r.other_segments:,} other completed segments"
        if r.pays_detours:
            return (
                f"non-expert segments earn more than expert ones ({r.other_return:.2f} vs "
                f"{r.expert_return:.2f}; {counts}; {r.beats_expert_share:.0%} of the others beat "
                "their kind's expert mean)"
            )
        return (
            f"expert segments earn at least as much as non-expert ones ({r.expert_return:.2f} vs "
            f"{r.other_return:.2f}; {counts})"
        )

    def example_episode(self) -> dict[str, Any] | None:
        """Where to see a detour paid: the worst offender's episode, step and run (Episodes page URL)."""
        worst = self.returns.worst if self.returns else None
        if worst is None:
            return None
        return {"episode": worst.episode_id, "step": worst.first_step, "run": self.run_id}

    def to_json(self) -> dict[str, Any]:
        c = self.config
        returns = self.returns.to_json() if self.returns else {}
        return {
            "reward_source": self.source.text,
            "level": self.level,
            "episodes_by_level": dict(self.episodes_by_level),
            "solve_unavailable": self.solve_unavailable,
            "mapping": self.source.mapping,
            "lambda": self.source.lam,
            "gamma": c.gamma,
            "scorer": SCORER,
            "scope": c.scope,
            "seed": c.seed,
            "tasks_per_length": c.tasks_per_length,
            "max_states": c.max_states,
            "tasks": len(self.tasks),
            "solved": self.solved,
            "skipped": self._count("skipped"),
            "optimal_completes": self.optimal_completes,
            "pays_loops": self.pays_loops,
            "length_ratio": self.length_ratio,
            "expert_return": returns.get("expert_return"),
            "other_return": returns.get("other_return"),
            "returns": returns or None,
            "returns_unavailable": self.returns_unavailable,
            "example_episode": self.example_episode(),
            "task_rows": [t.to_json() for t in self.tasks],
            "verdict": self.verdict(),
            "seconds": round(self.seconds, 2),
        }


Progress = Callable[[int, int, TaskRow], None]  # (tasks done, tasks in all, the task just solved)


def check_reward(
    reader: StoreReader,
    source_text: str,
    mapping: str | None = None,
    lam: float = 1.0,
    gamma: float = DEFAULT_GAMMA,
    tasks_per_length: int = 2,
    seed: int = 7,
    max_states: int = DEFAULT_MAX_STATES,
    *,
    lengths: tuple[int, ...] = tuple(range(1, MAX_SUBTASKS + 1)),
    scope: Scope = "subtask",
    progress: Progress | None = None,
) -> RewardCheck:
    """Parts (a) and (b) for a reward source of the workspace `reader` reads (a StoreReader); on data
    of the low level only, part (a) and the reason part (b) is not available there."""
    config = CheckConfig(mapping, lam, gamma, tasks_per_length, seed, max_states, tuple(lengths), scope)
    began = time.perf_counter()
    source = parse_reward_source(source_text, reader, lam=lam, mapping=mapping, gamma=gamma)
    returns, unavailable = _returns(reader, source, gamma)
    counts = sim_episode_levels(reader)
    level = _data_level(counts)
    rows: list[TaskRow] = []
    solve_unavailable = None
    if level == "low":
        solve_unavailable = LOW_LEVEL_SOLVE.format(max_states=config.max_states)
        logger.info("reward check on low-level data: %s", solve_unavailable)
    else:
        total = len(config.lengths) * config.tasks_per_length
        for row in solve_sim_tasks(RewardModel.of(source, gamma), config):
            rows.append(row)
            if progress is not None:
                progress(len(rows), total, row)
    return RewardCheck(
        source,
        config,
        tuple(rows),
        returns,
        unavailable,
        time.perf_counter() - began,
        source.run_id,
        level,
        solve_unavailable,
        counts,
    )


def _data_level(counts: dict[str, int]) -> str:
    """subgoal (also for a workspace without simulator episodes: the solve needs no data), low, or mixed."""
    if counts.get("low") and counts.get("subgoal"):
        return "mixed"
    return "low" if counts.get("low") else "subgoal"


def _returns(
    reader: StoreReader, source: RewardSource, gamma: float
) -> tuple[BehaviourReturns | None, str | None]:
    """Part (a), or None and why not (e.g. a shaped source whose label run has no progress answers)."""
    try:
        return behaviour_returns(reward_rows(reader, source), gamma), None
    except (RGVLMError, NoComparison) as exc:
        return None, str(exc)
