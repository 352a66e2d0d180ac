"""The exact solve (rgvlm_core.sim.solve) against MDPs small enough to solve by hand."""

from __future__ import annotations

import numpy as np
import pytest

from rgvlm_core.sim.solve import (
    Mdp,
    TooManyStates,
    explore,
    greedy,
    handled_actions,
    policy_iteration,
    rollout,
    solve,
    solve_task,
    value_iteration,
)
from rgvlm_core.sim.tasks import SubtaskSpec, Task
from rgvlm_core.sim.world import ACTION_TOKENS, Obj, State


def loop_or_finish(pay_step: float, pay_back: float, pay_finish: float) -> Mdp:
    """start 0 -a-> 1; from 1, -b-> back to 0 or -c-> 2 (terminal)."""
    return Mdp.from_transitions(
        3, [(0, "a", 1, pay_step), (1, "b", 0, pay_back), (1, "c", 2, pay_finish)], terminal=[2]
    )


def test_a_loop_that_pays_more_than_finishing_is_optimal_with_values_computed_by_hand() -> None:
    # looping: V0 = 0.2 + 0.9 V1, V1 = 0.7 + 0.9 V0 -> V0 = 0.83 / 0.19 = 83/19, V1 = 88/19 (> 2.0)
    solution = solve(loop_or_finish(0.2, 0.7, 2.0), gamma=0.9)
    np.testing.assert_allclose(solution.values, [83 / 19, 88 / 19, 0.0], atol=1e-8)
    assert not solution.rollout.completes
    assert solution.rollout.loop == (0, 1)  # a then b, forever
    assert solution.rollout.path == (0, 1)


def test_a_cost_on_every_step_makes_finishing_optimal_with_values_computed_by_hand() -> None:
    # V1 = max(-0.3 + 0.9 V0, 1.0) = 1.0, V0 = -0.8 + 0.9 * 1.0 = 0.1
    solution = solve(loop_or_finish(-0.8, -0.3, 1.0), gamma=0.9)
    np.testing.assert_allclose(solution.values, [0.1, 1.0, 0.0], atol=1e-8)
    assert solution.rollout.completes
    assert solution.rollout.steps == 2
    assert solution.rollout.loop == ()


def test_terminal_states_and_dead_ends_are_worth_nothing_and_have_no_action() -> None:
    # 0 -> 1 (dead end, no transitions) pays 1; 0 -> 2 (terminal) pays 0.5; transitions given from the
    # terminal state are ignored
    mdp = Mdp.from_transitions(3, [(0, "x", 1, 1.0), (0, "y", 2, 0.5), (2, "z", 0, 100.0)], terminal=[2])
    values = value_iteration(mdp, gamma=0.5)
    np.testing.assert_allclose(values, [1.0, 0.0, 0.0])
    policy = greedy(mdp, values, gamma=0.5)
    assert policy.tolist() == [0, -1, -1]
    run = rollout(mdp, policy)
    assert (run.completes, run.path, run.loop) == (False, (0,), ())


def test_ties_go_to_the_first_transition_given() -> None:
    mdp = Mdp.from_transitions(3, [(0, "x", 1, 1.0), (0, "y", 2, 1.0)], terminal=[1, 2])
    assert greedy(mdp, value_iteration(mdp, 0.9), 0.9).tolist() == [0, -1, -1]


def test_policy_iteration_reaches_the_values_computed_by_hand() -> None:
    np.testing.assert_allclose(policy_iteration(loop_or_finish(0.2, 0.7, 2.0), 0.9), [83 / 19, 88 / 19, 0])
    np.testing.assert_allclose(policy_iteration(loop_or_finish(-0.8, -0.3, 1.0), 0.9), [0.1, 1.0, 0])


def test_value_iteration_refuses_an_undiscounted_problem() -> None:
    with pytest.raises(ValueError, match="gamma"):
        value_iteration(loop_or_finish(0.2, 0.7, 2.0), gamma=1.0)


# -- the simulator wrapper on a tiny room: one apple in a closed fridge -------------------------------
APPLE_IN_FRIDGE = State("kitchen", ("CounterTop", "Fridge"), (Obj("Apple", "Fridge"),))
PICKUP_APPLE = SubtaskSpec("Pickup", "Apple")


