"""The fair comparison of issue 13, from data to the tables in docs: one script, fixed protocol.

Protocol (fixed before any result was seen; docs/paper-comparison.md says why each choice):
- Data: `rgvlm sim generate --episodes 1500 --seed 11 --randomized 0.5 --annotations 2` with two
  quality mixes, 40/40/20 and 10/60/30 (expert / suboptimal / failed).
- Labels: the reference labeller (ground truth, NOT an LVLM) with its progress answers, and its noisy
  variant (flip 0.2, jitter 1.0) as the stand-in for an imperfect LVLM.
- Methods: Sparse, behaviour cloning, and RG-VLM alone / Sparse+RG-VLM under each score mapping
  (raw, cost, centred; shaped only with the sparse reward), each label run.
- IQL: the paper.md defaults, unchanged (no hyper-parameter was chosen on any task); 10,000 updates;
  seeds 0-4 for every method (paired).
- Evaluation: `rgvlm experiment` defaults: 50 tasks per length, condition and phrasing, a budget of 6
  steps per subtask, seen and unseen phrasings, evaluation seed 0 (the test split); a completion curve
  every 2,000 updates on 5 tasks per length.

The low level (`--part low`, issue 14; fixed on 2026-12-02 before any of its results was seen): the same
question where subtasks are long. Data: `rgvlm sim generate --level low --floor-plans kitchens` (ALFRED's
30 kitchens, the only floor plans that pose all of 1-6 subtasks; ALFRED's low-level actions, about 12 expert
steps per subtask), 1,500 episodes, seed 11, the 40/40/20 mix, half randomised, 2 annotations. Labels as
above. Methods: Sparse, behaviour cloning, RG-VLM alone and Sparse+RG-VLM under `cost` (the default the
subgoal level chose) with reference and with noisy labels, and Sparse+RG-VLM under `raw` (the paper's
mapping); seeds 0-4; 10,000 updates. Evaluation on the same kitchens (new seeded tasks): 25 tasks per
length and condition, held-out phrasings only, the low level's budget of 70 steps per subtask
(rl.config.LOW_SUBTASK_BUDGET), no curve (each low-level episode is ~25x the subgoal level's steps).

Parts: `core` (the 40/40/20 mix; Sparse, BC and Sparse+RG-VLM with reference labels under raw, cost
and shaped: what fits in about an hour on a 2-core machine), `lowexpert` (the 10/60/30 mix; Sparse and
Sparse+RG-VLM with reference labels under cost and shaped) and `full` (everything above: about 7 hours
there). A part reruns nothing already stored: an experiment of the same name resumes; tasks run
round-robin over methods, so a part stopped early has every method at about the same number of seeds.

In parts: the full grid is longer than one session on a 2-core machine, and a session's workspace does not
last. Each mix's finished runs are exported to DOCS/runs-<mix>/ (`rgvlm export experiment`; committed) when
its experiment finishes or when `--save` is given (while the experiment runs in another process, or after
it was stopped), and merged into the fresh workspace (`rgvlm merge`, which refuses runs whose plan or
training data differ from this one's) before its experiment resumes, so no run is trained twice.
`--verify` first retrains Sparse seed 0 from scratch and reports how many of its evaluation episodes are
identical to the stored run's (the check that runs computed in different sessions belong in one table).

usage: python scripts/fair_comparison.py ROOT [--part core|lowexpert|full|low] [--mix MIX]
              [--docs docs/fair-comparison] [--verify] [--save | --tables-only]
Writes ROOT/ws-<mix> workspaces, then DOCS/results-<part>.md (tables), DOCS/results-<part>.csv,
DOCS/reward-check-<part>.json, DOCS/timing-<part>.json and a paired figure per mix (paired-<mix>.png;
the full grid's paired-full-<mix>.png; drawn with Chromium when Playwright is installed).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pandas as pd

MIXES = {
    "40-40-20": "expert=0.4,suboptimal=0.4,failed=0.2",
    "10-60-30": "expert=0.1,suboptimal=0.6,failed=0.3",
}
LOW = "low-"  # a mix key starting with it is generated at the low level, on the kitchens
LOW_METHODS = (
    "sparse",
    "bc",
    "rgvlm:reference@cost",
    "sparse+rgvlm:reference@cost",
    "rgvlm:noisy-0.2@cost",
    "sparse+rgvlm:noisy-0.2@cost",
    "sparse+rgvlm:reference@raw",
)
LABELS = {"reference": "reference", "noisy-0.2": "noisy-0.2"}
STEPS, SEEDS = 10_000, 5
CORE = ("sparse", "bc", "sparse+reference@raw", "sparse+reference@cost", "sparse+reference@shaped")


def full_methods() -> tuple[str, ...]:
    out = ["sparse", "bc"]
    for run in LABELS:
        out += [f"rgvlm:{run}@{m}" for m in ("raw", "cost", "centred")]
        out += [f"sparse+rgvlm:{run}@{m}" for m in ("raw", "cost", "centred", "shaped")]
    return tuple(out)


PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "core": {"40-40-20": CORE},
    # the second question, fixed before the core part's results: does it hold with 10% expert data?
    "lowexpert": {"10-60-30": ("sparse", "sparse+reference@cost", "sparse+reference@shaped")},
    "full": {mix: full_methods() for mix in MIXES},
    # issue 14: does dense reward help more when subtasks are long? (fixed before any low-level result)
    "low": {f"{LOW}40-40-20": LOW_METHODS},
}
MAPPINGS_CHECKED = ("sparse", "raw", "cost", "centred", "shaped")


def rgvlm(ws: Path | None, *args: str, capture: bool = False) -> str:
    command = ["rgvlm", *(["-w", str(ws)] if ws else []), *args]
    print("+", " ".join(command), flush=True)
    env = {**os.environ, "RGVLM_NO_SAMPLE": "1"}
    done = subprocess.run(command, env=env, check=True, text=True, capture_output=capture)
    return done.stdout if capture else ""


def prepare(root: Path, mix: str) -> Path:
    """Data, import and both label runs of a mix (each step skipped when already done)."""
    data, ws = root / f"data-{mix}", root / f"ws-{mix}"
    low = ["--level", "low", "--floor-plans", "kitchens"] if mix.startswith(LOW) else []
    if not data.exists():
        rgvlm(None, "sim", "generate", "--episodes", "1500", "--seed", "11", "--out", str(data), *low,
              "--no-frames", "--mix", MIXES[mix.removeprefix(LOW)], "--randomized", "0.5",
              "--annotations", "2")  # fmt: skip
    rgvlm(ws, "import", str(data))
    rgvlm(ws, "label", "--labeller", "reference", "--name", "reference")
    rgvlm(
        ws, "label", "--labeller", "reference", "--noise", "0.2", "--noise-seed", "0", "--name", "noisy-0.2"
    )
    return ws


def runs_dir(docs: Path, mix: str) -> Path:
    return docs / f"runs-{mix}"


def merge_saved(ws: Path, docs: Path, mix: str) -> None:
    """Add the runs an earlier session saved (refused, by rgvlm merge, if they are not comparable)."""
    if (runs_dir(docs, mix) / "experiment.json").is_file():
        rgvlm(ws, "merge", str(runs_dir(docs, mix)))


def save(ws: Path, docs: Path, mix: str) -> None:
    """Export the mix's finished runs for the next session (replacing the earlier export); a mix with
    none finished yet is said and skipped."""
    try:
        rgvlm(ws, "export", "experiment", f"fair-{mix}", str(runs_dir(docs, mix)), "--force")
    except subprocess.CalledProcessError:
        print(f"{mix}: nothing saved (see the line above)", flush=True)


def reward_checks(ws: Path) -> list[dict[str, Any]]:
    """`rgvlm reward-check --json` of the sparse reward and of Sparse+RG-VLM under every mapping."""
    out = []
    for mapping in MAPPINGS_CHECKED:
        source = ["--reward", "sparse"] if mapping == "sparse" else ["--reward", "sparse+reference"]
        extra = [] if mapping == "sparse" else ["--vlm-reward", mapping]
        out.append(json.loads(rgvlm(ws, "reward-check", *source, *extra, "--json", capture=True)))
    return out


def experiment(
    ws: Path, mix: str, methods: tuple[str, ...], name: str | None = None, seeds: int = SEEDS
) -> None:
    evaluation = ["--curve-every", "2000", "--curve-episodes", "5"]
    if mix.startswith(LOW):  # the low level's budget is the experiment's default there (70 per subtask)
        evaluation = ["--episodes-per-length", "25", "--phrasings", "unseen"]
    name = name or f"fair-{mix}"
    rgvlm(ws, "experiment", "--name", name, "--seeds", str(seeds), "--steps", str(STEPS),
          "--methods", ",".join(methods), *evaluation,
          "--log-every", "250", "--report", str(ws / f"{name}.html"))  # fmt: skip


def verify(ws: Path, mix: str) -> str:
    """Retrain Sparse seed 0 from scratch and compare its evaluation, episode by episode, with the run of
    the experiment (saved by an earlier session and merged, or trained in this one): runs computed in
    different sessions belong in one table only if the same cell computes the same numbers."""
    experiment(ws, mix, ("sparse",), name=f"verify-{mix}", seeds=1)
    return verification(ws, mix) or f"- verification ({mix}): the retrained run is not stored"


def verification(ws: Path, mix: str) -> str | None:
    """The line comparing the stored verification run with the experiment's Sparse seed 0 (None where this
    workspace holds no verification run)."""
    from rgvlm_core.workspace import Workspace

    reader = Workspace.open(ws, create=False).reader()
    try:
        rows = reader.rows(
            "SELECT x.experiment_id AS e, x.run_id, p.commit FROM experiment_runs x JOIN ("
            "  SELECT run_id, json_extract_string(provenance, '$.commit') AS commit FROM train_runs) p "
            "USING (run_id) WHERE x.method = 'sparse' AND x.seed = 0 AND x.experiment_id IN (?, ?)",
            [f"fair-{mix}", f"verify-{mix}"],
        )
        runs = {r["e"]: r for r in rows}
        if f"verify-{mix}" not in runs:
            return None
        if f"fair-{mix}" not in runs:
            return f"- verification ({mix}): Sparse seed 0 is not finished yet, nothing to compare"
        same = reader.rows(
            "SELECT count(*) AS n, count(*) FILTER (WHERE a.completed = b.completed AND a.steps = b.steps) "
            "AS same FROM eval_results a JOIN eval_results b "
            "USING (condition, phrasing, seed, length, episode) WHERE a.run_id = ? AND b.run_id = ?",
            [runs[f"fair-{mix}"]["run_id"], runs[f"verify-{mix}"]["run_id"]],
        )[0]
    finally:
        reader.close()
    made = runs[f"fair-{mix}"]["commit"] or "a commit not recorded"
    return (
        f"- verification ({mix}): Sparse seed 0 retrained from scratch at {runs[f'verify-{mix}']['commit']} "
        f"(the run in the tables: {made}): {same['same']} of {same['n']} evaluation episodes identical"
    )


def figure_name(part: str, mix: str) -> str:
    """The paired figure's file: the full grid's figures sit beside, not over, the earlier parts'."""
    return f"paired-full-{mix}.png" if part == "full" else f"paired-{mix}.png"


