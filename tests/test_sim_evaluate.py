"""The evaluation harness: the expert's ceiling, the random floor, identical tasks, the summary maths."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from rgvlm_core.errors import UsageError
from rgvlm_core.sim.env import Condition, HouseholdEnv
from rgvlm_core.sim.evaluate import (
    EpisodeResult,
    EvalConfig,
    episode_seed,
    evaluate,
    expert_policy,
    random_policy,
    summarize,
)

SMALL = EvalConfig(episodes_per_length=10)


def _row(length: int, completed: int, n_subtasks: int, condition: str = "default") -> EpisodeResult:
    return EpisodeResult(
        length=length,
        episode=0,
        task_type="pick_and_place_simple",
        room="kitchen",
        goal="Put an apple in the fridge.",
        n_subtasks=n_subtasks,
        completed=completed,
        success=completed == n_subtasks,
        steps=3,
        condition=condition,
        seed=0,
    )


@pytest.mark.parametrize("condition", ["default", "randomized"])
def test_the_expert_completes_every_subtask_at_every_length(condition: Condition) -> None:
    config = replace(SMALL, condition=condition)
    rows = summarize(evaluate("expert", config))
    assert [r["length"] for r in rows] == [1, 2, 3, 4, 5, 6]
    for r in rows:
        assert (r["n"], r["mean_completed"], r["success_rate"]) == (10, 1.0, 1.0)
        assert r["ci95"] == (1.0, 1.0)
        assert r["condition"] == condition


def test_the_random_policy_scores_far_below_the_expert() -> None:
    config = EvalConfig(episodes_per_length=30)
    results = list(evaluate("random", config))
    overall = np.mean([r.proportion for r in results])
    assert overall < 0.35
    rows = {r["length"]: r for r in summarize(results)}
    assert rows[6]["success_rate"] <= rows[1]["success_rate"]
    assert rows[6]["success_rate"] < 0.05  # a whole 6-subtask task by chance is rare


def test_the_same_config_gives_every_policy_the_same_tasks() -> None:
    def tasks(policy: Any) -> list[tuple[Any, ...]]:
        return [(r.length, r.episode, r.seed, r.goal, r.room, r.n_subtasks) for r in evaluate(policy, SMALL)]

    expert, rand = tasks("expert"), tasks("random")
    assert expert == rand
    assert expert == tasks(random_policy(np.random.default_rng(99)))
    assert len({goal for *_, goal, _, _ in expert}) > 30  # and the tasks vary


def test_both_conditions_start_from_the_same_base_tasks() -> None:
    default = [r.goal for r in evaluate("expert", SMALL)]
    randomized = [r.goal for r in evaluate("expert", replace(SMALL, condition="randomized"))]
    assert default == randomized


def test_episode_seeds_depend_only_on_the_seed_length_and_index() -> None:
    assert episode_seed(0, 3, 7) == episode_seed(0, 3, 7)
    seeds = {episode_seed(s, n, k) for s in range(2) for n in range(1, 7) for k in range(20)}
    assert len(seeds) == 2 * 6 * 20
    first = next(evaluate("random", SMALL))
    assert first.seed == episode_seed(0, 1, 0)


def test_evaluate_is_a_generator_that_yields_each_episode() -> None:
    rows = list(itertools.islice(evaluate("random", EvalConfig()), 3))
    assert [(r.length, r.episode) for r in rows] == [(1, 0), (1, 1), (1, 2)]


def test_a_policy_built_on_a_given_env_is_evaluated_on_it() -> None:
    env = HouseholdEnv(phrasing="unseen")
    rows = summarize(evaluate(expert_policy(env), SMALL, env=env))
    assert all(r["mean_completed"] == 1.0 for r in rows)
    with pytest.raises(UsageError, match="phrasing"):
        next(evaluate("expert", SMALL, env=HouseholdEnv(phrasing="seen")))


def test_summarize_matches_numbers_computed_by_hand() -> None:
    # length 4: proportions 0.5, 0.5, 0.25, 0.75 -> mean 0.5, s = sqrt(0.125 / 3)
    rows = [_row(4, 2, 4), _row(4, 2, 4), _row(4, 1, 4), _row(4, 3, 4), _row(2, 2, 2)]
    rows.append(_row(2, 1, 2, condition="randomized"))
    out = summarize(rows)
    assert [(r["condition"], r["length"], r["n"]) for r in out] == [
        ("default", 2, 1),
        ("default", 4, 4),
        ("randomized", 2, 1),
    ]
    half = 1.959963984540054 * math.sqrt(0.125 / 3) / 2
    assert out[1]["mean_completed"] == pytest.approx(0.5)
    assert out[1]["ci95"] == pytest.approx((0.5 - half, 0.5 + half))
    assert out[1]["ci95"][0] == pytest.approx(0.29996, abs=1e-5)
    assert out[1]["success_rate"] == 0.0
    assert (out[0]["mean_completed"], out[0]["ci95"]) == (1.0, (1.0, 1.0))
    assert out[0]["success_rate"] == 1.0
    assert out[2]["mean_completed"] == 0.5


def test_summarize_agrees_with_the_rows_of_a_real_run() -> None:
    results = list(evaluate("random", replace(SMALL, lengths=(2, 5))))
    summary = summarize(results)
    assert [row["length"] for row in summary] == [2, 5]
    for row in summary:
        mine = [r for r in results if r.length == row["length"]]
        p = [r.completed / r.n_subtasks for r in mine]
        mean = sum(p) / len(p)
        sd = math.sqrt(sum((x - mean) ** 2 for x in p) / (len(p) - 1))
        assert row["n"] == len(mine) == 10
        assert row["mean_completed"] == pytest.approx(mean)
        assert row["ci95"][0] == pytest.approx(max(0.0, mean - 1.96 * sd / math.sqrt(10)), abs=1e-4)
        assert row["ci95"][1] == pytest.approx(min(1.0, mean + 1.96 * sd / math.sqrt(10)), abs=1e-4)
        assert row["success_rate"] == pytest.approx(sum(r.success for r in mine) / 10)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lengths": ()},
        {"lengths": (0, 1)},
        {"lengths": (7,)},
        {"lengths": (2, 2)},
        {"episodes_per_length": 0},
        {"condition": "shuffled"},
        {"seed": -1},
        {"phrasing": "novel"},
    ],
)
def test_eval_config_rejects_bad_values_with_a_usage_error(kwargs: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match=next(iter(kwargs))):
        EvalConfig(**kwargs)


def test_an_unknown_policy_name_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="policy"):
        next(evaluate("greedy", SMALL))
