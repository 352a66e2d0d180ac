"""Colours, fonts and object chips of the simulator's rendered frame (see `render.py`).

A chip is one object drawn as a small rounded label: its class name in words ("apple") and its state
tags ("hot cold clean sliced" each in its own colour), with a red outline when hot and a blue one when
cold. Chips are measured and drawn here; where they go is `render_layout.py`'s business.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from PIL import ImageDraw, ImageFont

from rgvlm_core.sim.catalog import (
    BATH,
    CUTLERY,
    DECOR,
    DRINKWARE,
    FOOD,
    LAMPS,
    MOVABLE,
    OPENABLE,
    SMALL,
    words,
)
from rgvlm_core.sim.world import FLAGS, Obj

RGB = tuple[int, int, int]

# -- the room ----------------------------------------------------------------------------------------
WALL: RGB = (72, 72, 80)
FLOOR: RGB = (236, 231, 219)
CAPTION_BG: RGB = (32, 32, 38)
CAPTION_TEXT: RGB = (255, 255, 255)
ROOM_TEXT: RGB = (175, 175, 185)
DOOR: RGB = (140, 92, 48)
AGENT: RGB = (28, 28, 34)
AGENT_RING: RGB = (255, 140, 0)
TEXT: RGB = (22, 22, 22)
HEADER_TEXT: RGB = (255, 255, 255)


class Family(NamedTuple):
    """How a family of locations is painted: header band, body, and (openables) the closed door."""

    header: RGB
    body: RGB
    door: RGB


_FAMILIES: dict[str, Family] = {
    "table": Family(header=(132, 94, 52), body=(226, 204, 168), door=(170, 130, 85)),
    "appliance": Family(header=(78, 92, 112), body=(214, 220, 228), door=(150, 162, 180)),
    "seat": Family(header=(82, 112, 72), body=(206, 222, 194), door=(150, 175, 140)),
    "bath": Family(header=(44, 110, 150), body=(200, 228, 242), door=(120, 170, 200)),
    "lamp": Family(header=(120, 104, 40), body=(240, 236, 222), door=(200, 190, 150)),
}
_SEATS = frozenset({"Sofa", "ArmChair", "Bed"})
_BATH_LOCATIONS = frozenset({"SinkBasin", "Toilet", "BathtubBasin"})
OPEN_INTERIOR: RGB = (248, 247, 242)
OPEN_TAG: RGB = (150, 240, 150)
LAMP_ON: RGB = (255, 214, 40)
LAMP_GLOW: RGB = (255, 240, 160)
LAMP_OFF: RGB = (150, 150, 150)


def family(location: str) -> Family:
    """The paint of a location class: appliances and cupboards, seats, bath fixtures, lamps, tables."""
    if location in LAMPS:
        return _FAMILIES["lamp"]
    if location in OPENABLE:
        return _FAMILIES["appliance"]
    if location in _SEATS:
        return _FAMILIES["seat"]
    if location in _BATH_LOCATIONS:
        return _FAMILIES["bath"]
    return _FAMILIES["table"]


# -- objects -------------------------------------------------------------------------------------------
_OBJECT_FILL: dict[str, RGB] = {
    **{c: (255, 222, 176) for c in FOOD},
    **{c: (196, 232, 246) for c in DRINKWARE},
    **{c: (226, 226, 226) for c in CUTLERY},
    **{c: (255, 255, 255) for c in MOVABLE},
    **{c: (222, 208, 246) for c in SMALL},
    **{c: (250, 210, 226) for c in DECOR},
    **{c: (206, 240, 200) for c in BATH},
}
TAG_COLOUR: dict[str, RGB] = {
    "hot": (205, 18, 18),
    "cold": (18, 70, 210),
    "clean": (0, 125, 80),
    "sliced": (150, 40, 150),
}
OUTLINE: RGB = (95, 95, 95)
MORE_FILL: RGB = (245, 245, 245)
BAND_FILL: RGB = (118, 118, 132)
BAND_OUTLINE: RGB = (70, 70, 80)

CHIP_PAD_X = 3  # text inset inside a chip
RUN_GAP = 4  # pixels between the name and each tag (a font's space is too thin to read at this size)
LINE_GAP = 1  # extra pixels between the text lines of a wrapped chip
CHIP_PAD_Y = 2  # outline and one free pixel above and below the letters
MORE = "+more"  # the class of the "+N more" chip (its count is in the tags)


class ChipSpec(NamedTuple):
    """What a chip shows: an object class and its state tags (for MORE: the hidden count)."""

    cls: str
    tags: tuple[str, ...] = ()


def chip_spec(obj: Obj) -> ChipSpec:
    return ChipSpec(obj.cls, tuple(f for f in FLAGS if getattr(obj, f)))


@functools.cache
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in FreeType font (Aileron), so frames look the same on every machine."""
    loaded = ImageFont.load_default(size=size)
    if not isinstance(loaded, ImageFont.FreeTypeFont):
        raise RuntimeError("the renderer needs Pillow >= 10.1 built with FreeType (pip install -U pillow)")
    return loaded


