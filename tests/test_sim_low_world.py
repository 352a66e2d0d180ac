"""The low-level household's parts: floor plans, navigation, world rules, the expert, states and vectors."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np
import pytest

from rgvlm_core.errors import UsageError
from rgvlm_core.sim.expert import PlanningError
from rgvlm_core.sim.low import encode as low_encode
from rgvlm_core.sim.low.expert import plan, subtask_remaining
from rgvlm_core.sim.low.floorplan import (
    FLOOR_PLAN_SETS,
    STEP,
    edge_poses,
    generated_floor_plan,
    layouts_dir,
    load_floor_plan,
    parse_floor_plans,
)
from rgvlm_core.sim.low.nav import NAV_ACTIONS, UNREACHABLE, navigator
from rgvlm_core.sim.low.scenes import lengths, randomize_low, sample_low_task
from rgvlm_core.sim.low.serialize import (
    low_state_from_dict,
    low_state_to_dict,
    plan_from_string,
    plan_to_string,
)
from rgvlm_core.sim.low.world import (
    ACTION_INDEX,
    ACTION_TOKENS,
    N_ACTIONS,
    LowState,
    apply,
    progress,
    start,
    valid_mask,
)
from rgvlm_core.sim.tasks import SubtaskSpec
from rgvlm_core.sim.world import Obj, State


def _layouts() -> None:
    if not (layouts_dir() / "FloorPlan1-layout.npy").is_file():
        pytest.skip(
            f"ALFRED layouts not found at {layouts_dir()} (../shared/alfred/layouts beside the checkout)"
        )


def _kitchen_plan():
    return generated_floor_plan(
        np.random.default_rng(3), "kitchen", ("CounterTop", "Fridge", "Microwave", "SinkBasin", "Cabinet")
    )


def _at(plan, world: State, cls: str) -> LowState:
    return start(plan, world, plan.receptacle(cls).pose)


def _do(s: LowState, *tokens: str) -> LowState:
    for token in tokens:
        s, err = apply(s, ACTION_INDEX[token])
        assert err is None, f"{token}: {err}"
    return s


# -- floor plans -------------------------------------------------------------------------------------
def test_every_alfred_floor_plan_loads_with_one_usable_receptacle_per_class_on_its_floor() -> None:
    _layouts()
    for numbers in FLOOR_PLAN_SETS.values():
        for n in numbers:
            fp = load_floor_plan(n)
            assert fp.room == {0: "kitchen", 2: "living room", 3: "bedroom", 4: "bathroom"}[n // 100]
            assert len(set(fp.locations)) == len(fp.locations) >= 4
            nav = navigator(fp)
            for r in fp.receptacles:
                assert r.pose[:2] in fp.cells
                assert nav.distance(fp.start, r.pose) < UNREACHABLE, (fp.name, r.cls)


def test_unposed_receptacles_stand_on_the_edge_facing_out_and_the_same_way_every_time() -> None:
    _layouts()
    fp = load_floor_plan(301)  # the desk lamp is not posed by ALFRED's layouts
    lamp = fp.receptacle("DeskLamp")
    assert not lamp.posed
    (ix, iz, heading, _) = lamp.pose
    dx, dz = STEP[heading]
    assert (ix + dx, iz + dz) not in fp.cells
    load_floor_plan.cache_clear()
    assert load_floor_plan(301).receptacle("DeskLamp") == lamp


def test_edge_poses_face_out_of_the_floor() -> None:
    cells = frozenset({(0, 0), (1, 0)})
    assert sorted(edge_poses(cells)) == sorted(
        [((0, 0), 0), ((0, 0), 180), ((0, 0), 270), ((1, 0), 0), ((1, 0), 90), ((1, 0), 180)]
    )


def test_floor_plan_lists_name_sets_numbers_and_ranges_and_refuse_unknown_ones() -> None:
    assert parse_floor_plans("kitchens")[:3] == (1, 2, 3)
    assert parse_floor_plans("7,301-303,FloorPlan401") == (7, 301, 302, 303, 401)
    with pytest.raises(UsageError, match="'attic'"):
        parse_floor_plans("attic")
    with pytest.raises(UsageError, match="131"):
        parse_floor_plans("131")


def test_a_missing_layouts_folder_is_named_with_the_setting_that_fixes_it(tmp_path) -> None:
    load_floor_plan.cache_clear()
    with pytest.raises(UsageError, match=r"FloorPlan5-layout\.npy.*RGVLM_ALFRED_LAYOUTS"):
        load_floor_plan(5, str(tmp_path))


# -- navigation ----------------------------------------------------------------------------------------
def test_moves_follow_alfred_headings_and_stop_at_walls_and_look_limits() -> None:
    fp = _kitchen_plan()
    nav = navigator(fp)
    x, z = min(fp.cells)
    assert nav.move((x, z, 0, 30), 0) == (x, z + 1, 0, 30)  # heading 0 faces +z
    assert nav.move((x, z, 90, 30), 0) == (x + 1, z, 90, 30)
    assert nav.move((x, z, 180, 30), 0) is None  # a wall
    assert nav.move((x, z, 0, 30), 1) == (x, z, 270, 30)  # RotateLeft
    assert nav.move((x, z, 0, -30), 3) is None  # cannot look further up
    assert nav.move((x, z, 0, 60), 4) is None
    assert nav.move((x, z, 0, 30), 4) == (x, z, 0, 45)


def test_distance_fields_are_exact_shortest_paths() -> None:
    fp = _kitchen_plan()
    nav = navigator(fp)
    target = fp.receptacle("Fridge").pose
    # brute-force breadth-first search forward from a few poses
    for p in range(0, nav.n_poses, 97):
        seen, todo = {p: 0}, deque([p])
        while todo:
            q = todo.popleft()
            for a in range(len(NAV_ACTIONS)):
                r = int(nav.next[q, a])
                if r >= 0 and r not in seen:
                    seen[r] = seen[q] + 1
                    todo.append(r)
        goal = nav.index(target)
        assert nav.field(target)[p] == seen[goal]
        path = nav.path(nav.pose(p), target)
        pose = nav.pose(p)
        for a in path:
            pose = nav.move(pose, a)
        assert len(path) == seen[goal] and pose == target


# -- world rules -----------------------------------------------------------------------------------------
def _kitchen_world(plan, *objects: Obj) -> State:
    return State("kitchen", plan.locations, tuple(objects))


def test_interactions_need_the_receptacle_in_front() -> None:
    fp = _kitchen_plan()
    world = _kitchen_world(fp, Obj("Apple", "CounterTop"))
    s = start(fp, world, fp.receptacle("Fridge").pose)
    _, err = apply(s, ACTION_INDEX["PickupObject(Apple)"])
    assert err is not None and "no reachable Apple" in err
    nowhere = start(fp, world, (*sorted(fp.cells)[len(fp.cells) // 2][:2], 0, 0))
    if nowhere.world.agent is None:
        assert (
            apply(nowhere, ACTION_INDEX["PickupObject(Apple)"])[1] == "nothing in reach in front of the agent"
        )
    s = _do(_at(fp, world, "CounterTop"), "PickupObject(Apple)")
    assert s.world.held == 0
    # one look down and the counter is no longer in front
    looked = _do(_at(fp, world, "CounterTop"), "LookDown_15")
    assert looked.world.agent is None


def test_heating_is_alfreds_microwave_sequence_and_the_rules_decide_when_it_is_hot() -> None:
    fp = _kitchen_plan()
    s = _do(
        _at(fp, _kitchen_world(fp, Obj("Apple", "CounterTop", moved=False)), "CounterTop"),
        "PickupObject(Apple)",
    )
    s = start(fp, s.world, fp.receptacle("Microwave").pose)
    s = _do(s, "OpenObject(Microwave)", "PutObject(Microwave)")
    assert (
        apply(s, ACTION_INDEX["ToggleObjectOn(Microwave)"])[1] == "close the microwave before switching it on"
    )
    s = _do(s, "CloseObject(Microwave)", "ToggleObjectOn(Microwave)")
    assert s.world.objects[0].hot
    assert apply(s, ACTION_INDEX["OpenObject(Microwave)"])[1] == "switch the microwave off before opening it"
    assert not valid_mask(s)[ACTION_INDEX["OpenObject(Microwave)"]]
    s = _do(s, "ToggleObjectOff(Microwave)", "OpenObject(Microwave)")
    heat = SubtaskSpec("Heat", "Apple")
    assert not progress(s.world, _task(heat), 0)  # hot but not in hand: ALFRED's subgoal ends with the pickup
    s = _do(s, "PickupObject(Apple)")
    assert progress(s.world, _task(heat), 0) == 1


def test_closing_the_fridge_cools_and_the_running_faucet_cleans() -> None:
    fp = _kitchen_plan()
    world = _kitchen_world(fp, Obj("Apple", "Fridge"), Obj("Mug", "SinkBasin"), Obj("Tomato", "CounterTop"))
    s = _do(_at(fp, world, "Fridge"), "OpenObject(Fridge)")
    assert not s.world.objects[0].cold
    s = _do(s, "CloseObject(Fridge)")
    assert s.world.objects[0].cold and not s.world.objects[2].cold
    s = _do(start(fp, s.world, fp.receptacle("SinkBasin").pose), "ToggleObjectOn(Faucet)")
    assert s.world.objects[1].clean and not s.world.objects[2].clean
    assert apply(s, ACTION_INDEX["ToggleObjectOn(Faucet)"])[1] == "the Faucet is already on"


def test_the_action_mask_is_exact_on_random_rollouts() -> None:
    rng = np.random.default_rng(0)
    for k in range(6):
        _, s = sample_low_task(rng, 1 + k, None)
        for _ in range(60):
            mask = valid_mask(s)
            for a in range(N_ACTIONS):
                assert (apply(s, a)[1] is None) == bool(mask[a]), (ACTION_TOKENS[a], s.world.agent)
            valid = np.flatnonzero(mask)
            s, _ = apply(s, int(valid[int(rng.integers(len(valid)))]))


# -- the expert -------------------------------------------------------------------------------------------
def _task(*subtasks: SubtaskSpec):
    from rgvlm_core.sim.tasks import Task

    return Task("custom", "kitchen", subtasks, tuple("x" for _ in subtasks), "goal")


def _walk(s: LowState, task) -> tuple[int, list[int]]:
    """(subtasks done, steps per completed subtask) of following the expert's plan."""
    done, seg, per = 0, 0, []
    for a in plan(s, task):
        s, err = apply(s, a)
        assert err is None
        seg += 1
        now = progress(s.world, task, done)
        if now > done:
            per.append(seg)
            seg, done = 0, now
    return done, per


