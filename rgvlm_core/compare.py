"""Comparing reward methods: the paper's metric aggregated over seeds, from the store.

The unit of comparison is a *method* (how the rewards were made: `sparse`, `rgvlm:RUN@cost`,
`sparse+rgvlm:RUN@shaped` with its lambda, behaviour cloning) trained with several seeds. For each
trained run and task length the evaluation gives a proportion of subtasks completed (mean over its
episodes); a method's figure is the mean of its runs' proportions with a 95% confidence interval over
seeds (Student t, n - 1 degrees of freedom; no interval from a single seed). Seeds, not episodes, are
the independent samples: every run meets the same evaluation tasks.

A fair comparison with Sparse pairs seeds: method seed k and Sparse seed k share their training seed
(same initial networks and batches where the data allow), so their *difference* varies less than two
independent means do; `compare_fair.paired_differences` gives it with a paired 95% t interval.
Evaluations come in two phrasings (instructions seen in training, or held out), compared one at a time.

Used by the CLI's HTML report and the dashboard's Compare page, so both show the same numbers.
No torch here (the dashboard imports this module).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from rgvlm_core.alfred.splits import EVAL_SPLITS
from rgvlm_core.labeling.rewards import MAPPINGS
from rgvlm_core.workspace import StoreReader

SPARSE = "sparse"  # the baseline every paired difference is taken from
BC = "bc"  # behaviour cloning: IQL's actor with beta = 0 (every dataset action weighted 1)
EXPERT = "expert"  # the simulator's planner, evaluated on the same tasks as the runs
REFERENCE_LINES = (EXPERT, BC)  # drawn as lines over the methods' bars, as the paper's baselines
CONDITIONS = ("default", "randomized")
# evaluations on ALFRED's own tasks (runs on replayed ALFRED data) name the split as their condition
ALFRED_CONDITIONS = EVAL_SPLITS
SHOWN_CONDITIONS = CONDITIONS + ALFRED_CONDITIONS  # the order of panels and tables
PHRASINGS = ("unseen", "seen")  # held-out instructions first: the default of every comparison
LENGTHS = (1, 2, 3, 4, 5, 6)
# A row that does not say its phrasing was evaluated with the default, held-out one (sim.evaluate).
PHRASING_SQL = f"coalesce(phrasing, '{PHRASINGS[0]}')"
# Runs stored before reward sources named their mapping were all trained on score/10.
LEGACY_MAPPING = "raw"
_VLM_HEADS = {
    "rgvlm": "RG-VLM", "sparse+rgvlm": "Sparse+RG-VLM", "clip": "CLIP", "sparse+clip": "Sparse+CLIP"
}  # fmt: skip
_REFERENCE = {"reference": "RG-VLM", "sparse+reference": "Sparse+RG-VLM"}  # sources naming no run
_NAMES = {SPARSE: "Sparse", BC: "Behaviour cloning", EXPERT: "Expert"}
_LAMBDA = re.compile(r"(?P<source>.*) \(lambda=(?P<lam>[^)]*)\)")


def method_of(reward_source: str, lam: float, config: dict[str, Any]) -> str:
    """The method a training run belongs to, from what it stored (never from its name).

    A VLM or CLIP source always names its reward mapping (`rgvlm:RUN@cost`); one stored without
    it was trained with `raw` and is `...@raw`, so old and new raw runs are one method.
    """
    if float(config.get("beta", 1.0)) == 0.0:
        return BC
    source = _with_mapping(reward_source)
    if source.startswith("sparse+") and not math.isclose(lam, 1.0):
        return f"{source} (lambda={lam:g})"
    return source


def _with_mapping(source: str) -> str:
    """`rgvlm:RUN` -> `rgvlm:RUN@raw`; sources that name a mapping, and Sparse, as they are."""
    if source_mapping(source) is not None:
        return source
    head, sep, run = source.partition(":")
    if source in _REFERENCE or (sep and run and head in _VLM_HEADS):
        return f"{source}@{LEGACY_MAPPING}"
    return source


def source_mapping(source: str) -> str | None:
    """The reward mapping a source names after `@` (one of labeling.rewards.MAPPINGS), else None."""
    _, at, mapping = source.rpartition("@")
    return mapping if at and mapping in MAPPINGS else None


def method_label(method: str) -> str:
    """A readable name for legends: `sparse+rgvlm:RUN@cost` -> `Sparse+RG-VLM (RUN, cost)`.

    Also names reward sources as given (`reference`, `rgvlm:RUN`); a lambda other than 1 follows
    the mapping: `Sparse+RG-VLM (RUN, raw, lambda=0.5)`.
    """
    if method in _NAMES:
        return _NAMES[method]
    match = _LAMBDA.fullmatch(method)
    source, lam = (match["source"], match["lam"]) if match else (method, None)
    mapping = source_mapping(source)
    if mapping is not None:
        source = source[: -len(mapping) - 1]
    if source in _REFERENCE:
        kind, run = _REFERENCE[source], "reference"
    else:
        head, _, run = source.partition(":")
        kind = _VLM_HEADS.get(head, head)
    parts = [p for p in (run, mapping, lam and f"lambda={lam}") if p]
    return f"{kind} ({', '.join(parts)})" if parts else kind


def runs_table(reader: StoreReader, run_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per training run: run_id, method, reward_source, lam, seed, steps, experiment, times."""
    where, params = run_filter(run_ids, "r.")
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


