"""A fair comparison: paired differences from Sparse, phrasings, first-subtask kinds, completion
against training steps, and method names that carry the reward mapping."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rgvlm_core.compare import (
    default_phrasing,
    eval_rows,
    method_label,
    method_of,
    per_seed,
    phrasings,
    planned_methods,
    runs_table,
)
from rgvlm_core.compare_fair import (
    MEAN_OVER_LENGTHS,
    by_first_kind,
    completion_curves,
    eval_curves,
    missing_first_kind,
    paired_differences,
)
from rgvlm_core.report import build_comparison
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import EVAL_CURVES, EVAL_RESULTS, TRAIN_RUNS

T_975_2DF = 4.302652729911275  # Student t, 0.975 quantile, 2 degrees of freedom (tables)
NOW = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)


# -- a store written straight through Workspace.commit (no training) ---------------------------------
def run_row(run_id: str, source: str, seed: int, *, lam: float = 1.0, beta: float = 3.0) -> dict[str, Any]:
    """A finished train_runs row; `started_at` follows the seed so the runs' order is fixed."""
    at = NOW + dt.timedelta(minutes=seed)
    return {
        "run_id": run_id,
        "reward_source": source,
        "lam": lam,
        "seed": seed,
        "steps": 200,
        "encoder": "hash",
        "config": json.dumps({"beta": beta}),
        "spec": "{}",
        "dataset": "{}",
        "provenance": "{}",
        "checkpoint": "",
        "started_at": at,
        "finished_at": at,
    }


def eval_row(
    run_id: str,
    *,
    completed: int,
    length: int,
    episode: int = 0,
    condition: str = "default",
    phrasing: str = "unseen",
    first_kind: str | None = "Pickup",
) -> dict[str, Any]:
    """One evaluated episode (its reset seed fixed by the task, as every run meets the same tasks)."""
    return {
        "run_id": run_id,
        "condition": condition,
        "phrasing": phrasing,
        "seed": 1000 * length + episode,
        "length": length,
        "episode": episode,
        "task_type": "pick_and_place_simple",
        "room": "kitchen",
        "goal": "put a mug away",
        "n_subtasks": length,
        "completed": completed,
        "success": completed == length,
        "steps": 10,
        "first_kind": first_kind,
        "evaluated_at": NOW,
    }


def curve_row(
    run_id: str, step: int, length: int, proportion: float, *, phrasing: str = "unseen", episodes: int = 4
) -> dict[str, Any]:
    """One checkpoint evaluation of a run at one task length."""
    return {
        "run_id": run_id,
        "step": step,
        "condition": "default",
        "phrasing": phrasing,
        "length": length,
        "episodes": episodes,
        "proportion": proportion,
        "success": 0.0,
    }


def commit_store(
    ws: Workspace,
    runs: Iterable[dict[str, Any]],
    evals: Iterable[dict[str, Any]] = (),
    curves: Iterable[dict[str, Any]] = (),
) -> Workspace:
    """Write the rows in one commit, as a training job and its evaluation would."""
    tables = {TRAIN_RUNS.name: (TRAIN_RUNS, runs), EVAL_RESULTS.name: (EVAL_RESULTS, evals)}
    tables[EVAL_CURVES.name] = (EVAL_CURVES, curves)
    ws.commit(
        {name: pa.Table.from_pylist(list(rows), schema=spec.schema) for name, (spec, rows) in tables.items()}
    )
    return ws


def seeds_frame(values: dict[str, dict[int, float]], length: int = 2) -> pd.DataFrame:
    """Per-seed rows (as `compare.per_seed` gives) of one condition and length: method -> seed -> value."""
    return pd.DataFrame(
        [
            {
                "method": m,
                "run_id": f"{m}-{s}",
                "train_seed": s,
                "condition": "default",
                "length": length,
                "proportion": p,
                "success": 0.0,
                "episodes": 1,
            }
            for m, by_seed in values.items()
            for s, p in by_seed.items()
        ]
    )


