"""The evaluation harness: proportion of subtasks completed on tasks of 1..6 subtasks (the paper's metric).

`evaluate(policy, config)` yields one `EpisodeResult` per episode; `summarize` turns the rows into one
row per condition and task length with the mean proportion of subtasks completed, its 95% confidence
interval and the success rate. Every episode's seed comes from (config.seed, length, episode index)
alone, so every policy meets the same tasks and rooms, and the two conditions share their base tasks
(the randomised condition then moves the agent and the objects).

`episodes(config)` enumerates those episodes and `start_episode` / `episode_result` reset and score
one, so `evaluate_batch.evaluate_members` (many policies in lockstep, one batched call per tick) meets
exactly the same tasks. `evaluation_instructions(config)` lists every instruction text an evaluation
can show a policy, without running one.

Two action levels (`EvalConfig.level`): "subgoal" (`HouseholdEnv`, the default) and "low"
(`rgvlm_core.sim.low.env.LowHouseholdEnv`: ALFRED's low-level actions on ALFRED floor plans or generated
rooms). The episodes and their seeds are the same at both; at the low level the episode's seed also
draws its floor plan (among `floor_plans`, redrawn among those posing the length), so two policies meet
the same tasks on the same floor plans, and each row records the plan (`EpisodeResult.floor_plan`).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

import numpy as np

from rgvlm_core.alfred.splits import EVAL_SPLITS
from rgvlm_core.errors import UsageError
from rgvlm_core.sim.env import CONDITIONS, LEVELS, PHRASINGS, HouseholdEnv
from rgvlm_core.sim.tasks import MAX_SUBTASKS

if TYPE_CHECKING:  # the low env is imported only where the low level is used (it costs an import)
    from rgvlm_core.alfred.env import AlfredTaskEnv
    from rgvlm_core.sim.low.env import LowHouseholdEnv

logger = logging.getLogger(__name__)

Policy = Callable[[dict[str, Any], np.ndarray], int]  # (observation, action mask) -> action index
POLICY_NAMES: tuple[str, ...] = ("expert", "random")
Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal
ALFRED = "alfred"  # ALFRED's own tasks (alfred.env.AlfredTaskEnv); its conditions are ALFRED's splits
ALFRED_SPLITS = EVAL_SPLITS
EVAL_LEVELS = (*LEVELS, ALFRED)
# The env of either level: both have the same reset options, info keys, `task`, `phrasing`,
# `subtask_budget` and `expert_plan()`, which is all an evaluation uses.
EvalEnv: TypeAlias = "HouseholdEnv | LowHouseholdEnv | AlfredTaskEnv"


@dataclass(frozen=True)
class EvalConfig:
    """What to evaluate on. Paper: proportion of task completion for tasks of 1 to 6 subtasks, also
    under randomised initial states (docs/paper.md)."""

    lengths: tuple[int, ...] = field(
        default=(1, 2, 3, 4, 5, 6), metadata={"help": "Task lengths (subtasks per task) to evaluate."}
    )
    episodes_per_length: int = field(default=100, metadata={"help": "Episodes (tasks) per task length."})
    condition: str = field(
        default="default",
        metadata={
            "help": "Initial states: the scene's default, or randomised agent start and placements; at the "
            "ALFRED level, the ALFRED split whose tasks are evaluated (valid_seen, valid_unseen, train)."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed from which every episode's seed is derived."})
    phrasing: Literal["seen", "unseen"] = field(
        default="unseen",
        metadata={"help": "Instruction phrasings: 'unseen' = held out from training data (evaluation)."},
    )
    subtask_budget: int | None = field(
        default=None,
        metadata={
            "help": "Steps each subtask may take before the episode is cut off (None: twice the expert's "
            "plan for the whole task, at either level)."
        },
    )
    level: Literal["subgoal", "low", "alfred"] = field(
        default="subgoal",
        metadata={
            "help": "Action level: 'subgoal' (ALFRED subgoals, ~2 expert steps a subtask), 'low' "
            "(ALFRED's low-level actions on floor plans, ~11 expert steps a subtask) or 'alfred' (ALFRED's "
            "own tasks, replayed: alfred.env)."
        },
    )
    floor_plans: tuple[int, ...] | None = field(
        default=None,
        metadata={
            "help": "Low level only: ALFRED floor plan numbers (1-30 kitchens, 201-230 living rooms, "
            "301-330 bedrooms, 401-430 bathrooms) each episode's seed draws from; None: generated rooms."
        },
    )
    alfred_root: str | None = field(
        default=None,
        metadata={"help": "ALFRED level: ALFRED's data folder (None: $RGVLM_ALFRED_DATA or ../shared)."},
    )

    def __post_init__(self) -> None:
        lengths = tuple(self.lengths)
        if not lengths or any(not _is_int(n) or not 1 <= n <= MAX_SUBTASKS for n in lengths):
            raise UsageError(f"lengths={self.lengths!r}: give task lengths from 1 to {MAX_SUBTASKS}")
        if len(set(lengths)) != len(lengths):
            raise UsageError(f"lengths={self.lengths!r}: give each task length once")
        object.__setattr__(self, "lengths", tuple(int(n) for n in lengths))
        if not _is_int(self.episodes_per_length) or self.episodes_per_length < 1:
            raise UsageError(f"episodes_per_length={self.episodes_per_length!r}: give a positive integer")
        if self.level == ALFRED and self.condition not in ALFRED_SPLITS:
            raise UsageError(
                f"condition={self.condition!r}: ALFRED's tasks come from a split: "
                f"use {' or '.join(ALFRED_SPLITS)}"
            )
        if self.level != ALFRED and self.condition not in CONDITIONS:
            raise UsageError(f"condition={self.condition!r}: use 'default' or 'randomized'")
        if not _is_int(self.seed) or self.seed < 0:
            raise UsageError(f"seed={self.seed!r}: give a non-negative integer")
        if self.phrasing not in PHRASINGS:
            raise UsageError(f"phrasing={self.phrasing!r}: use 'seen' or 'unseen'")
        if self.subtask_budget is not None and (not _is_int(self.subtask_budget) or self.subtask_budget < 1):
            raise UsageError(f"subtask_budget={self.subtask_budget!r}: give a positive integer or None")
        if self.level not in EVAL_LEVELS:
            raise UsageError(f"level={self.level!r}: use one of {list(EVAL_LEVELS)}")
        if self.floor_plans is not None:
            if self.level != "low":
                raise UsageError(
                    f"floor_plans={self.floor_plans!r}: floor plans are for level='low'; "
                    "leave floor_plans None at the subgoal level"
                )
            object.__setattr__(self, "floor_plans", _check_floor_plans(self.floor_plans, self.lengths))


@dataclass(frozen=True)
class EpisodeResult:
    """One evaluated episode. `seed` is the episode's own reset seed (see `episode_seed`)."""

    length: int
    episode: int
    task_type: str
    room: str
    goal: str
    n_subtasks: int
    completed: int
    success: bool
    steps: int
    condition: str
    seed: int
    phrasing: str = "unseen"
    first_kind: str | None = None  # the kind of the task's first subtask (Pickup, Put, ...)
    level: str = "subgoal"  # the action level ("subgoal" or "low")
    floor_plan: str | None = None  # low level: the floor plan's name (FloorPlan1, Generated-kitchen-...)

    @property
    def proportion(self) -> float:
        """Proportion of the task's subtasks completed."""
        return self.completed / self.n_subtasks


