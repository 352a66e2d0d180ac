"""Method comparison: confidence intervals over seeds, method identity, the expert's rows, and the figures."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rgvlm_core.charts_compare import completion_figure, curves_figure, method_colour, success_figure
from rgvlm_core.compare import (
    by_length,
    ci95_half_width,
    expert_rows,
    method_label,
    method_of,
    per_seed,
    success_overall,
)


def test_the_interval_is_student_t_over_seeds_and_absent_for_one_seed() -> None:
    # mean 0.4, sample sd 0.2, t(0.975, 2 df) = 4.302652729911275 (tables): 4.3027 * 0.2 / sqrt(3)
    assert ci95_half_width(np.array([0.2, 0.4, 0.6])) == pytest.approx(0.4968275, abs=1e-6)
    assert math.isnan(ci95_half_width(np.array([0.7])))


def episodes() -> pd.DataFrame:
    rows = []
    for method, seeds in {
        "sparse": {0: [0, 1], 1: [1, 1]},
        "rgvlm:r": {0: [1, 1], 1: [1, 1], 2: [0, 0]},
    }.items():
        for seed, completed in seeds.items():
            for episode, done in enumerate(completed):
                for condition in ("default", "randomized"):
                    rows.append(
                        {
                            "method": method,
                            "run_id": f"{method}-{seed}",
                            "train_seed": seed,
                            "condition": condition,
                            "length": 2,
                            "episode": episode,
                            "episode_seed": 100 + episode,
                            "proportion": done / 2,
                            "success": False,
                        }
                    )
    return pd.DataFrame(rows)


def test_a_method_is_the_mean_of_its_seeds_means_with_a_clipped_interval() -> None:
    seeds = per_seed(episodes())
    summary = by_length(seeds).set_index(["method", "condition", "length"])
    sparse = summary.loc[("sparse", "default", 2)]
    assert sparse["mean"] == pytest.approx((0.25 + 0.5) / 2) and sparse["seeds"] == 2
    half = 12.706204736174696 * np.std([0.25, 0.5], ddof=1) / math.sqrt(2)
    assert sparse["ci_low"] == 0.0 and sparse["ci_high"] == pytest.approx(min(1.0, 0.375 + half))
    assert summary.loc[("rgvlm:r", "randomized", 2)]["mean"] == pytest.approx(1 / 3)


def test_methods_come_from_what_a_run_stored() -> None:
    assert method_of("sparse", 1.0, {"beta": 0.0}) == "bc"
    assert method_of("sparse+rgvlm:a@cost", 0.5, {"beta": 5.0}) == "sparse+rgvlm:a@cost (lambda=0.5)"
    assert method_of("sparse+rgvlm:a@cost", 1.0, {"beta": 5.0}) == "sparse+rgvlm:a@cost"
    assert (
        method_label("sparse+rgvlm:noisy@cost") == "Sparse+RG-VLM (noisy, cost)"
        and method_label("bc") == "Behaviour cloning"
    )


def test_the_expert_replays_exactly_the_evaluated_tasks_and_completes_them() -> None:
    from rgvlm_core.sim.evaluate import EvalConfig, episode_seed

    tasks = pd.DataFrame(
        [
            {"condition": c, "length": n, "episode": e, "episode_seed": episode_seed(0, n, e)}
            for c in ("default", "randomized")
            for n in (1, 4, 6)
            for e in range(3)
        ]
    )
    rows = expert_rows(pd.concat([tasks, tasks]))  # duplicates (several runs) are replayed once
    assert len(rows) == len(tasks) and rows["proportion"].min() == 1.0 and rows["success"].all()
    assert EvalConfig().phrasing == "unseen"


def test_the_figure_shows_the_summary_numbers_with_one_colour_per_method() -> None:
    eps = episodes()
    seeds = per_seed(eps)
    summary = by_length(seeds)
    fig = completion_figure(summary, seeds)
    bars = [t for t in fig.data if t.type == "bar"]
    assert len(bars) == 4  # 2 methods x 2 conditions
    for bar in bars:
        method = "sparse" if bar.name == "Sparse" else "rgvlm:r"
        assert bar.marker.color == method_colour(method)
        panel = "default" if bar.xaxis in ("x", "x1") else "randomized"
        want = summary[(summary["method"] == method) & (summary["condition"] == panel)]
        assert list(bar.y) == pytest.approx(list(want["mean"]))
    points = [t for t in fig.data if t.type == "scatter"]
    assert sum(len(p.y) for p in points) == len(seeds)
    success = success_figure(success_overall(eps))
    assert {t.marker.color for t in success.data} == {method_colour("sparse"), method_colour("rgvlm:r")}
    curves = pd.DataFrame(
        {
            "run_id": ["a", "a", "b"],
            "method": ["sparse", "sparse", "rgvlm:r"],
            "step": [1, 2, 1],
            "value": [0.5, 0.4, 0.3],
        }
    )
    lines = curves_figure(curves, "losses/q").data
    assert [line.line.color for line in lines] == [method_colour("sparse"), method_colour("rgvlm:r")]


def test_a_methods_colour_does_not_depend_on_the_other_methods_shown() -> None:
    from rgvlm_core.charts_compare import method_colours

    fixed = {m: method_colour(m) for m in ("sparse", "bc", "expert")}
    assert len(set(fixed.values())) == 3, "the three reference methods never share a colour"
    for shown in (["sparse", "bc"], ["clip:a", "expert", "sparse", "rgvlm:b", "bc"], ["expert"]):
        colours = method_colours(shown)
        assert {m: colours[m] for m in shown if m in fixed} == {m: fixed[m] for m in shown if m in fixed}
    # a learned method keeps its colour when methods that appeared after it are added
    first = method_colours(["sparse", "rgvlm:a", "rgvlm:b"])
    more = method_colours(["sparse", "rgvlm:a", "rgvlm:b", "clip:c", "bc"])
    assert first["rgvlm:a"] == more["rgvlm:a"] and first["rgvlm:b"] == more["rgvlm:b"]


def test_methods_take_palette_colours_in_the_order_they_first_appeared() -> None:
    from rgvlm_core.charts_compare import METHOD_COLOURS, method_colours

    methods = ["sparse", "sparse+rgvlm:reference", "sparse+rgvlm:noisy", "rgvlm:noisy", "bc"]
    colours = method_colours(methods)
    learned = [colours[m] for m in methods if m not in METHOD_COLOURS]
    assert len(set(learned)) == 3  # never two methods in one colour (the hash alone collided here)
    assert colours["sparse"] == METHOD_COLOURS["sparse"] and colours["bc"] == METHOD_COLOURS["bc"]
    assert method_colours([*methods, "clip:x"])["sparse+rgvlm:noisy"] == colours["sparse+rgvlm:noisy"]
    assert method_colour("sparse+rgvlm:noisy", colours) == colours["sparse+rgvlm:noisy"]
