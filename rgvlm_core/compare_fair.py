"""A fair comparison of methods: paired differences from Sparse, results by first-subtask kind, and
completion against training steps. Built on `rgvlm_core.compare` (same rows, same intervals).

Pairing: method seed k and Sparse seed k share their training seed, and every run meets the same
evaluation tasks, so the per-seed difference removes what the seed and the tasks add to both; its
mean over the pairs gets a paired 95% Student-t interval (n - 1 degrees of freedom over n pairs).
An interval that excludes 0 is a difference the seeds support.

No torch and no streamlit here: the dashboard and the CLI's report both import this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rgvlm_core.compare import (
    EXPERT,
    LENGTHS,
    PHRASING_SQL,
    SPARSE,
    cell_keys,
    ci95_half_width,
    method_label,
    over_seeds,
    run_filter,
)
from rgvlm_core.workspace import StoreReader

FIRST_KINDS = ("Pickup", "Put", "Heat", "Cool", "Clean", "Slice", "Toggle")  # the simulator's order
MEAN_OVER_LENGTHS = "mean"  # the `length` of a paired difference averaged over task lengths
LENGTH_ORDER = (*(str(n) for n in LENGTHS), MEAN_OVER_LENGTHS)  # a paired table's `length` values
CURVE_COLUMNS = ["run_id", "method", "seed", "step", "condition", "phrasing", "length", "episodes",
                 "proportion", "success"]  # fmt: skip


def paired_differences(seeds: pd.DataFrame, baseline: str = SPARSE) -> pd.DataFrame:
    """Each method's difference from `baseline`, paired by training seed, with a paired 95% t interval.

    For every method (not the baseline, not the expert), condition, phrasing and length, the pairs
    are (method seed k - baseline seed k) over the seeds both have; `length` is the task length as
    text, or MEAN_OVER_LENGTHS for each pair's mean over the lengths both evaluated. Runs of one
    method sharing a seed are averaged first. Columns: method, condition[, phrasing], length, mean,
    ci_low, ci_high (NaN below 2 pairs; not clipped), pairs, excludes_zero.
    """
    cells = cell_keys(seeds)
    columns = ["method", *cells, "length", "mean", "ci_low", "ci_high", "pairs", "excludes_zero"]
    if seeds.empty or baseline not in set(seeds["method"]):
        return pd.DataFrame(columns=columns)
    per = seeds.groupby(["method", "train_seed", *cells, "length"], as_index=False)["proportion"].mean()
    base = per[per["method"] == baseline].drop(columns="method").rename(columns={"proportion": "base"})
    others = per[~per["method"].isin([baseline, EXPERT])]
    pairs = others.merge(base, on=["train_seed", *cells, "length"], how="inner")
    pairs["difference"] = pairs["proportion"] - pairs["base"]
    overall = pairs.groupby(["method", "train_seed", *cells], as_index=False)["difference"].mean()
    both = pd.concat(
        [
            pairs.assign(length=pairs["length"].astype(int).astype(str)),
            overall.assign(length=MEAN_OVER_LENGTHS),
        ],
        ignore_index=True,
    )
    out = []
    for key, group in both.groupby(["method", *cells, "length"], sort=False):
        values = group["difference"].to_numpy(dtype=np.float64)
        mean, half = float(values.mean()), ci95_half_width(values)
        low, high = mean - half, mean + half
        row = dict(zip(["method", *cells, "length"], key, strict=True))
        out.append({**row, "mean": mean, "ci_low": low, "ci_high": high, "pairs": len(values),
                    "excludes_zero": bool(low > 0 or high < 0)})  # fmt: skip
    return _sorted_by(pd.DataFrame(out, columns=columns), ["method", *cells], "length", LENGTH_ORDER)


def paired_gap(seeds: pd.DataFrame, paired: pd.DataFrame, baseline: str = SPARSE) -> str | None:
    """Why no paired difference can be drawn (no Sparse runs, or fewer than 2 seeds shared with it),
    or None when at least one method has an interval."""
    if seeds.empty or baseline not in set(seeds["method"]):
        return (
            f"No {method_label(baseline)} runs among those compared: there is no baseline to pair with. "
            f"Add {method_label(baseline)} runs of the same training seeds."
        )
    if paired.empty or not (paired["pairs"] >= 2).any():
        return (
            f"Fewer than 2 training seeds shared with {method_label(baseline)}: a paired interval needs "
            "at least 2 pairs (method seed k and Sparse seed k). Train the methods with the same seeds."
        )
    return None


def paired_findings(paired: pd.DataFrame, seeds: pd.DataFrame, baseline: str = SPARSE) -> list[str]:
    """Which paired intervals exclude 0, in words: one sentence per condition and phrasing for the
    mean over lengths, one for the lengths, and one naming the methods of `seeds` (per-seed rows)
    with fewer than 2 seeds shared with `baseline`."""
    out = []
    cells = [c for c in ("condition", "phrasing") if c in paired.columns]
    rows = paired[paired["pairs"] >= 2]
    for key, part in rows.groupby(cells, sort=False):
        where = " · ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        mean = part[part["length"] == MEAN_OVER_LENGTHS]
        out.append(f"{where}, mean over lengths: {_sides(mean)}")
        lengths = part[(part["length"] != MEAN_OVER_LENGTHS) & part["excludes_zero"]]
        found = [
            f"{method_label(m)} at {', '.join(g['length'])} subtasks ({_direction(g)})"
            for m, g in lengths.groupby("method", sort=False)
        ]
        out.append(f"{where}, by length: " + ("; ".join(found) if found else "no interval excludes 0."))
    few = sorted(set(seeds["method"]) - {baseline, EXPERT} - set(rows["method"]))
    if few:
        names = ", ".join(method_label(m) for m in few)
        out.append(f"Fewer than 2 seeds shared with Sparse, so no interval: {names}.")
    return out


def _sides(mean: pd.DataFrame) -> str:
    """`mean`'s rows (one per method) said as above / below Sparse, or including 0."""
    parts = []
    for row in mean.itertuples(index=False):
        interval = f"{row.mean:+.3f} (95% CI {row.ci_low:+.3f} to {row.ci_high:+.3f}, {row.pairs} pairs)"
        verdict = (
            ("above Sparse" if row.mean > 0 else "below Sparse")
            if row.excludes_zero
            else "interval includes 0"
        )
        parts.append(f"{method_label(str(row.method))} {interval}: {verdict}")
    return "; ".join(parts) + "." if parts else "no method has a mean over lengths."