def episode_seed(seed: int, length: int, episode: int) -> int:
    """The reset seed of episode `episode` of length `length`: a function of the three numbers only."""
    return int(np.random.SeedSequence([seed, length, episode]).generate_state(1, np.uint32)[0])


def expert_policy(env: EvalEnv) -> Policy:
    """A policy that follows `env.expert_plan()` (the env being evaluated must be this one), at either
    level: each env's expert plans in its own actions."""
    unwrapped = env.unwrapped
    if env_level(unwrapped) is None:
        raise UsageError(
            "expert_policy needs a HouseholdEnv, LowHouseholdEnv or AlfredTaskEnv, "
            f"got {type(unwrapped).__name__}"
        )

    def act(observation: dict[str, Any], action_mask: np.ndarray) -> int:
        remaining = unwrapped.expert_plan()  # type: ignore[attr-defined]  # env_level checked the class
        return remaining[0] if remaining else int(np.flatnonzero(action_mask)[0])

    return act


def random_policy(rng: np.random.Generator) -> Policy:
    """A policy that picks uniformly among the valid actions."""

    def act(observation: dict[str, Any], action_mask: np.ndarray) -> int:
        valid = np.flatnonzero(action_mask)
        return int(valid[rng.integers(len(valid))])

    return act


def evaluate(
    policy: Policy | str, config: EvalConfig, *, env: EvalEnv | None = None
) -> Iterator[EpisodeResult]:
    """Run `config.episodes_per_length` episodes per length, yielding each result as it ends.

    `policy` is a callable, or "expert" / "random" (the random policy's generator is seeded per
    episode, so its rows do not depend on which episodes ran before). Pass `env` to evaluate a policy
    built on that env (e.g. `expert_policy(env)`); its level, phrasing, subtask budget and floor plans
    must be the config's.
    """
    if env is None:
        env = make_env(config)
    elif env_level(env.unwrapped) != config.level:
        raise UsageError(
            f"the env is at the {env_level(env.unwrapped)} level but the config asks for {config.level!r}"
        )
    elif env.phrasing != config.phrasing:
        raise UsageError(
            f"the env uses {env.phrasing!r} phrasing but the config asks for {config.phrasing!r}"
        )
    elif env.subtask_budget != config.subtask_budget:
        raise UsageError(
            f"the env's subtask budget is {env.subtask_budget!r}, "
            f"the config asks for {config.subtask_budget!r}"
        )
    elif getattr(env.unwrapped, "floor_plans", None) != config.floor_plans:
        raise UsageError(
            f"the env's floor plans are {getattr(env.unwrapped, 'floor_plans', None)!r}, "
            f"the config asks for {config.floor_plans!r}"
        )
    if not callable(policy) and policy not in POLICY_NAMES:
        raise UsageError(f"policy={policy!r}: use one of {list(POLICY_NAMES)} or a callable")
    for length, episode, seed in episodes(config, env):
        act = _resolve(policy, env, seed)
        result = run_episode(env, act, length, episode, config.condition, seed)
        logger.debug("eval episode %s/%s: %s/%s", length, episode, result.completed, result.n_subtasks)
        yield result


