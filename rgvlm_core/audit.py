"""Audit figures: how label runs agree with the reference labeller, with completion, and with each other.

Every figure is computed here from the store at call time, with people's overrides applied (the
latest override of a step wins), so what the Audit and Episodes pages show is what the store holds.
"Completed a subtask" is the ground truth of a step: its sparse reward is positive.

Datasets (simulator, ALFRED) are never mixed silently: every figure takes `dataset` and then counts
only that dataset's episodes; `run_datasets` says which dataset each run labelled, so a page can say
where a figure is impossible (a run, or the reference, that never labelled the dataset).
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from typing import Any

import pyarrow as pa

from rgvlm_core.catalog import EpisodeFilter, episode_where
from rgvlm_core.workspace import StoreReader

HIGH_SCORE = 7  # default threshold of "scored high"
GROUPS = ("task_type", "n_subtasks")

# Effective labels of every run: the run's own score unless a person overrode it; with the two
# parameters of `_scope` first, only the labels of one dataset's episodes (all when it is NULL).
_EFFECTIVE = """
    effective AS (
        SELECT l.run_id, l.episode_id, l.t, coalesce(o.score, l.score) AS score,
               CASE WHEN o.score IS NOT NULL THEN 'overridden' ELSE l.status END AS status
        FROM labels l LEFT JOIN (
            SELECT run_id, episode_id, t, arg_max(score, created_at) AS score
            FROM overrides GROUP BY run_id, episode_id, t
        ) o USING (run_id, episode_id, t)
        WHERE ?::VARCHAR IS NULL OR l.episode_id IN (SELECT episode_id FROM episodes WHERE dataset = ?)
    ),
    scored AS (SELECT * FROM effective WHERE score IS NOT NULL)
"""


def _scope(dataset: str | None) -> list[Any]:
    """The parameters of `_EFFECTIVE`'s dataset clause (they come first in every query using it)."""
    return [dataset, dataset]


def reference_run(reader: StoreReader, dataset: str | None = None) -> str | None:
    """The newest reference run without noise (the yardstick of audits), or None.

    With `dataset`, only a run that labelled some step of that dataset counts: a reference that never
    saw ALFRED cannot measure agreement on ALFRED.
    """
    rows = reader.rows(
        "SELECT run_id, settings FROM label_runs WHERE labeller = 'reference' ORDER BY created_at DESC"
    )
    for row in rows:
        noise = json.loads(row["settings"]).get("labeller", {}).get("noise", {})
        if noise.get("flip") or noise.get("jitter"):
            continue
        if dataset is None or _labelled(reader, str(row["run_id"]), dataset):
            return str(row["run_id"])
    return None


def _labelled(reader: StoreReader, run_id: str, dataset: str) -> bool:
    """Whether the run labelled at least one step of the dataset (stops at the first one)."""
    return bool(
        reader.rows(
            "SELECT 1 FROM labels l JOIN episodes e USING (episode_id) WHERE l.run_id = ? AND e.dataset = ? "
            "LIMIT 1",
            [run_id, dataset],
        )
    )


def run_ids(reader: StoreReader) -> list[str]:
    """Every label run, oldest first (the order that gives each run its colour)."""
    return [
        str(r["run_id"]) for r in reader.rows("SELECT run_id FROM label_runs ORDER BY created_at, run_id")
    ]


def run_datasets(reader: StoreReader) -> dict[str, dict[str, int]]:
    """Steps each run labelled per dataset ({run: {dataset: steps}}); runs with no label are absent."""
    coverage: dict[str, dict[str, int]] = {}
    for row in reader.rows(
        "SELECT l.run_id, e.dataset, count(*) AS n FROM labels l JOIN episodes e USING (episode_id) "
        "GROUP BY ALL ORDER BY l.run_id, e.dataset"
    ):
        coverage.setdefault(str(row["run_id"]), {})[str(row["dataset"])] = int(row["n"])
    return coverage