# -- tables ---------------------------------------------------------------------------------------
def _ci(mean: float, low: float, high: float) -> str:
    return f"{mean:.3f}" if pd.isna(low) else f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def tables(ws: Path, mix: str, methods: tuple[str, ...]) -> tuple[str, pd.DataFrame, Any]:
    """The markdown tables of one mix's experiment (both phrasings), its per-seed rows, and the held-out
    phrasings' comparison (report.Comparison, which the figure draws)."""
    from rgvlm_core import compare
    from rgvlm_core.report import build_comparison
    from rgvlm_core.rl.experiment import experiment_run_ids
    from rgvlm_core.workspace import Workspace

    reader = Workspace.open(ws, create=False).reader()
    try:
        run_ids = experiment_run_ids(reader, f"fair-{mix}")
        lines, frames = (
            [f"## Data mix {mix} (expert / suboptimal / failed, %)", "", _took(reader, run_ids), ""],
            [],
        )
        for phrasing in ("unseen",) if mix.startswith(LOW) else ("unseen", "seen"):
            c = build_comparison(reader, run_ids, phrasing=phrasing)
            if phrasing == "unseen":
                unseen = c
            frames.append(c.seeds.assign(mix=mix, phrasing=phrasing))
            present = set(c.summary["method"])  # the protocol's order (Sparse, BC, then by labels)
            order = [m for m in methods if m in present]
            order += [m for m in compare.methods_in_order(reader) if m in present and m not in order]
            lines += (
                _length_tables(c, order, phrasing)
                + _paired_table(c, phrasing, order=order)
                + _success_table(c, order)
            )
            if phrasing == "unseen" and not mix.startswith(LOW):  # (the object table replays subgoal tasks)
                lines += (
                    _ablation_table(c, order)
                    + _kind_table(c, order)
                    + _object_table(c, order)
                    + _curve_table(c, order)
                )
            elif phrasing == "unseen":
                lines += _kind_table(c, order)
    finally:
        reader.close()
    return "\n".join(lines), pd.concat(frames, ignore_index=True), unseen


