"""The simulator's picture: a 300x300 top-down view of one room that people and VLMs can read.

What a frame shows:
- the room (walls, floor), a door mat in the middle where the agent starts (`agent is None`), and a
  caption strip at the bottom holding the optional caption (e.g. the last action) and the room kind;
- each location in its layout slot (`render_layout.SLOTS`) as a box with its name in words on a band
  coloured by family (tables, appliances and cupboards, seats, bath fixtures, lamps);
- openable locations (fridge, microwave, cabinet, drawer): open ones have a light interior, a door flap
  and an "open" tag; closed ones a solid door with a handle and the word "closed". What is inside a
  closed one is NOT drawn: the agent cannot see it either (`State.at_agent` gives nothing there);
- lamps: a yellow glowing bulb and "on", or a grey one and "off";
- objects as rounded chips inside their location's box: the class name ("apple") followed by state
  tags ("hot", "cold", "clean", "sliced", each in its own colour; a long chip wraps between words),
  a red outline when hot, a blue one when cold; what a bowl or plate holds follows it on a grey band;
  when a box cannot hold all of its chips even at 9 px, the last ones give way to "+N more";
- the agent: a dark disc with an orange ring and a white notch pointing at the location it stands at,
  and what it holds as a chip at the end of an arm.

Speed: the room, its boxes and the open/closed/lit look of them are drawn once per (room, locations,
opened, lit) and cached; each box's chips are cached by their content; a frame is a copy and a few pastes.
"""

from __future__ import annotations

import functools

import numpy as np
from PIL import Image, ImageDraw

from rgvlm_core.sim.catalog import LAMPS, OPENABLE, words
from rgvlm_core.sim.render_layout import (
    AGENT_R,
    CAPTION_H,
    DOOR_MAT,
    DOOR_STAND,
    FRAME_SIZE,
    HEADER_H,
    ROOM_H,
    SLOTS,
    STANDS,
    WALL_W,
    Group,
    Rect,
    Stand,
    chips_image,
    draw_layout,
    fit,
)
from rgvlm_core.sim.render_style import (
    AGENT,
    AGENT_RING,
    CAPTION_BG,
    CAPTION_TEXT,
    DOOR,
    FLOOR,
    HEADER_TEXT,
    LAMP_GLOW,
    LAMP_OFF,
    LAMP_ON,
    OPEN_INTERIOR,
    OPEN_TAG,
    ROOM_TEXT,
    TEXT,
    WALL,
    chip_spec,
    family,
    fit_text,
    font,
    text_width,
)
from rgvlm_core.sim.world import HELD, State

__all__ = ["FRAME_SIZE", "render_frame", "render_image"]

CAPTION_SIZE = 11


def render_frame(state: State, *, caption: str | None = None) -> np.ndarray:
    """The frame of `state` as a new (300, 300, 3) uint8 array; the same state gives the same bytes."""
    return np.array(render_image(state, caption=caption), dtype=np.uint8)


def render_image(state: State, *, caption: str | None = None) -> Image.Image:
    """The frame of `state` as an RGB image (for writing JPEG or PNG files)."""
    if len(state.locations) > len(SLOTS):
        raise ValueError(
            f"a room has at most {len(SLOTS)} locations to draw, this one has {len(state.locations)}: "
            f"{state.locations}"
        )
    opened = frozenset(loc for loc in state.locations if loc in state.opened)
    lit = frozenset(loc for loc in state.locations if loc in state.lit)
    image = _room(state.room, state.locations, opened, lit).copy()
    groups = _groups(state)
    for slot, loc in zip(SLOTS, state.locations, strict=False):  # fewer locations than slots
        here = groups.get(loc)
        if not here or loc in LAMPS or (loc in OPENABLE and loc not in opened):
            continue  # a closed cupboard hides what it holds
        x0, y0, x1, y1 = _content_area(slot, loc)
        background = OPEN_INTERIOR if loc in OPENABLE else family(loc).body
        image.paste(chips_image(tuple(here), x1 - x0 + 1, y1 - y0 + 1, background), (x0, y0))
    _draw_agent(image, state, groups)
    image.paste(_caption_strip(caption or "", state.room), (0, ROOM_H))
    return image


