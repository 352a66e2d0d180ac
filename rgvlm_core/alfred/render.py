"""Frames of replayed ALFRED states: a 300x300 schematic top-down view of the household a replay stands in.

ALFRED's public JSON carries no images, so where an episode has none, the Episodes player and the
labelling queries show these instead. They are drawings of the symbolic state, never ALFRED's camera:
every frame carries a banner saying so, and whoever shows or sends one says so too (`RENDERED_NOTE`).

What a frame shows (the low-level household's frame, `rgvlm_core/sim/low/render.py`, whose pieces and
style it reuses):
- a banner across the top: "RENDERED from the replayed state, not ALFRED's camera";
- the map, +z upward and +x to the right, scaled to fit: the floor points of the trajectory's floor plan
  as light squares, the rest darker; every fixed instance (ALFRED's receptacles, appliances, switches) as
  a small square in its class's family colour, bigger for long furniture; one label per class, in words,
  joined to the instance nearest the class's middle, with "open"/"on" (or "2 open") when instances are;
  an open instance is hollow with a green edge, a switched-on one yellow;
- objects as dots where they are now (white; red when hot, blue cold, green clean, purple sliced); objects
  inside a closed receptacle are hidden, as the agent cannot see them; an object the agent has put
  somewhere, heated, cooled, cleaned or sliced also gets a chip naming it ("apple cold");
- the agent: the low level's disc with a heading notch and its view cone (90 degrees, 1.5 m: ALFRED's
  field of view and visibility distance); instances within reach (the replay's rule) are outlined orange;
- a strip naming what is within reach and view: fixed instances with their state, objects as chips;
  then what the agent holds and the camera horizon; then the caption and the floor plan.

The map (floor, instances, labels, objects, banner) is `render_map.py`; this module adds the agent and the
strips. The replayed state knows where ALFRED put each object, not what it was put in: an object ALFRED set up
inside a closed cabinet is drawn where it is (the replay's rules reach it the same way).

Deterministic: the same state and caption give the same bytes (no randomness, no clock; every order is
sorted). Fast: the map with its labels is drawn once per scene, the state-dependent layer (open, on,
objects) once per distinct look; a frame is a copy, two blends and cached strips (bench/alfred_frames.py).
"""

from __future__ import annotations

import functools
import struct
import zlib
from typing import Any

import numpy as np
import orjson
from PIL import Image

from rgvlm_core.alfred import level
from rgvlm_core.alfred.level_state import is_alfred, world_from_doc
from rgvlm_core.alfred.render_map import MAP_TOP, Look, banner, chip_spec, plan_of, whole_of
from rgvlm_core.alfred.thor_facts import OPENABLE, TOGGLEABLE
from rgvlm_core.alfred.world import World
from rgvlm_core.sim.catalog import words
from rgvlm_core.sim.low.render import (
    DIM_TEXT,
    FRONT_H,
    MAP_H,
    ON_WORD,
    OPEN_WORD,
    STRIP_BG,
    TEXT,
    _agent_sprites,
    _blank,
    _blend,
    _caption_strip,
    _frozen,
    _hold_strip,
    _overlap,
    _put,
    _word,
)
from rgvlm_core.sim.render_layout import CAPTION_H, FRAME_SIZE, GROUP_GAP, Group, Rect, chips_image, fit
from rgvlm_core.sim.render_style import AGENT_RING, MORE, ChipSpec

__all__ = [
    "FRAME_SIZE",
    "RENDERED_NOTE",
    "RENDERER",
    "frame_caption",
    "frame_png",
    "is_rendered_state",
    "render_state",
    "render_world",
    "state_png",
]

RENDERER = "alfred-schematic/1"  # names the picture in provenance and cache keys: bump when it changes
RENDERED_NOTE = "rendered from the replayed state (ALFRED's JSON has no images)"


def is_rendered_state(text: str | None) -> bool:
    """Whether a stored step state is a replayed ALFRED state (one this module can draw)."""
    if not text:
        return False
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return isinstance(doc, dict) and is_alfred(doc)


def render_state(state: str | dict[str, Any], caption: str | None = None) -> np.ndarray:
    """The frame of a stored state (`level_state` JSON or its dict); RGVLMError when its trajectory or the
    layouts cannot be read."""
    doc = orjson.loads(state) if isinstance(state, str) else state
    return render_world(world_from_doc(doc), caption)


