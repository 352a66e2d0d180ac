"""Behaviour for offline datasets: the expert, and suboptimal variants in proportions the caller sets.

Suboptimal behaviour follows the expert but, at random, takes a detour, picks up a wrong object and
puts it back, undoes what it just did (closes what it opened, puts back what it picked up), or tries
an action that fails. Failed episodes behave suboptimally and stop early, before the last subtask.
Every step records the subtask it serves and whether it made progress (the expert's remaining plan
got shorter, or a subtask was completed): the ground truth that reward labels are audited against.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import numpy as np

from rgvlm_core.sim.catalog import LAMPS, OPENABLE, fits
from rgvlm_core.sim.expert import PlanningError, plan
from rgvlm_core.sim.tasks import Task, progress
from rgvlm_core.sim.world import ACTION_TOKENS, ACTIONS, HELD, State, action_index, apply, valid_mask

Style = Literal["expert", "suboptimal", "failed"]
STYLES: tuple[Style, ...] = ("expert", "suboptimal", "failed")
S = TypeVar("S")  # the level's state: sim.world.State, or sim.low.world.LowState


@dataclass(frozen=True)
class BehaviourConfig:
    """Per-decision probabilities of each suboptimal behaviour (the expert's move otherwise)."""

    detour: float = 0.12  # go to a location the task does not need
    wrong_object: float = 0.08  # before a pickup: pick up a wrong object and put it back
    undo: float = 0.08  # undo the move just made (close after opening, put back after picking up)
    failed_attempt: float = 0.06  # try an action that is not possible here (state unchanged)
    early_stop: tuple[float, float] = (0.2, 0.9)  # failed episodes stop within this share of the plan
    max_steps_factor: float = 3.0  # hard cap: this many times the expert's length


@dataclass(frozen=True)
class StepRecord(Generic[S]):
    """One step of a rollout; `state` is the state the action was taken in."""

    t: int
    action: int
    state: S
    valid: bool
    reason: str | None
    subtask_index: int  # the subtask this step serves (the first one not yet completed)
    reward: int  # subtasks completed by this step
    progress: bool
    cost_to_go: int  # the expert's remaining plan length before the step


@dataclass
class Rollout(Generic[S]):
    """A whole episode: the task, its initial state, the steps and the final state."""

    task: Task
    initial: S
    style: Style
    steps: list[StepRecord[S]] = field(default_factory=list)
    final: S | None = None
    completed: int = 0
    expert_length: int = 0
    vocabulary: tuple[str, ...] = ACTION_TOKENS  # the level's action tokens

    @property
    def tokens(self) -> list[str]:
        return [self.vocabulary[s.action] for s in self.steps]


def rollout(
    task: Task,
    state: State,
    style: Style,
    rng: np.random.Generator,
    config: BehaviourConfig = BehaviourConfig(),
) -> Rollout[State]:
    """Act in the task from `state` with the given style until done, stopped or capped."""
    n = len(task.subtasks)
    expert_length = len(plan(state, task))
    out: Rollout[State] = Rollout(task, state, style, expert_length=expert_length)
    cap = max(1, math.ceil(config.max_steps_factor * expert_length))
    stop_at = math.inf
    if style == "failed":
        low, high = config.early_stop
        stop_at = max(1, int(expert_length * rng.uniform(low, high)))
    queue: list[int] = []
    s, done = state, 0
    while done < n and len(out.steps) < cap and len(out.steps) < stop_at:
        remaining = plan(s, task, done)
        if not queue:
            solvable = functools.partial(_solvable, task=task, done=done)
            queue = _choose(s, remaining, style, rng, config, solvable)
        if style == "failed" and _would_finish(s, task, done, queue[0]):
            break  # a failed episode never completes its task
        a = queue.pop(0)
        s2, err = apply(s, a)
        if err is not None:
            queue.clear()
        done2 = progress(s2, task, done)
        after = len(plan(s2, task, done2)) if done2 < n else 0
        out.steps.append(
            StepRecord(
                t=len(out.steps),
                action=a,
                state=s,
                valid=err is None,
                reason=err,
                subtask_index=min(done, n - 1),
                reward=done2 - done,
                progress=done2 > done or after < len(remaining),
                cost_to_go=len(remaining),
            )
        )
        s, done = s2, done2
    out.final, out.completed = s, done
    return out


def _solvable(s: State, task: Task, done: int) -> bool:
    """Whether the expert can still complete the task from `s` (an excursion must not lead into a dead
    end: a suboptimal demonstration wanders, it does not make the task impossible)."""
    try:
        plan(s, task, progress(s, task, done))
    except PlanningError:
        return False
    return True


def _would_finish(s: State, task: Task, done: int, a: int) -> bool:
    s2, err = apply(s, a)
    return err is None and progress(s2, task, done) == len(task.subtasks)


def _choose(
    s: State,
    remaining: list[int],
    style: Style,
    rng: np.random.Generator,
    c: BehaviourConfig,
    solvable: Callable[[State], bool],
) -> list[int]:
    """The next action(s): the expert's move, or a suboptimal excursion that returns to it (one that
    would pass through a state the task cannot be completed from is replaced by the expert's move)."""
    expert = [remaining[0]]
    if style == "expert":
        return expert
    roll = rng.random()
    for p, make in (
        (c.failed_attempt, _failed_attempt),
        (c.detour, _detour),
        (c.wrong_object, _wrong_object),
        (c.undo, _undo),
    ):
        if roll < p:
            excursion = make(s, remaining, rng)
            if excursion and _runs(s, excursion[:-1] if make is _failed_attempt else excursion, solvable):
                return excursion
            return expert
        roll -= p
    return expert


def _runs(s: State, actions: list[int], solvable: Callable[[State], bool]) -> bool:
    for a in actions:
        s, err = apply(s, a)
        if err is not None or not solvable(s):
            return False
    return True


def _failed_attempt(s: State, remaining: list[int], rng: np.random.Generator) -> list[int]:
    invalid = np.flatnonzero(~valid_mask(s))
    return [int(invalid[int(rng.integers(len(invalid)))])] if len(invalid) else []


def _detour(s: State, remaining: list[int], rng: np.random.Generator) -> list[int]:
    verb, target = ACTIONS[remaining[0]]
    wanted = target if verb == "GotoLocation" else s.agent
    spots = [loc for loc in s.locations if loc not in (s.agent, wanted)]
    if not spots:
        return []
    return [action_index(f"GotoLocation({spots[int(rng.integers(len(spots)))]})")]


def _wrong_object(s: State, remaining: list[int], rng: np.random.Generator) -> list[int]:
    """Go to some other object, pick it up, put it back where it was."""
    if s.held is not None:
        return []
    wanted = {ACTIONS[a][1] for a in remaining if ACTIONS[a][0] == "PickupObject"}
    choices = [
        i
        for i, o in enumerate(s.objects)
        if o.cls not in wanted and o.inside < 0 and s.where(i) not in (HELD,) and fits(o.cls, s.where(i))
    ]
    if not choices:
        return []
    i = choices[int(rng.integers(len(choices)))]
    where, cls = s.where(i), s.objects[i].cls
    steps = [] if s.agent == where else [f"GotoLocation({where})"]
    if where in OPENABLE and where not in s.opened:
        steps.append(f"OpenObject({where})")
    steps += [f"PickupObject({cls})", f"PutObject({where})"]
    return [action_index(t) for t in steps]


def _undo(s: State, remaining: list[int], rng: np.random.Generator) -> list[int]:
    """Make the expert's move, then undo it (the expert then makes it again)."""
    verb, arg = ACTIONS[remaining[0]]
    if verb == "OpenObject":
        return [remaining[0], action_index(f"CloseObject({arg})")]
    if verb == "PickupObject" and s.agent is not None and s.agent not in LAMPS:
        return [remaining[0], action_index(f"PutObject({s.agent})")]
    if verb == "GotoLocation" and s.agent is not None:
        return [remaining[0], action_index(f"GotoLocation({s.agent})")]
    return []