def make_env(config: EvalConfig) -> EvalEnv:
    """The environment an evaluation of `config` runs in (its level, phrasing, step budget and, at the
    low level, floor plans)."""
    if config.level == ALFRED:
        from rgvlm_core.alfred.env import AlfredTaskEnv

        return AlfredTaskEnv(
            config.condition,
            root=config.alfred_root,
            subtask_budget=config.subtask_budget,
            phrasing=config.phrasing,
        )
    if config.level == "low":
        return _low_env_class()(
            phrasing=config.phrasing, subtask_budget=config.subtask_budget, floor_plans=config.floor_plans
        )
    return HouseholdEnv(phrasing=config.phrasing, subtask_budget=config.subtask_budget)


def n_actions(level: str) -> int:
    """The size of a level's action space (the length of its action masks)."""
    if level == ALFRED:
        from rgvlm_core.alfred.level import ACTION_TOKENS as ALFRED_TOKENS

        return len(ALFRED_TOKENS)
    if level == "low":
        from rgvlm_core.sim.low.world import N_ACTIONS as LOW_ACTIONS

        return LOW_ACTIONS
    if level == "subgoal":
        from rgvlm_core.sim.world import N_ACTIONS

        return N_ACTIONS
    raise UsageError(f"level={level!r}: use one of {list(LEVELS)}")


