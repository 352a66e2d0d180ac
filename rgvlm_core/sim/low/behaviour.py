"""Behaviour at the low level: the expert, and suboptimal variants in proportions the caller sets.

Suboptimal behaviour follows the low-level expert (shortest paths, then ALFRED's primitive sequences)
but, at random, wanders a few steps, turns the wrong way, looks around, walks to a receptacle the task
does not need, picks up a wrong object and puts it back, undoes what it just did (closes what it opened,
puts back what it picked up, turns back), or tries an action that fails. Failed episodes behave
suboptimally and stop early, before the last subtask. Every step records the subtask it serves and
whether it made progress (the expert's remaining plan got shorter, or a subtask was completed), as at
the subgoal level (sim.behaviour, whose Rollout and StepRecord this module fills).

The expert's remaining plan is recomputed after every step, the expert's own included: its plan from
the next state can be shorter than the rest of the old one (it walks the subgoal level's plan, which
a detour can make partly unnecessary), and the recorded cost to go must be the plan from each state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from rgvlm_core.sim.behaviour import Rollout, StepRecord, Style
from rgvlm_core.sim.expert import PlanningError
from rgvlm_core.sim.low.expert import plan
from rgvlm_core.sim.low.nav import N_NAV, NAV_ACTIONS, navigator
from rgvlm_core.sim.low.world import (
    ACTION_INDEX,
    ACTION_TOKENS,
    ACTIONS,
    LowState,
    apply,
    progress,
    valid_mask,
)
from rgvlm_core.sim.tasks import Task

MOVE, LEFT, RIGHT, UP, DOWN = range(N_NAV)
assert NAV_ACTIONS[LEFT] == "RotateLeft_90" and NAV_ACTIONS[UP] == "LookUp_15"


@dataclass(frozen=True)
class LowBehaviourConfig:
    """Per-decision probabilities of each suboptimal behaviour (the expert's move otherwise).

    A low-level decision is one step, about 11 per subtask, so these are smaller than the subgoal
    level's: a suboptimal episode takes about 1.5 times the expert's steps (bench/sim.py --level low)."""

    wander: float = 0.03  # a few random moves, then back on a shortest path
    wrong_turn: float = 0.04  # turn the other way from where the path goes
    look_around: float = 0.03  # tilt the camera, and maybe back
    wrong_receptacle: float = 0.01  # walk to a receptacle the subtask does not need
    wrong_object: float = 0.05  # facing a receptacle: pick up an object the task does not need, put it back
    undo: float = 0.03  # undo the move just made (close after opening, put back after picking up, turn back)
    failed_attempt: float = 0.02  # try an action that is not possible here (state unchanged)
    wander_steps: tuple[int, int] = (2, 5)
    early_stop: tuple[float, float] = (0.2, 0.9)  # failed episodes stop within this share of the plan
    max_steps_factor: float = 3.0  # hard cap: this many times the expert's length


def low_rollout(
    task: Task,
    state: LowState,
    style: Style,
    rng: np.random.Generator,
    config: LowBehaviourConfig = LowBehaviourConfig(),
) -> Rollout[LowState]:
    """Act in the task from `state` with the given style until done, stopped or capped."""
    n = len(task.subtasks)
    remaining = plan(state, task)
    out: Rollout[LowState] = Rollout(
        task, state, style, expert_length=len(remaining), vocabulary=ACTION_TOKENS
    )
    cap = max(1, math.ceil(config.max_steps_factor * len(remaining)))
    stop_at = math.inf
    if style == "failed":
        low, high = config.early_stop
        stop_at = max(1, int(len(remaining) * rng.uniform(low, high)))
    queue: list[int] = []
    s, done = state, 0
    while done < n and len(out.steps) < cap and len(out.steps) < stop_at:
        if not queue:
            queue = _choose(s, remaining, task, done, style, rng, config)
        a = queue[0]
        if style == "failed" and _would_finish(s, task, done, a):
            break  # a failed episode never completes its task
        queue.pop(0)
        s2, err = apply(s, a)
        done2 = progress(s2.world, task, done) if err is None else done
        if err is not None:
            queue.clear()
            after = remaining
        else:  # replanned even after the expert's own move: its plan is exact, not always consistent
            after = plan(s2, task, done2) if done2 < n else []
        out.steps.append(
            StepRecord(
                t=len(out.steps),
                action=a,
                state=s,
                valid=err is None,
                reason=err,
                subtask_index=min(done, n - 1),
                reward=done2 - done,
                progress=done2 > done or len(after) < len(remaining),
                cost_to_go=len(remaining),
            )
        )
        s, done, remaining = s2, done2, after
    out.final, out.completed = s, done
    return out


def _would_finish(s: LowState, task: Task, done: int, a: int) -> bool:
    s2, err = apply(s, a)
    return err is None and progress(s2.world, task, done) == len(task.subtasks)


def _choose(
    s: LowState,
    remaining: list[int],
    task: Task,
    done: int,
    style: Style,
    rng: np.random.Generator,
    c: LowBehaviourConfig,
) -> list[int]:
    """The next action(s): the expert's move, or a suboptimal excursion from which the expert can still
    complete the task (one that would lead into a dead end is replaced by the expert's move)."""
    expert = [remaining[0]]
    if style == "expert":
        return expert
    roll = rng.random()
    for p, make in (
        (c.failed_attempt, _failed_attempt),
        (c.wander, _wander),
        (c.wrong_turn, _wrong_turn),
        (c.look_around, _look_around),
        (c.wrong_receptacle, _wrong_receptacle),
        (c.wrong_object, _wrong_object),
        (c.undo, _undo),
    ):
        if roll < p:
            excursion = make(s, remaining, rng, c)
            checked = excursion[:-1] if make is _failed_attempt else excursion
            if excursion and _runs(s, checked, task, done):
                return excursion
            return expert
        roll -= p
    return expert


def _runs(s: LowState, actions: list[int], task: Task, done: int) -> bool:
    """Whether every action is valid in turn and the expert can complete the task afterwards."""
    for a in actions:
        s, err = apply(s, a)
        if err is not None:
            return False
        if a < N_NAV:
            continue  # moving changes no object: the floor is one connected piece
        try:
            plan(s, task, progress(s.world, task, done))
        except (PlanningError, ValueError):
            return False
    return True


def _failed_attempt(
    s: LowState, remaining: list[int], rng: np.random.Generator, c: LowBehaviourConfig
) -> list[int]:
    invalid = np.flatnonzero(~valid_mask(s))
    return [int(invalid[int(rng.integers(len(invalid)))])] if len(invalid) else []


def _wander(s: LowState, remaining: list[int], rng: np.random.Generator, c: LowBehaviourConfig) -> list[int]:
    """A few moves drawn among those possible (moving ahead twice as likely as turning)."""
    nav = navigator(s.plan)
    p = nav.index(s.pose)
    out: list[int] = []
    for _ in range(int(rng.integers(c.wander_steps[0], c.wander_steps[1] + 1))):
        options = [a for a in (MOVE, MOVE, LEFT, RIGHT) if nav.next[p, a] >= 0]
        a = options[int(rng.integers(len(options)))]
        out.append(a)
        p = int(nav.next[p, a])
    return out


def _wrong_turn(
    s: LowState, remaining: list[int], rng: np.random.Generator, c: LowBehaviourConfig
) -> list[int]:
    nxt = remaining[0]
    if nxt == LEFT:
        return [RIGHT]
    if nxt == RIGHT:
        return [LEFT]
    if nxt == MOVE:
        return [(LEFT, RIGHT)[int(rng.integers(2))]]
    return []


def _look_around(
    s: LowState, remaining: list[int], rng: np.random.Generator, c: LowBehaviourConfig
) -> list[int]:
    first = (UP, DOWN)[int(rng.integers(2))]
    mask = valid_mask(s)
    if not mask[first]:
        first = UP + DOWN - first
    back = UP + DOWN - first
    return [first, back] if rng.random() < 0.5 else [first]


def _wrong_receptacle(
    s: LowState, remaining: list[int], rng: np.random.Generator, c: LowBehaviourConfig
) -> list[int]:
    """The shortest path to a receptacle other than the one the expert is walking to."""
    if remaining[0] >= N_NAV:
        return []
    nav = navigator(s.plan)
    p = nav.index(s.pose)
    for a in remaining:
        if a >= N_NAV:
            break
        p = int(nav.next[p, a])
    goal = nav.pose(p)
    others = [r for r in s.plan.receptacles if r.pose not in (goal, s.pose)]
    if not others:
        return []
    return nav.path(s.pose, others[int(rng.integers(len(others)))].pose)


def _wrong_object(
    s: LowState, remaining: list[int], rng: np.random.Generator, c: LowBehaviourConfig
) -> list[int]:
    """Facing a receptacle with an object the plan does not pick up: pick it up and put it back."""
    w = s.world
    if w.held is not None or w.agent is None:
        return []
    wanted = {ACTIONS[a][1] for a in remaining if ACTIONS[a][0] == "PickupObject"}
    mask = valid_mask(s)
    choices = [
        o.cls
        for i, o in enumerate(w.objects)
        if o.cls not in wanted and w.where(i) == w.agent and mask[ACTION_INDEX[f"PickupObject({o.cls})"]]
    ]
    if not choices or f"PutObject({w.agent})" not in ACTION_INDEX:
        return []
    cls = choices[int(rng.integers(len(choices)))]
    return [ACTION_INDEX[f"PickupObject({cls})"], ACTION_INDEX[f"PutObject({w.agent})"]]


def _undo(s: LowState, remaining: list[int], rng: np.random.Generator, c: LowBehaviourConfig) -> list[int]:
    """Make the expert's move, then undo it (the expert then makes it again)."""
    nxt = remaining[0]
    verb, arg = ACTIONS[nxt]
    if nxt in (LEFT, RIGHT):
        return [nxt, LEFT + RIGHT - nxt]
    if verb == "OpenObject":
        return [nxt, ACTION_INDEX[f"CloseObject({arg})"]]
    agent = s.world.agent
    if verb == "PickupObject" and agent is not None and f"PutObject({agent})" in ACTION_INDEX:
        return [nxt, ACTION_INDEX[f"PutObject({agent})"]]
    return []
