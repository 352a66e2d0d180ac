"""Comparing reward methods: the paper's metric aggregated over seeds, from the store.

The unit of comparison is a *method* (how the rewards were made: `sparse`, `rgvlm:RUN`,
`sparse+rgvlm:RUN` with its lambda, behaviour cloning) trained with several seeds. For each trained
run and task length the evaluation gives a proportion of subtasks completed (mean over its episodes);
a method's figure is the mean of its runs' proportions with a 95% confidence interval over seeds
(Student t, n - 1 degrees of freedom; no interval from a single seed). Seeds, not episodes, are the
independent samples: every run meets the same evaluation tasks.

Used by the CLI's HTML report and the dashboard's Compare page, so both show the same numbers.
No torch here (the dashboard imports this module).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rgvlm_core.workspace import StoreReader

BC = "bc"  # behaviour cloning: IQL's actor with beta = 0 (every dataset action weighted 1)
EXPERT = "expert"  # the simulator's planner, evaluated on the same tasks as the runs
REFERENCE_LINES = (EXPERT, BC)  # drawn as lines over the methods' bars, as the paper's baselines
CONDITIONS = ("default", "randomized")
LENGTHS = (1, 2, 3, 4, 5, 6)


def method_of(reward_source: str, lam: float, config: dict[str, Any]) -> str:
    """The method a training run belongs to, from what it stored (never from its name)."""
    if float(config.get("beta", 1.0)) == 0.0:
        return BC
    if reward_source.startswith("sparse+") and not math.isclose(lam, 1.0):
        return f"{reward_source} (lambda={lam:g})"
    return reward_source


def method_label(method: str) -> str:
    """A readable name for legends: `sparse+rgvlm:RUN` -> `Sparse+RG-VLM (RUN)`."""
    names = {"sparse": "Sparse", BC: "Behaviour cloning", EXPERT: "Expert", "reference": "RG-VLM (reference)"}
    if method in names:
        return names[method]
    head, _, rest = method.partition(":")
    kinds = {"rgvlm": "RG-VLM", "sparse+rgvlm": "Sparse+RG-VLM", "clip": "CLIP", "sparse+clip": "Sparse+CLIP"}
    return f"{kinds.get(head, head)} ({rest})" if rest else kinds.get(head, head)


def runs_table(reader: StoreReader, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per training run: run_id, method, reward_source, lam, seed, steps, experiment, times."""
    where, params = _run_filter(run_ids, "r.")
    rows = reader.rows(
        "SELECT r.run_id, r.reward_source, r.lam, r.seed, r.steps, r.config, r.started_at, r.finished_at, "
        "x.experiment_id AS experiment FROM train_runs r "
        "LEFT JOIN (SELECT run_id, any_value(experiment_id) AS experiment_id FROM experiment_runs "
        "GROUP BY 1) x "
        f"USING (run_id) {where} ORDER BY r.started_at",
        params,
    )
    for row in rows:
        row["method"] = method_of(row["reward_source"], row["lam"], json.loads(row.pop("config")))
    columns = ["run_id", "method", "reward_source", "lam", "seed", "steps", "experiment", "started_at"]
    return pd.DataFrame(rows, columns=[*columns, "finished_at"])


def eval_rows(reader: StoreReader, runs: pd.DataFrame) -> pd.DataFrame:
    """Every evaluated episode of `runs` with its method and proportion of subtasks completed."""
    if runs.empty:
        return pd.DataFrame(columns=["run_id", "method", "train_seed", "condition", "length", "proportion"])
    where, params = _run_filter(list(runs["run_id"]), "")
    table = reader.query(
        "SELECT run_id, condition, seed AS episode_seed, length, episode, task_type, n_subtasks, completed, "
        f"success, steps FROM eval_results {where} ORDER BY run_id, condition, length, episode",
        params,
    ).to_pandas()
    table["proportion"] = table["completed"] / table["n_subtasks"]
    meta = runs[["run_id", "method", "seed"]].rename(columns={"seed": "train_seed"})
    return table.merge(meta, on="run_id", how="inner")


def per_seed(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, run, condition, length): that run's mean proportion and success rate."""
    keys = ["method", "run_id", "train_seed", "condition", "length"]
    if episodes.empty:
        return pd.DataFrame(columns=[*keys, "proportion", "success", "episodes"])
    grouped = episodes.groupby(keys, as_index=False).agg(
        proportion=("proportion", "mean"), success=("success", "mean"), episodes=("episode", "count")
    )
    return grouped


def by_length(seeds: pd.DataFrame, value: str = "proportion") -> pd.DataFrame:
    """The paper's figure as a table: method, condition, length, mean, ci_low, ci_high, seeds."""
    return _over_seeds(seeds, ["method", "condition", "length"], value)


def success_overall(episodes: pd.DataFrame) -> pd.DataFrame:
    """Full-task success rate per method and condition (all lengths), with its 95% CI over seeds."""
    if episodes.empty:
        return _over_seeds(
            pd.DataFrame(columns=["method", "condition", "success"]), ["method", "condition"], "success"
        )
    runs = episodes.groupby(["method", "run_id", "condition"], as_index=False).agg(
        success=("success", "mean")
    )
    return _over_seeds(runs, ["method", "condition"], "success")