# -- paired differences ------------------------------------------------------------------------------
def test_the_paired_interval_is_student_t_over_the_per_seed_differences() -> None:
    seeds = seeds_frame(
        {"sparse": {0: 0.2, 1: 0.4, 2: 0.5}, "rgvlm:a@cost": {0: 0.5, 1: 0.6, 2: 0.9}}
    )  # differences 0.3, 0.2, 0.4: mean 0.3, sample sd 0.1
    paired = paired_differences(seeds)
    row = paired[paired["length"] == "2"].iloc[0]
    half = T_975_2DF * 0.1 / math.sqrt(3)  # 0.248413...
    assert row["method"] == "rgvlm:a@cost" and row["pairs"] == 3
    assert row["mean"] == pytest.approx(0.3)
    assert row["ci_low"] == pytest.approx(0.3 - half) and row["ci_high"] == pytest.approx(0.3 + half)
    assert row["excludes_zero"]
    # unpaired, the same numbers would not separate: Sparse's own interval reaches 0.2 + ...
    assert set(paired["method"]) == {"rgvlm:a@cost"}  # Sparse is the baseline, never a row


def test_an_interval_that_contains_zero_is_said_not_to_exclude_it() -> None:
    seeds = seeds_frame({"sparse": {0: 0.5, 1: 0.5, 2: 0.5}, "bc": {0: 0.2, 1: 0.8, 2: 0.8}})
    row = paired_differences(seeds).iloc[0]
    assert row["mean"] == pytest.approx(0.1) and row["ci_low"] < 0 < row["ci_high"]
    assert not row["excludes_zero"]


def test_only_the_seeds_both_methods_have_are_paired() -> None:
    seeds = seeds_frame({"sparse": {0: 0.1, 1: 0.2, 2: 0.3}, "rgvlm:a@raw": {1: 0.5, 2: 0.9, 7: 0.0}})
    row = paired_differences(seeds).iloc[0]
    assert row["pairs"] == 2  # seeds 1 and 2; seed 0 (Sparse only) and 7 (the method only) are left out
    assert row["mean"] == pytest.approx(((0.5 - 0.2) + (0.9 - 0.3)) / 2)
    half = 12.706204736174696 * np.std([0.3, 0.6], ddof=1) / math.sqrt(2)  # t(0.975, 1 df)
    assert row["ci_high"] - row["mean"] == pytest.approx(half)


def test_a_single_pair_gives_a_difference_without_an_interval() -> None:
    row = paired_differences(seeds_frame({"sparse": {0: 0.1, 1: 0.3}, "bc": {1: 0.6}})).iloc[0]
    assert row["pairs"] == 1 and row["mean"] == pytest.approx(0.3)
    assert math.isnan(row["ci_low"]) and not row["excludes_zero"]


def test_the_mean_over_lengths_pairs_each_seeds_average_over_lengths() -> None:
    short = seeds_frame({"sparse": {0: 0.4, 1: 0.6}, "m@raw": {0: 0.8, 1: 0.6}}, length=1)
    long = seeds_frame({"sparse": {0: 0.2, 1: 0.0}, "m@raw": {0: 0.2, 1: 0.4}}, length=3)
    paired = paired_differences(pd.concat([short, long], ignore_index=True))
    assert list(paired["length"]) == ["1", "3", MEAN_OVER_LENGTHS]
    mean = paired[paired["length"] == MEAN_OVER_LENGTHS].iloc[0]
    per_seed_means = [(0.4 + 0.0) / 2, (0.0 + 0.4) / 2]  # seed 0: 0.4 and 0.0; seed 1: 0.0 and 0.4
    assert mean["mean"] == pytest.approx(np.mean(per_seed_means)) and mean["pairs"] == 2


def test_without_sparse_or_pairs_there_is_no_difference_to_show() -> None:
    assert paired_differences(seeds_frame({"bc": {0: 0.1, 1: 0.2}})).empty
    assert paired_differences(seeds_frame({"sparse": {0: 0.1}, "bc": {3: 0.2}})).empty
    expert = seeds_frame({"sparse": {0: 0.1, 1: 0.2}, "expert": {0: 1.0}})
    assert paired_differences(expert).empty  # the expert is a reference, not a method to pair


# -- phrasings -----------------------------------------------------------------------------------------
def test_evaluations_are_read_one_phrasing_at_a_time(tmp_path: Path) -> None:
    ws = commit_store(
        Workspace.open(tmp_path / "ws"),
        [run_row("s0", "sparse", 0), run_row("s1", "sparse", 1)],
        [
            eval_row(run, completed=done, length=2, phrasing=phrasing)
            for run, phrasing, done in [
                ("s0", "seen", 2),
                ("s0", "unseen", 0),
                ("s1", "seen", 2),
                ("s1", "unseen", 1),
            ]
        ],
    )
    reader = ws.reader()
    runs = runs_table(reader)
    assert phrasings(reader, ["s0", "s1"]) == ["unseen", "seen"] and phrasings(reader, []) == []
    seen = eval_rows(reader, runs, "seen")
    assert set(seen["phrasing"]) == {"seen"} and list(seen["proportion"]) == [1.0, 1.0]
    both = per_seed(eval_rows(reader, runs))
    assert len(both) == 4  # a run's two phrasings are never averaged together
    comparison = build_comparison(reader, None, expert=False, phrasing="seen")
    assert comparison.phrasing == "seen" and comparison.phrasings == ("unseen", "seen")
    csv = pd.read_csv(io.StringIO(comparison.csv()))
    assert set(csv["phrasing"]) == {"seen"} and set(csv.loc[csv["kind"] == "seed", "proportion"]) == {1.0}
    assert build_comparison(reader, None, expert=False).phrasing == "unseen"  # the default
    reader.close()
    assert default_phrasing(["seen"]) == "seen" and default_phrasing(["seen", "unseen"]) == "unseen"