def phrasings(reader: StoreReader, run_ids: Sequence[str]) -> list[str]:
    """The phrasings these runs were evaluated with, held-out (`unseen`) first."""
    where, params = run_filter(list(run_ids), "")
    rows = reader.rows(f"SELECT DISTINCT {PHRASING_SQL} AS phrasing FROM eval_results {where}", params)
    found = {r["phrasing"] for r in rows}
    return [p for p in PHRASINGS if p in found] + sorted(found - set(PHRASINGS))


def default_phrasing(available: Sequence[str]) -> str:
    """Held-out phrasings when evaluated (the paper's measure), else the only one there is."""
    return PHRASINGS[0] if PHRASINGS[0] in available or not available else available[0]


EVAL_COLUMNS = ["run_id", "method", "train_seed", "condition", "phrasing", "length", "first_kind",
                "proportion"]  # fmt: skip


def eval_rows(reader: StoreReader, runs: pd.DataFrame, phrasing: str | None = None) -> pd.DataFrame:
    """Every evaluated episode of `runs` (of one phrasing, if given) with its method and proportion."""
    if runs.empty:
        return pd.DataFrame(columns=EVAL_COLUMNS)
    where, params = run_filter(list(runs["run_id"]), "")
    if phrasing is not None:
        where, params = f"{where} AND {PHRASING_SQL} = ?", [*params, phrasing]
    table = reader.query(
        f"SELECT run_id, condition, {PHRASING_SQL} AS phrasing, seed AS episode_seed, length, episode, "
        f"task_type, first_kind, n_subtasks, completed, success, steps FROM eval_results {where} "
        "ORDER BY run_id, condition, phrasing, length, episode",
        params,
    ).to_pandas()
    table["proportion"] = table["completed"] / table["n_subtasks"]
    meta = runs[["run_id", "method", "seed"]].rename(columns={"seed": "train_seed"})
    return table.merge(meta, on="run_id", how="inner")


def per_seed(episodes: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, run, condition[, phrasing], length): that run's mean proportion and success."""
    keys = ["method", "run_id", "train_seed", *cell_keys(episodes), "length"]
    if episodes.empty:
        return pd.DataFrame(columns=[*keys, "proportion", "success", "episodes"])
    grouped = episodes.groupby(keys, as_index=False).agg(
        proportion=("proportion", "mean"), success=("success", "mean"), episodes=("episode", "count")
    )
    return grouped


def cell_keys(frame: pd.DataFrame) -> list[str]:
    """What separates evaluations that must never be averaged together: condition, and phrasing if known."""
    return ["condition", "phrasing"] if "phrasing" in frame.columns else ["condition"]


def by_length(seeds: pd.DataFrame, value: str = "proportion") -> pd.DataFrame:
    """The paper's figure as a table: method, condition[, phrasing], length, mean, ci_low, ci_high, seeds."""
    return over_seeds(seeds, ["method", *cell_keys(seeds), "length"], value)


def success_overall(episodes: pd.DataFrame) -> pd.DataFrame:
    """Full-task success rate per method and condition (all lengths), with its 95% CI over seeds."""
    keys = ["method", *cell_keys(episodes)]
    if episodes.empty:
        return over_seeds(pd.DataFrame(columns=[*keys, "success"]), keys, "success")
    runs = episodes.groupby(["method", "run_id", *keys[1:]], as_index=False).agg(success=("success", "mean"))
    return over_seeds(runs, keys, "success")


