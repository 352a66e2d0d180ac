"""The reward sanity check (rgvlm_core.reward_check): rewards of simulator transitions by hand, the solve's
verdict per mapping, the data's returns by hand, and what it reports when it cannot measure."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rgvlm_core.audit import reference_run
from rgvlm_core.errors import RGVLMError
from rgvlm_core.reward_check import RewardModel, check_reward
from rgvlm_core.reward_returns import segment_returns
from rgvlm_core.rl.dataset import parse_reward_source, reward_rows
from rgvlm_core.sample import label_sample
from rgvlm_core.sim.solve import SubtaskGraph, explore
from rgvlm_core.sim.tasks import SubtaskSpec
from rgvlm_core.sim.world import ACTION_TOKENS, Obj, State
from rgvlm_core.workspace import StoreReader, Workspace

# one apple in a closed fridge: the expert goes to the fridge, opens it, picks the apple up (3 steps)
APPLE_IN_FRIDGE = State("kitchen", ("CounterTop", "Fridge"), (Obj("Apple", "Fridge"),))
EXPERT = ("GotoLocation(Fridge)", "OpenObject(Fridge)", "PickupObject(Apple)")


def paid(graph: SubtaskGraph, rewards: np.ndarray, tokens: tuple[str, ...]) -> list[float]:
    """The rewards of the transitions taken by following `tokens` from the start state."""
    out, state = [], 0
    for token in tokens:
        [e] = [
            e
            for e in range(graph.src.size)
            if graph.src[e] == state and ACTION_TOKENS[graph.action[e]] == token
        ]
        out.append(float(rewards[e]))
        state = int(graph.dst[e])
    return out


@pytest.fixture(scope="module")
def graph() -> SubtaskGraph:
    return explore(APPLE_IN_FRIDGE, SubtaskSpec("Pickup", "Apple"))


# scores by the reference rule: progress 7 (the expert's remaining plan 3 -> 2 -> 1), completion 10;
# a step to the counter leaves the plan at 3: no progress, 2
@pytest.mark.parametrize(
    ("kind", "mapping", "lam", "expert", "detour"),
    [
        ("sparse", None, 1.0, [0.0, 0.0, 1.0], 0.0),
        ("sparse+vlm", "raw", 1.0, [0.7, 0.7, 2.0], 0.2),
        ("sparse+vlm", "cost", 1.0, [-0.3, -0.3, 1.0], -0.8),
        ("sparse+vlm", "centred", 1.0, [0.2, 0.2, 1.5], -0.3),
        ("vlm", "raw", 0.5, [0.35, 0.35, 0.5], 0.1),
        # phi = progress_score(share of the plan done) / 10: 0 at the start, 0.3 at the closed fridge
        # (1/3 done), 0.7 once open (2/3), 0 after completing: 0.97*0.3 - 0, 0.97*0.7 - 0.3, 1 + 0 - 0.7
        ("sparse+vlm", "shaped", 1.0, [0.291, 0.379, 0.3], 0.0),
        ("sparse+vlm", "shaped", 0.5, [0.1455, 0.1895, 0.65], 0.0),
    ],
)
def test_transition_rewards_are_the_mappings_of_the_reference_rule_computed_by_hand(
    graph: SubtaskGraph, kind: str, mapping: str | None, lam: float, expert: list[float], detour: float
) -> None:
    rewards = RewardModel(kind, mapping, lam, 0.97)(graph)
    assert paid(graph, rewards, EXPERT) == pytest.approx(expert)
    assert paid(graph, rewards, ("GotoLocation(CounterTop)",)) == pytest.approx([detour])


@pytest.fixture()
def labelled(sample_ws: Workspace) -> Workspace:
    """The sample with its noise-free reference run and its noisy run."""
    label_sample(sample_ws)
    return sample_ws


FEW = {"lengths": (1, 2), "tasks_per_length": 1}  # two simulator tasks: a few seconds


def test_raw_with_done_per_subtask_is_flagged_as_paying_loops(labelled: Workspace) -> None:
    reader = labelled.reader()
    check = check_reward(reader, "sparse+reference@raw", **FEW)
    reader.close()
    assert check.solved == 2
    assert check.optimal_completes is not None and check.optimal_completes < 1
    assert check.pays_loops
    example = check.example_loop()
    assert example is not None and example[1]  # the actions the optimal policy repeats forever
    assert check.verdict()[0].startswith("sparse+reference@raw pays loops")


@pytest.mark.parametrize("source", ["sparse", "sparse+reference@cost", "sparse+reference@shaped"])
def test_sparse_cost_and_shaped_keep_completion_optimal_on_every_task_solved(
    labelled: Workspace, source: str
) -> None:
    reader = labelled.reader()
    check = check_reward(reader, source, **FEW)
    reader.close()
    assert check.solved == 2
    assert check.optimal_completes == 1.0
    assert check.pays_loops is False
    assert "keeps completion optimal" in check.verdict()[0]


def _first_expert_segment(reader: StoreReader) -> tuple[str, list[dict[str, Any]]]:
    """The first expert episode's subtask-0 steps with their noise-free reference scores."""
    episode = reader.scalar(
        "SELECT min(e.episode_id) FROM episodes e JOIN trajectories t USING (trajectory_id) "
        "WHERE t.behaviour = 'expert' AND e.dataset = 'sim'"
    )
    steps = reader.rows(
        "SELECT s.t, s.sparse_reward, l.score FROM episodes e JOIN steps s USING (trajectory_id) "
        "JOIN labels l ON l.episode_id = e.episode_id AND l.t = s.t "
        "WHERE e.episode_id = ? AND s.subtask_idx = 0 AND l.run_id = ? ORDER BY s.t",
        [episode, reference_run(reader)],
    )
    return str(episode), steps