@functools.lru_cache(maxsize=4096)
def text_width(text: str, size: int) -> int:
    return round(font(size).getlength(text))


@functools.cache
def ink_rows(size: int) -> tuple[int, int]:
    """The first and one-past-last pixel rows that letters (ascenders to descenders) cover."""
    _, top, _, bottom = font(size).getbbox("Akgjyl")
    return int(top), int(bottom)


def line_height(size: int) -> int:
    top, bottom = ink_rows(size)
    return bottom - top


def fit_text(text: str, size: int, width: int) -> str:
    """`text`, cut and ended with "…" when it is wider than `width` pixels."""
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


Segment = tuple[str, RGB]  # a run of text and its colour


class Chip(NamedTuple):
    """A measured chip: its size and its text lines (each a list of coloured runs)."""

    spec: ChipSpec
    size: int
    width: int
    height: int
    lines: tuple[tuple[Segment, ...], ...]
    cut: bool  # some text did not fit and was cut with "…" (the layout then tries a smaller font)


@functools.lru_cache(maxsize=8192)
def measure_chip(spec: ChipSpec, size: int, max_width: int) -> Chip:
    """The name and tags on one line when they fit in `max_width`, else wrapped between tags."""
    inner = max_width - 2 * CHIP_PAD_X
    if spec.cls == MORE:
        runs: list[Segment] = [(f"+{spec.tags[0]} more", TEXT)]
    else:
        runs = [(words(spec.cls), TEXT), *((t, TAG_COLOUR[t]) for t in spec.tags)]
    lines: list[list[Segment]] = [[]]
    for run in runs:
        if lines[-1] and _line_width([*lines[-1], run], size) > inner:
            lines.append([])
        lines[-1].append(run)
    fitted = tuple(_fit_line(line, size, inner) for line in lines)
    width = max(_line_width(line, size) for line in fitted) + 2 * CHIP_PAD_X
    height = len(fitted) * line_height(size) + (len(fitted) - 1) * LINE_GAP + 2 * CHIP_PAD_Y
    return Chip(spec, size, width, height, fitted, fitted != tuple(tuple(line) for line in lines))


def _line_width(line: list[Segment] | tuple[Segment, ...], size: int) -> int:
    return sum(text_width(text, size) for text, _ in line) + RUN_GAP * (len(line) - 1)


def _fit_line(line: list[Segment], size: int, width: int) -> tuple[Segment, ...]:
    """A line of one run too wide for the chip (a name, never in practice): cut with "…"."""
    if _line_width(line, size) <= width:
        return tuple(line)
    return ((fit_text(line[0][0], size, width), line[0][1]),)


def draw_chip(draw: ImageDraw.ImageDraw, chip: Chip, x: int, y: int) -> None:
    """A rounded label at (x, y): fill by object family, red/blue outline when hot/cold, coloured tags."""
    spec = chip.spec
    fill = MORE_FILL if spec.cls == MORE else _OBJECT_FILL.get(spec.cls, (255, 255, 255))
    outline, width = OUTLINE, 1
    if "hot" in spec.tags:
        outline, width = TAG_COLOUR["hot"], 2
    elif "cold" in spec.tags:
        outline, width = TAG_COLOUR["cold"], 2
    box = (x, y, x + chip.width - 1, y + chip.height - 1)
    draw.rounded_rectangle(box, radius=4, fill=fill, outline=outline, width=width)
    f = font(chip.size)
    step = line_height(chip.size) + LINE_GAP
    for k, line in enumerate(chip.lines):
        tx = x + CHIP_PAD_X
        ty = y + k * step + CHIP_PAD_Y - ink_rows(chip.size)[0]
        for text, colour in line:
            draw.text((tx, ty), text, font=f, fill=colour)
            tx += text_width(text, chip.size) + RUN_GAP