def _direction(rows: pd.DataFrame) -> str:
    signs = {bool(m > 0) for m in rows["mean"]}
    return "above Sparse" if signs == {True} else "below Sparse" if signs == {False} else "above and below"


def by_first_kind(episodes: pd.DataFrame) -> pd.DataFrame:
    """Proportion completed by method and kind of the task's first subtask, mean over seeds with 95% CI.

    Each run's figure is its mean over the episodes whose first subtask is of that kind (all lengths
    together: every run meets the same tasks, so methods stay comparable). Rows evaluated before the
    kind was recorded (NULL) are left out; `missing_first_kind` counts them. The expert, which
    completes every task of every kind, is left out too.
    """
    keys = ["method", *cell_keys(episodes), "first_kind"]
    trained = episodes[episodes["method"] != EXPERT] if "method" in episodes else episodes
    known = trained.dropna(subset=["first_kind"]) if "first_kind" in trained else trained.iloc[0:0]
    if known.empty:
        return over_seeds(pd.DataFrame(columns=[*keys, "proportion"]), keys, "proportion")
    runs = known.groupby(["run_id", *keys], as_index=False)["proportion"].mean()
    return _sorted_by(over_seeds(runs, keys, "proportion"), keys[:-1], "first_kind", FIRST_KINDS)


