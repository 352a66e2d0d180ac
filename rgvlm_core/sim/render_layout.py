"""Where things go in the simulator's frame: the eight location slots, and chips flowed into a box.

The frame is 300x300: a room of walls and floor above a 16-pixel caption strip. Locations take fixed
slots around the walls in layout order (three along the top from left to right, one left, one right,
three along the bottom), leaving the centre free for the door mat. The agent stands in the aisle
below a top box, above a bottom box, or in the centre beside a side box (`STANDS`). Objects at a
location are chips flowed left to right, row by row, inside the location's box, in the largest font
(11, 10 or 9 px) at which all fit, else the first ones and "+N more". An object in a movable
receptacle (a bowl) follows its container on one grey band, so "bowl [apple]" reads as one group.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from PIL import Image, ImageDraw

from rgvlm_core.sim.render_style import (
    BAND_FILL,
    BAND_OUTLINE,
    MORE,
    RGB,
    Chip,
    ChipSpec,
    draw_chip,
    measure_chip,
)

FRAME_SIZE = 300
CAPTION_H = 16
ROOM_H = FRAME_SIZE - CAPTION_H  # the room: rows [0, ROOM_H)
WALL_W = 4
HEADER_H = 13  # a location box's name band

Rect = tuple[int, int, int, int]  # x0, y0, x1, y1, inclusive (PIL's convention)

_COLS = ((6, 97), (104, 195), (202, 293))
_TOP = (6, 87)
_SIDE = (110, 173)
_BOTTOM = (196, 277)
SLOTS: tuple[Rect, ...] = (
    *((x0, _TOP[0], x1, _TOP[1]) for x0, x1 in _COLS),
    (_COLS[0][0], _SIDE[0], _COLS[0][1], _SIDE[1]),
    (_COLS[2][0], _SIDE[0], _COLS[2][1], _SIDE[1]),
    *((x0, _BOTTOM[0], x1, _BOTTOM[1]) for x0, x1 in _COLS),
)
CENTRE: Rect = (_COLS[0][1] + 1, _SIDE[0], _COLS[2][0] - 1, _SIDE[1])
DOOR_MAT: Rect = (128, CENTRE[3] - 17, 172, CENTRE[3] - 2)
AGENT_R = 7
AISLE_HOLD_H = 20  # the tallest a held object's chips may be in an aisle (one row)


class Stand(NamedTuple):
    """Where the agent stands for a slot: its centre, the way it faces, and room for what it holds."""

    x: int
    y: int
    facing: str  # "up", "down", "left", "right": towards the location
    side: int  # +1: what it holds is drawn to its right; -1: to its left
    reach: int  # the widest the held object's chips may be
    hold_h: int  # the tallest they may be (centred on the agent)


def _stands() -> tuple[Stand, ...]:
    # the agent's ring touches its box, so it reads as standing at it rather than at the side box
    top_y = _TOP[1] + AGENT_R + 3
    bottom_y = _BOTTOM[0] - AGENT_R - 3
    # under (over) the box, what it holds towards the far wall: the middle box's agent stands off
    # centre so that a plate with a hot sliced apple still fits on one row
    xs = ((_COLS[0][0] + _COLS[0][1]) // 2, _COLS[1][0] + 15, (_COLS[2][0] + _COLS[2][1]) // 2)
    aisle = [
        Stand(xs[0], 0, "", 1, _COLS[2][1] - xs[0] - 12, AISLE_HOLD_H),
        Stand(xs[1], 0, "", 1, _COLS[2][1] - xs[1] - 12, AISLE_HOLD_H),
        Stand(xs[2], 0, "", -1, xs[2] - _COLS[0][0] - 12, AISLE_HOLD_H),
    ]
    # beside the left and right boxes: the centre above the door mat
    hold_h = DOOR_MAT[1] - 3 - CENTRE[1]
    side_y = CENTRE[1] + hold_h // 2
    reach = CENTRE[2] - CENTRE[0] - 2 * AGENT_R - 10
    return (
        *(s._replace(y=top_y, facing="up") for s in aisle),
        Stand(CENTRE[0] + AGENT_R + 3, side_y, "left", 1, reach, hold_h),
        Stand(CENTRE[2] - AGENT_R - 3, side_y, "right", -1, reach, hold_h),
        *(s._replace(y=bottom_y, facing="down") for s in aisle),
    )


STANDS: tuple[Stand, ...] = _stands()
# at the door: on the mat's top edge (it never holds anything there: no action leads back to the door)
_DOOR_X = (DOOR_MAT[0] + DOOR_MAT[2]) // 2
DOOR_STAND = Stand(
    _DOOR_X, DOOR_MAT[1] - AGENT_R - 3, "up", 1, CENTRE[2] - (_DOOR_X + AGENT_R + 7), AISLE_HOLD_H
)

# -- chips in a box ----------------------------------------------------------------------------------
Group = tuple[ChipSpec, tuple[ChipSpec, ...]]  # an object and what it holds (a bowl and its apples)
SIZES = (11, 10, 9)  # chip font sizes, tried in order until everything fits
GROUP_GAP = 5  # pixels between groups on a row
MEMBER_GAP = 3  # pixels between chips of one group
ROW_GAP = 2  # bands of two rows touch at most


class Placed(NamedTuple):
    chip: Chip
    x: int
    y: int


class Layout(NamedTuple):
    chips: tuple[Placed, ...]
    bands: tuple[Rect, ...]  # grey bands behind a container and its contents, one per row it spans


def flow(groups: tuple[Group, ...], size: int, width: int, height: int) -> Layout | None:
    """Groups as chips left to right, wrapping rows, in a `width` x `height` area; None if they overflow."""
    placed: list[Placed] = []
    bands: list[Rect] = []
    x, y, row_h = 0, 0, 0
    for head, contents in groups:
        chips = [measure_chip(c, size, width - 2) for c in (head, *contents)]
        grouped = len(chips) > 1
        band: list[Placed] = []
        for k, chip in enumerate(chips):
            start = x + (MEMBER_GAP if k else GROUP_GAP) if x else 1
            if x and start + chip.width > width - 1:  # wrap to a new row
                bands += _band(band, grouped)
                band, start, y, row_h = [], 1, y + row_h + ROW_GAP, 0
            if y + chip.height + 2 > height or (chip.cut and size != SIZES[-1]):
                return None  # (a band's edge goes above and below a row)
            placed.append(Placed(chip, start, y + 1))
            band.append(placed[-1])
            x, row_h = start + chip.width, max(row_h, chip.height)
        bands += _band(band, grouped)
    return Layout(tuple(placed), tuple(bands))


def _band(members: list[Placed], grouped: bool) -> list[Rect]:
    if not grouped or not members:
        return []
    x1 = max(p.x + p.chip.width for p in members)
    y1 = max(p.y + p.chip.height for p in members)
    return [(members[0].x - 1, members[0].y - 1, x1, y1)]


def fit(groups: tuple[Group, ...], width: int, height: int) -> Layout:
    """The largest font at which every chip fits; else the first chips that do and "+N more"."""
    for size in SIZES:
        layout = flow(groups, size, width, height)
        if layout is not None:
            return layout
    total = sum(1 + len(contents) for _, contents in groups)
    for keep in range(total - 1, -1, -1):
        more: Group = (ChipSpec(MORE, (str(total - keep),)), ())
        layout = flow((*_first(groups, keep), more), SIZES[-1], width, height)
        if layout is not None:
            return layout
    return Layout((), ())  # an area too small for even "+N more"


def _first(groups: tuple[Group, ...], n: int) -> tuple[Group, ...]:
    """The groups cut after their first `n` chips (a container may keep only some of its contents)."""
    out: list[Group] = []
    for head, contents in groups:
        if n <= 0:
            break
        out.append((head, contents[: n - 1]))
        n -= 1 + len(contents)
    return tuple(out)


@functools.lru_cache(maxsize=2048)  # at most ~18 KB each
def chips_image(groups: tuple[Group, ...], width: int, height: int, background: RGB) -> Image.Image:
    """The chips of `groups` fitted in a `width` x `height` area of plain `background` (cached)."""
    image = Image.new("RGB", (width, height), background)
    draw_layout(ImageDraw.Draw(image), fit(groups, width, height), 0, 0)
    return image


def draw_layout(draw: ImageDraw.ImageDraw, layout: Layout, x: int, y: int) -> None:
    for x0, y0, x1, y1 in layout.bands:
        draw.rounded_rectangle(
            (x + x0, y + y0, x + x1, y + y1), radius=5, fill=BAND_FILL, outline=BAND_OUTLINE
        )
    for p in layout.chips:
        draw_chip(draw, p.chip, x + p.x, y + p.y)