def env_level(env: object) -> str | None:
    """The action level of an (unwrapped) evaluation env: "subgoal", "low", "alfred", or None for others."""
    if isinstance(env, HouseholdEnv):
        return "subgoal"
    if type(env).__name__ == "AlfredTaskEnv":  # by name: the ALFRED env is imported only when used
        return ALFRED
    if isinstance(env, _low_env_class()):
        return "low"
    return None


def episodes(config: EvalConfig, env: EvalEnv | None = None) -> Iterator[tuple[int, int, int]]:
    """(length, episode index, reset seed) of every episode of `config`, in `evaluate`'s order.

    The one enumeration that `evaluate`, `evaluate_members` and `evaluation_instructions` share, so
    they cannot disagree on which tasks an evaluation holds. At the ALFRED level a length has as many
    episodes as the split has tasks of that length, up to `episodes_per_length` (`env`: the ALFRED env
    whose tasks are counted; None: made from the config).
    """
    counts = {n: config.episodes_per_length for n in config.lengths}
    if config.level == ALFRED:
        alfred = env if env is not None else make_env(config)
        counts = {length: min(n, alfred.unwrapped.n_tasks(length)) for length, n in counts.items()}  # type: ignore[attr-defined]
    for length in config.lengths:
        for episode in range(counts[length]):
            yield length, episode, episode_seed(config.seed, length, episode)


def evaluation_instructions(config: EvalConfig) -> list[str]:
    """Every instruction text an evaluation of `config` can show a policy, each once, in first-seen order.

    Resets each episode's env (no policy runs) and reads all its subtasks' instructions: an
    observation's instruction is always one of `env.task.instructions`. A driver embeds these once and
    ships the vectors to workers, which then need no text encoder.
    """
    env = make_env(config)
    seen: dict[str, None] = {}
    for length, episode, seed in episodes(config, env):
        start_episode(env, length, config.condition, seed, episode)
        seen.update(dict.fromkeys(env.task.instructions))
    return list(seen)


def _resolve(policy: Policy | str, env: EvalEnv, seed: int) -> Policy:
    if not isinstance(policy, str):
        return policy
    if policy == "expert":
        return expert_policy(env)
    return random_policy(np.random.default_rng([seed, 1]))


def run_episode(
    env: EvalEnv, policy: Policy, length: int, episode: int, condition: str, seed: int
) -> EpisodeResult:
    """One episode of `length` subtasks from reset seed `seed`, until termination or truncation."""
    obs, info = start_episode(env, length, condition, seed, episode)
    steps, ended = 0, False
    while not ended:
        obs, _, terminated, truncated, info = env.step(policy(obs, info["action_mask"]))
        steps += 1
        ended = terminated or truncated
    return episode_result(
        env, info, length=length, episode=episode, condition=condition, seed=seed, steps=steps
    )


