"""An exact solve of the simulator's MDP for one subtask under a reward: does the optimal policy complete it?

Why: a reward that pays every step (r = score/10 with `done` at the end of each subtask) can make
delaying completion optimal, and no amount of training fixes a reward whose optimum is a loop. The
rules are deterministic and the states reachable from a start state are finite, so the optimal
policy can be computed exactly where that space is small enough.

Three layers, each usable alone:

- the generic core (`Mdp`, `value_iteration`, `policy_iteration`, `greedy`, `rollout`, `solve`): a finite
  deterministic MDP given as transitions (source, label, destination, reward) and terminal states.
  Terminal states are worth 0 and have no actions; the greedy policy is rolled out from the start, and
  revisiting a state is a loop (a deterministic policy that revisits a state never completes).
- the simulator wrapper (`explore`, `SubtaskGraph`): the states reachable from a start state by valid
  actions (BFS, bounded: past `max_states` states the subtask is skipped, never cut short), terminal
  where the subtask is done (`tasks.is_done`), with the expert's remaining plan for the subtask in every
  state (`expert.subtask_remaining`), the ground truth of "progress".
- the task-level solve (`solve_task`): subtask k's greedy rollout ends where subtask k+1 starts; a task
  completes when every subtask's optimal policy completes it; the optimal path length is recorded
  beside the expert's (`len(plan(start, task))`).

Scope. Every object of a room can be carried to every place it fits, so the full reachable space of
one subtask is usually millions of states (more than 200,000 for 11 of 12 sampled first subtasks). The
default scope `subtask` lets the agent do to objects only what the expert does for the subtask
(`handled_actions`: the pick-ups, slices, heats, cools and cleans of its plan, and picking up again
what the agent holds); it still goes anywhere, opens, closes, toggles and puts down as it likes. That
is a sub-MDP of the simulator's (the same states, transitions and rewards, fewer actions): a loop found
there is a loop of the simulator, and every policy there is one of the simulator; but a loop that needs
other objects (picking up a wrong one, say) is not found, so values there can be lower than the full
space's. Scope `full` allows every valid action.

Rewards come from outside (`reward_check.RewardModel`): this module knows nothing of scores or mappings.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from rgvlm_core.sim.expert import PlanningError, plan, subtask_remaining
from rgvlm_core.sim.tasks import SubtaskSpec, Task, is_done
from rgvlm_core.sim.world import ACTION_TOKENS, ACTIONS, State, apply, valid_mask

DEFAULT_GAMMA = 0.97  # the discount of the project's IQL runs (rl/iql.py)
DEFAULT_MAX_STATES = 50_000  # a subtask whose reachable space is larger is skipped, never cut short
TOLERANCE = 1e-10  # values are exact to this
TIE = 1e-7  # actions whose values are this close to the best are ties, broken by transition order
Scope = Literal["subtask", "full"]
SCOPES: tuple[str, ...] = ("subtask", "full")

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


# -- the generic core ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Mdp:
    """A finite deterministic MDP: transition e goes from `src[e]` to `dst[e]` and pays `reward[e]`;
    `labels[e]` names its action for people. Terminal states have no transitions (any given are ignored)."""

    n_states: int
    src: IntArray
    dst: IntArray
    reward: FloatArray
    terminal: BoolArray
    labels: tuple[str, ...] = ()

    @classmethod
    def from_transitions(
        cls, n_states: int, transitions: Sequence[tuple[int, str, int, float]], terminal: Sequence[int]
    ) -> Mdp:
        """An MDP from (source, label, destination, reward) tuples and the terminal states' indices."""
        term = np.zeros(n_states, bool)
        term[list(terminal)] = True
        return cls(
            n_states,
            np.asarray([t[0] for t in transitions], np.int64),
            np.asarray([t[2] for t in transitions], np.int64),
            np.asarray([t[3] for t in transitions], np.float64),
            term,
            tuple(t[1] for t in transitions),
        )

    @functools.cached_property
    def live(self) -> IntArray:
        """Transitions in source order (stable), leaving out those from terminal states."""
        keep = np.flatnonzero(~self.terminal[self.src])
        return keep[np.argsort(self.src[keep], kind="stable")]


def _check_gamma(gamma: float) -> None:
    if not 0 <= gamma < 1:
        raise ValueError(f"gamma={gamma!r}: the solve needs 0 <= gamma < 1")


