"""Reward formulas of RG-VLM: the one home of the arithmetic, pure functions on arrays.

A labeller's score s (0..10) becomes a per-step VLM reward through a named *mapping*:

- `raw`: s / 10, the paper's literal mapping. Positive on every step, so with `done` at the end of
  each subtask a policy that delays completion collects more of it: it pays detours and loops.
- `cost`: s / 10 - 1, at most 0 on every step, so no loop can pay; a perfect step costs nothing.
- `centred`: (s - 5) / 10; still pays loops of steps scored above 5.
- `shaped`: potential-based shaping (Ng, Harada, Russell 1999) r = lambda (gamma phi(s') - phi(s)),
  phi the labeller's *progress* answer (how far the current subtask is done after a step, 0..10,
  divided by 10). phi is 0 at the start of a subtask's segment and after a terminal step, so the
  shaping terms of a segment telescope and every path to the same completion earns the same sum
  up to discounting: the optimal policy is the sparse reward's.

Combined: r = r_sparse + lambda * r_vlm (`with_sparse`), or r = lambda * r_vlm alone. Shaping is a
change of the sparse reward, not a reward of its own: alone it would pay nothing for completing a
subtask, so `shaped` without the sparse reward is refused. Options kept from earlier versions:
per-dataset normalisation of scores.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from rgvlm_core.errors import UsageError
from rgvlm_core.labeling.types import SCORE_MAX

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
Normalisation = Literal["none", "zscore", "minmax"]
Mapping = Literal["raw", "cost", "centred", "shaped"]

MAPPINGS: tuple[str, ...] = ("raw", "cost", "centred", "shaped")
# DEVIATION: the default maps scores to a cost (s/10 - 1), not the paper's s/10; docs/deviations.md
DEFAULT_MAPPING = "cost"
MAPPING_HELP: dict[str, str] = {
    "raw": "score/10, the paper's literal mapping (pays loops when done ends each subtask)",
    "cost": "score/10 - 1: a cost no loop can pay (the default)",
    "centred": "(score - 5)/10: pays loops of steps scored above 5",
    "shaped": "gamma*phi(s') - phi(s), phi = progress/10: potential-based, keeps the optimal policy",
}


def check_mapping(name: str, *, with_sparse: bool = True) -> str:
    """`name` if it is a mapping usable here; a UsageError naming the choices otherwise."""
    if name not in MAPPINGS:
        raise UsageError(f"unknown VLM reward mapping {name!r}; use one of {', '.join(MAPPINGS)}")
    if name == "shaped" and not with_sparse:
        raise UsageError(
            "the shaped mapping reshapes the sparse reward and pays nothing for completing a subtask on "
            "its own; use it with sparse+rgvlm (or sparse+reference), or choose raw, cost or centred"
        )
    return name


def vlm_reward(scores: npt.ArrayLike, mapping: str = "raw") -> FloatArray:
    """The per-step VLM reward of scores under a per-step mapping (NaN stays NaN: a failed label has
    no reward). `shaped` needs potentials: see `shaping`."""
    s = np.asarray(scores, dtype=np.float64)
    if mapping == "raw":
        return s / SCORE_MAX
    if mapping == "cost":
        return s / SCORE_MAX - 1.0
    if mapping == "centred":
        return (s - SCORE_MAX / 2) / SCORE_MAX
    if mapping == "shaped":
        raise ValueError("the shaped mapping is computed from progress potentials: use shaping()")
    raise UsageError(f"unknown VLM reward mapping {mapping!r}; use one of {', '.join(MAPPINGS)}")


def potentials(progress: npt.ArrayLike, segment_start: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """(phi before, phi after) each step, from per-step progress answers (0..10, NaN when missing).

    Steps are consecutive within episodes, laid end to end; `segment_start[t]` marks the first step
    of a subtask's segment, whose state before has phi 0 (nothing of the subtask done yet). Otherwise
    phi before step t is the progress answered after step t - 1.
    """
    after = np.asarray(progress, dtype=np.float64) / SCORE_MAX
    start = np.asarray(segment_start, dtype=bool)
    before = np.concatenate([[0.0], after[:-1]]) if after.size else after.copy()
    before[start] = 0.0
    return before, after


def shaping(
    phi_before: npt.ArrayLike, phi_after: npt.ArrayLike, terminal: npt.ArrayLike, gamma: float
) -> FloatArray:
    """gamma * phi(s') - phi(s), with phi(s') = 0 after a terminal step (the episode of the subtask
    ends there, so nothing follows to telescope against). NaN where either potential is unknown."""
    # a terminal step needs no phi(s'): even an unknown answer there must not poison the reward
    after = np.where(np.asarray(terminal, dtype=bool), 0.0, np.asarray(phi_after, dtype=np.float64))
    return gamma * after - np.asarray(phi_before, dtype=np.float64)


def step_rewards(
    mapping: str,
    sparse: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    progress: npt.ArrayLike | None = None,
    segment_start: npt.ArrayLike | None = None,
    terminal: npt.ArrayLike | None = None,
    lam: float = 1.0,
    gamma: float = 0.97,
    with_sparse: bool = True,
) -> tuple[FloatArray, BoolArray]:
    """(reward, missing) of consecutive steps: r = [r_sparse +] lambda * r_vlm under `mapping`.

    `missing` marks steps without a VLM reward (a failed label, or for `shaped` an unknown potential
    on either side); those get r_vlm = 0 here, and the caller decides whether to keep them. `shaped`
    needs `progress`, `segment_start` and `terminal`.
    """
    check_mapping(mapping, with_sparse=with_sparse)
    r_sparse = np.asarray(sparse, dtype=np.float64)
    if mapping == "shaped":
        if progress is None or segment_start is None or terminal is None:
            raise ValueError("shaped rewards need progress, segment_start and terminal")
        before, after = potentials(progress, segment_start)
        r_vlm = shaping(before, after, terminal, gamma)
    else:
        r_vlm = vlm_reward(scores, mapping)
    missing = ~np.isfinite(r_vlm)
    r_vlm = np.where(missing, 0.0, r_vlm)
    out = lam * r_vlm + (r_sparse if with_sparse else 0.0)
    return out, missing


def combined(r_sparse: npt.ArrayLike, r_vlm: npt.ArrayLike, lam: float = 1.0) -> FloatArray:
    """Sparse+RG-VLM: r_sparse + lambda * r_vlm."""
    return np.asarray(r_sparse, dtype=np.float64) + lam * np.asarray(r_vlm, dtype=np.float64)


def discounted_return(rewards: npt.ArrayLike, gamma: float) -> float:
    """sum_t gamma^t r_t of one segment's rewards, in order."""
    r = np.asarray(rewards, dtype=np.float64)
    return float(np.sum(r * gamma ** np.arange(r.size)))


def normalise(values: npt.ArrayLike, groups: npt.ArrayLike, method: Normalisation = "zscore") -> FloatArray:
    """Normalise within each group (dataset): z-score or min-max; constant groups map to 0."""
    v = np.asarray(values, dtype=np.float64)
    g = np.asarray(groups)
    out = np.zeros_like(v) if method != "none" else v.copy()
    if method == "none":
        return out
    for key in np.unique(g):
        sel = g == key
        x = v[sel]
        finite = x[np.isfinite(x)]
        if finite.size == 0:
            out[sel] = x
            continue
        if method == "zscore":
            std = finite.std()
            out[sel] = (x - finite.mean()) / std if std > 0 else np.where(np.isfinite(x), 0.0, x)
        else:
            span = finite.max() - finite.min()
            out[sel] = (x - finite.min()) / span if span > 0 else np.where(np.isfinite(x), 0.0, x)
    return out