def over_seeds(rows: pd.DataFrame, keys: list[str], value: str) -> pd.DataFrame:
    """Mean of `value` per `keys` over the rows (one per seed), with its 95% CI clipped to [0, 1]."""
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


def condition_title(condition: str) -> str:
    """How a panel or table names a condition: generated tasks' initial states, or ALFRED's split."""
    return f"ALFRED {condition} tasks" if condition in ALFRED_CONDITIONS else f"{condition} initial states"


def expert_rows(episodes: pd.DataFrame) -> pd.DataFrame:
    """The expert replayed on exactly the evaluated episodes (same reset seeds, lengths, conditions,
    phrasings: a task is drawn with its phrasing's instructions), with the tasks' first-subtask kinds.
    Generated tasks only: on ALFRED's tasks the expert is ALFRED's recorded trajectory, which `rgvlm sim
    evaluate --eval-tasks ... --policy expert` measures; it is not replayed here."""
    from rgvlm_core.sim.env import HouseholdEnv
    from rgvlm_core.sim.evaluate import expert_policy, run_episode

    episodes = episodes[~episodes["condition"].isin(ALFRED_CONDITIONS)] if not episodes.empty else episodes
    if episodes.empty:
        return pd.DataFrame(columns=["method", "run_id", "train_seed", "condition", "length", "proportion"])
    episodes = episodes.assign(
        phrasing=episodes.get("phrasing", PHRASINGS[0]), first_kind=episodes.get("first_kind")
    )
    keys = ["phrasing", "condition", "length", "episode", "episode_seed"]
    tasks = episodes.groupby(keys, as_index=False, dropna=False, sort=True)["first_kind"].first()
    out = []
    for phrasing, group in tasks.groupby("phrasing", sort=False):
        env = HouseholdEnv(phrasing=phrasing)
        policy = expert_policy(env)
        for task in group.itertuples(index=False):
            result = run_episode(
                env, policy, int(task.length), int(task.episode), task.condition, int(task.episode_seed)
            )
            out.append(
                {
                    "method": EXPERT,
                    "run_id": EXPERT,
                    "train_seed": 0,
                    "condition": task.condition,
                    "phrasing": phrasing,
                    "length": result.length,
                    "episode": result.episode,
                    "first_kind": task.first_kind,
                    "proportion": result.proportion,
                    "success": result.success,
                }
            )
    return pd.DataFrame(out)


def learning_curves(reader: StoreReader, runs: pd.DataFrame, metric: str = "losses/q") -> pd.DataFrame:
    """Training metric `metric` over steps for every run in `runs` (run_id, method, seed, step, value)."""
    if runs.empty:
        return pd.DataFrame(columns=["run_id", "method", "seed", "step", "value"])
    where, params = run_filter(list(runs["run_id"]), "")
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
    cells = cell_keys(seeds)
    a = seeds.assign(kind="seed")[
        ["kind", "method", *cells, "length", "run_id", "train_seed", "proportion", "success", "episodes"]
    ]
    b = summary.assign(kind="mean").rename(columns={"mean": "proportion"})
    return pd.concat([b, a], ignore_index=True).to_csv(index=False)


def run_filter(run_ids: Sequence[str] | None, prefix: str) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) keeping `run_ids` (None: every run)."""
    if run_ids is None:
        return "WHERE TRUE", []
    return f"WHERE {prefix}run_id IN (SELECT unnest(?::VARCHAR[]))", [list(run_ids)]


__all__ = [
    "ALFRED_CONDITIONS",
    "BC",
    "CONDITIONS",
    "EXPERT",
    "LEGACY_MAPPING",
    "LENGTHS",
    "PHRASINGS",
    "REFERENCE_LINES",
    "SHOWN_CONDITIONS",
    "SPARSE",
    "by_length",
    "cell_keys",
    "ci95_half_width",
    "comparison_csv",
    "condition_title",
    "default_phrasing",
    "eval_rows",
    "expert_rows",
    "learning_curves",
    "method_label",
    "method_of",
    "methods_in_order",
    "metric_names",
    "over_seeds",
    "per_seed",
    "phrasings",
    "planned_methods",
    "run_filter",
    "runs_table",
    "source_mapping",
    "success_overall",
]