def _backup(mdp: Mdp, values: FloatArray, gamma: float) -> tuple[FloatArray, FloatArray]:
    """(Q of the live transitions, the best Q of every state): 0 for terminal states and dead ends."""
    order = mdp.live
    q = mdp.reward[order] + gamma * values[mdp.dst[order]]
    best = np.zeros(mdp.n_states)
    if order.size:
        sources = mdp.src[order]
        starts = np.flatnonzero(np.r_[True, sources[1:] != sources[:-1]])
        best[sources[starts]] = np.maximum.reduceat(q, starts)
    return q, best


def value_iteration(
    mdp: Mdp, gamma: float = DEFAULT_GAMMA, tol: float = TOLERANCE, max_iterations: int = 100_000
) -> FloatArray:
    """The optimal value of every state by repeated Bellman backups (the textbook method; `solve` uses
    policy iteration, which reaches the same values in far fewer passes at gamma near 1)."""
    _check_gamma(gamma)
    values = np.zeros(mdp.n_states)
    for _ in range(max_iterations):
        _, new = _backup(mdp, values, gamma)
        delta = float(np.max(np.abs(new - values))) if values.size else 0.0
        values = new
        if delta < tol:
            return values
    raise RuntimeError(f"value iteration did not converge in {max_iterations} iterations (gamma {gamma})")


def greedy(
    mdp: Mdp, values: FloatArray, gamma: float = DEFAULT_GAMMA, keep: IntArray | None = None
) -> IntArray:
    """The transition the greedy policy takes in each state (-1 for terminal states and dead ends).

    Ties (within TIE) go to the policy `keep` where it is among them, else to the first transition
    given, so the policy is deterministic and policy iteration cannot cycle between equal choices.
    """
    order = mdp.live
    q, best = _backup(mdp, values, gamma)
    policy = np.full(mdp.n_states, -1, np.int64)
    tied = q >= best[mdp.src[order]] - TIE
    chosen = order[tied]  # still in source order, stable within a source
    sources, first = np.unique(mdp.src[chosen], return_index=True)
    policy[sources] = chosen[first]
    if keep is not None:
        kept = order[tied & (keep[mdp.src[order]] == order)]
        policy[mdp.src[kept]] = kept
    return policy


def evaluate_policy(mdp: Mdp, policy: IntArray, gamma: float, tol: float = TOLERANCE) -> FloatArray:
    """The value of a deterministic policy, exact to `tol`: V = r + gamma V(next) summed along each
    state's successor chain by pointer doubling (after m rounds each state holds its first 2^m rewards)."""
    n = mdp.n_states
    sink = n  # terminal states and dead ends lead here: no reward, ever
    succ = np.full(n + 1, sink, np.int64)
    pay = np.zeros(n + 1)
    acting = np.flatnonzero(policy >= 0)
    succ[acting] = mdp.dst[policy[acting]]
    pay[acting] = mdp.reward[policy[acting]]
    bound = float(np.max(np.abs(pay))) / (1 - gamma) if n else 0.0
    discount = gamma
    while discount * bound > tol:
        pay = pay + discount * pay[succ]
        succ = succ[succ]
        discount *= discount
    return pay[:n]


def policy_iteration(
    mdp: Mdp, gamma: float = DEFAULT_GAMMA, tol: float = TOLERANCE, max_iterations: int = 1_000
) -> FloatArray:
    """The optimal value of every state: evaluate the policy exactly, improve it greedily, until stable."""
    _check_gamma(gamma)
    policy = greedy(mdp, np.zeros(mdp.n_states), gamma)
    for _ in range(max_iterations):
        values = evaluate_policy(mdp, policy, gamma, tol)
        improved = greedy(mdp, values, gamma, keep=policy)
        if np.array_equal(improved, policy):
            return values
        policy = improved
    raise RuntimeError(f"policy iteration did not settle in {max_iterations} rounds (gamma {gamma})")


@dataclass(frozen=True)
class Rollout:
    """The greedy policy followed from the start: the transitions taken, and how it ended."""

    path: tuple[int, ...]  # transition indices, in order
    completes: bool  # reached a terminal state
    loop: tuple[int, ...] = ()  # the transitions of the cycle it repeats forever (when it loops)

    @property
    def steps(self) -> int:
        return len(self.path)


def rollout(mdp: Mdp, policy: IntArray, start: int = 0) -> Rollout:
    """Follow `policy` from `start` until a terminal state, a dead end, or a revisited state (a loop)."""
    seen = {start: 0}
    path: list[int] = []
    state = start
    while not mdp.terminal[state]:
        e = int(policy[state])
        if e < 0:
            return Rollout(tuple(path), False)
        path.append(e)
        state = int(mdp.dst[e])
        if state in seen:
            return Rollout(tuple(path), False, tuple(path[seen[state] :]))
        seen[state] = len(path)
    return Rollout(tuple(path), True)


