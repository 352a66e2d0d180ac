"""The simulator's frame: its shape, determinism, what each state change shows, and the busiest rooms."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rgvlm_core.sim import render, render_layout, render_style
from rgvlm_core.sim.catalog import OBJECTS, OPENABLE, ROOM_KINDS
from rgvlm_core.sim.expert import plan
from rgvlm_core.sim.render import FRAME_SIZE, render_frame, render_image
from rgvlm_core.sim.render_layout import (
    AGENT_R,
    CAPTION_H,
    DOOR_STAND,
    MORE,
    ROOM_H,
    SLOTS,
    STANDS,
    Group,
    Stand,
    fit,
)
from rgvlm_core.sim.render_style import TAG_COLOUR, ChipSpec, measure_chip
from rgvlm_core.sim.scenes import randomize, sample_task
from rgvlm_core.sim.tasks import MAX_SUBTASKS
from rgvlm_core.sim.world import ACTION_TOKENS, FLAGS, HELD, Obj, State, action_index, apply

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
KITCHEN = State(
    room="kitchen",
    locations=("CounterTop", "Fridge", "Microwave", "SinkBasin", "DiningTable"),
    objects=(Obj("Apple", "CounterTop"), Obj("Knife", "CounterTop"), Obj("Mug", "DiningTable")),
)
BEDROOM = State(
    room="bedroom",
    locations=("Bed", "Desk", "DeskLamp"),
    objects=(Obj("Book", "Bed"), Obj("CellPhone", "Desk")),
)


def _do(state: State, *tokens: str) -> State:
    for token in tokens:
        state, err = apply(state, action_index(token))
        assert err is None, f"{token}: {err}"
    return state


def _clear_caches() -> None:
    for cached in (
        render._room,
        render._held_image,
        render._caption_strip,
        render_layout.chips_image,
        render_style.measure_chip,
        render_style.text_width,
    ):
        cached.cache_clear()


@functools.cache
def _longest(room: str) -> int:
    """The most subtasks a task in this room kind can have."""
    for n in range(MAX_SUBTASKS, 0, -1):
        try:
            sample_task(np.random.default_rng(0), n, room=room)
        except ValueError:
            continue
        return n
    raise AssertionError(f"no task at all in a {room}")


def _rollout_states(rng: np.random.Generator, room: str, randomized: bool) -> Iterator[tuple[State, str]]:
    """States along expert plans of sampled tasks, each with the action that led to it."""
    while True:
        task, state = sample_task(rng, int(rng.integers(1, _longest(room) + 1)), room=room)
        if randomized:
            state = randomize(state, rng)
        yield state, ""
        for a in plan(state, task):
            state, err = apply(state, a)
            assert err is None
            yield state, ACTION_TOKENS[a]


def _has_colour(frame: np.ndarray, colour: tuple[int, int, int]) -> bool:
    return bool((frame == np.array(colour, dtype=np.uint8)).all(axis=-1).any())


def test_frame_is_a_300_by_300_rgb_uint8_array_and_the_image_holds_the_same_picture() -> None:
    frame = render_frame(KITCHEN, caption="GotoLocation(Fridge)")
    assert FRAME_SIZE == 300
    assert frame.shape == (300, 300, 3) and frame.dtype == np.uint8
    image = render_image(KITCHEN, caption="GotoLocation(Fridge)")
    assert image.mode == "RGB" and image.size == (300, 300)
    assert np.array_equal(np.asarray(image), frame)


def test_same_state_gives_identical_bytes_with_warm_and_cold_caches() -> None:
    state = _do(KITCHEN, "GotoLocation(Microwave)", "OpenObject(Microwave)")
    first = render_frame(state, caption="OpenObject(Microwave)").tobytes()
    assert render_frame(state, caption="OpenObject(Microwave)").tobytes() == first
    _clear_caches()
    assert render_frame(state, caption="OpenObject(Microwave)").tobytes() == first


def test_returned_frame_is_writable_and_does_not_alias_the_cache() -> None:
    frame = render_frame(KITCHEN)
    frame[:] = 0
    assert render_frame(KITCHEN).any()


AT_COUNTER = _do(KITCHEN, "GotoLocation(CounterTop)")
WITH_KNIFE = _do(AT_COUNTER, "PickupObject(Knife)")
APPLE_AT_MICROWAVE = _do(AT_COUNTER, "PickupObject(Apple)", "GotoLocation(Microwave)")
CHANGES = {
    "agent moved": (KITCHEN, ("GotoLocation(CounterTop)",), None),
    "object picked": (AT_COUNTER, ("PickupObject(Apple)",), None),
    "microwave opened": (_do(KITCHEN, "GotoLocation(Microwave)"), ("OpenObject(Microwave)",), None),
    "object heated": (APPLE_AT_MICROWAVE, ("HeatObject(Apple)",), TAG_COLOUR["hot"]),
    "object cooled": (
        _do(APPLE_AT_MICROWAVE, "GotoLocation(Fridge)"),
        ("CoolObject(Apple)",),
        TAG_COLOUR["cold"],
    ),
    "lamp on": (_do(BEDROOM, "GotoLocation(DeskLamp)"), ("ToggleObject(DeskLamp)",), render_style.LAMP_ON),
    "apple sliced": (WITH_KNIFE, ("SliceObject(Apple)",), None),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_each_change_of_state_changes_the_frame(change: str) -> None:
    before, tokens, new_colour = CHANGES[change]
    after = _do(before, *tokens)
    old, new = render_frame(before), render_frame(after)
    assert not np.array_equal(old, new)
    if new_colour is not None:
        assert not _has_colour(old, new_colour) and _has_colour(new, new_colour)


def test_a_closed_receptacle_hides_what_it_holds_and_an_open_one_shows_it() -> None:
    at_fridge = _do(KITCHEN, "GotoLocation(Fridge)")
    with_egg = State(
        room=at_fridge.room,
        locations=at_fridge.locations,
        objects=(*at_fridge.objects, Obj("Egg", "Fridge")),
        agent="Fridge",
    )
    assert np.array_equal(render_frame(with_egg), render_frame(at_fridge))
    opened = _do(with_egg, "OpenObject(Fridge)")
    assert not np.array_equal(render_frame(opened), render_frame(_do(at_fridge, "OpenObject(Fridge)")))


def test_caption_is_drawn_in_the_bottom_strip_only_and_long_ones_are_cut() -> None:
    plain = render_frame(KITCHEN)
    captioned = render_frame(KITCHEN, caption="PutObject(Fridge)")
    differs = (plain != captioned).any(axis=(1, 2))
    assert differs[ROOM_H:].any() and not differs[:ROOM_H].any()
    assert CAPTION_H == FRAME_SIZE - ROOM_H
    long = render_frame(KITCHEN, caption="Put a heated slice of apple in the fridge, then " * 4)
    assert not np.array_equal(long, captioned)
    assert render_style.fit_text("x" * 200, 11, 100).endswith("…")


def test_every_object_label_with_every_state_fits_the_narrowest_box_uncut() -> None:
    narrowest = min(x1 - x0 + 1 for slot in SLOTS for x0, _, x1, _ in [render._content_area(slot, "Fridge")])
    reach = min(stand.reach for stand in STANDS)
    combos = [
        tags
        for n in range(len(FLAGS) + 1)
        for tags in itertools.combinations(FLAGS, n)
        if not {"hot", "cold"} <= set(tags)
    ]
    for cls, tags in itertools.product(OBJECTS, combos):
        for width in (narrowest - 2, reach):
            chip = measure_chip(ChipSpec(cls, tags), render_layout.SIZES[-1], width)
            assert not chip.cut, (cls, tags, chip.lines)
            assert chip.width <= width and len(chip.lines) <= 3


BUSIEST = State(
    room="kitchen",
    locations=("CounterTop", "Fridge", "Microwave", "SinkBasin", "DiningTable", "Cabinet", "Drawer", "Shelf"),
    objects=(
        Obj("Plate", HELD),
        Obj("Apple", "Plate", inside=0, hot=True, sliced=True, clean=True),
        Obj("Bowl", "CounterTop"),
        Obj("Egg", "CounterTop", inside=2, cold=True),
        Obj("Tomato", "CounterTop", inside=2, sliced=True, clean=True),
        Obj("Potato", "CounterTop", inside=2, hot=True),
        Obj("ButterKnife", "CounterTop", clean=True),
        Obj("Lettuce", "CounterTop", cold=True, sliced=True, clean=True),
        Obj("Mug", "CounterTop", clean=True, hot=True),
        Obj("Bread", "Fridge", cold=True, sliced=True),
        Obj("Cup", "Microwave", hot=True),
        Obj("Pan", "SinkBasin", clean=True),
        Obj("Spoon", "Drawer"),
        Obj("Pot", "Cabinet", cold=True, clean=True),
        Obj("Knife", "DiningTable"),
    ),
    agent="SinkBasin",
    held=0,
    opened=frozenset({"Fridge", "Microwave", "Cabinet", "Drawer"}),
)


def _shown_and_more(layout: render_layout.Layout) -> tuple[int, int]:
    more = [int(p.chip.spec.tags[0]) for p in layout.chips if p.chip.spec.cls == MORE]
    return len(layout.chips) - len(more), sum(more)


def test_busiest_scene_renders_with_every_chip_inside_its_box_or_counted_as_more() -> None:
    frame = render_frame(BUSIEST, caption="CleanObject(Plate)")
    assert frame.shape == (300, 300, 3)
    groups = render._groups(BUSIEST)
    for slot, loc in zip(SLOTS, BUSIEST.locations, strict=True):
        x0, y0, x1, y1 = render._content_area(slot, loc)
        layout = fit(tuple(groups.get(loc, ())), x1 - x0 + 1, y1 - y0 + 1)
        shown, more = _shown_and_more(layout)
        assert shown + more == sum(1 + len(inner) for _, inner in groups.get(loc, ())), loc
        assert shown >= 3 or more == 0, loc
        for p in layout.chips:
            assert p.x >= 0 and p.x + p.chip.width <= x1 - x0 + 1
            assert p.y >= 0 and p.y + p.chip.height <= y1 - y0 + 1
            assert not p.chip.cut


@pytest.mark.parametrize("stand", range(len(STANDS)))
def test_a_held_plate_shows_its_hot_sliced_clean_apple_wherever_the_agent_stands(stand: int) -> None:
    held = render._groups(BUSIEST)[HELD][0]
    layout = fit((held,), STANDS[stand].reach, STANDS[stand].hold_h)
    assert _shown_and_more(layout) == (2, 0)


def test_a_crowded_box_shows_what_fits_and_counts_the_rest_as_more() -> None:
    groups: tuple[Group, ...] = tuple((ChipSpec(cls, ("clean",)), ()) for cls in OBJECTS[:20])
    x0, y0, x1, y1 = render._content_area(SLOTS[0], "CounterTop")
    shown, more = _shown_and_more(fit(groups, x1 - x0 + 1, y1 - y0 + 1))
    assert shown >= 3 and more == 20 - shown
    bowl: tuple[Group, ...] = ((ChipSpec("Bowl"), tuple(ChipSpec("Egg", ("cold",)) for _ in range(12))),)
    shown, more = _shown_and_more(fit(bowl, x1 - x0 + 1, y1 - y0 + 1))
    assert shown >= 4 and more == 13 - shown
    crowded = State("kitchen", ("SinkBasin",), tuple(Obj("Apple", "SinkBasin") for _ in range(30)))
    render_frame(crowded)


def test_a_room_with_more_locations_than_slots_is_refused_with_the_count() -> None:
    state = State("kitchen", (*BUSIEST.locations, "Toilet"), ())
    with pytest.raises(ValueError, match=r"at most 8 locations.*has 9"):
        render_frame(state)


@pytest.mark.parametrize("randomized", [False, True], ids=["default", "randomized"])
@pytest.mark.parametrize("room", list(ROOM_KINDS))
def test_frames_render_for_300_states_along_expert_plans(room: str, randomized: bool) -> None:
    rng = np.random.default_rng(7)
    for state, token in itertools.islice(_rollout_states(rng, room, randomized), 300):
        frame = render_frame(state, caption=token)
        assert frame.shape == (300, 300, 3) and frame.dtype == np.uint8


def _mid_task(room: str) -> tuple[State, State, str]:
    """The first state and one halfway through an expert plan where the agent holds something."""
    rng = np.random.default_rng(11)
    for _ in range(200):
        task, first = sample_task(rng, _longest(room), room=room)
        actions = plan(first, task)
        state = first
        for k, a in enumerate(actions):
            state, _ = apply(state, a)
            if k >= len(actions) // 2 and state.held is not None and len(state.locations) >= 6:
                return first, state, ACTION_TOKENS[a]
    raise AssertionError(f"no mid-task state with a held object for {room}")


def _where_agent_stands(state: State) -> Stand:
    return DOOR_STAND if state.agent is None else STANDS[state.locations.index(state.agent)]


def _agent_ring_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    """The bounding box of the agent's orange ring, the only pixels of that colour in a frame."""
    ys, xs = np.nonzero((frame == np.array(render_style.AGENT_RING, np.uint8)).all(axis=-1))
    assert xs.size, "no agent ring in the frame"
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def _held_marker_colour(state: State) -> tuple[int, int, int]:
    """The outline of the held object's chip: red when hot, blue when cold, the grey band of a container
    holding something, else grey."""
    assert state.held is not None
    obj = state.objects[state.held]
    if state.contents(state.held):
        return render_style.BAND_OUTLINE
    return TAG_COLOUR["hot"] if obj.hot else TAG_COLOUR["cold"] if obj.cold else render_style.OUTLINE