def test_explore_stops_at_states_where_the_subtask_is_done_and_knows_the_expert_distance() -> None:
    graph = explore(APPLE_IN_FRIDGE, PICKUP_APPLE)
    # door; at CounterTop; at Fridge closed; at Fridge open; at CounterTop with the fridge open; holding
    assert len(graph.states) == 6
    assert graph.terminal.sum() == 1
    assert graph.remaining[0] == 3  # go to the fridge, open it, pick up the apple
    assert not graph.terminal[graph.src].any()  # nothing leaves a terminal state


def test_explore_past_its_bound_raises_instead_of_cutting_the_space_short() -> None:
    with pytest.raises(TooManyStates, match="skipped: more than 3 states"):
        explore(APPLE_IN_FRIDGE, PICKUP_APPLE, max_states=3)


def test_a_task_completes_when_each_subtask_pays_only_on_completion() -> None:
    task = Task(
        "pick_and_place_simple",
        "kitchen",
        (PICKUP_APPLE, SubtaskSpec("Put", "Apple", "CounterTop")),
        ("", ""),
        "",
    )

    def sparse(graph):  # type: ignore[no-untyped-def]
        return graph.terminal[graph.dst].astype(float)

    solved = solve_task(task, APPLE_IN_FRIDGE, sparse, gamma=0.97)
    assert solved.status == "completes"
    assert [s.steps for s in solved.subtasks] == [3, 2]
    assert solved.optimal_length == solved.expert_length == 5


def test_a_task_loops_when_every_step_pays() -> None:
    task = Task("pick_and_place_simple", "kitchen", (PICKUP_APPLE,), ("",), "")

    def always(graph):  # type: ignore[no-untyped-def]
        return np.full(graph.src.size, 0.5) + graph.terminal[graph.dst]

    solved = solve_task(task, APPLE_IN_FRIDGE, always, gamma=0.97)
    assert solved.status == "loops"
    assert solved.optimal_length is None
    first = solved.subtasks[0]
    assert not first.completes and first.loop
    assert all(token in ACTION_TOKENS for token in first.loop)
    assert first.value == pytest.approx(0.5 / (1 - 0.97), rel=1e-6)


def test_a_task_whose_space_is_too_large_is_skipped() -> None:
    task = Task("pick_and_place_simple", "kitchen", (PICKUP_APPLE,), ("",), "")
    solved = solve_task(task, APPLE_IN_FRIDGE, lambda g: np.zeros(g.src.size), max_states=2)
    assert solved.status == "skipped"
    assert solved.subtasks[0].skipped


def test_policy_and_value_iteration_agree_on_a_simulator_subtask() -> None:
    graph = explore(APPLE_IN_FRIDGE, PICKUP_APPLE)
    rng = np.random.default_rng(0)
    mdp = graph.mdp(rng.uniform(-1, 1, graph.src.size))
    np.testing.assert_allclose(policy_iteration(mdp, 0.97), value_iteration(mdp, 0.97), atol=1e-7)


# a mug on the counter beside the apple: the expert never touches it, so the subtask scope leaves it
WITH_A_MUG = State("kitchen", ("CounterTop", "Fridge"), (Obj("Apple", "Fridge"), Obj("Mug", "CounterTop")))


def test_the_subtask_scope_does_to_objects_only_what_the_expert_does() -> None:
    handled = handled_actions(WITH_A_MUG, PICKUP_APPLE)
    assert handled == {("PickupObject", "Apple")}
    scoped = explore(WITH_A_MUG, PICKUP_APPLE, handled=handled)
    full = explore(WITH_A_MUG, PICKUP_APPLE)
    taken = {ACTION_TOKENS[a] for a in scoped.action}
    assert "PickupObject(Mug)" not in taken
    assert "PickupObject(Mug)" in {ACTION_TOKENS[a] for a in full.action}
    assert set(scoped.states) < set(full.states)  # a sub-MDP: the same states, fewer of them reached


def test_what_the_agent_holds_may_be_picked_up_again_in_the_subtask_scope() -> None:
    holding = State(
        "kitchen", ("CounterTop", "Fridge"), (Obj("Apple", "Fridge"), Obj("Mug", "@agent")), held=1
    )
    assert ("PickupObject", "Mug") in handled_actions(holding, PICKUP_APPLE)