@dataclass(frozen=True)
class Solution:
    """Optimal values, the greedy policy and its rollout from the start."""

    values: FloatArray
    policy: IntArray
    rollout: Rollout
    start: int = 0

    @property
    def start_value(self) -> float:
        return float(self.values[self.start])


def solve(mdp: Mdp, gamma: float = DEFAULT_GAMMA, start: int = 0, tol: float = TOLERANCE) -> Solution:
    """Optimal values, the greedy policy (ties to the first transition) and its rollout from `start`."""
    values = policy_iteration(mdp, gamma, tol)
    policy = greedy(mdp, values, gamma)
    return Solution(values, policy, rollout(mdp, policy, start), start)


# -- the simulator wrapper ----------------------------------------------------------------------------
OBJECT_VERBS = frozenset({"PickupObject", "SliceObject", "HeatObject", "CoolObject", "CleanObject"})


class TooManyStates(Exception):
    """The subtask's reachable state space is larger than the bound: it is skipped, not cut short."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        super().__init__(f"skipped: more than {bound:,} states")


@dataclass(frozen=True)
class SubtaskGraph:
    """Every state reachable from `states[0]` by the allowed valid actions, stopping where `sub` is done.

    `remaining[i]` is the expert's remaining plan for the subtask from state i (0 where it is done, -1
    where the expert finds none); transitions are in BFS order with their action indices.
    """

    sub: SubtaskSpec
    states: tuple[State, ...]
    src: IntArray
    action: IntArray
    dst: IntArray
    terminal: BoolArray
    remaining: IntArray

    def mdp(self, reward: FloatArray) -> Mdp:
        """The MDP of this graph under per-transition rewards."""
        labels = tuple(ACTION_TOKENS[int(a)] for a in self.action)
        return Mdp(len(self.states), self.src, self.dst, reward, self.terminal, labels)


def handled_actions(state: State, sub: SubtaskSpec) -> frozenset[tuple[str, str]]:
    """What the expert does to objects for `sub` from `state` (the (verb, class) pairs of its plan that
    pick up, slice, heat, cool or clean), and picking up again the class the agent holds."""
    try:
        steps = [ACTIONS[a] for a in subtask_plan(state, sub)]
    except PlanningError:  # no plan from here: only what the agent holds
        steps = []
    held = {("PickupObject", state.objects[state.held].cls)} if state.held is not None else set()
    return frozenset({(verb, arg) for verb, arg in steps if verb in OBJECT_VERBS} | held)


def allowed_actions(handled: frozenset[tuple[str, str]] | None) -> BoolArray:
    """Actions of an agent that may do to objects only what `handled` names (None: every action).
    Going, opening, closing, toggling and putting down stay allowed: they carry no other object anywhere."""
    return np.asarray(
        [handled is None or verb not in OBJECT_VERBS or (verb, arg) in handled for verb, arg in ACTIONS], bool
    )


def explore(
    start: State,
    sub: SubtaskSpec,
    max_states: int = DEFAULT_MAX_STATES,
    handled: frozenset[tuple[str, str]] | None = None,
) -> SubtaskGraph:
    """BFS over valid actions from `start` (doing to objects only what `handled` names, when given);
    raises TooManyStates past `max_states` states."""
    allowed = allowed_actions(handled)
    index: dict[State, int] = {start: 0}
    states = [start]
    src: list[int] = []
    act: list[int] = []
    dst: list[int] = []
    queue = deque([0])
    while queue:
        i = queue.popleft()
        s = states[i]
        if is_done(s, sub):
            continue
        for a in np.flatnonzero(valid_mask(s) & allowed):
            s2, err = apply(s, int(a))
            if err is not None:  # valid_mask and apply disagree: a bug in the rules
                raise RuntimeError(f"valid action {ACTION_TOKENS[int(a)]} was refused: {err}")
            j = index.get(s2)
            if j is None:
                if len(states) >= max_states:
                    raise TooManyStates(max_states)
                j = index[s2] = len(states)
                states.append(s2)
                queue.append(j)
            src.append(i)
            act.append(int(a))
            dst.append(j)
    terminal = np.asarray([is_done(s, sub) for s in states], bool)
    remaining = [0 if t else remaining_or_none(s, sub) for s, t in zip(states, terminal, strict=True)]
    return SubtaskGraph(
        sub,
        tuple(states),
        np.asarray(src, np.int64),
        np.asarray(act, np.int64),
        np.asarray(dst, np.int64),
        terminal,
        np.asarray([-1 if r is None else r for r in remaining], np.int64),
    )


@functools.lru_cache(maxsize=16)
def explore_cached(
    start: State, sub: SubtaskSpec, max_states: int, handled: frozenset[tuple[str, str]] | None
) -> SubtaskGraph | None:
    """`explore`, remembered for the last few (start, subtask) pairs, None when skipped: checking
    several rewards on the same tasks explores each space once (graphs are reward-free)."""
    try:
        return explore(start, sub, max_states, handled)
    except TooManyStates:
        return None


def subtask_plan(state: State, sub: SubtaskSpec) -> list[int]:
    """The expert's actions that complete `sub` alone from `state` (`plan` of a one-subtask task)."""
    return plan(state, Task("", state.room, (sub,), ("",), ""))


