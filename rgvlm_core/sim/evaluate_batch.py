"""Lockstep evaluation of several policies at once: one batched policy call per tick (issue 12).

`evaluate` makes one batch-1 policy call per step, and for a small torch policy that call's fixed
overhead, not the simulator, is most of the cost. `evaluate_members` runs every episode of an
`EvalConfig` once per member of a stacked model (e.g. K seeds trained together), keeps up to `window`
(member, episode) environments alive, and advances them all in lockstep: each tick, one policy call
scores every live environment's observation.

Equivalence: each environment is reset with `evaluate.start_episode` from the seeds that
`evaluate.episodes` gives, and scored with `evaluate.episode_result`, so for every member the results
are exactly those of `evaluate(single_policy_of_member, config)`, provided the batch policy answers each
row as that member's single policy would (a row-wise deterministic policy; see `rowwise`).

Order: results are yielded as episodes end (within one tick, in the order of the live rows), which
differs from `evaluate`'s order; sort by (member, length, episode) for that order. Environments start
in the order (length, episode, member), so a member's results for one length arrive together.

Levels: the config's level decides the env (`evaluate.make_env`) and the size of the action masks and of
the valid action range (`evaluate.n_actions`); the low level's episodes meet the same floor plans as
`evaluate`'s, since the reset seed draws them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rgvlm_core.errors import UsageError
from rgvlm_core.sim.evaluate import (
    EpisodeResult,
    EvalConfig,
    EvalEnv,
    Policy,
    episode_result,
    episodes,
    make_env,
    n_actions,
    start_episode,
)

logger = logging.getLogger(__name__)

# (observations, action masks (N, A) bool, member index of each row (N,) int) -> actions (N,) int
BatchPolicy = Callable[[list[dict[str, Any]], np.ndarray, np.ndarray], np.ndarray]
# Live environments by default: each is a few kB, and a policy call over 512 rows is still a small
# matmul, while the per-call overhead is already spread over hundreds of rows.
DEFAULT_WINDOW = 512


@dataclass(eq=False)
class _Live:
    """One running (member, episode): its env, where it stands, and its latest observation."""

    env: EvalEnv
    member: int
    length: int
    episode: int
    seed: int
    obs: dict[str, Any]
    info: dict[str, Any]
    steps: int = 0


def evaluate_members(
    policy: BatchPolicy, members: int, config: EvalConfig, *, window: int | None = None
) -> Iterator[tuple[int, EpisodeResult]]:
    """Run every episode of `config` once per member 0..members-1, yielding (member, result) as each ends.

    All live environments (at most `window`, default `DEFAULT_WINDOW`) advance in lockstep, one
    `policy` call per tick over all of them. An action the mask marks invalid is allowed (it costs a
    step, as in `evaluate`); an action that is not an integer index into the level's actions (masks
    have that many columns) is a UsageError.
    """
    members, window = _check_arguments(policy, members, window)
    size = n_actions(config.level)
    pending = (
        (m, length, episode, seed) for length, episode, seed in episodes(config) for m in range(members)
    )
    live: list[_Live] = []
    spare: list[EvalEnv] = []
    _fill(live, spare, pending, window, config)
    while live:
        actions = _ask(policy, live, size)
        done = [_step(row, int(action)) for row, action in zip(live, actions, strict=True)]
        if not any(done):
            continue
        ended = [row for row, d in zip(live, done, strict=True) if d]
        live = [row for row, d in zip(live, done, strict=True) if not d]
        for row in ended:
            result = episode_result(
                row.env,
                row.info,
                length=row.length,
                episode=row.episode,
                condition=config.condition,
                seed=row.seed,
                steps=row.steps,
            )
            spare.append(row.env)
            logger.debug(
                "member %s episode %s/%s: %s/%s",
                row.member,
                row.length,
                row.episode,
                result.completed,
                result.n_subtasks,
            )
            yield row.member, result
        _fill(live, spare, pending, window, config)


def rowwise(policies: Sequence[Policy]) -> BatchPolicy:
    """A batch policy that answers each row with its member's single policy (member i -> policies[i]).

    No speed-up by itself: it adapts one-at-a-time policies (tests, baselines) to `evaluate_members`.
    """
    chosen = list(policies)

    def act(observations: list[dict[str, Any]], masks: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.array(
            [chosen[int(m)](obs, mask) for obs, mask, m in zip(observations, masks, rows, strict=True)],
            dtype=np.int64,
        )

    return act


def _check_arguments(policy: object, members: object, window: object) -> tuple[int, int]:
    if not callable(policy):
        raise UsageError(f"policy={policy!r}: give a batch policy (observations, masks, members) -> actions")
    if not _is_int(members) or members < 1:  # type: ignore[operator]
        raise UsageError(f"members={members!r}: give a positive integer (the number of policies)")
    if window is None:
        window = DEFAULT_WINDOW
    if not _is_int(window) or window < 1:  # type: ignore[operator]
        raise UsageError(f"window={window!r}: give a positive integer (environments alive at once) or None")
    return int(members), int(window)  # type: ignore[call-overload]


def _fill(
    live: list[_Live],
    spare: list[EvalEnv],
    pending: Iterator[tuple[int, int, int, int]],
    window: int,
    config: EvalConfig,
) -> None:
    """Start pending episodes until `window` are live, reusing the envs of ended ones."""
    while len(live) < window:
        job = next(pending, None)
        if job is None:
            return
        member, length, episode, seed = job
        env = spare.pop() if spare else make_env(config)
        obs, info = start_episode(env, length, config.condition, seed, episode)
        live.append(_Live(env, member, length, episode, seed, obs, info))


def _ask(policy: BatchPolicy, live: list[_Live], size: int) -> np.ndarray:
    """One policy call over every live row, its answer checked: shape (N,), integer indices in
    [0, size)."""
    n = len(live)
    masks = np.stack([row.info["action_mask"] for row in live]).astype(bool)
    members = np.array([row.member for row in live], dtype=np.int64)
    raw = policy([row.obs for row in live], masks, members)
    actions = np.asarray(raw)
    if actions.shape != (n,):
        raise UsageError(
            f"the batch policy returned shape {actions.shape} for {n} observations; return one action "
            f"per row, shape ({n},)"
        )
    if actions.dtype.kind not in "iu":
        raise UsageError(
            f"the batch policy returned actions of dtype {actions.dtype} ({actions[:3].tolist()}...); "
            "return integer action indices"
        )
    bad = np.flatnonzero((actions < 0) | (actions >= size))
    if len(bad):
        i = int(bad[0])
        raise UsageError(
            f"the batch policy returned action {int(actions[i])} for row {i} (member {int(members[i])}); "
            f"actions are indices in [0, {size})"
        )
    return actions


def _step(row: _Live, action: int) -> bool:
    """Advance one live row by `action`; True when its episode has ended."""
    row.obs, _, terminated, truncated, row.info = row.env.step(action)
    row.steps += 1
    return bool(terminated or truncated)


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)
