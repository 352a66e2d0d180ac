"""The low-level household's frames: a top-down map with the agent's heading and what is in front."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

from rgvlm_core.sim.env import FRAME_SHAPE
from rgvlm_core.sim.low import render as low_render
from rgvlm_core.sim.low.expert import plan as expert_plan
from rgvlm_core.sim.low.floorplan import generated_floor_plan, layouts_dir, load_floor_plan
from rgvlm_core.sim.low.render import MAP_H, render_low_frame, render_low_image
from rgvlm_core.sim.low.scenes import sample_low_task
from rgvlm_core.sim.low.serialize import plan_from_string, plan_to_string
from rgvlm_core.sim.low.world import ACTION_INDEX, ACTION_TOKENS, LowState, apply, start
from rgvlm_core.sim.render_style import AGENT_RING
from rgvlm_core.sim.world import Obj, State

KITCHEN = ("CounterTop", "Fridge", "Microwave", "SinkBasin", "Cabinet")


def _kitchen(objects: tuple[Obj, ...] = ()) -> LowState:
    plan = generated_floor_plan(np.random.default_rng(0), "kitchen", KITCHEN)
    return start(plan, State(room="kitchen", locations=plan.locations, objects=objects))


def _at(s: LowState, cls: str) -> LowState:
    return start(s.plan, replace(s.world, agent=None), s.plan.receptacle(cls).pose)


def _do(s: LowState, token: str) -> LowState:
    new, err = apply(s, ACTION_INDEX[token])
    assert err is None, f"{token}: {err}"
    return new


def _ring_pixels(frame: np.ndarray) -> int:
    """Map pixels of exactly the agent's ring colour (its ring and the highlight; the cone is blended)."""
    return int((frame[:MAP_H] == np.array(AGENT_RING, dtype=np.uint8)).all(axis=2).sum())


@pytest.mark.parametrize("number", [1, 201, 301, 401])
def test_real_floor_plans_render_a_frame_of_the_subgoal_levels_shape(number: int) -> None:
    if not (layouts_dir() / f"FloorPlan{number}-layout.npy").is_file():
        pytest.skip(
            f"ALFRED layouts not found at {layouts_dir()} (../shared/alfred/layouts beside the checkout)"
        )
    _task, s = sample_low_task(np.random.default_rng(number), 2, load_floor_plan(number))
    frame = render_low_frame(s, "start")
    assert frame.shape == FRAME_SHAPE and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 20  # a picture, not a blank
    assert render_low_image(s, "start").size == (FRAME_SHAPE[1], FRAME_SHAPE[0])


def test_every_step_of_an_expert_rollout_renders_and_the_frames_move_with_the_agent() -> None:
    task, s = sample_low_task(np.random.default_rng(5), 3, None)
    frames = [render_low_frame(s, "start")]
    for a in expert_plan(s, task):
        s = _do(s, ACTION_TOKENS[a])
        frames.append(render_low_frame(s, ACTION_TOKENS[a]))
    assert all(f.shape == FRAME_SHAPE and f.dtype == np.uint8 for f in frames)
    assert all(not np.array_equal(a, b) for a, b in itertools.pairwise(frames))


@pytest.mark.parametrize("token", ["RotateLeft_90", "RotateRight_90", "LookUp_15", "LookDown_15"])
def test_the_frame_changes_when_the_agent_turns_or_looks(token: str) -> None:
    s = _kitchen()
    before, after = render_low_frame(s, "same caption"), render_low_frame(_do(s, token), "same caption")
    assert not np.array_equal(before, after)
    if token.startswith("Rotate"):  # the heading is drawn on the map itself
        assert not np.array_equal(before[:MAP_H], after[:MAP_H])


def test_the_frame_changes_on_the_map_when_the_agent_moves() -> None:
    s = _kitchen()
    for turn in ("RotateRight_90", "RotateRight_90", "RotateRight_90", "RotateRight_90"):
        moved, err = apply(s, ACTION_INDEX["MoveAhead_25"])
        if err is None:
            break
        s = _do(s, turn)
    assert err is None
    assert not np.array_equal(render_low_frame(s, "c")[:MAP_H], render_low_frame(moved, "c")[:MAP_H])


