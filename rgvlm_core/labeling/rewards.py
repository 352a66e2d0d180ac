"""Reward formulas of RG-VLM: pure functions on arrays, checked against hand-computed numbers.

r_vlm = score / 10. Combined: r = r_sparse + lambda * r_vlm (lambda 1 by default). Options:
per-dataset normalisation of r_vlm, and potential-based shaping
r = r_sparse + lambda * (gamma * phi(s') - phi(s)), phi the normalised score, which leaves the
optimal policy unchanged (Ng et al., 1999); phi is 0 after the last step of an episode.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from rgvlm_core.labeling.types import SCORE_MAX

FloatArray = npt.NDArray[np.float64]
Normalisation = Literal["none", "zscore", "minmax"]


def vlm_reward(scores: npt.ArrayLike) -> FloatArray:
    """r_vlm = score / 10 (NaN stays NaN: a failed label has no reward)."""
    return np.asarray(scores, dtype=np.float64) / SCORE_MAX


def combined(r_sparse: npt.ArrayLike, r_vlm: npt.ArrayLike, lam: float = 1.0) -> FloatArray:
    """Sparse+RG-VLM: r_sparse + lambda * r_vlm."""
    return np.asarray(r_sparse, dtype=np.float64) + lam * np.asarray(r_vlm, dtype=np.float64)


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


def shaped(
    r_sparse: npt.ArrayLike, phi: npt.ArrayLike, episode_end: npt.ArrayLike, gamma: float, lam: float = 1.0
) -> FloatArray:
    """Potential-based shaping over consecutive steps of episodes laid end to end.

    phi[t] is the potential of the state before step t; phi(s') is phi[t+1] within an episode and 0
    after its last step (`episode_end[t]` True).
    """
    r = np.asarray(r_sparse, dtype=np.float64)
    p = np.asarray(phi, dtype=np.float64)
    end = np.asarray(episode_end, dtype=bool)
    nxt = np.append(p[1:], 0.0)
    nxt[end] = 0.0
    return r + lam * (gamma * nxt - p)