# -- first-subtask kind ------------------------------------------------------------------------------
def test_the_first_kind_table_averages_seeds_and_leaves_out_unknown_kinds(tmp_path: Path) -> None:
    ws = commit_store(
        Workspace.open(tmp_path / "ws"),
        [run_row("s0", "sparse", 0), run_row("s1", "sparse", 1)],
        [
            eval_row("s0", completed=1, length=2, episode=0, first_kind="Heat"),
            eval_row("s0", completed=2, length=2, episode=1, first_kind="Heat"),
            eval_row("s0", completed=0, length=1, episode=0, first_kind="Pickup"),
            eval_row("s1", completed=2, length=2, episode=0, first_kind="Heat"),
            eval_row("s1", completed=2, length=2, episode=1, first_kind="Heat"),
            eval_row("s1", completed=1, length=1, episode=0, first_kind=None),  # evaluated before v2
        ],
    )
    reader = ws.reader()
    episodes = eval_rows(reader, runs_table(reader))
    reader.close()
    table = by_first_kind(episodes)
    assert list(table["first_kind"]) == ["Pickup", "Heat"]  # the simulator's order of kinds
    heat = table[table["first_kind"] == "Heat"].iloc[0]
    assert heat["mean"] == pytest.approx((0.75 + 1.0) / 2) and heat["seeds"] == 2
    pickup = table[table["first_kind"] == "Pickup"].iloc[0]
    assert pickup["mean"] == 0.0 and pickup["seeds"] == 1 and math.isnan(pickup["ci_low"])
    assert missing_first_kind(episodes) == 1
    expert = episodes.iloc[:1].assign(method="expert", run_id="expert", proportion=1.0)
    assert by_first_kind(pd.concat([episodes, expert])).equals(table)  # the expert completes every kind


# -- completion against training steps ---------------------------------------------------------------
def test_completion_curves_average_lengths_per_run_then_seeds_with_a_band(tmp_path: Path) -> None:
    runs = [run_row(f"s{k}", "sparse", k) for k in range(3)] + [run_row("c0", "clip:x@centred", 0)]
    values = {"s0": (0.2, 0.4), "s1": (0.4, 0.6), "s2": (0.6, 0.8)}  # (length 1, length 2) at step 100
    rows = [curve_row(run, 100, n + 1, p) for run, ps in values.items() for n, p in enumerate(ps)]
    rows += [curve_row(run, 200, 1, 1.0) for run in values] + [curve_row("c0", 100, 1, 0.5)]
    rows += [curve_row("s0", 100, 1, 0.0, phrasing="seen")]
    ws = commit_store(Workspace.open(tmp_path / "ws"), runs, curves=rows)
    reader = ws.reader()
    curves = eval_curves(reader, runs_table(reader), "unseen")
    reader.close()
    assert set(curves["phrasing"]) == {"unseen"} and set(curves["method"]) == {"sparse", "clip:x@centred"}
    table = completion_curves(curves).set_index(["method", "step"])
    first = table.loc[("sparse", 100)]
    # per run: 0.3, 0.5, 0.7 -> mean 0.5, sd 0.2, half = t(2 df) * 0.2 / sqrt(3)
    half = T_975_2DF * 0.2 / math.sqrt(3)
    assert first["mean"] == pytest.approx(0.5) and first["seeds"] == 3
    assert first["ci_low"] == pytest.approx(max(0.0, 0.5 - half))
    assert first["ci_high"] == pytest.approx(min(1.0, 0.5 + half))
    assert table.loc[("sparse", 200)]["mean"] == 1.0
    assert table.loc[("clip:x@centred", 100)]["seeds"] == 1
    at_two = completion_curves(curves, length=2).set_index(["method", "step"])
    assert at_two.loc[("sparse", 100)]["mean"] == pytest.approx(0.6) and len(at_two) == 1