def state_png(state: str | dict[str, Any], caption: str | None = None, max_side: int | None = None) -> bytes:
    """The frame of a stored state as PNG bytes (what the player shows and a labelling query sends)."""
    return frame_png(render_state(state, caption), max_side)


def frame_png(frame: np.ndarray, max_side: int | None = None) -> bytes:
    """Lossless PNG bytes of a frame, downscaled (bilinear) when its side exceeds `max_side`; deterministic.

    Written here rather than by Pillow: rows unfiltered, deflated at level 1. A schematic's long runs of one
    colour compress to ~15 KB that way, and it takes a third of the time of Pillow's encoder, whose
    adaptive row filtering costs ~2 ms a frame even at level 1 (bench/alfred_frames.py)."""
    if max_side is not None and max(frame.shape[:2]) > max_side:
        small = Image.fromarray(frame, "RGB").resize((max_side, max_side), Image.Resampling.BILINEAR)
        frame = np.asarray(small)
    height, width = frame.shape[:2]
    rows = np.zeros((height, width * 3 + 1), dtype=np.uint8)  # each row: filter type 0, then its pixels
    rows[:, 1:] = frame.reshape(height, width * 3)
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return b"".join(
        (
            PNG_SIGNATURE,
            _chunk(b"IHDR", header),
            _chunk(b"IDAT", zlib.compress(rows.tobytes(), 1)),
            _chunk(b"IEND", b""),
        )
    )


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def frame_caption(t: int, action: str | None) -> str:
    """The caption of the frame before step `t` (None: the scene after a segment's last action)."""
    return f"step {t}, next: {action}" if action is not None else f"step {t}, after the last action"