def test_the_view_cone_points_up_for_heading_0_and_right_for_heading_90() -> None:
    up = low_render._agent_sprites(0, 10.0)[0]
    right = low_render._agent_sprites(90, 10.0)[0]
    assert up.dy + up.keep.shape[0] <= 2  # the cone lies above the agent's point (+z is drawn upward)
    assert right.dx >= -1  # and to its right for heading 90 (+x)


def test_the_receptacle_in_front_is_highlighted_only_when_something_is_in_front() -> None:
    facing = _at(_kitchen(), "Fridge")
    assert facing.world.agent == "Fridge"
    looking_away = _do(facing, "LookUp_15")  # same point and heading: same disc and cone
    assert looking_away.world.agent is None
    with_highlight = _ring_pixels(render_low_frame(facing, "c"))
    without = _ring_pixels(render_low_frame(looking_away, "c"))
    assert with_highlight - without > 60  # a 2-pixel frame around the fridge's label


def test_a_closed_fridge_hides_its_contents_and_an_open_one_shows_them() -> None:
    apple = (Obj("Apple", "Fridge", cold=True),)
    empty, full = _at(_kitchen(), "Fridge"), _at(_kitchen(apple), "Fridge")
    assert np.array_equal(render_low_frame(empty, "c"), render_low_frame(full, "c"))
    opened_empty, opened_full = _do(empty, "OpenObject(Fridge)"), _do(full, "OpenObject(Fridge)")
    assert not np.array_equal(render_low_frame(opened_empty, "c"), render_low_frame(opened_full, "c"))
    assert np.array_equal(
        render_low_frame(opened_empty, "c")[:MAP_H], render_low_frame(opened_full, "c")[:MAP_H]
    )


def test_switching_the_microwave_on_changes_its_label_on_the_map() -> None:
    s = _at(_kitchen(), "Microwave")
    on = _do(s, "ToggleObjectOn(Microwave)")
    assert not np.array_equal(render_low_frame(s, "c")[:MAP_H], render_low_frame(on, "c")[:MAP_H])


def test_what_the_agent_holds_is_drawn() -> None:
    s = _at(_kitchen((Obj("Apple", "CounterTop"),)), "CounterTop")
    held = _do(s, "PickupObject(Apple)")
    rows = slice(MAP_H + low_render.FRONT_H, FRAME_SHAPE[0] - 16)  # the holding strip
    assert not np.array_equal(render_low_frame(s, "c")[rows], render_low_frame(held, "c")[rows])


def test_frames_are_deterministic_and_cached_pieces_are_not_changed_by_callers() -> None:
    s = _at(_kitchen((Obj("Apple", "CounterTop"),)), "CounterTop")
    first = render_low_frame(s, "PickupObject(Apple)")
    first[:] = 0  # the caller owns the returned array
    again = render_low_frame(s, "PickupObject(Apple)")
    assert again.any()
    twin = _at(_kitchen((Obj("Apple", "CounterTop"),)), "CounterTop")  # an equal state, built again
    assert np.array_equal(again, render_low_frame(twin, "PickupObject(Apple)"))


def test_a_parsed_plan_renders_without_furniture_and_furniture_can_be_passed() -> None:
    if not (layouts_dir() / "FloorPlan1-layout.npy").is_file():
        pytest.skip(
            f"ALFRED layouts not found at {layouts_dir()} (../shared/alfred/layouts beside the checkout)"
        )
    plan = load_floor_plan(1)
    assert plan.furniture
    _task, s = sample_low_task(np.random.default_rng(1), 2, plan)
    parsed = replace(s, plan=plan_from_string(plan_to_string(plan)))
    assert not parsed.plan.furniture
    bare = render_low_frame(parsed, "c")
    assert not np.array_equal(bare, render_low_frame(s, "c"))
    assert np.array_equal(render_low_frame(parsed, "c", furniture=plan.furniture), render_low_frame(s, "c"))