CONDITIONS = ("default", "randomized")


def _length_tables(
    c: Any, order: list[str], phrasing: str, conditions: tuple[str, ...] = CONDITIONS
) -> list[str]:
    from rgvlm_core.compare import condition_title, method_label

    out = []
    for condition in conditions:
        rows = c.summary[c.summary["condition"] == condition]
        seeds = c.seeds[c.seeds["condition"] == condition]
        out += [f"**{condition_title(condition)}, {phrasing} phrasings**: proportion of subtasks completed, "
                "mean over seeds [95% CI]", "",
                "| method | " + " | ".join(f"{n} subtask{'s' if n > 1 else ''}" for n in range(1, 7))
                + " | mean of the 6 lengths [95% CI] | seeds |",
                "| --- " * 9 + "|"]  # fmt: skip
        for method in order:
            cells = rows[rows["method"] == method].set_index("length")
            per = seeds[seeds["method"] == method].groupby("train_seed")["proportion"].mean().to_numpy()
            from rgvlm_core.compare import ci95_half_width

            half = ci95_half_width(per) if len(per) > 1 else float("nan")
            mean = float(per.mean()) if len(per) else float("nan")
            row = [_ci(r["mean"], r["ci_low"], r["ci_high"]) if (r := _get(cells, n)) is not None else "-"
                   for n in range(1, 7)]  # fmt: skip
            mean_cell = _ci(mean, mean - half, mean + half)
            out.append(f"| {method_label(method)} | " + " | ".join(row) + f" | {mean_cell} | {len(per)} |")
        out.append("")
    return out