def start_episode(
    env: EvalEnv, length: int, condition: str, seed: int, episode: int = 0
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Reset `env` for an evaluation episode: the one place that turns (length, condition, seed, and at
    the ALFRED level the episode's index among the split's tasks) into reset arguments, so one-at-a-time
    and lockstep evaluation meet exactly the same tasks."""
    options: dict[str, Any] = {"n_subtasks": length, "condition": condition}
    if env_level(env.unwrapped) == ALFRED:
        options["episode"] = episode
    return env.reset(seed=seed, options=options)


def episode_result(
    env: EvalEnv,
    info: dict[str, Any],
    *,
    length: int,
    episode: int,
    condition: str,
    seed: int,
    steps: int,
) -> EpisodeResult:
    """The result of the episode `env` has just ended, `info` being its last step's info."""
    task = env.task
    level = env_level(env.unwrapped) or "subgoal"
    return EpisodeResult(
        length=length,
        episode=episode,
        task_type=task.task_type,
        room=task.room,
        goal=task.goal,
        n_subtasks=len(task),
        completed=int(info["subtask_index"]),
        success=info["subtask_index"] == len(task),
        steps=steps,
        condition=condition,
        seed=seed,
        phrasing=env.phrasing,
        first_kind=task.subtasks[0].kind,
        level=level,
        floor_plan=str(info["floor_plan"]) if level in ("low", ALFRED) else None,
    )


def summarize(results: Iterable[EpisodeResult]) -> list[dict[str, Any]]:
    """One row per (condition, length): n, mean proportion of subtasks completed, 95% CI, success rate.

    Keys: condition, length, n, mean_completed, ci95 (low, high), success_rate.

    The CI is the normal approximation mean +/- 1.96 * s / sqrt(n) (s: sample standard deviation,
    ddof=1; 0 for a single episode), clipped to [0, 1].
    """
    groups: dict[tuple[str, int], list[EpisodeResult]] = defaultdict(list)
    for r in results:
        groups[(r.condition, r.length)].append(r)
    rows = []
    for (condition, length), rs in sorted(groups.items()):
        p = np.array([r.proportion for r in rs], dtype=np.float64)
        mean = float(p.mean())
        half = Z_95 * float(p.std(ddof=1)) / math.sqrt(len(p)) if len(p) > 1 else 0.0
        rows.append(
            {
                "condition": condition,
                "length": length,
                "n": len(rs),
                "mean_completed": mean,
                "ci95": (max(0.0, mean - half), min(1.0, mean + half)),
                "success_rate": sum(r.success for r in rs) / len(rs),
            }
        )
    return rows


def _check_floor_plans(floor_plans: object, lengths: tuple[int, ...]) -> tuple[int, ...]:
    """ALFRED floor plan numbers, each once: every one loaded (a missing layout is reported now, naming
    its file) and every length posed by at least one of them."""
    from rgvlm_core.sim.low.floorplan import load_floor_plan, room_of
    from rgvlm_core.sim.low.scenes import lengths as posed_lengths

    if isinstance(floor_plans, (str, bytes)) or not hasattr(floor_plans, "__iter__"):
        raise UsageError(
            f"floor_plans={floor_plans!r}: give ALFRED floor plan numbers, e.g. (1, 201), or None"
        )
    numbers = tuple(floor_plans)
    bad = [n for n in numbers if not _is_int(n) or room_of(int(n)) is None]
    if bad or not numbers:
        raise UsageError(
            f"floor_plans={floor_plans!r}: give ALFRED floor plan numbers (1-30, 201-230, 301-330, 401-430)"
            f"{f'; not floor plans: {bad}' if bad else ''}, or None for generated rooms"
        )
    numbers = tuple(dict.fromkeys(int(n) for n in numbers))
    posed: dict[int, tuple[int, ...]] = {}
    for n in numbers:
        try:
            posed[n] = posed_lengths(load_floor_plan(n))
        except UsageError as e:
            raise UsageError(f"floor_plans: cannot load FloorPlan{n}: {e}") from None
    missing = [k for k in lengths if not any(k in p for p in posed.values())]
    if missing:
        longest = max(max(p, default=0) for p in posed.values())
        raise UsageError(
            f"lengths={lengths!r}: no task of {', '.join(map(str, missing))} subtasks on floor plans "
            f"{_plan_list(numbers)} (they pose at most {longest}; only kitchens pose 5 and 6): "
            "drop those lengths or add floor plans that pose them"
        )
    return numbers


def _plan_list(numbers: tuple[int, ...], most: int = 8) -> str:
    shown = ", ".join(map(str, numbers[:most]))
    return shown + (f" and {len(numbers) - most} more" if len(numbers) > most else "")


def _low_env_class() -> type[LowHouseholdEnv]:
    from rgvlm_core.sim.low.env import LowHouseholdEnv

    return LowHouseholdEnv


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)