def test_the_expert_completes_every_posed_length_on_every_alfred_floor_plan() -> None:
    _layouts()
    per_subtask: list[int] = []
    for numbers in FLOOR_PLAN_SETS.values():
        for n in numbers:
            fp = load_floor_plan(n)
            for length in lengths(fp):
                rng = np.random.default_rng([n, length])
                task, s = sample_low_task(rng, length, fp)
                if length % 2:
                    s = randomize_low(s, rng)
                done, per = _walk(s, task)
                assert done == length, (fp.name, length, task.goal)
                per_subtask += per
    assert np.mean(per_subtask) >= 10  # ALFRED: about 14 low-level steps per subtask


def test_kitchens_pose_every_length_and_other_rooms_stop_where_alfred_slices() -> None:
    _layouts()
    assert lengths(load_floor_plan(1)) == (1, 2, 3, 4, 5, 6)
    assert lengths(load_floor_plan(301)) == (1, 2, 3, 4)  # five and six subtasks all slice with a knife


def test_the_expert_completes_tasks_in_generated_rooms() -> None:
    rng = np.random.default_rng(7)
    for length in range(1, 7):
        task, s = sample_low_task(rng, length, None)
        assert _walk(s, task)[0] == length


def test_subtask_remaining_is_zero_when_done_and_shrinks_along_the_plan() -> None:
    rng = np.random.default_rng(2)
    task, s = sample_low_task(rng, 1, None)
    sub = task.subtasks[0]
    before = subtask_remaining(s, sub)
    first = plan(s, task)[0]
    after = subtask_remaining(apply(s, first)[0], sub)
    assert after == before - 1
    with pytest.raises(PlanningError):
        world = replace(s.world, objects=())
        subtask_remaining(replace(s, world=world), SubtaskSpec("Pickup", "Apple"))


# -- states and vectors -----------------------------------------------------------------------------------
def test_states_round_trip_with_their_floor_plan() -> None:
    rng = np.random.default_rng(4)
    _, s = sample_low_task(rng, 3, None)
    s = _do(s, "RotateLeft_90")
    back = low_state_from_dict(low_state_to_dict(s))
    assert back == s
    assert plan_from_string(plan_to_string(s.plan)) == s.plan
    doc = low_state_to_dict(s)
    doc["pose"] = list(s.plan.receptacles[0].pose)
    with pytest.raises(ValueError, match="faces"):
        low_state_from_dict(doc)


def test_the_state_vector_keeps_its_length_across_floor_plans_and_sees_the_pose() -> None:
    rng = np.random.default_rng(5)
    _, a = sample_low_task(rng, 2, None)
    _, b = sample_low_task(rng, 2, None)
    va, vb = low_encode.encode(a), low_encode.encode(b)
    assert va.shape == vb.shape == (low_encode.STATE_DIM,)
    assert va.min() >= low_encode.LOW and va.max() <= low_encode.HIGH
    turned = _do(a, "RotateRight_90")
    assert not np.array_equal(low_encode.encode(turned), va)