def _over_seeds(rows: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    out = []
    for key, group in rows.groupby(keys, sort=True) if not rows.empty else []:
        values = group[value].to_numpy(dtype=np.float64)
        mean = float(values.mean())
        half = ci95_half_width(values)
        low, high = (
            (math.nan, math.nan) if math.isnan(half) else (max(0.0, mean - half), min(1.0, mean + half))
        )
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "mean": mean,
                "ci_low": low,
                "ci_high": high,
                "seeds": len(values),
            }
        )
    return pd.DataFrame(out, columns=[*keys, "mean", "ci_low", "ci_high", "seeds"])


def ci95_half_width(values: np.ndarray) -> float:
    """Half-width of the two-sided 95% Student-t interval of the mean; NaN for fewer than 2 values."""
    from scipy.special import stdtrit

    n = len(values)
    if n < 2:
        return math.nan
    return float(stdtrit(n - 1, 0.975) * values.std(ddof=1) / math.sqrt(n))


def expert_rows(episodes: pd.DataFrame) -> pd.DataFrame:
    """The expert replayed on exactly the evaluated episodes (same reset seeds, lengths, conditions)."""
    from rgvlm_core.sim.env import HouseholdEnv
    from rgvlm_core.sim.evaluate import expert_policy, run_episode

    if episodes.empty:
        return pd.DataFrame(columns=["method", "run_id", "train_seed", "condition", "length", "proportion"])
    tasks = episodes[["condition", "length", "episode", "episode_seed"]].drop_duplicates()
    env = HouseholdEnv(phrasing="unseen")
    policy = expert_policy(env)
    out = []
    for task in tasks.itertuples(index=False):
        result = run_episode(
            env, policy, int(task.length), int(task.episode), task.condition, int(task.episode_seed)
        )
        out.append(
            {
                "method": EXPERT,
                "run_id": EXPERT,
                "train_seed": 0,
                "condition": task.condition,
                "length": result.length,
                "episode": result.episode,
                "proportion": result.proportion,
                "success": result.success,
            }
        )
    return pd.DataFrame(out)


def learning_curves(reader: StoreReader, runs: pd.DataFrame, metric: str = "losses/q") -> pd.DataFrame:
    """Training metric `metric` over steps for every run in `runs` (run_id, method, seed, step, value)."""
    if runs.empty:
        return pd.DataFrame(columns=["run_id", "method", "seed", "step", "value"])
    where, params = _run_filter(list(runs["run_id"]), "")
    table = reader.query(
        f"SELECT run_id, step, value FROM train_metrics {where} AND name = ? ORDER BY run_id, step",
        [*params, metric],
    ).to_pandas()
    return table.merge(runs[["run_id", "method", "seed"]], on="run_id")


def planned_methods(settings: dict[str, Any]) -> dict[str, str]:
    """An experiment's methods as given (`reference`, `bc`) -> the method its runs will belong to."""
    beta, lam = settings.get("iql", {}).get("beta", 1.0), float(settings.get("lam", 1.0))
    return {
        given: method_of(source, lam, {"beta": 0.0 if given == BC else beta})
        for given, source in settings.get("sources", {}).items()
    }


def methods_in_order(reader: StoreReader) -> list[str]:
    """Every method of the workspace (planned in an experiment or trained), in the order it first appeared.

    New methods only ever append, so a colour assigned by position never moves to another method.
    """
    seen: dict[str, Any] = {}
    for row in reader.rows("SELECT config, created_at AS at FROM experiments"):
        for name in planned_methods(json.loads(row["config"])).values():
            seen[name] = min(seen.get(name, row["at"]), row["at"])
    for row in reader.rows("SELECT reward_source, lam, config, started_at AS at FROM train_runs"):
        name = method_of(row["reward_source"], row["lam"], json.loads(row["config"]))
        seen[name] = min(seen.get(name, row["at"]), row["at"])
    return sorted(seen, key=lambda m: (seen[m], m))


def metric_names(reader: StoreReader) -> list[str]:
    """Names of the stored training metrics, for a chooser."""
    return [r["name"] for r in reader.rows("SELECT DISTINCT name FROM train_metrics ORDER BY name")]


def comparison_csv(seeds: pd.DataFrame, summary: pd.DataFrame) -> str:
    """All rows as one CSV: per-seed values (kind=seed) and the aggregates (kind=mean), long format."""
    a = seeds.assign(kind="seed")[
        ["kind", "method", "condition", "length", "run_id", "train_seed", "proportion", "success", "episodes"]
    ]
    b = summary.assign(kind="mean").rename(columns={"mean": "proportion"})
    return pd.concat([b, a], ignore_index=True).to_csv(index=False)


def _run_filter(run_ids: Sequence[str] | None, prefix: str) -> tuple[str, list[Any]]:
    if run_ids is None:
        return "WHERE TRUE", []
    return f"WHERE {prefix}run_id IN (SELECT unnest(?::VARCHAR[]))", [list(run_ids)]


__all__ = [
    "BC",
    "CONDITIONS",
    "EXPERT",
    "LENGTHS",
    "REFERENCE_LINES",
    "by_length",
    "ci95_half_width",
    "comparison_csv",
    "eval_rows",
    "expert_rows",
    "learning_curves",
    "method_label",
    "method_of",
    "methods_in_order",
    "metric_names",
    "per_seed",
    "planned_methods",
    "runs_table",
    "success_overall",
]