def _groups(state: State) -> dict[str, list[Group]]:
    """Chips per location (top-level objects with their contents); the held object under HELD."""
    contents: dict[int, list[int]] = {}
    for i, obj in enumerate(state.objects):
        if obj.inside >= 0:
            contents.setdefault(obj.inside, []).append(i)
    out: dict[str, list[Group]] = {}
    for i, obj in enumerate(state.objects):
        if obj.inside < 0:
            inner = tuple(chip_spec(state.objects[j]) for j in contents.get(i, ()))
            out.setdefault(obj.loc, []).append((chip_spec(obj), inner))
    return out


def _content_area(slot: Rect, loc: str) -> Rect:
    x0, y0, x1, y1 = slot
    left = 9 if loc in OPENABLE else 2
    return (x0 + left, y0 + HEADER_H + 1, x1 - 2, y1 - 2)


# -- the static room ---------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)  # 64 x 270 KB
def _room(room: str, locations: tuple[str, ...], opened: frozenset[str], lit: frozenset[str]) -> Image.Image:
    """Walls, floor, door mat and location boxes (with their open/closed/lit look); cached."""
    image = Image.new("RGB", (FRAME_SIZE, FRAME_SIZE), FLOOR)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, FRAME_SIZE - 1, ROOM_H - 1), outline=WALL, width=WALL_W)
    _draw_door(draw)
    for slot, loc in zip(SLOTS, locations, strict=False):
        _draw_box(draw, slot, loc, loc in opened, loc in lit)
    return image


