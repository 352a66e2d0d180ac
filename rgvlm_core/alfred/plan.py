"""ALFRED's plan (`plan.high_pddl`, `plan.low_actions`) turned into action tokens, subtasks and steps.

Subtasks follow the offline-RL literature on ALFRED (SPRINT, BOSS): each GotoLocation subgoal, or
run of them, is merged into the next manipulation subgoal, so one subtask is one skill. See
`plan_subtasks` for the edge cases (a trailing GotoLocation, subgoals without low actions).
Everything here raises `FieldError`; the reader adds the file name.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from rgvlm_core.alfred.checks import (
    FieldError,
    as_dict,
    as_int,
    dict_member,
    list_member,
    member,
    short,
    str_member,
    wrong_type,
)
from rgvlm_core.alfred.simext import SimExtension
from rgvlm_core.episodes import (
    ALFRED_HIGH_ACTIONS,
    ALFRED_INTERACTION,
    ALFRED_NAVIGATION,
    ALFRED_VOCABULARY,
    Step,
)

# Subgoal action -> subtask kind (episodes.SUBTASK_KINDS); GotoLocation and NoOp form no subtask.
SUBTASK_KIND_OF: dict[str, str] = {
    "PickupObject": "Pickup",
    "PutObject": "Put",
    "ToggleObject": "Toggle",
    "SliceObject": "Slice",
    "HeatObject": "Heat",
    "CoolObject": "Cool",
    "CleanObject": "Clean",
}
GOTO = "GotoLocation"
NOOP = "NoOp"
SUBGOAL, LOW = "subgoal", "low"  # the simulator's levels (rgvlm_sim.level)

_NAVIGATION = frozenset(ALFRED_NAVIGATION)
_INTERACTION = frozenset(ALFRED_INTERACTION)
_HIGH_ACTIONS = frozenset(ALFRED_HIGH_ACTIONS)
_CLASS_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_SLICE_SUFFIX = re.compile(r"_\d+$")
_TOKEN_CACHE: dict[tuple[str, str], str] = {}
_TOKEN_CACHE_MAX = 20_000

SubtaskSpan = tuple[str, int, int, tuple[int, ...]]  # (kind, first_step, last_step, high_idxs)


@dataclass(frozen=True)
class Plan:
    """The checked plan of one trajectory; `spans` is what `Trajectory.subtask_spans` holds."""

    high_actions: tuple[str, ...]  # discrete_action.action of each subgoal, NoOp included
    has_noop: bool  # whether the last subgoal is the terminal NoOp
    step_high_idxs: tuple[int, ...]  # high_idx of each low action
    tokens: tuple[str, ...]  # action token of each low action
    spans: tuple[SubtaskSpan, ...]
    level: str = "subgoal"  # the simulator's level of the tokens: subgoal or low (ALFRED's own: subgoal)

    @property
    def n_described_subgoals(self) -> int:
        """How many `high_descs` sentences an annotation must have: one per subgoal but the NoOp."""
        return len(self.high_actions) - (1 if self.has_noop else 0)


def object_class(object_id: str) -> str:
    """The object class of an AI2-THOR object id.

    "Apple|+01.00|+00.90|-01.00" -> "Apple"; ids with more than four '|' parts name the class last:
    "Sink|+01.10|+00.91|-01.60|SinkBasin" -> "SinkBasin", "Apple|...|AppleSliced_0" -> "AppleSliced".
    """
    parts = object_id.split("|")
    if len(parts) > 4:
        return _SLICE_SUFFIX.sub("", parts[-1])
    return parts[0]


def parse_plan(plan: dict[str, Any], *, sim: bool = False, level: str | None = None) -> Plan:
    """Check `plan` and turn it into tokens and subtask spans (raises FieldError).

    `sim`: the embedded simulator's plan: a failed episode may end before its last subtasks (left
    unreached), and its low actions are the simulator's tokens of `level`: "subgoal" (one subgoal per
    subtask, tokens like GotoLocation(Fridge): sim.world.ACTION_TOKENS) or "low" (a GotoLocation
    subgoal before each manipulation, ALFRED's own low actions: sim.low.world.ACTION_TOKENS). None:
    read from the plan, low when it has GotoLocation subgoals (the subgoal level's generator writes
    none); `build_steps` then checks it against the `rgvlm_sim` key's own level.
    """
    high_actions = _parse_high_pddl(list_member(plan, "high_pddl", "plan"))
    has_noop = high_actions[-1] == NOOP
    low_actions = list_member(plan, "low_actions", "plan")
    if not low_actions:
        raise FieldError("plan.low_actions", "empty array; expected at least one low-level action")
    if sim and level is None:
        level = LOW if GOTO in high_actions else SUBGOAL
    level = level or SUBGOAL
    step_high_idxs, tokens = _parse_low_actions(low_actions, len(high_actions), level if sim else None)
    spans = plan_subtasks(high_actions, has_noop, step_high_idxs, allow_unreached=sim)
    return Plan(high_actions, has_noop, step_high_idxs, tokens, spans, level)


def _parse_high_pddl(high_pddl: list[Any]) -> tuple[str, ...]:
    if not high_pddl:
        raise FieldError("plan.high_pddl", "empty array; expected at least one subgoal")
    actions = []
    last = len(high_pddl) - 1
    for i, subgoal in enumerate(high_pddl):
        field = f"plan.high_pddl[{i}]"
        subgoal = as_dict(subgoal, field)
        high_idx = as_int(member(subgoal, "high_idx", field), f"{field}.high_idx")
        if high_idx != i:
            raise FieldError(
                f"{field}.high_idx", f"expected {i} (subgoals are numbered in order), got {high_idx}"
            )
        action = member(dict_member(subgoal, "discrete_action", field), "action", f"{field}.discrete_action")
        if type(action) is not str or action not in _HIGH_ACTIONS:
            known = ", ".join(ALFRED_HIGH_ACTIONS)
            raise FieldError(
                f"{field}.discrete_action.action", f"unknown subgoal action {short(action)}; known: {known}"
            )
        if action == NOOP and i != last:
            raise FieldError(
                f"{field}.discrete_action.action",
                f"NoOp may only be the last subgoal, found at {i} of {last + 1}",
            )
        actions.append(action)
    return tuple(actions)


def _parse_low_actions(
    low_actions: list[Any], n_high: int, sim: str | None = None
) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """high_idx and token of each low action; high_idx must be non-decreasing and below n_high.

    `sim`: the simulator level whose tokens the actions are (None: ALFRED's own data)."""
    high_idxs: list[int] = []
    tokens: list[str] = []
    previous = 0
    for t, low in enumerate(low_actions):
        if type(low) is not dict:
            raise wrong_type(f"plan.low_actions[{t}]", "an object", low)
        high_idx = low.get("high_idx")
        if type(high_idx) is not int or high_idx < previous or high_idx >= n_high:
            _refuse_high_idx(low, t, previous, n_high)
        previous = high_idx
        discrete = low.get("discrete_action")
        if type(discrete) is not dict:
            discrete = as_dict(
                member(low, "discrete_action", f"plan.low_actions[{t}]"),
                f"plan.low_actions[{t}].discrete_action",
            )
        name = discrete.get("action")
        if sim is not None:
            tokens.append(_sim_token(discrete, t, sim))
        elif type(name) is str and name in _NAVIGATION:
            tokens.append(name)
        elif type(name) is str and name in _INTERACTION:
            tokens.append(_interaction_token(low, name, t))
        else:
            known = ", ".join(ALFRED_VOCABULARY.names)
            raise FieldError(
                f"plan.low_actions[{t}].discrete_action.action",
                f"unknown low-level action {short(name)}; known: {known}",
            )
        high_idxs.append(high_idx)
    return tuple(high_idxs), tuple(tokens)


def _refuse_high_idx(low: dict[str, Any], t: int, previous: int, n_high: int) -> NoReturn:
    field = f"plan.low_actions[{t}].high_idx"
    high_idx = as_int(member(low, "high_idx", f"plan.low_actions[{t}]"), field)
    if high_idx < 0:
        raise FieldError(field, f"expected a subgoal index 0..{n_high - 1}, got {high_idx}")
    if high_idx < previous:
        raise FieldError(field, f"decreases from {previous} to {high_idx}; high_idx must be non-decreasing")
    raise FieldError(
        field, f"{high_idx} is beyond plan.high_pddl, which has {n_high} subgoals (0..{n_high - 1})"
    )


def _interaction_token(low: dict[str, Any], name: str, t: int) -> str:
    """`Name(Class)`: the target object's class (for PutObject, the receptacle's)."""
    prefix = f"plan.low_actions[{t}].api_action"
    api = dict_member(low, "api_action", f"plan.low_actions[{t}]")
    key = "receptacleObjectId" if name == "PutObject" else "objectId"
    object_id = str_member(api, key, prefix)
    cls = object_class(object_id)
    if not _CLASS_NAME.fullmatch(cls):
        raise FieldError(
            f"{prefix}.{key}", f"no object class in {short(object_id)}; expected e.g. 'Apple|+01.00|...'"
        )
    token = _TOKEN_CACHE.get((name, cls))
    if token is None:
        token = ALFRED_VOCABULARY.token(name, cls)
        if len(_TOKEN_CACHE) < _TOKEN_CACHE_MAX:
            _TOKEN_CACHE[(name, cls)] = token
    return token


def _sim_token(discrete: dict[str, Any], t: int, level: str) -> str:
    """The simulator's token: `Verb(Arg)` from the action and its one argument; at the low level a
    navigation action is its name alone (its args empty)."""
    field = f"plan.low_actions[{t}].discrete_action"
    args = discrete.get("args")
    name = discrete.get("action")
    if type(args) is list and len(args) == 1:
        token = f"{name}({args[0]})"
    elif level == LOW and type(name) is str and args in ({}, [], None):
        token = name
    else:
        token = repr(discrete)
    if token not in _sim_index(level):
        example = "MoveAhead_25 or PickupObject(Apple)" if level == LOW else "GotoLocation(Fridge)"
        raise FieldError(
            field, f"unknown {level}-level simulator action {short(token)}; expected e.g. {example}"
        )
    return token


def _sim_index(level: str) -> dict[str, int]:
    if level == LOW:
        from rgvlm_core.sim.low.world import ACTION_INDEX as LOW_INDEX

        return LOW_INDEX
    from rgvlm_core.sim.world import ACTION_INDEX

    return ACTION_INDEX


def plan_subtasks(
    high_actions: Sequence[str],
    has_noop: bool,
    step_high_idxs: Sequence[int],
    *,
    allow_unreached: bool = False,
) -> tuple[SubtaskSpan, ...]:
    """Merge subgoals into subtasks and find each subtask's steps.

    Each GotoLocation, or run of them, joins the next manipulation subgoal; the manipulation names
    the subtask's kind. The terminal NoOp is no subtask and may own no low action.
    A trailing GotoLocation run (no manipulation after it before the NoOp or the end) is merged into
    the PREVIOUS subtask, whose steps then run to the end; a plan of GotoLocations only is refused.
    A subtask whose merged subgoals own no low action at all is refused, except, with
    `allow_unreached`, trailing subtasks after the last step (an episode that stopped early):
    their span is (-1, -1).
    """
    end = len(high_actions) - (1 if has_noop else 0)
    groups: list[tuple[str, list[int]]] = []
    pending: list[int] = []
    for i in range(end):
        pending.append(i)
        if high_actions[i] != GOTO:
            groups.append((SUBTASK_KIND_OF[high_actions[i]], pending))
            pending = []
    if pending:
        if not groups:
            raise FieldError(
                "plan.high_pddl", "no manipulation subgoal: only GotoLocation, so no subtask can be formed"
            )
        groups[-1][1].extend(pending)
    subtask_of_high = [-1] * len(high_actions)
    for index, (_, idxs) in enumerate(groups):
        for i in idxs:
            subtask_of_high[i] = index
    first = [-1] * len(groups)
    last = [-1] * len(groups)
    for t, high_idx in enumerate(step_high_idxs):
        index = subtask_of_high[high_idx]
        if index < 0:
            raise FieldError(
                f"plan.low_actions[{t}].high_idx", f"{high_idx} is the terminal NoOp, which owns no action"
            )
        if first[index] < 0:
            first[index] = t
        last[index] = t
    reached = len(groups)
    if allow_unreached:
        while reached > 1 and first[reached - 1] < 0:
            reached -= 1
    for index, (kind, idxs) in enumerate(groups[:reached]):
        if first[index] < 0:
            raise FieldError(
                f"plan.high_pddl[{idxs[0]}]",
                f"subtask {index} ({kind}, subgoals {idxs}) has no low-level action: "
                f"no plan.low_actions entry has a high_idx among {idxs}",
            )
    return tuple((kind, first[s], last[s], tuple(idxs)) for s, (kind, idxs) in enumerate(groups))


def build_steps(
    plan: Plan,
    frames: Sequence[str | None] | None,
    feature_rows: Sequence[int] | None,
    sim: SimExtension | None = None,
) -> tuple[Step, ...]:
    """One Step per low action, with sparse reward 1.0 on each subtask's last step.

    Simulator data carries its own completion-based rewards (a failed episode's unfinished subtask
    earns nothing) and per-step validity, progress and state; its level must be the plan's.
    """
    if sim is not None and sim.level != plan.level:
        raise FieldError(
            "rgvlm_sim.level",
            f"says {sim.level!r} but plan.high_pddl is a {plan.level}-level plan "
            "(a low-level plan has a GotoLocation subgoal before each manipulation)",
        )
    n = len(plan.tokens)
    subtask_of_step = [0] * n
    rewarded = set()
    for index, (_, first, last, _) in enumerate(plan.spans):
        if first < 0:
            continue
        subtask_of_step[first : last + 1] = [index] * (last - first + 1)
        rewarded.add(last)
    return tuple(
        Step(
            t=t,
            action=plan.tokens[t],
            high_idx=plan.step_high_idxs[t],
            subtask_index=subtask_of_step[t],
            frame=frames[t] if frames is not None else None,
            feature_row=feature_rows[t] if feature_rows is not None else None,
            sparse_reward=float(sim.rewards[t]) if sim else (1.0 if t in rewarded else 0.0),
            done=t == n - 1,
            valid=sim.valid[t] if sim else True,
            progress=sim.progress[t] if sim else None,
            state=sim.states[t] if sim else None,
        )
        for t in range(n)
    )
