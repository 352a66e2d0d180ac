"""World rules, state vector, tasks and the expert planner of the embedded simulator."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rgvlm_core.sim.catalog import ROOM_KINDS, fits
from rgvlm_core.sim.encode import STATE_DIM, encode
from rgvlm_core.sim.expert import plan
from rgvlm_core.sim.language import GOAL_PHRASES
from rgvlm_core.sim.scenes import randomize, sample_task
from rgvlm_core.sim.serialize import state_from_dict, state_to_dict
from rgvlm_core.sim.tasks import TASK_TYPES, SubtaskSpec, chain_lengths, instruction_variants, progress
from rgvlm_core.sim.world import HELD, N_ACTIONS, Obj, State, action_index, apply, valid_mask


def _random_walk_states(seed: int, n_tasks: int = 60, steps: int = 25) -> list[State]:
    """States reached by random valid and invalid actions from sampled scenes."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n_tasks):
        _, s = sample_task(rng, int(rng.integers(1, 7)))
        if k % 2:
            s = randomize(s, rng)
        for _ in range(steps):
            out.append(s)
            mask = valid_mask(s)
            choices = np.flatnonzero(mask) if rng.random() < 0.9 else np.arange(N_ACTIONS)
            s, _ = apply(s, int(rng.choice(choices)))
    return out


def _kitchen(**kw: object) -> State:
    base = State(
        room="kitchen",
        locations=("CounterTop", "Fridge", "Microwave", "SinkBasin"),
        objects=(Obj("Apple", "CounterTop"), Obj("Knife", "CounterTop"), Obj("Mug", "Fridge")),
    )
    return State(**{**base.__dict__, **kw})  # type: ignore[arg-type]


def do(s: State, *tokens: str) -> State:
    for token in tokens:
        s, err = apply(s, action_index(token))
        assert err is None, f"{token}: {err}"
    return s


def test_the_mask_marks_exactly_the_actions_the_rules_accept() -> None:
    for s in _random_walk_states(0)[::3]:
        mask = valid_mask(s)
        for a in range(N_ACTIONS):
            _, err = apply(s, a)
            assert mask[a] == (err is None), (a, err)


def test_invalid_actions_leave_the_state_unchanged_and_say_why() -> None:
    for s in _random_walk_states(1)[::5]:
        for a in np.flatnonzero(~valid_mask(s)):
            after, err = apply(s, int(a))
            assert after is s and isinstance(err, str) and err


def test_the_agent_holds_one_object_at_a_time() -> None:
    s = do(_kitchen(), "GotoLocation(CounterTop)", "PickupObject(Apple)")
    after, err = apply(s, action_index("PickupObject(Knife)"))
    assert after is s and err == "hands are full"


def test_closed_receptacles_hide_their_contents_until_opened() -> None:
    s = do(_kitchen(), "GotoLocation(Fridge)")
    assert apply(s, action_index("PickupObject(Mug)"))[1] == "no reachable Mug here"
    s = do(s, "OpenObject(Fridge)", "PickupObject(Mug)")
    assert s.held is not None and s.objects[s.held].cls == "Mug"


def test_heating_cooling_cleaning_and_slicing_change_the_object() -> None:
    s = do(_kitchen(), "GotoLocation(CounterTop)", "PickupObject(Knife)", "SliceObject(Apple)")
    assert s.objects[0].sliced
    s = do(s, "PutObject(CounterTop)", "PickupObject(Apple)", "GotoLocation(Microwave)", "HeatObject(Apple)")
    assert s.objects[0].hot and not s.objects[0].cold
    s = do(s, "GotoLocation(Fridge)", "CoolObject(Apple)")
    assert s.objects[0].cold and not s.objects[0].hot
    s = do(s, "GotoLocation(SinkBasin)", "CleanObject(Apple)")
    assert s.objects[0].clean and s.where(0) == HELD


def test_slicing_needs_a_knife_in_hand_and_lamps_toggle() -> None:
    s = do(_kitchen(), "GotoLocation(CounterTop)")
    assert apply(s, action_index("SliceObject(Apple)"))[1] == "slicing needs a knife in hand"
    room = State(room="bedroom", locations=("Desk", "DeskLamp"), objects=(Obj("Book", "Desk"),))
    lit = do(room, "GotoLocation(DeskLamp)", "ToggleObject(DeskLamp)")
    assert lit.lit == {"DeskLamp"} and do(lit, "ToggleObject(DeskLamp)").lit == frozenset()


def test_objects_go_only_where_they_fit() -> None:
    assert fits("Apple", "Fridge") and not fits("Pillow", "Fridge") and not fits("Apple", "Bed")
    s = do(_kitchen(), "GotoLocation(CounterTop)", "PickupObject(Apple)", "GotoLocation(SinkBasin)")
    assert valid_mask(s)[action_index("PutObject(SinkBasin)")]
    for kind in ROOM_KINDS.values():
        for obj in kind.objects:
            assert any(fits(obj, loc) for loc in kind.required + kind.optional), (kind.name, obj)


def test_the_state_vector_has_one_length_and_stays_in_range() -> None:
    vectors = np.stack([encode(s) for s in _random_walk_states(2)])
    assert vectors.shape[1] == STATE_DIM and vectors.dtype == np.float32
    assert vectors.min() >= 0 and vectors.max() <= 2
    assert len({v.tobytes() for v in vectors}) > len(vectors) // 3


def test_states_survive_serialisation() -> None:
    for s in _random_walk_states(3)[::7]:
        assert state_from_dict(state_to_dict(s)) == s


def test_tasks_of_every_length_from_one_to_six_exist_for_every_room_kind_that_allows_them() -> None:
    rng = np.random.default_rng(4)
    for n in range(1, 7):
        task, state = sample_task(rng, n)
        assert len(task) == n and len(task.instructions) == n and task.goal
        assert progress(state, task, 0) == 0, "a task must not be done before the agent acts"
    assert {t: chain_lengths(t) for t in TASK_TYPES}["pick_heat_then_place_in_recep"] == (3, 6)


@pytest.mark.parametrize("condition", ["default", "randomized"])
def test_the_expert_completes_every_sampled_task(condition: str) -> None:
    rng = np.random.default_rng(5)
    for i in range(300):
        n, task_type = 1 + i % 6, TASK_TYPES[i % len(TASK_TYPES)]
        task, s = sample_task(rng, n, task_type=task_type if max(chain_lengths(task_type)) >= n else None)
        if condition == "randomized":
            s = randomize(s, rng)
        done = 0
        for a in plan(s, task):
            s, err = apply(s, a)
            assert err is None
            done = progress(s, task, done)
        assert done == len(task)


def test_held_out_phrasings_never_coincide_with_seen_ones() -> None:
    specs = [
        SubtaskSpec(kind, obj, target)
        for kind, obj, target in itertools.product(
            ("Pickup", "Put", "Heat", "Cool", "Clean", "Slice", "Toggle"),
            ("Apple", "DeskLamp"),
            ("Fridge", None),
        )
    ]
    for spec in specs:
        assert not set(instruction_variants(spec, "seen")) & set(instruction_variants(spec, "unseen"))
    for phrases in GOAL_PHRASES.values():
        assert len(set(phrases)) == len(phrases)