def assert_frame_shows(frame: np.ndarray, state: State) -> None:
    """The agent's ring around the stand of the location it is at, an arm and the held object's chip
    beside it exactly when it holds something, and each openable box open or closed as in `state`."""
    stand, r = _where_agent_stands(state), AGENT_R
    assert _agent_ring_box(frame) == (stand.x - r - 2, stand.y - r - 2, stand.x + r + 2, stand.y + r + 2)
    arm = frame[stand.y, stand.x + stand.side * (r + 4)]
    assert bool((arm == render_style.AGENT).all()) == (state.held is not None), "arm iff holding"
    if state.held is not None:
        edge = stand.x + stand.side * (r + 8)  # the held chip's near edge, a pixel past the arm
        column = frame[stand.y - stand.hold_h // 2 : stand.y + stand.hold_h // 2 + 1, edge]
        marker = _held_marker_colour(state)
        assert _has_colour(column[:, None], marker), f"no held-object chip outlined {marker} by the arm"
    for (_, _, x1, y1), loc in zip(SLOTS, state.locations, strict=False):
        if loc in OPENABLE:
            paint = render_style.OPEN_INTERIOR if loc in state.opened else render_style.family(loc).door
            assert tuple(frame[y1 - 3, x1 - 3]) == paint, f"{loc} open={loc in state.opened}"


def test_artifacts_show_each_room_kind_mid_task() -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    showcase = _do(
        KITCHEN,
        "GotoLocation(CounterTop)",
        "PickupObject(Knife)",
        "SliceObject(Apple)",
        "PutObject(CounterTop)",
        "PickupObject(Apple)",
        "GotoLocation(Microwave)",
        "HeatObject(Apple)",
        "GotoLocation(Fridge)",
        "OpenObject(Fridge)",
    )
    scenes = {"kitchen_hot_sliced_apple": (showcase, "OpenObject(Fridge)")}
    scenes["kitchen_busiest"] = (BUSIEST, "CleanObject(Plate)")
    scenes["kitchen_busiest_at_drawer"] = (replace(BUSIEST, agent="Drawer"), "GotoLocation(Drawer)")
    starts: dict[str, State] = {}
    for room in ROOM_KINDS:
        starts[room], state, caption = _mid_task(room)
        scenes[room.replace(" ", "_")] = (state, caption)
    frames: dict[str, np.ndarray] = {}
    for name, (state, caption) in scenes.items():
        path = ARTIFACTS / f"sim_render_{name}.png"
        render_image(state, caption=caption).save(path)
        frames[name] = np.asarray(Image.open(path).convert("RGB"))
        assert frames[name].shape == (300, 300, 3)
        assert_frame_shows(frames[name], state)
    assert tuple(frames["kitchen_hot_sliced_apple"][150, 150]) == render_style.FLOOR  # the empty middle
    for room, first in starts.items():
        mid = frames[room.replace(" ", "_")]
        assert_frame_shows(render_frame(first), first)
        assert not np.array_equal(render_frame(first)[:ROOM_H], mid[:ROOM_H]), room
    rooms = [frames[room.replace(" ", "_")][:ROOM_H] for room in ROOM_KINDS]
    assert all(not np.array_equal(a, b) for a, b in itertools.combinations(rooms, 2))


def test_the_caption_strip_names_the_room_kind_and_nothing_else_depends_on_it() -> None:
    kitchen = render_frame(KITCHEN)
    for room in ROOM_KINDS:
        if room != KITCHEN.room:
            other = render_frame(replace(KITCHEN, room=room))
            differs = (kitchen != other).any(axis=(0, 2))  # per column
            assert np.array_equal(kitchen[:ROOM_H], other[:ROOM_H]), room
            assert (kitchen[ROOM_H:] != other[ROOM_H:]).any(), room
            assert not differs[: FRAME_SIZE // 2].any(), "the room kind is drawn at the right"


AT_FRIDGE = _do(KITCHEN, "GotoLocation(Fridge)")
# pairs of states that differ in one thing the frame check looks at
ONE_DIFFERENCE = {
    "agent moved": (KITCHEN, AT_COUNTER),
    "object picked": (AT_COUNTER, WITH_KNIFE),
    "held object heated": (APPLE_AT_MICROWAVE, _do(APPLE_AT_MICROWAVE, "HeatObject(Apple)")),
    "fridge opened": (AT_FRIDGE, _do(AT_FRIDGE, "OpenObject(Fridge)")),
}


@pytest.mark.parametrize("change", list(ONE_DIFFERENCE))
def test_the_frame_check_rejects_the_frame_of_a_state_differing_in_one_thing(change: str) -> None:
    """The artifact check is not blind: each state's frame passes it, the other state's frame fails it."""
    a, b = ONE_DIFFERENCE[change]
    assert_frame_shows(render_frame(a), a)
    assert_frame_shows(render_frame(b), b)
    with pytest.raises(AssertionError):
        assert_frame_shows(render_frame(b), a)
    with pytest.raises(AssertionError):
        assert_frame_shows(render_frame(a), b)
