"""Frames rendered from replayed ALFRED states (rgvlm_core/alfred/render.py): deterministic, drawn for every
step of real sample trajectories, marked as rendered, and moved by what the state says (an open fridge, a
held object, the agent's heading)."""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from PIL import Image

from rgvlm_core.alfred import render, render_map
from rgvlm_core.alfred.level_state import replay_states, world_doc
from rgvlm_core.alfred.replay import replay
from rgvlm_core.alfred.world import World
from rgvlm_core.errors import RGVLMError
from rgvlm_core.sim.low.floorplan import GRID
from rgvlm_core.sim.low.render import FRONT_H, HOLD_H, MAP_H
from rgvlm_core.sim.render_layout import CAPTION_H, FRAME_SIZE
from rgvlm_core.sim.render_style import TAG_COLOUR
from tests.cli_support import ROOT

TASK_TYPES = (
    "look_at_obj_in_light",
    "pick_and_place_simple",
    "pick_and_place_with_movable_recep",
    "pick_clean_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_two_obj_and_place",
)


@pytest.fixture(scope="module")
def alfred(shared_alfred: Path) -> Iterator[Path]:
    """The sample's json_2.1.0 folder, with RGVLM_ALFRED_LAYOUTS pointing at its layouts."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RGVLM_ALFRED_LAYOUTS", str(shared_alfred / "layouts"))
        yield shared_alfred / "json_2.1.0"


def trajectory(alfred: Path, task_type: str) -> tuple[Path, dict[str, Any]]:
    """The first train trajectory of a task type whose replay reaches every subgoal."""
    for path in sorted((alfred / "train").glob(f"{task_type}-*/*/traj_data.json")):
        doc = json.loads(path.read_text())
        if replay(doc, str(path)).failure is None:
            return path, doc
    raise AssertionError(f"no replayable {task_type} trajectory in the sample")


def states(alfred: Path, task_type: str) -> tuple[list[World], list[dict[str, Any]]]:
    """The replayed worlds before each low action and after the last, with the api actions."""
    path, doc = trajectory(alfred, task_type)
    result = replay(doc, str(path), keep_states=True)
    return list(result.states), [a["api_action"] for a in doc["plan"]["low_actions"]]


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.any(a != b, axis=2)


# -- determinism ------------------------------------------------------------------------------------
def test_the_same_state_gives_the_same_bytes_from_the_replay_the_store_and_a_fresh_process(
    alfred: Path,
) -> None:
    worlds, _ = states(alfred, "pick_cool_then_place_in_recep")
    path, _ = trajectory(alfred, "pick_cool_then_place_in_recep")
    w = worlds[len(worlds) // 2]
    first = render.render_world(w, "step 9")
    again = render.render_world(w, "step 9")
    doc = world_doc(w, str(path))
    stored = render.render_state(orjson.dumps(doc).decode(), "step 9")  # as the player and labelling read it
    assert first.dtype == np.uint8 and first.shape == (FRAME_SIZE, FRAME_SIZE, 3)
    assert first.tobytes() == again.tobytes() == stored.tobytes()
    png = render.state_png(doc, "step 9")
    assert png == render.state_png(doc, "step 9") and png.startswith(b"\x89PNG")
    code = (
        "import hashlib, json, sys; from rgvlm_core.alfred.render import state_png; "
        "print(hashlib.sha256(state_png(json.loads(sys.argv[1]), 'step 9')).hexdigest())"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code, json.dumps(doc)],
        capture_output=True, text=True, timeout=120, check=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert fresh.stdout.strip() == hashlib.sha256(png).hexdigest()


def test_every_frame_of_every_step_of_a_trajectory_per_task_type_is_drawn_and_marked_rendered(
    alfred: Path,
) -> None:
    banner = render_map.banner()
    for task_type in TASK_TYPES:
        path, doc = trajectory(alfred, task_type)
        stored = replay_states(doc, str(path))
        assert not isinstance(stored, str), stored
        before, final = stored
        assert len(before) == len(doc["plan"]["low_actions"])
        frames = [render.render_state(text, f"step {t}") for t, text in enumerate([*before, final])]
        for frame in frames:
            assert frame.shape == (FRAME_SIZE, FRAME_SIZE, 3)
            assert np.array_equal(frame[: render_map.MAP_TOP], banner)  # the banner is never covered
        assert np.mean(banner[: render_map.BANNER_H] == render_map.BANNER_BG) > 0.6
        # the picture follows the replay: most steps change it (a move, a turn, a look, an interaction)
        moved = sum(not np.array_equal(a, b) for a, b in itertools.pairwise(frames))
        assert moved >= len(frames) - 1 - 2, (task_type, moved, len(frames))


def test_a_frame_is_a_lossless_png_of_the_right_size_and_downscales_for_a_query(alfred: Path) -> None:
    worlds, _ = states(alfred, "pick_heat_then_place_in_recep")
    frame = render.render_world(worlds[0])
    png = render.frame_png(frame)
    with Image.open(io.BytesIO(png)) as img:
        assert img.format == "PNG" and img.size == (FRAME_SIZE, FRAME_SIZE)
        shown = np.asarray(img.convert("RGB"), dtype=int)
    assert np.array_equal(shown, frame)  # lossless
    assert len(png) < 40_000
    with Image.open(io.BytesIO(render.frame_png(frame, max_side=224))) as small:
        assert small.size == (224, 224)


def test_a_state_whose_trajectory_file_is_gone_is_refused_naming_the_file(
    alfred: Path, tmp_path: Path
) -> None:
    _, doc = trajectory(alfred, "pick_and_place_simple")
    moved = tmp_path / "traj_data.json"
    moved.write_text(json.dumps(doc))
    state = world_doc(replay(doc, str(moved), keep_states=True).states[0], str(moved))
    moved.unlink()
    with pytest.raises(RGVLMError, match=str(moved)):
        render.render_state(state)
    assert render.is_rendered_state(orjson.dumps(state).decode())
    assert not render.is_rendered_state('{"pose": [0, 0, 0, 30]}') and not render.is_rendered_state(None)


# -- the state moves the picture ---------------------------------------------------------------------
def test_opening_the_fridge_changes_its_square_and_label_and_says_open_within_reach(alfred: Path) -> None:
    worlds, actions = states(alfred, "pick_cool_then_place_in_recep")
    k = next(i for i, a in enumerate(actions) if a["action"] == "OpenObject" and "Fridge" in a["objectId"])
    closed, opened = worlds[k], worlds[k + 1]  # before and after the fridge is opened, nothing else moves
    fridge = actions[k]["objectId"]
    assert fridge not in closed.opened and fridge in opened.opened and closed.pose == opened.pose
    a, b = render.render_world(closed), render.render_world(opened)
    diff = changed(a, b)
    plan = render_map.plan_of(closed.scene)
    x0, y0, x1, y1 = plan.squares[fridge]
    assert diff[y0 : y1 + 1, x0 : x1 + 1].any(), "the fridge's square did not change"
    box = plan.labels["Fridge"][0]
    assert diff[box[1] : box[3] + 1, box[0] : box[2] + 1].any(), "the fridge's label did not change"
    assert diff[MAP_H : MAP_H + FRONT_H].any(), "the within-reach strip did not change (closed -> open)"
    assert not diff[MAP_H + FRONT_H :].any()  # holding, horizon and caption are the same
    # the same state with only the fridge opened: the same change, nothing else
    only = replace(closed, opened={*closed.opened, fridge})
    assert np.array_equal(render.render_world(only), b)


def test_a_held_object_is_named_in_the_holding_strip_and_leaves_the_map(alfred: Path) -> None:
    worlds, actions = states(alfred, "pick_and_place_simple")
    k = next(i for i, a in enumerate(actions) if a["action"] == "PickupObject")
    before, after = worlds[k], worlds[k + 1]
    assert before.held is None and after.held is not None
    a, b = render.render_world(before), render.render_world(after)
    hold = slice(MAP_H + FRONT_H, MAP_H + FRONT_H + HOLD_H)
    assert changed(a[hold], b[hold]).any(), "the holding strip did not change"
    plain = replace(after, held=None)
    assert not np.array_equal(render.render_world(plain), b)  # the hand alone changes the picture
    # its dot left the map where it lay
    plan = render_map.plan_of(before.scene)
    x, _, z = before.position(str(after.held))
    px, py = (round(c) for c in plan.geo.point(x / GRID, z / GRID))
    assert changed(a, b)[py - 2 : py + 3, px - 2 : px + 3].any(), "the picked-up object's dot stayed"


def test_the_view_cone_turns_with_the_heading(alfred: Path) -> None:
    worlds, _ = states(alfred, "pick_and_place_simple")
    w = worlds[0]
    plan = render_map.plan_of(w.scene)
    cx, cy = (round(c) for c in plan.geo.point(w.pose[0], w.pose[1]))
    frames = {
        h: render.render_world(replace(w, pose=(w.pose[0], w.pose[1], h, w.pose[3])))
        for h in (0, 90, 180, 270)
    }
    assert len({f.tobytes() for f in frames.values()}) == 4
    for h, (dx, dy) in {0: (0, -1), 90: (1, 0), 180: (0, 1), 270: (-1, 0)}.items():
        opposite = frames[(h + 180) % 360]
        # pixels more orange in this heading's frame than in the opposite one: its cone
        f, o = frames[h][:MAP_H].astype(int), opposite[:MAP_H].astype(int)
        warmer = (f[:, :, 0] - f[:, :, 2]) > (o[:, :, 0] - o[:, :, 2]) + 8
        ys, xs = np.nonzero(warmer)
        assert len(xs) > 50
        assert (xs.mean() - cx) * dx + (ys.mean() - cy) * dy > 5, (h, xs.mean() - cx, ys.mean() - cy)


def test_the_caption_strip_shows_the_caption_and_nothing_else_changes(alfred: Path) -> None:
    worlds, _ = states(alfred, "pick_two_obj_and_place")
    a, b = render.render_world(worlds[3], "step 3, next: MoveAhead_25"), render.render_world(worlds[3], "x")
    diff = changed(a, b)
    assert diff[FRAME_SIZE - CAPTION_H :].any() and not diff[: FRAME_SIZE - CAPTION_H].any()
    assert render.frame_caption(3, "MoveAhead_25") == "step 3, next: MoveAhead_25"
    assert render.frame_caption(7, None) == "step 7, after the last action"


def test_hot_cold_clean_and_sliced_objects_get_their_colour_and_a_chip(alfred: Path) -> None:
    worlds, _ = states(alfred, "pick_heat_then_place_in_recep")
    w = worlds[0]
    plan = render_map.plan_of(w.scene)
    apple = next(i for i, t in sorted(w.things.items()) if t.cls == "Apple" and not w.hidden(i))
    x, _, z = w.position(apple)
    px, py = (round(c) for c in plan.geo.point(x / GRID, z / GRID))
    plain = render.render_world(w)
    for flag in ("hot", "cold", "clean", "sliced"):
        marked = replace(w, changed={k: ({apple} if k == flag else set()) for k in w.changed})
        if flag == "sliced":
            marked = replace(w, sliced={apple})
        frame = render.render_world(marked)
        dot = frame[py - 1 : py + 2, px - 1 : px + 2].reshape(-1, 3)
        assert any(tuple(p) == TAG_COLOUR[flag] for p in dot), flag  # the dot takes the mark's colour
        assert changed(plain, frame)[render_map.MAP_TOP : MAP_H].sum() > 9 * 3, flag  # and a chip names it
