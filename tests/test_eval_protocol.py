"""The evaluation protocol of a fair comparison: a step budget per subtask, phrasings and the first
subtask's kind recorded, a completion curve during training, and validation kept apart from test."""

from __future__ import annotations

import numpy as np
import pytest

from rgvlm_core.errors import UsageError
from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment, split_seeds
from rgvlm_core.rl.iql import IQLConfig
from rgvlm_core.sim.env import HouseholdEnv
from rgvlm_core.sim.evaluate import EvalConfig, evaluate
from rgvlm_core.sim.world import ACTIONS


def _gotos(info: dict) -> list[int]:  # type: ignore[type-arg]
    return [int(a) for a in np.flatnonzero(info["action_mask"]) if ACTIONS[a][0] == "GotoLocation"]


def test_a_subtask_budget_cuts_off_after_that_many_steps_on_one_subtask() -> None:
    env = HouseholdEnv(subtask_budget=7)
    _, info = env.reset(seed=2, options={"n_subtasks": 1})
    assert 2 * info["expert_length"] < 7  # the old per-task budget would have ended it sooner
    gotos = _gotos(info)
    for step in range(1, 8):
        # walking between two places never completes a subtask
        _, reward, terminated, truncated, info = env.step(gotos[step % 2])
        assert reward == 0.0 and not terminated and truncated == (step == 7)


def test_the_subtask_budget_restarts_when_a_subtask_completes() -> None:
    env = HouseholdEnv(subtask_budget=3)
    _, info = env.reset(seed=2, options={"n_subtasks": 3})
    while info["subtask_index"] == 0:  # the expert's 1-3 steps complete the first subtask in budget
        _, _, _, truncated, info = env.step(env.expert_plan()[0])
        assert not truncated
    gotos = _gotos(info)
    ends = []
    for k in range(3):  # a fresh budget of 3 steps for the second subtask
        _, _, terminated, truncated, info = env.step(gotos[k % 2])
        ends.append((terminated, truncated))
    assert ends == [(False, False), (False, False), (False, True)]


def test_evaluation_records_phrasing_and_the_first_subtask_kind() -> None:
    config = EvalConfig(lengths=(1, 3), episodes_per_length=3, phrasing="seen", subtask_budget=6)
    rows = list(evaluate("expert", config))
    assert {r.phrasing for r in rows} == {"seen"} and all(r.success for r in rows)
    env = HouseholdEnv(phrasing="seen", subtask_budget=6)
    for r in rows:
        env.reset(seed=r.seed, options={"n_subtasks": r.length, "condition": r.condition})
        assert r.first_kind == env.task.subtasks[0].kind
    with pytest.raises(UsageError, match="subtask budget is None"):
        list(evaluate("expert", config, env=HouseholdEnv(phrasing="seen")))


def test_validation_and_test_splits_share_neither_tasks_nor_training_seeds() -> None:
    test_seeds, test_eval = split_seeds("test", 5)
    val_seeds, val_eval = split_seeds("validation", 5)
    assert test_seeds == (0, 1, 2, 3, 4) and not set(test_seeds) & set(val_seeds)
    assert test_eval != val_eval
    with pytest.raises(UsageError, match="use test or validation"):
        split_seeds("train", 2)


def test_an_experiment_stores_both_phrasings_and_a_completion_curve(sample_ws) -> None:  # type: ignore[no-untyped-def]
    spec = ExperimentSpec(
        methods=("sparse",),
        seeds=(0,),
        encoder="hash",
        episodes_per_length=2,
        conditions=("default",),
        phrasings=("unseen", "seen"),
        curve_every=4,
        curve_episodes=1,
        name="curve",
    )
    list(run_experiment(sample_ws, spec, IQLConfig(steps=10, log_every=2)))
    reader = sample_ws.reader()
    results = reader.rows("SELECT phrasing, first_kind, count(*) AS n FROM eval_results GROUP BY ALL")
    curve = reader.rows(
        "SELECT step, phrasing, sum(episodes) AS episodes, avg(proportion) AS p FROM eval_curves "
        "GROUP BY ALL ORDER BY step, phrasing"
    )
    final = reader.rows(
        "SELECT phrasing, avg(completed / n_subtasks) AS p FROM eval_results GROUP BY ALL ORDER BY 1"
    )
    reader.close()
    assert {r["phrasing"] for r in results} == {"seen", "unseen"}
    assert sum(r["n"] for r in results) == 2 * 6 * 2 and all(r["first_kind"] for r in results)
    # checkpoints at 4 and 8 updates on 1 task per length; the final policy (10) on all 2 per length
    assert [(r["step"], r["phrasing"], r["episodes"]) for r in curve] == [
        (4, "seen", 6), (4, "unseen", 6), (8, "seen", 6), (8, "unseen", 6),
        (10, "seen", 12), (10, "unseen", 12),
    ]  # fmt: skip
    # the curve's last point is the final evaluation (mean of per-length means = overall mean here)
    assert [r["p"] for r in curve[-2:]] == pytest.approx([r["p"] for r in final])