def missing_first_kind(episodes: pd.DataFrame) -> int:
    """How many evaluated episodes of trained runs have no first-subtask kind (evaluated before v2)."""
    if episodes.empty or "first_kind" not in episodes:
        return 0
    trained = episodes[episodes["method"] != EXPERT]
    return int(trained["first_kind"].isna().sum())


def eval_curves(reader: StoreReader, runs: pd.DataFrame, phrasing: str | None = None) -> pd.DataFrame:
    """Evaluations at checkpoints during training of `runs` (of one phrasing, if given), with methods.

    A run's last point is its final evaluation, which meets more tasks per length than the checkpoints
    (the first of them): drawn as stored, a curve would jump at its end by the difference between the two
    task sets (0.11 on the fair comparison's Sparse runs, whose first 5 tasks per length are harder than
    the other 45). So the last point is recomputed from the final evaluation's episodes on the
    checkpoints' tasks, and the whole curve is one task set."""
    if runs.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    where, params = run_filter(list(runs["run_id"]), "")
    chosen = "" if phrasing is None else "WHERE phrasing = ?"
    table = reader.query(
        f"""
        WITH stored AS (
            SELECT run_id, step, condition, {PHRASING_SQL} AS phrasing, length, episodes, proportion, success
            FROM eval_curves {where}),
        last AS (SELECT run_id, max(step) AS step FROM stored GROUP BY run_id),
        tasks AS (  -- tasks per length at the checkpoints, where the final evaluation met more
            SELECT s.run_id, l.step, min(s.episodes) AS n FROM stored s JOIN last l USING (run_id)
            WHERE s.step < l.step GROUP BY s.run_id, l.step
            HAVING min(s.episodes) < (SELECT max(episodes) FROM stored f
                                      WHERE f.run_id = s.run_id AND f.step = l.step)),
        final AS (
            SELECT r.run_id, t.step, r.condition, {PHRASING_SQL} AS phrasing, r.length, count(*)::INTEGER
                AS episodes, avg(r.completed / r.n_subtasks) AS proportion, avg(r.success::DOUBLE) AS success
            FROM eval_results r JOIN tasks t USING (run_id) WHERE r.episode < t.n
            GROUP BY r.run_id, t.step, r.condition, {PHRASING_SQL}, r.length)
        SELECT * FROM (
            SELECT s.* FROM stored s ANTI JOIN final f USING (run_id, step)
            UNION ALL SELECT * FROM final)
        {chosen} ORDER BY run_id, step, condition, phrasing, length
        """,
        [*params, *([] if phrasing is None else [phrasing])],
    ).to_pandas()
    return table.merge(runs[["run_id", "method", "seed"]], on="run_id")[CURVE_COLUMNS]


def completion_curves(curves: pd.DataFrame, length: int | None = None) -> pd.DataFrame:
    """Completion against training steps: per method, condition[, phrasing] and step, the mean over
    seeds (with 95% CI) of each run's proportion completed, averaged over lengths (or at `length`)."""
    keys = ["method", *cell_keys(curves), "step"]
    rows = curves if length is None else curves[curves["length"] == length]
    if rows.empty:
        return over_seeds(pd.DataFrame(columns=[*keys, "proportion"]), keys, "proportion")
    runs = rows.groupby(["run_id", *keys], as_index=False)["proportion"].mean()
    return over_seeds(runs, keys, "proportion")


def _sorted_by(table: pd.DataFrame, keys: list[str], column: str, order: tuple[str, ...]) -> pd.DataFrame:
    """`table` sorted by `keys`, `column` last in `order` (values outside it after, alphabetically)."""
    rank = table[column].map(lambda v: order.index(v) if v in order else len(order))
    return table.assign(_rank=rank).sort_values([*keys, "_rank", column]).drop(columns="_rank")


__all__ = [
    "CURVE_COLUMNS",
    "FIRST_KINDS",
    "LENGTH_ORDER",
    "MEAN_OVER_LENGTHS",
    "by_first_kind",
    "completion_curves",
    "eval_curves",
    "missing_first_kind",
    "paired_differences",
    "paired_findings",
    "paired_gap",
]