def _draw_door(draw: ImageDraw.ImageDraw) -> None:
    x0, y0, x1, y1 = DOOR_MAT
    draw.rounded_rectangle(DOOR_MAT, radius=3, fill=DOOR)
    left = (x0 + x1 - text_width("door", 10)) // 2
    draw.text((left, (y0 + y1) // 2 - 6), "door", font=font(10), fill=HEADER_TEXT)


def _draw_box(draw: ImageDraw.ImageDraw, slot: Rect, loc: str, is_open: bool, is_lit: bool) -> None:
    x0, y0, x1, y1 = slot
    paint = family(loc)
    body_y = y0 + HEADER_H
    draw.rectangle(slot, fill=paint.body, outline=paint.header)
    draw.rectangle((x0, y0, x1, body_y - 1), fill=paint.header)
    tag = ("open" if is_open else "") if loc in OPENABLE else ""
    name_w = x1 - x0 - 6 - (text_width(tag, 10) + 4 if tag else 0)
    draw.text((x0 + 3, y0 + 1), fit_text(words(loc), 10, name_w), font=font(10), fill=HEADER_TEXT)
    if tag:
        draw.text((x1 - 2 - text_width(tag, 10), y0 + 1), tag, font=font(10), fill=OPEN_TAG)
    if loc in OPENABLE and is_open:
        draw.rectangle((x0 + 1, body_y, x1 - 1, y1 - 1), fill=OPEN_INTERIOR)
        flap = [(x0 + 1, body_y), (x0 + 7, body_y + 5), (x0 + 7, y1 - 6), (x0 + 1, y1 - 1)]
        draw.polygon(flap, fill=paint.door, outline=paint.header)
    elif loc in OPENABLE:
        draw.rectangle((x0 + 1, body_y, x1 - 1, y1 - 1), fill=paint.door)
        mid = (body_y + y1) // 2
        draw.line((x1 - 8, mid - 9, x1 - 8, mid + 9), fill=paint.header, width=3)
        draw.text(((x0 + x1 - text_width("closed", 11)) // 2, mid - 7), "closed", font=font(11), fill=TEXT)
    elif loc in LAMPS:
        _draw_lamp(draw, (x0 + 26, (body_y + y1) // 2), is_lit)


def _draw_lamp(draw: ImageDraw.ImageDraw, centre: tuple[int, int], is_lit: bool) -> None:
    cx, cy = centre
    if is_lit:
        for r, colour in ((19, LAMP_GLOW), (11, LAMP_ON)):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        draw.ellipse((cx - 11, cy - 11, cx + 11, cy + 11), fill=LAMP_OFF, outline=TEXT)
    word = "on" if is_lit else "off"
    draw.text((cx + 24, cy - 8), word, font=font(12), fill=TEXT)


# -- the agent -------------------------------------------------------------------------------------
def _draw_agent(image: Image.Image, state: State, groups: dict[str, list[Group]]) -> None:
    stand = DOOR_STAND if state.agent is None else _stand_at(state)
    draw = ImageDraw.Draw(image)
    held = groups.get(HELD)
    if held:
        chip = _held_image(held[0], stand.reach, stand.hold_h)
        gap = AGENT_R + 7
        x = stand.x + gap if stand.side > 0 else stand.x - gap - chip.width
        y = stand.y - chip.height // 2
        arm_end = x if stand.side > 0 else x + chip.width - 1
        draw.line((stand.x, stand.y, arm_end, stand.y), fill=AGENT, width=3)
        image.paste(chip, (x, y))
    x, y, r = stand.x, stand.y, AGENT_R
    draw.ellipse((x - r - 2, y - r - 2, x + r + 2, y + r + 2), fill=AGENT_RING)
    draw.ellipse((x - r, y - r, x + r, y + r), fill=AGENT)
    draw.polygon(_notch(stand), fill=(255, 255, 255))


def _stand_at(state: State) -> Stand:
    return STANDS[state.locations.index(state.agent)] if state.agent in state.locations else DOOR_STAND


def _notch(stand: Stand) -> list[tuple[int, int]]:
    """A small white triangle on the agent's disc pointing at the location it faces."""
    x, y, r = stand.x, stand.y, AGENT_R
    dx, dy = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}[stand.facing]
    tip = (x + dx * (r - 1), y + dy * (r - 1))
    base = (x + dx * 1, y + dy * 1)
    return [tip, (base[0] - dy * 4, base[1] - dx * 4), (base[0] + dy * 4, base[1] + dx * 4)]


@functools.lru_cache(maxsize=1024)
def _held_image(group: Group, reach: int, height: int) -> Image.Image:
    """The held object's chip (with what it holds) on the floor colour, cropped to its size."""
    layout = fit((group,), reach, height)
    right = max(
        [p.x + p.chip.width for p in layout.chips] + [x1 + 1 for _, _, x1, _ in layout.bands], default=1
    )
    bottom = max(
        [p.y + p.chip.height for p in layout.chips] + [y1 + 1 for _, _, _, y1 in layout.bands], default=1
    )
    image = Image.new("RGB", (right, bottom), FLOOR)
    draw_layout(ImageDraw.Draw(image), layout, 0, 0)
    return image


# -- the caption strip -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _caption_strip(caption: str, room: str) -> Image.Image:
    """The bottom strip: the caption on the left (cut with "…" when long), the room kind on the right."""
    image = Image.new("RGB", (FRAME_SIZE, CAPTION_H), CAPTION_BG)
    draw = ImageDraw.Draw(image)
    room_w = text_width(room, 10)
    draw.text((FRAME_SIZE - 4 - room_w, 2), room, font=font(10), fill=ROOM_TEXT)
    text = fit_text(" ".join(caption.split()), CAPTION_SIZE, FRAME_SIZE - room_w - 16)
    draw.text((4, 1), text, font=font(CAPTION_SIZE), fill=CAPTION_TEXT)
    return image