def remaining_or_none(state: State, sub: SubtaskSpec) -> int | None:
    """The expert's remaining plan length for `sub`, or None where it finds none (e.g. an object that
    must be cold was heated again: the expert never re-cools, so no progress is measurable there)."""
    try:
        return subtask_remaining(state, sub)
    except PlanningError:
        return None


# -- the task-level solve -------------------------------------------------------------------------------
RewardFn = Callable[[SubtaskGraph], FloatArray]  # per-transition rewards of a subtask's graph


@dataclass(frozen=True)
class SubtaskSolve:
    """One subtask solved (or skipped) from the state the previous subtask's optimal policy left."""

    index: int
    kind: str
    obj: str
    states: int  # reachable states (0 when skipped)
    skipped: bool
    completes: bool
    steps: int  # the optimal policy's steps to completion (to where its loop closes when it loops)
    expert_steps: int  # the expert's plan for this subtask from the same start (-1: none found)
    value: float  # the optimal value of the start state (NaN when skipped)
    loop: tuple[str, ...] = ()  # the actions the optimal policy repeats forever, when it loops


@dataclass(frozen=True)
class TaskSolve:
    """A task solved subtask by subtask: `status` is completes, loops (some subtask never completes)
    or skipped (a subtask's state space exceeded the bound before any loop was found)."""

    subtasks: tuple[SubtaskSolve, ...]
    expert_length: int
    status: str

    @property
    def optimal_length(self) -> int | None:
        """Steps of the optimal policy over the whole task, when it completes."""
        return sum(s.steps for s in self.subtasks) if self.status == "completes" else None


def solve_task(
    task: Task,
    start: State,
    rewards: RewardFn,
    *,
    gamma: float = DEFAULT_GAMMA,
    max_states: int = DEFAULT_MAX_STATES,
    # DEVIATION: by default the solve is of a sub-MDP (the expert's object actions only), not the whole
    # simulator, whose reachable spaces are mostly too large to solve; docs/reward-check.md
    scope: Scope = "subtask",
) -> TaskSolve:
    """Solve each subtask in order from where the previous one's optimal policy ended."""
    if scope not in SCOPES:
        raise ValueError(f"scope={scope!r}: use one of {', '.join(SCOPES)}")
    expert_length = len(plan(start, task))
    out: list[SubtaskSolve] = []
    state = start
    for k, sub in enumerate(task.subtasks):
        solved, state = _solve_subtask(k, sub, state, rewards, gamma, max_states, scope)
        out.append(solved)
        if solved.skipped or not solved.completes:
            return TaskSolve(tuple(out), expert_length, "skipped" if solved.skipped else "loops")
    return TaskSolve(tuple(out), expert_length, "completes")


def _solve_subtask(
    k: int, sub: SubtaskSpec, start: State, rewards: RewardFn, gamma: float, max_states: int, scope: Scope
) -> tuple[SubtaskSolve, State]:
    """The subtask's solve record and the state its optimal rollout ends in."""
    if is_done(start, sub):  # completed on the way to the previous one
        return SubtaskSolve(k, sub.kind, sub.obj, 1, False, True, 0, 0, 0.0), start
    expert = remaining_or_none(start, sub)
    expert_steps = -1 if expert is None else expert
    handled = handled_actions(start, sub) if scope == "subtask" else None
    graph = explore_cached(start, sub, max_states, handled)
    if graph is None:
        return SubtaskSolve(k, sub.kind, sub.obj, 0, True, False, 0, expert_steps, float("nan")), start
    solution = solve(graph.mdp(rewards(graph)), gamma)
    run = solution.rollout
    end = graph.states[int(graph.dst[run.path[-1]])] if run.path else start
    loop = tuple(ACTION_TOKENS[int(graph.action[e])] for e in run.loop)
    record = SubtaskSolve(
        k,
        sub.kind,
        sub.obj,
        len(graph.states),
        False,
        run.completes,
        run.steps,
        expert_steps,
        solution.start_value,
        loop,
    )
    return record, end