def test_a_curves_last_point_is_the_final_policy_on_the_checkpoints_tasks(tmp_path: Path) -> None:
    # "s0": checkpoints on 2 tasks of length 2, the final evaluation on 4 (stored: 0.75 over all 4); its
    # first 2 tasks (the checkpoints') got 1 of 2 and 0 of 2 subtasks: the last point is 0.25, not 0.75.
    finals = [(0, 1), (1, 0), (2, 2), (3, 2)]  # (episode, subtasks completed)
    evals = [eval_row("s0", completed=c, length=2, episode=e) for e, c in finals]
    evals += [eval_row("s0", completed=2, length=2, episode=e, phrasing="seen") for e in range(4)]
    curves = [curve_row("s0", 100, 2, 0.5, episodes=2), curve_row("s0", 200, 2, 0.75, episodes=4)]
    curves += [curve_row("s0", 100, 2, 0.0, episodes=2, phrasing="seen")]
    curves += [curve_row("s0", 200, 2, 1.0, episodes=4, phrasing="seen")]
    # "s1": checkpoints on as many tasks as the final evaluation; "s2": no checkpoint, the final point only
    evals += [eval_row(run, completed=0, length=2, episode=e) for run in ("s1", "s2") for e in range(2)]
    curves += [curve_row("s1", 100, 2, 0.5, episodes=2), curve_row("s1", 200, 2, 0.0, episodes=2)]
    curves += [curve_row("s2", 200, 2, 0.0, episodes=2)]
    runs = [run_row(f"s{k}", "sparse", k) for k in range(3)]
    ws = commit_store(Workspace.open(tmp_path / "ws"), runs, evals, curves)
    reader = ws.reader()
    unseen = eval_curves(reader, runs_table(reader), "unseen").set_index(["run_id", "step"])
    both = eval_curves(reader, runs_table(reader))
    reader.close()
    last = unseen.loc[("s0", 200)]
    assert last["proportion"] == pytest.approx(0.25) and last["episodes"] == 2 and last["success"] == 0.0
    assert unseen.loc[("s0", 100)]["proportion"] == 0.5  # checkpoints as stored
    assert unseen.loc[("s1", 200)]["proportion"] == 0.0 and unseen.loc[("s2", 200)]["episodes"] == 2
    seen = both[(both["phrasing"] == "seen") & (both["step"] == 200)]
    assert list(seen["proportion"]) == [1.0] and list(seen["episodes"]) == [2]
    assert len(both) == 7  # every stored point once, the final ones of s0 replaced, not added


# -- method names -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "lam", "method", "label"),
    [
        ("sparse", 1.0, "sparse", "Sparse"),
        ("rgvlm:r1", 1.0, "rgvlm:r1@raw", "RG-VLM (r1, raw)"),  # stored before mappings: raw
        ("rgvlm:r1@raw", 1.0, "rgvlm:r1@raw", "RG-VLM (r1, raw)"),
        ("sparse+rgvlm:r1@cost", 1.0, "sparse+rgvlm:r1@cost", "Sparse+RG-VLM (r1, cost)"),
        ("clip:c@centred", 1.0, "clip:c@centred", "CLIP (c, centred)"),
        ("sparse+clip:c", 1.0, "sparse+clip:c@raw", "Sparse+CLIP (c, raw)"),
        ("reference", 1.0, "reference@raw", "RG-VLM (reference, raw)"),
        (
            "sparse+rgvlm:r1@shaped",
            0.5,
            "sparse+rgvlm:r1@shaped (lambda=0.5)",
            "Sparse+RG-VLM (r1, shaped, lambda=0.5)",
        ),
        ("sparse+rgvlm:r1", 0.5, "sparse+rgvlm:r1@raw (lambda=0.5)", "Sparse+RG-VLM (r1, raw, lambda=0.5)"),
    ],
)
def test_a_vlm_method_names_its_reward_mapping_and_legacy_runs_are_raw(
    source: str, lam: float, method: str, label: str
) -> None:
    assert method_of(source, lam, {"beta": 3.0}) == method
    assert method_label(method) == label
    assert method_of(source, lam, {"beta": 0.0}) == "bc"