def test_a_segments_return_is_its_discounted_reward_sum_by_hand(labelled: Workspace) -> None:
    reader = labelled.reader()
    episode, steps = _first_expert_segment(reader)
    assert steps and steps[-1]["sparse_reward"] > 0  # the segment ends where subtask 0 completes
    by_hand = sum(0.97**k * (s["sparse_reward"] + s["score"] / 10) for k, s in enumerate(steps))
    sparse_by_hand = 0.97 ** (len(steps) - 1)
    got = {}
    for text in ("sparse+reference@raw", "sparse"):
        source = parse_reward_source(text, reader)
        table = segment_returns(reward_rows(reader, source), 0.97)
        row = table[(table["episode_id"] == episode) & (table["subtask_idx"] == 0)].iloc[0]
        got[text] = (float(row["return"]), int(row["steps"]), row["behaviour"])
    reader.close()
    assert got["sparse+reference@raw"] == (pytest.approx(by_hand), len(steps), "expert")
    assert got["sparse"] == (pytest.approx(sparse_by_hand), len(steps), "expert")


def test_expert_and_other_means_cover_the_kinds_both_completed(labelled: Workspace) -> None:
    reader = labelled.reader()
    check = check_reward(reader, "sparse+reference@raw", **FEW)
    table = segment_returns(reward_rows(reader, parse_reward_source("sparse+reference@raw", reader)), 0.97)
    reader.close()
    returns = check.returns
    assert returns is not None
    shared = {k["kind"] for k in returns.by_kind}
    mine = table[table["kind"].isin(shared)]
    expert = mine["behaviour"] == "expert"
    assert returns.expert_return == pytest.approx(mine.loc[expert, "return"].mean())
    assert returns.other_return == pytest.approx(mine.loc[~expert, "return"].mean())
    assert (returns.expert_segments, returns.other_segments) == (int(expert.sum()), int((~expert).sum()))
    # raw pays every step: the others' detours earn more, and the worst offender is one of them
    assert returns.other_return > returns.expert_return
    worst = returns.worst
    assert worst is not None and worst.behaviour != "expert"
    assert worst.segment_return > worst.expert_mean
    assert check.example_episode() == {
        "episode": worst.episode_id,
        "step": worst.first_step,
        "run": check.source.run_id,
    }


def test_part_a_is_reported_unavailable_with_its_reason_and_the_solve_still_runs(
    labelled: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_progress(*args: object, **kwargs: object) -> None:
        raise RGVLMError("label run 'x' has no progress answers, and the shaped mapping is built from them")

    monkeypatch.setattr("rgvlm_core.reward_check.reward_rows", no_progress)
    reader = labelled.reader()
    check = check_reward(reader, "sparse+reference@shaped", **FEW)
    reader.close()
    assert check.returns is None
    assert "no progress answers" in str(check.returns_unavailable)
    doc = check.to_json()
    assert doc["expert_return"] is None and doc["other_return"] is None
    assert "unavailable" in doc["verdict"][1] and "no progress answers" in doc["verdict"][1]
    assert doc["optimal_completes"] == 1.0


def test_a_bounded_state_space_reports_its_tasks_as_skipped(labelled: Workspace) -> None:
    reader = labelled.reader()
    check = check_reward(reader, "sparse", max_states=5, **FEW)
    reader.close()
    doc = check.to_json()
    assert (doc["tasks"], doc["solved"], doc["skipped"]) == (2, 0, 2)
    assert doc["optimal_completes"] is None and doc["pays_loops"] is None
    assert all(row["status"] == "skipped" for row in doc["task_rows"])
    assert all(row["subtasks"][-1]["skipped"] for row in doc["task_rows"])
    assert "skipped (more than 5 states)" in doc["verdict"][0]