def episode_table(
    reader: StoreReader, flt: EpisodeFilter, run_id: str | None, reference_id: str | None
) -> pa.Table:
    """Episodes matching the filter with the run's mean score, failed steps and disagreement."""
    where, params = episode_where(replace(flt, limit=None))
    sql = f"""
        WITH {_EFFECTIVE},
        run AS (SELECT episode_id, avg(score) AS mean_score,
                       count(*) FILTER (WHERE status = 'failed') AS failed_steps
                FROM effective WHERE run_id = ? GROUP BY episode_id),
        dis AS (SELECT a.episode_id, avg(abs(a.score - r.score)) AS disagreement
                FROM scored a JOIN scored r USING (episode_id, t)
                WHERE a.run_id = ? AND r.run_id = ? GROUP BY a.episode_id)
        SELECT e.episode_id, e.dataset, e.split, e.task_type, e.n_subtasks, e.n_steps, e.goal,
               run.mean_score, coalesce(run.failed_steps, 0) AS failed_steps, dis.disagreement
        FROM (SELECT * FROM episodes {where}) e
        LEFT JOIN run USING (episode_id) LEFT JOIN dis USING (episode_id)
        ORDER BY e.episode_id
    """
    table = reader.query(sql, [*_scope(None), run_id or "", run_id or "", reference_id or "", *params])
    return table.slice(0, flt.limit) if flt.limit else table


def step_frame_path(row: dict[str, Any]) -> str | None:
    """The absolute path of a step's frame, from a row holding `source_dir` and `frame`."""
    frame, source = row.get("frame"), row.get("source_dir")
    return os.path.join(source, frame) if frame and source else None


def score_distribution(reader: StoreReader, run_ids: list[str], *, dataset: str | None = None) -> pa.Table:
    """How often each score occurs per run (effective scores, failed steps excluded)."""
    return reader.query(
        f"WITH {_EFFECTIVE} SELECT run_id, score, count(*) AS n FROM scored "
        "WHERE run_id IN (SELECT unnest(?)) GROUP BY run_id, score ORDER BY run_id, score",
        [*_scope(dataset), run_ids],
    )


def _pairs_sql(extra_cols: str = "", join: str = "", group: str = "") -> str:
    return f"""
        WITH {_EFFECTIVE},
        pairs AS (SELECT a.episode_id, a.t, a.score::DOUBLE AS a, r.score::DOUBLE AS r {extra_cols}
                  FROM scored a JOIN scored r USING (episode_id, t) {join}
                  WHERE a.run_id = ? AND r.run_id = ?),
        ranked AS (SELECT *,  -- average ranks for ties, as Spearman's coefficient requires
                          rank() OVER (ORDER BY a) + (count(*) OVER (PARTITION BY a) - 1) / 2.0 AS ra,
                          rank() OVER (ORDER BY r) + (count(*) OVER (PARTITION BY r) - 1) / 2.0 AS rr
                   FROM pairs)
        SELECT {group + "," if group else ""} count(*) AS n, corr(a, r) AS pearson, corr(ra, rr) AS spearman,
               avg(abs(a - r)) AS mae, avg((a = r)::INT) AS exact, avg(a) AS mean_a, avg(r) AS mean_b
        FROM ranked {("GROUP BY " + group + " ORDER BY " + group) if group else ""}
    """


def agreement(
    reader: StoreReader, run_id: str, reference_id: str, *, dataset: str | None = None
) -> dict[str, Any]:
    """Agreement over the steps both runs scored: n, Pearson, Spearman, MAE, share of exact matches."""
    row = reader.rows(_pairs_sql(), [*_scope(dataset), run_id, reference_id])[0]
    return {k: row[k] for k in ("n", "pearson", "spearman", "mae", "exact")}


def agreement_by(
    reader: StoreReader, run_id: str, reference_id: str, by: str, *, dataset: str | None = None
) -> pa.Table:
    """Agreement per task type or per number of subtasks: group, n, pearson, mae."""
    if by not in GROUPS:
        raise ValueError(f"group by one of {GROUPS}, got {by!r}")
    sql = _pairs_sql(f", e.{by} AS grp", "JOIN episodes e USING (episode_id)", "grp")
    table = reader.query(sql, [*_scope(dataset), run_id, reference_id])
    return table.select(["grp", "n", "pearson", "mae"]).rename_columns(["group", "n", "pearson", "mae"])


def compare_runs(
    reader: StoreReader, run_a: str, run_b: str, *, dataset: str | None = None
) -> dict[str, Any]:
    """Two runs over the steps both scored: n, Pearson, MAE, exact share, and each run's mean score."""
    row = reader.rows(_pairs_sql(), [*_scope(dataset), run_a, run_b])[0]
    return {k: row[k] for k in ("n", "pearson", "mae", "exact", "mean_a", "mean_b")}