def test_old_and_new_raw_runs_of_one_label_run_are_one_method(tmp_path: Path) -> None:
    ws = commit_store(
        Workspace.open(tmp_path / "ws"),
        [run_row("old", "rgvlm:r1", 0), run_row("new", "rgvlm:r1@raw", 1), run_row("c", "rgvlm:r1@cost", 2)],
    )
    reader = ws.reader()
    methods = dict(zip(runs_table(reader)["run_id"], runs_table(reader)["method"], strict=True))
    reader.close()
    assert methods == {"old": "rgvlm:r1@raw", "new": "rgvlm:r1@raw", "c": "rgvlm:r1@cost"}
    plan = {"sources": {"reference": "rgvlm:r1", "sparse+reference": "sparse+rgvlm:r1@cost"}}
    assert planned_methods(plan) == {"reference": "rgvlm:r1@raw", "sparse+reference": "sparse+rgvlm:r1@cost"}


def test_an_evaluation_that_does_not_say_its_phrasing_counts_as_held_out(tmp_path: Path) -> None:
    ws = commit_store(
        Workspace.open(tmp_path / "ws"),
        [run_row("s0", "sparse", 0)],
        [eval_row("s0", completed=1, length=2, phrasing=None)],  # type: ignore[arg-type]
        [curve_row("s0", 100, 2, 0.5, phrasing=None)],  # type: ignore[arg-type]
    )
    reader = ws.reader()
    runs = runs_table(reader)
    assert phrasings(reader, ["s0"]) == ["unseen"]  # the evaluation's default (sim.evaluate.EvalConfig)
    assert list(eval_rows(reader, runs, "unseen")["phrasing"]) == ["unseen"]
    assert list(eval_curves(reader, runs, "unseen")["proportion"]) == [0.5]
    reader.close()


def test_the_report_has_the_paired_differences_and_the_completion_curve(tmp_path: Path) -> None:
    from plotly.offline import get_plotlyjs

    from rgvlm_core.report import NO_CURVES, render_report

    done = {("sparse", 0): 0, ("sparse", 1): 1, ("sparse", 2): 0, ("rgvlm:r@cost", 0): 2}
    done |= {("rgvlm:r@cost", 1): 2, ("rgvlm:r@cost", 2): 1}
    runs = [run_row(f"{m}-{s}", m, s) for m, s in done]
    evals = [eval_row(f"{m}-{s}", completed=c, length=2) for (m, s), c in done.items()]
    curves = [curve_row(f"{m}-{s}", step, 2, 0.1 * step / 100) for m, s in done for step in (100, 200)]
    reader = commit_store(Workspace.open(tmp_path / "ws"), runs, evals, curves).reader()
    comparison = build_comparison(reader, None, expert=False)
    page = render_report(reader, comparison, title="t", about={})
    reader.close()
    paired = comparison.paired[comparison.paired["length"] == MEAN_OVER_LENGTHS].iloc[0]
    assert paired["mean"] == pytest.approx((1.0 + 0.5 + 0.5) / 3)  # seeds: 1 - 0, 1 - 0.5, 0.5 - 0
    assert "Difference from Sparse (paired by seed)" in page and f"{paired['ci_low']:.3f}" in page
    assert "RG-VLM (r, cost) +0.667 (95% CI" in page and "<b>phrasing</b>: unseen" in page
    assert "Completion against training steps" in page and NO_CURVES not in page
    bundle = get_plotlyjs()[-300:]  # Plotly's JavaScript, embedded once for every figure
    assert page.count(bundle) == 1 and page.count("Plotly.newPlot") >= 5

    empty = commit_store(Workspace.open(tmp_path / "bare"), runs[3:], evals[3:]).reader()
    page = render_report(empty, build_comparison(empty, None, expert=False), title="t", about={})
    empty.close()
    assert NO_CURVES in page and "No Sparse runs among those compared" in page


def test_the_paired_chart_draws_bars_around_zero_only_where_there_is_an_interval() -> None:
    from rgvlm_core.charts_compare import method_colour, paired_figure

    seeds = seeds_frame(
        {"sparse": {0: 0.2, 1: 0.4, 2: 0.5}, "m@cost": {0: 0.5, 1: 0.6, 2: 0.9}, "bc": {2: 0.1}}
    )
    paired = paired_differences(seeds)
    [bar] = [t for t in paired_figure(paired).data if t.type == "bar"]  # bc: one pair, no interval
    assert bar.name == "m (cost)" and bar.marker.color == method_colour("m@cost")
    assert list(bar.x) == ["2", MEAN_OVER_LENGTHS] and list(bar.y) == pytest.approx([0.3, 0.3])
    assert list(bar.error_y.array) == pytest.approx([T_975_2DF * 0.1 / math.sqrt(3)] * 2)