def _get(cells: pd.DataFrame, n: object) -> Any:
    return cells.loc[n] if n in cells.index else None


def _by_method(table: pd.DataFrame, order: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """`table`'s rows per method, in the protocol's order (methods outside it after, as they come)."""
    groups = dict(list(table.groupby("method", sort=False)))
    return [
        (m, groups[m]) for m in [*[m for m in order if m in groups], *[m for m in groups if m not in order]]
    ]


def _paired_cell(r: Any) -> str:
    """A paired difference with its interval (a single pair has none), starred where it excludes 0."""
    interval = "" if pd.isna(r["ci_low"]) else f" [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
    return f"{r['mean']:+.3f}{interval}" + (" *" if r["excludes_zero"] else "")


def _paired_table(
    c: Any, phrasing: str, conditions: tuple[str, ...] = CONDITIONS, order: list[str] | None = None
) -> list[str]:
    from rgvlm_core.compare import method_label
    from rgvlm_core.compare_fair import MEAN_OVER_LENGTHS

    rows = c.paired[c.paired["length"] == MEAN_OVER_LENGTHS] if not c.paired.empty else c.paired
    if rows.empty:
        return []
    out = [f"**Difference from Sparse, paired by seed ({phrasing} phrasings)**: mean over the 6 lengths of "
           "(method - Sparse), paired 95% CI", "",
           "| method | " + " | ".join(conditions) + " |", "| --- " * (len(conditions) + 1) + "|"]  # fmt: skip
    for method, group in _by_method(rows, order or []):
        cells = {r["condition"]: _paired_cell(r) for _, r in group.iterrows()}
        out.append(f"| {method_label(method)} | " + " | ".join(cells.get(k, "-") for k in conditions) + " |")
    return [*out, "", "(* the interval excludes 0)", ""]


def _ablation_table(c: Any, order: list[str], conditions: tuple[str, ...] = CONDITIONS) -> list[str]:
    """The paper's ablation (Figure 4, right): Sparse+RG-VLM against RG-VLM alone under the same labels and
    mapping, paired by seed (mean over the 6 lengths), for every pair the experiment has."""
    from rgvlm_core.compare import method_label
    from rgvlm_core.compare_fair import MEAN_OVER_LENGTHS, paired_differences

    pairs = [(f"sparse+{m}", m) for m in order if m.startswith("rgvlm:") and f"sparse+{m}" in order]
    if not pairs:
        return []
    out = ["**Sparse+RG-VLM against RG-VLM alone, paired by seed** (the paper's ablation; unseen phrasings): "
           "mean over the 6 lengths of (Sparse+RG-VLM - RG-VLM), paired 95% CI", "",
           "| labels and mapping | " + " | ".join(conditions) + " |",
           "| --- " * (len(conditions) + 1) + "|"]  # fmt: skip
    for combined, alone in pairs:
        d = paired_differences(c.seeds[c.seeds["method"].isin([combined, alone])], baseline=alone)
        d = d[(d["method"] == combined) & (d["length"] == MEAN_OVER_LENGTHS)].set_index("condition")
        cells = [_paired_cell(r) if (r := _get(d, k)) is not None else "-" for k in conditions]
        label = method_label(alone).removeprefix("RG-VLM ")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    return [*out, "", "(* the interval excludes 0)", ""]


def _success_table(c: Any, order: list[str], conditions: tuple[str, ...] = CONDITIONS) -> list[str]:
    from rgvlm_core.compare import method_label

    s = c.success
    out = ["**Full-task success rate** (all lengths, mean over seeds [95% CI])", "",
           "| method | " + " | ".join(conditions) + " |", "| --- " * (len(conditions) + 1) + "|"]  # fmt: skip
    for method in order:
        rows = s[s["method"] == method].set_index("condition")
        cells = [_ci(r["mean"], r["ci_low"], r["ci_high"]) if (r := _get(rows, k)) is not None else "-"
                 for k in conditions]  # fmt: skip
        out.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _kind_table(c: Any, order: list[str]) -> list[str]:
    from rgvlm_core.compare import method_label

    k = c.kinds
    if k.empty:
        return []
    kinds = sorted(set(k["first_kind"]))
    out = ["**By kind of first subtask** (unseen phrasings, both conditions; mean over seeds)", "",
           "| method | " + " | ".join(kinds) + " |", "| --- " * (len(kinds) + 1) + "|"]  # fmt: skip
    for method, group in _by_method(k, order):
        values = group.groupby("first_kind")["mean"].mean()
        out.append(
            f"| {method_label(method)} | "
            + " | ".join(f"{values.get(x, float('nan')):.3f}" for x in kinds)
            + " |"
        )
    return [*out, ""]


def _took(reader: Any, run_ids: list[str]) -> str:
    """How long the experiment's runs took, from the store: each run from its start to its stored
    evaluation; summed over runs, and as wall-clock (the union of those spans: the parts of a grid run in
    several sessions count only while a run was going)."""
    rows = reader.rows(
        "SELECT r.started_at AS a, x.finished_at AS b FROM train_runs r "
        "JOIN experiment_runs x USING (run_id) WHERE r.run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY a",
        [run_ids],
    )
    total = sum((r["b"] - r["a"]).total_seconds() for r in rows)
    wall, end = 0.0, None
    for r in rows:
        start = r["a"] if end is None or r["a"] > end else end
        if end is None or r["b"] > end:
            wall += (r["b"] - start).total_seconds()
            end = r["b"]
    return (
        f"{len(rows)} runs; run time (each run's training and evaluation, summed): {total / 3600:.1f} h; "
        f"wall-clock while runs were going: {wall / 3600:.1f} h."
    )


def _object_table(c: Any, order: list[str]) -> list[str]:
    """Proportion by the object of the task's first subtask (every simulator task starts with a Pickup, so
    its kind says nothing; the object does: 5- and 6-subtask tasks start by picking up a knife)."""
    from rgvlm_core.compare import method_label
    from rgvlm_core.rl.config import SUBTASK_BUDGET
    from rgvlm_core.sim.evaluate import EvalConfig, make_env, start_episode

    episodes = c.episodes[c.episodes["method"] != "expert"]
    if episodes.empty:
        return []
    envs: dict[str, Any] = {}
    first: dict[tuple[str, str, int, int], str] = {}
    for key in (
        episodes[["condition", "phrasing", "length", "episode_seed"]].drop_duplicates().itertuples(False)
    ):
        condition, phrasing, length, seed = key
        config = EvalConfig(phrasing=phrasing, subtask_budget=SUBTASK_BUDGET)
        env = envs.setdefault(phrasing, make_env(config))
        start_episode(env, int(length), condition, int(seed))
        first[(condition, phrasing, int(length), int(seed))] = env.task.subtasks[0].obj
    columns = [episodes[k] for k in ("condition", "phrasing", "length", "episode_seed")]
    keys = zip(*columns, strict=True)
    episodes = episodes.assign(first_object=[first[(c_, p_, int(n), int(e))] for c_, p_, n, e in keys])
    knife = episodes["first_object"].str.contains("Knife")
    episodes = episodes.assign(group=knife.map({True: "a knife", False: "anything else"}))
    runs = episodes.groupby(["method", "run_id", "group"], as_index=False)["proportion"].mean()
    counts = episodes[episodes["run_id"] == episodes["run_id"].iloc[0]].groupby("group").size()
    knives, others = counts.get("a knife", 0), counts.get("anything else", 0)
    out = [
        "**By what the first subtask picks up** (unseen phrasings, both conditions, all lengths; mean over "
        f"seeds; tasks per run: a knife {knives}, anything else {others})",
        "",
        "| method | a knife | anything else |",
        "| --- | --- | --- |",
    ]
    for method, group in _by_method(runs, order):
        means = group.groupby("group")["proportion"].mean()
        cells = [f"{means.get(g, float('nan')):.3f}" for g in ("a knife", "anything else")]
        out.append(f"| {method_label(method)} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _curve_table(c: Any, order: list[str]) -> list[str]:
    from rgvlm_core.compare import method_label

    cv = c.curves
    if cv.empty:
        return []
    cv = cv[cv["condition"] == "default"]
    steps = sorted(set(cv["step"]))
    out = ["**Completion against training updates** (default states, unseen phrasings, mean over seeds; "
           "every checkpoint meets the same 5 tasks per length, the last is the final policy on them)", "",
           "| method | " + " | ".join(str(s) for s in steps) + " |",
           "| --- " * (len(steps) + 1) + "|"]  # fmt: skip
    for method, group in _by_method(cv, order):
        values = group.set_index("step")["mean"]
        out.append(
            f"| {method_label(method)} | "
            + " | ".join(f"{values.get(s, float('nan')):.3f}" for s in steps)
            + " |"
        )
    return [*out, ""]


def figure(c: Any, out: Path, methods: tuple[str, ...], part: str) -> bool:
    """The paired-difference chart of comparison `c` as a PNG, drawn by Chromium (False where Playwright is
    missing): per length for the smaller parts; for the full grid (15 methods, too many bars to read per
    length) each method's mean over lengths as a point with its interval."""
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return False
    from rgvlm_core.charts_compare import paired_figure

    if part == "full":
        write_png(means_figure(c.paired, [m for m in methods if m != "sparse"]), out, 1000, 560)
    else:
        write_png(paired_figure(c.paired, c.colours), out, 1000, 500)
    return True


def means_figure(paired: pd.DataFrame, order: list[str]) -> Any:
    """Each method's paired difference from Sparse, mean over the 6 lengths, with its 95% interval: one
    row per method (protocol order, top down), one panel per condition; filled where it excludes 0."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from rgvlm_core.charts_compare import condition_title
    from rgvlm_core.compare import method_label
    from rgvlm_core.compare_fair import MEAN_OVER_LENGTHS

    rows = paired[(paired["length"] == MEAN_OVER_LENGTHS) & (paired["pairs"] >= 2)]
    conditions = [k for k in CONDITIONS if k in set(rows["condition"])]
    fig = make_subplots(rows=1, cols=len(conditions), shared_yaxes=True,
                        subplot_titles=[condition_title(k) for k in conditions])  # fmt: skip
    labels = {m: method_label(m) for m in order}
    for col, condition in enumerate(conditions, start=1):
        part = rows[rows["condition"] == condition].set_index("method")
        shown = [m for m in order if m in part.index]
        r = part.loc[shown]
        fig.add_trace(go.Scatter(
            x=r["mean"], y=[labels[m] for m in shown], mode="markers", showlegend=False,
            marker={"size": 9, "color": "#1f4e9c", "symbol": ["circle" if e else "circle-open"
                                                             for e in r["excludes_zero"]]},
            error_x={"type": "data", "symmetric": False, "array": r["ci_high"] - r["mean"],
                     "arrayminus": r["mean"] - r["ci_low"], "color": "#1f4e9c", "thickness": 1.5},
        ), row=1, col=col)  # fmt: skip
        fig.add_vline(x=0, line={"color": "#262730", "width": 1}, row=1, col=col)
        fig.update_xaxes(title_text="difference from Sparse (paired 95% CI)", row=1, col=col)
    fig.update_yaxes(autorange="reversed", categoryorder="array", categoryarray=list(labels.values()))
    title = "Mean over task lengths, held-out phrasings; filled: the interval excludes 0"
    fig.update_layout(plot_bgcolor="white", margin={"l": 20, "r": 20, "t": 40, "b": 40},
                      title={"text": title, "font": {"size": 13}, "x": 0.5, "y": 0.995})  # fmt: skip
    fig.update_xaxes(showgrid=True, gridcolor="#e5e5e5", zeroline=False)
    return fig


def write_png(fig: Any, out: Path, width: int, height: int) -> None:
    """A Plotly figure as a PNG, drawn by Debian's Chromium through Playwright (no Kaleido here)."""
    import plotly.io as pio
    from playwright.sync_api import sync_playwright

    html = out.with_suffix(".html")
    html.write_text(
        pio.to_html(fig, include_plotlyjs=True, full_html=True, default_width=width, default_height=height)
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync"])  # fmt: skip
        page = browser.new_page(viewport={"width": width + 20, "height": height + 20})
        page.goto(html.resolve().as_uri())
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out))
        browser.close()
    html.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--part", choices=sorted(PARTS), default="core")
    parser.add_argument("--docs", type=Path, default=Path("docs/fair-comparison"))
    parser.add_argument(
        "--mix",
        choices=sorted({m for mixes in PARTS.values() for m in mixes}),
        help="Only this mix of the part (e.g. the tables of a mix that finished while the other runs).",
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="Before resuming, retrain Sparse seed 0 from scratch and compare it with the stored run.",
    )
    parser.add_argument(
        "--save",
        action="store_true",
        help="Export each mix's finished runs to DOCS/runs-<mix>/ for the next session, and train nothing.",
    )
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="Write the tables of what is stored now (a part stopped early says so: see the seeds column) "
        "and train nothing.",
    )
    args = parser.parse_args()
    if args.save and args.tables_only:
        parser.error("give --save or --tables-only, not both")
    mixes = PARTS[args.part]
    if args.mix:
        if args.mix not in mixes:
            parser.error(f"--mix {args.mix} is not a mix of part {args.part} ({', '.join(mixes)})")
        mixes = {args.mix: mixes[args.mix]}
    args.root.mkdir(parents=True, exist_ok=True)
    args.docs.mkdir(parents=True, exist_ok=True)
    if args.save:
        for mix in mixes:
            if (args.root / f"ws-{mix}").is_dir():
                save(args.root / f"ws-{mix}", args.docs, mix)
        return
    timing: dict[str, float] = {}
    verifications: list[str] = []
    checks: dict[str, Any] = {}
    sections, frames = [], []
    for mix, methods in mixes.items():
        ws = args.root / f"ws-{mix}"
        if not args.tables_only:
            t0 = time.perf_counter()
            ws = prepare(args.root, mix)
            timing[f"{mix}: data and labels"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            checks[mix] = reward_checks(ws)
            timing[f"{mix}: reward checks"] = time.perf_counter() - t0
            merge_saved(ws, args.docs, mix)
            if args.verify:
                t0 = time.perf_counter()
                verifications.append(verify(ws, mix))
                timing[f"{mix}: verification"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            experiment(ws, mix, methods)
            timing[f"{mix}: experiment (this session)"] = time.perf_counter() - t0
            if args.part == "full":
                save(ws, args.docs, mix)
        if not ws.is_dir():  # (--tables-only before this mix was started)
            sections.append(f"## Data mix {mix} (expert / suboptimal / failed, %)\n\nNot run yet.\n")
            continue
        text, seeds, unseen = tables(ws, mix, methods)
        sections.append(text)
        frames.append(seeds)
        figure(unseen, args.docs / figure_name(args.part, mix), methods, args.part)
        if args.tables_only and (line := verification(ws, mix)):
            verifications.append(line)
    header = [f"# Fair comparison: results (part `{args.part}`)", "",
              "Written by `python scripts/fair_comparison.py ROOT --part " + args.part + "`; every number "
              "below is computed from the stored evaluations. docs/paper-comparison.md reads them.",
              ""]  # fmt: skip
    took = [f"- {k}: {v / 60:.1f} min" for k, v in timing.items()] or [
        "- (tables only: the experiment may be unfinished; each table's seeds say how many runs it has)"
    ]
    (args.docs / f"results-{args.part}.md").write_text(
        "\n".join([*header, "Time taken:", *took, "", *verifications, "", *sections])
    )
    pd.concat(frames, ignore_index=True).to_csv(args.docs / f"results-{args.part}.csv", index=False)
    if not args.tables_only:
        (args.docs / f"reward-check-{args.part}.json").write_text(json.dumps(checks, indent=1))
        (args.docs / f"timing-{args.part}.json").write_text(json.dumps(timing, indent=1))
    print(f"wrote {args.docs}/results-{args.part}.md ({sum(timing.values()) / 60:.1f} min)")


if __name__ == "__main__":
    main()