def step_pairs(reader: StoreReader, run_a: str, run_b: str, *, dataset: str | None = None) -> pa.Table:
    """The effective scores (columns a, b; int8) of every step both runs scored, one row per step."""
    return reader.query(
        f"""
        WITH {_EFFECTIVE}
        SELECT a.score::TINYINT AS a, b.score::TINYINT AS b
        FROM scored a JOIN scored b USING (episode_id, t)
        WHERE a.run_id = ? AND b.run_id = ? ORDER BY a.episode_id, a.t
        """,
        [*_scope(dataset), run_a, run_b],
    )


def confusion(
    reader: StoreReader,
    run_id: str,
    threshold: int = HIGH_SCORE,
    by: str | None = None,
    *,
    dataset: str | None = None,
) -> pa.Table:
    """Counts of "scored high" (score >= threshold) against "completed a subtask" (sparse reward > 0)."""
    if by is not None and by not in GROUPS:
        raise ValueError(f"group by one of {GROUPS}, got {by!r}")
    group = f"e.{by} AS grp, " if by else ""
    order = "grp, " if by else ""
    return reader.query(
        f"""
        WITH {_EFFECTIVE}
        SELECT {group} (s.score >= ?) AS high, (st.sparse_reward > 0) AS completed, count(*) AS n
        FROM scored s JOIN episodes e USING (episode_id)
        JOIN steps st ON st.trajectory_id = e.trajectory_id AND st.t = s.t
        WHERE s.run_id = ?
        GROUP BY ALL ORDER BY {order} high DESC, completed DESC
        """,
        [*_scope(dataset), threshold, run_id],
    )


# Per step of the episodes both runs scored: the absolute difference of the two effective scores.
_DIFFS = """
    diffs AS (SELECT a.episode_id, a.t, a.score AS s, r.score AS rs, abs(a.score - r.score) AS d
              FROM scored a JOIN scored r USING (episode_id, t) WHERE a.run_id = ? AND r.run_id = ?)
"""


def disagreement_ranking(
    reader: StoreReader, run_id: str, reference_id: str, limit: int = 50, *, dataset: str | None = None
) -> pa.Table:
    """Episodes where the run and the reference disagree most (mean absolute score difference).

    Each row names the episode (goal, task type, number of subtasks, dataset) and its worst step: the
    step of the largest |score - reference score|, the earliest one on ties, where a person looks first;
    with the run's and the reference's scores there.
    """
    return reader.query(
        f"""
        WITH {_EFFECTIVE}, {_DIFFS}
        SELECT d.episode_id, avg(d.d) AS mae, max(d.d) AS max_abs_diff,
               arg_max(d.t, (d.d, -d.t)) AS worst_step, arg_max(d.s, (d.d, -d.t)) AS worst_score,
               arg_max(d.rs, (d.d, -d.t)) AS worst_reference,
               e.goal, e.task_type, e.n_subtasks, e.n_steps, e.dataset
        FROM diffs d JOIN episodes e USING (episode_id)
        GROUP BY d.episode_id, e.goal, e.task_type, e.n_subtasks, e.n_steps, e.dataset
        ORDER BY mae DESC, d.episode_id LIMIT {int(limit)}
        """,
        [*_scope(dataset), run_id, reference_id],
    )


def worst_step(reader: StoreReader, episode_id: str, run_id: str, reference_id: str) -> int | None:
    """The step of an episode where the run and the reference differ most (earliest on ties).

    None when the two runs share no scored step of it or agree on every one.
    """
    value = reader.scalar(
        f"""
        WITH {_EFFECTIVE}, {_DIFFS}
        SELECT arg_max(t, (d, -t)) FROM diffs WHERE episode_id = ? AND d > 0
        """,
        [*_scope(None), run_id, reference_id, episode_id],
    )
    return None if value is None else int(value)


def failures(reader: StoreReader, run_id: str, limit: int = 200, *, dataset: str | None = None) -> pa.Table:
    """Segments a run could not label, with the reasons."""
    return reader.query(
        "SELECT episode_id, segment_id, first_step, last_step, error FROM analyses "
        "WHERE run_id = ? AND status = 'failed' AND (?::VARCHAR IS NULL OR episode_id IN "
        "(SELECT episode_id FROM episodes WHERE dataset = ?)) "
        f"ORDER BY episode_id, first_step LIMIT {int(limit)}",
        [run_id, dataset, dataset],
    )