def render_world(w: World, caption: str | None = None) -> np.ndarray:
    """The frame of `w` as a new (300, 300, 3) uint8 array; the same state gives the same bytes."""
    plan = plan_of(w.scene)
    v = level.view(w)
    fixed = plan.squares
    look = Look(
        frozenset(i for i in w.opened if i in fixed),
        frozenset(i for i in w.on if i in fixed),
        plan.objects(w),
    )
    background, boxes = plan.background(look)
    frame = np.empty((FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    frame[:MAP_H] = background
    x, z, heading, horizon = w.pose
    cone, disc = _agent_sprites(heading, plan.geo.scale)
    cx, cy = (round(c) for c in plan.geo.point(x, z))
    reach = _blend(frame, cone, cx, cy)
    for box, pixels in boxes:  # labels stay readable over the cone
        if _overlap(box, reach):
            frame[box[1] : box[3] + 1, box[0] : box[2] + 1] = pixels
    frame[:MAP_TOP] = banner()
    in_reach = [v.ids[k] for k in np.argsort(v.distance, kind="stable") if v.reach[k]]
    for object_id in in_reach:
        if object_id in plan.squares:
            _edge(frame, plan.squares[object_id])
    _blend(frame, disc, cx, cy)
    frame[MAP_H : MAP_H + FRONT_H] = _front_strip(*_reach_lists(w, in_reach, look.opened, look.on))
    held = _group(w, w.held) if w.held else None
    frame[MAP_H + FRONT_H : FRAME_SIZE - CAPTION_H] = _hold_strip(held, horizon)
    frame[FRAME_SIZE - CAPTION_H :] = _caption_strip(caption or "", w.scene.floor_plan, plan.room)
    return frame


# -- what the state shows --------------------------------------------------------------------------
def _group(w: World, object_id: str) -> Group:
    """An object with what was put in it (a bowl and its apple)."""
    inside = sorted(o for o, p in w.parent.items() if p == object_id)
    return chip_spec(w, object_id), tuple(chip_spec(w, o) for o in inside)


def _reach_lists(
    w: World, in_reach: list[str], opened: frozenset[str], on: frozenset[str]
) -> tuple[tuple[tuple[str, str], ...], tuple[Group, ...]]:
    """What is within reach and view, nearest first: fixed instances as (class, state words) and visible
    objects as chip groups (an object put in another one within reach goes with it)."""
    near = set(in_reach)
    fixed: list[tuple[str, str]] = []
    groups: list[Group] = []
    for object_id in in_reach:
        thing = w.things[object_id]
        if not thing.movable:
            fixed.append((thing.cls, _state_words(thing.cls, object_id in opened, object_id in on)))
            continue
        parent = w.parent.get(object_id)
        if w.hidden(object_id) or (parent in near and w.things[str(parent)].movable):
            continue
        if thing.cls.endswith("Sliced") and w.position(object_id) == w.position(whole_of(object_id)):
            continue
        groups.append(_group(w, object_id))
    return tuple(fixed), tuple(groups)


def _state_words(cls: str, is_open: bool, is_on: bool) -> str:
    """'open'/'closed' for a class that opens, 'on'/'off' for one that switches, space separated."""
    out: list[str] = []
    if cls in OPENABLE:
        out.append("open" if is_open else "closed")
    if cls in TOGGLEABLE:
        out.append("on" if is_on else "off")
    return " ".join(out)


# -- frame pieces ----------------------------------------------------------------------------------
def _edge(frame: np.ndarray, box: Rect) -> None:
    """A 1-pixel orange frame just outside an instance's square: it is within reach."""
    x0, y0 = max(box[0] - 1, 0), max(box[1] - 1, MAP_TOP)
    x1, y1 = min(box[2] + 1, FRAME_SIZE - 1), min(box[3] + 1, MAP_H - 1)
    if x0 > x1 or y0 > y1:
        return
    frame[y0, x0 : x1 + 1] = AGENT_RING
    frame[y1, x0 : x1 + 1] = AGENT_RING
    frame[y0 : y1 + 1, x0] = AGENT_RING
    frame[y0 : y1 + 1, x1] = AGENT_RING


CHIPS_Y, CHIPS_H = 16, FRONT_H - 17  # the row of object chips in the within-reach strip


def _chip_row(strip: np.ndarray, groups: tuple[Group, ...]) -> None:
    """The groups' chips left to right, nearest first, as many as fit, then "+N more"."""
    x, right = 3, FRAME_SIZE - 3
    for k, group in enumerate(groups):
        piece = _group_piece(group)
        left = len(groups) - k - 1
        room = right - (_more_piece(left).shape[1] + GROUP_GAP if left else 0)
        if x + piece.shape[1] > room:
            _put(strip, x, CHIPS_Y, _more_piece(len(groups) - k))
            return
        _put(strip, x, CHIPS_Y, piece)
        x += piece.shape[1] + GROUP_GAP


@functools.lru_cache(maxsize=4096)
def _group_piece(group: Group) -> np.ndarray:
    """One group's chips (an object, or a bowl with what is in it) cut to their width; cached per group,
    so a strip is a few pastes however its objects combine."""
    width = FRAME_SIZE - 6
    layout = fit((group,), width, CHIPS_H)
    used = max((p.x + p.chip.width for p in layout.chips), default=1) + 1
    return _frozen(np.array(chips_image((group,), width, CHIPS_H, STRIP_BG))[:, :used])


@functools.lru_cache(maxsize=64)
def _more_piece(n: int) -> np.ndarray:
    return _group_piece((ChipSpec(MORE, (str(n),)), ()))


@functools.lru_cache(maxsize=1024)
def _front_strip(fixed: tuple[tuple[str, str], ...], groups: tuple[Group, ...]) -> np.ndarray:
    """'within reach: fridge open, counter' over the chips of the objects within reach."""
    strip = _blank(FRONT_H)
    x = _put(strip, 4, 2, _word("within reach:", 11, DIM_TEXT))
    if not fixed and not groups:
        _put(strip, x + 4, 2, _word("nothing", 11, TEXT))
        return _frozen(strip)
    entries = list(dict.fromkeys(fixed))
    runs: list[np.ndarray] = []
    for k, (cls, state) in enumerate(entries):
        n = fixed.count((cls, state))
        texts = [words(cls) + (f" x{n}" if n > 1 else ""), *state.split()]
        comma = "," if k < len(entries) - 1 else ""
        for j, text in enumerate(texts):
            end = comma if j == len(texts) - 1 else ""
            colour = {"open": OPEN_WORD, "on": ON_WORD}.get(text, DIM_TEXT) if j else TEXT
            runs.append(_word(text + end, 11, colour, bold=j == 0))
    for piece in runs:
        if x + 4 + piece.shape[1] > FRAME_SIZE - 4:
            _put(strip, x + 2, 2, _word("…", 11, DIM_TEXT))
            break
        x = _put(strip, x + 4, 2, piece)
    if groups:
        _chip_row(strip, groups)
    else:
        _put(strip, 6, 19, _word("(no object)", 10, DIM_TEXT))
    return _frozen(strip)
