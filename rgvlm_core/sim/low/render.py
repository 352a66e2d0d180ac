"""The low-level household's picture: a 300x300 top-down map of the floor plan with the agent's view cone.

What a frame shows (the same FRAME_SHAPE as the subgoal level's frames, `rgvlm_core/sim/env.py`):
- the map, scaled to fit, +z upward and +x to the right: reachable floor points as light squares, the
  area the agent cannot reach darker; other instances (furniture) as plain grey boxes;
- each usable receptacle as a labelled box near its (x, z) position with its class in words, coloured by
  family as at the subgoal level (`render_style.family`), "open" when opened, yellow with "on" when
  switched on (lamps, the microwave; the sink with "faucet on"); a ring marks the point from which it is
  used, joined to its box by a thin line;
- the agent: a dark disc with an orange ring and a white notch, and an orange view cone (90 degrees, 1.5 m:
  ALFRED's field of view and visibility distance) showing its heading (0 faces +z, up; 90 faces +x);
- the receptacle in front (`world.agent`) outlined in orange;
- below the map, a strip naming what is in front with its state (open/closed, on/off) and the objects it
  holds as the subgoal level's chips (class + hot/cold/clean/sliced tags); a closed receptacle hides its
  contents, as `rgvlm_core/sim/render.py` does; then a strip with what the agent holds and the camera
  horizon ("looking down 30"); then the caption strip (the caption, e.g. the last action, and the floor
  plan's name).

Speed: frames are rendered for every generated step, so the map with its labels is drawn once per
(plan, furniture, opened, switched on) and cached, the agent sprite once per (heading, size), and each
strip once per content; a frame is a copy, three pastes, one rectangle and the array conversion.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from rgvlm_core.sim.catalog import LAMPS, OPENABLE, words
from rgvlm_core.sim.low.floorplan import GRID, FloorPlan, Receptacle
from rgvlm_core.sim.low.world import FAUCET, LowState
from rgvlm_core.sim.render import _groups
from rgvlm_core.sim.render_layout import CAPTION_H, FRAME_SIZE, Group, Rect, chips_image
from rgvlm_core.sim.render_style import (
    AGENT,
    AGENT_RING,
    CAPTION_BG,
    CAPTION_TEXT,
    FLOOR,
    HEADER_TEXT,
    LAMP_ON,
    OPEN_TAG,
    RGB,
    ROOM_TEXT,
    RUN_GAP,
    TEXT,
    family,
    fit_text,
    font,
    text_width,
)
from rgvlm_core.sim.world import HELD

__all__ = ["FRAME_SIZE", "render_low_frame", "render_low_image"]

FRONT_H = 38  # the strip naming what is in front: a title line and one row of chips
HOLD_H = 20  # the strip with what the agent holds and the camera horizon
MAP_H = FRAME_SIZE - CAPTION_H - HOLD_H - FRONT_H  # the map: rows [0, MAP_H)
MAP_PAD = 3
LABEL_SIZE = 10  # font size of the receptacle labels
LABEL_H = 14
VIEW_DISTANCE = 1.5  # metres: ALFRED's visibilityDistance (and its 90-degree field of view below)
FIELD_OF_VIEW = 90

UNREACHABLE_FILL: RGB = (150, 146, 138)
FLOOR_LINE: RGB = (222, 215, 200)
FURNITURE: RGB = (118, 116, 112)
FURNITURE_EDGE: RGB = (92, 90, 86)
STRIP_BG: RGB = (246, 244, 238)
STRIP_LINE: RGB = (200, 196, 186)
DIM_TEXT: RGB = (110, 110, 110)
OPEN_WORD: RGB = (0, 125, 60)  # "open" on the light strip (OPEN_TAG is for dark label bands)
ON_WORD: RGB = (176, 120, 0)


def render_low_frame(
    s: LowState, caption: str | None = None, furniture: tuple[Receptacle, ...] | None = None
) -> np.ndarray:
    """The frame of `s` as a new (300, 300, 3) uint8 array; the same state gives the same bytes.

    `furniture` defaults to the plan's own (a plan parsed from a state string has none). Built in numpy
    from cached pieces: the map is one copy, the view cone one blend, the rest slice assignments."""
    plan, w = s.plan, s.world
    extra = plan.furniture if furniture is None else tuple(furniture)
    opened = frozenset(loc for loc in plan.locations if loc in w.opened)
    lit = frozenset(w.lit)
    background, labels = _background(plan, extra, opened, lit)
    frame = np.empty((FRAME_SIZE, FRAME_SIZE, 3), dtype=np.uint8)
    frame[:MAP_H] = background
    x, z, heading, horizon = s.pose
    cone, disc = _agent_sprites(heading, _map_layout(plan, extra)[0].scale)
    cx, cy = (round(v) for v in _map_layout(plan, extra)[0].point(x, z))
    reach = _blend(frame, cone, cx, cy)
    for (x0, y0, x1, y1), pixels in labels.values():  # labels stay readable over the cone
        if _overlap((x0, y0, x1, y1), reach):
            frame[y0 : y1 + 1, x0 : x1 + 1] = pixels
    if w.agent in labels:
        _outline(frame, labels[w.agent][0], AGENT_RING)
    _blend(frame, disc, cx, cy)
    groups = _groups(w)
    front: tuple[Group, ...] | None = None
    if w.agent is not None and w.accessible(w.agent):
        front = tuple(groups.get(w.agent, ()))
    status = _status(w.agent, opened, lit) if w.agent is not None else ()
    frame[MAP_H : MAP_H + FRONT_H] = _front_strip(w.agent, status, front)
    held = groups.get(HELD)
    frame[MAP_H + FRONT_H : FRAME_SIZE - CAPTION_H] = _hold_strip(held[0] if held else None, horizon)
    frame[FRAME_SIZE - CAPTION_H :] = _caption_strip(caption or "", plan.name, plan.room)
    return frame


def render_low_image(
    s: LowState, caption: str | None = None, furniture: tuple[Receptacle, ...] | None = None
) -> Image.Image:
    """The frame of `s` as an RGB image (for writing JPEG or PNG files)."""
    return Image.fromarray(render_low_frame(s, caption, furniture), "RGB")


class Sprite(NamedTuple):
    """An RGBA picture ready to blend: premultiplied colour and 255 - alpha, both uint16."""

    dx: int  # the top-left corner's offset from the point it is drawn at
    dy: int
    colour: np.ndarray  # (h, w, 3) colour * alpha
    keep: np.ndarray  # (h, w, 3) 255 - alpha (per channel: numpy is 4x faster without broadcasting)


def _sprite(image: Image.Image, cx: int, cy: int) -> Sprite:
    """`image` (RGBA, drawn around its pixel (cx, cy)) cropped to what it covers."""
    x0, y0, x1, y1 = image.getbbox() or (0, 0, 1, 1)
    rgba = np.asarray(image.crop((x0, y0, x1, y1)), dtype=np.uint16)
    alpha = np.repeat(rgba[:, :, 3:], 3, axis=2)
    return Sprite(x0 - cx, y0 - cy, _frozen(rgba[:, :, :3] * alpha), _frozen(255 - alpha))


def _blend(frame: np.ndarray, sprite: Sprite, cx: int, cy: int) -> Rect:
    """Blend `sprite` onto the map rows of `frame` at (cx, cy); returns the box it covers."""
    h, w = sprite.keep.shape[:2]
    x0, y0 = cx + sprite.dx, cy + sprite.dy
    a, b = max(x0, 0), max(y0, 0)
    c, d = min(x0 + w, FRAME_SIZE), min(y0 + h, MAP_H)
    if c > a and d > b:
        region = frame[b:d, a:c]
        keep = sprite.keep[b - y0 : d - y0, a - x0 : c - x0]
        colour = sprite.colour[b - y0 : d - y0, a - x0 : c - x0]
        mixed = region * keep  # uint16; (v + 255) >> 8 is v / 255 to within one level, exact at alpha 0, 255
        mixed += colour
        mixed += 255
        mixed >>= 8
        frame[b:d, a:c] = mixed
    return x0, y0, x0 + w - 1, y0 + h - 1


def _outline(frame: np.ndarray, box: Rect, colour: RGB) -> None:
    """A 2-pixel frame 1 pixel outside `box` (the highlight of the receptacle in front)."""
    x0, y0, x1, y1 = max(box[0] - 3, 0), max(box[1] - 3, 0), box[2] + 3, min(box[3] + 3, MAP_H - 1)
    frame[y0 : y0 + 2, x0 : x1 + 1] = colour
    frame[y1 - 1 : y1 + 1, x0 : x1 + 1] = colour
    frame[y0 : y1 + 1, x0 : x0 + 2] = colour
    frame[y0 : y1 + 1, x1 - 1 : x1 + 1] = colour


def _frozen(array: np.ndarray) -> np.ndarray:
    """`array` made read-only: cached pieces are shared by every frame."""
    array.flags.writeable = False
    return array


# -- where things go on the map ----------------------------------------------------------------------
class Geometry(NamedTuple):
    """Grid units (0.25 m) to pixels: x to the right, z upward."""

    scale: float  # pixels per grid unit
    ox: float
    oy: float

    def point(self, gx: float, gz: float) -> tuple[float, float]:
        return self.ox + gx * self.scale, self.oy - gz * self.scale

    def cell(self, ix: int, iz: int) -> Rect:
        x0, y0 = self.point(ix - 0.5, iz + 0.5)
        x1, y1 = self.point(ix + 0.5, iz - 0.5)
        return round(x0), round(y0), round(x1) - 1, round(y1) - 1


class Label(NamedTuple):
    rect: Rect  # the box reserved for the label (its widest state)
    anchor: tuple[int, int]  # the receptacle's position
    stand: tuple[int, int]  # the centre of the point from which it is used


def _geometry(plan: FloorPlan, furniture: tuple[Receptacle, ...]) -> Geometry:
    xs = [c[0] for c in plan.cells] + [r.x / GRID for r in plan.receptacles + furniture]
    zs = [c[1] for c in plan.cells] + [r.z / GRID for r in plan.receptacles + furniture]
    lo_x, hi_x, lo_z, hi_z = min(xs) - 1, max(xs) + 1, min(zs) - 1, max(zs) + 1
    scale = min((FRAME_SIZE - 2 * MAP_PAD) / (hi_x - lo_x), (MAP_H - 2 * MAP_PAD) / (hi_z - lo_z))
    ox = (FRAME_SIZE - scale * (hi_x - lo_x)) / 2 - lo_x * scale
    oy = (MAP_H + scale * (hi_z - lo_z)) / 2 + lo_z * scale
    return Geometry(scale, ox, oy)


@functools.lru_cache(maxsize=256)
def _map_layout(plan: FloorPlan, furniture: tuple[Receptacle, ...]) -> tuple[Geometry, dict[str, Label]]:
    """The plan's scale and its receptacle labels, placed greedily where they overlap no earlier one."""
    geo = _geometry(plan, furniture)
    placed: dict[str, Label] = {}
    for r in plan.receptacles:
        ax, ay = (round(v) for v in geo.point(r.x / GRID, r.z / GRID))
        sx, sy = (round(v) for v in geo.point(*r.pose[:2]))
        width = text_width(words(r.cls), LABEL_SIZE) + 6 + _state_width(r.cls)
        rect = _place(ax, ay, width, [p.rect for p in placed.values()])
        placed[r.cls] = Label(rect, (ax, ay), (sx, sy))
    return geo, placed


def _state_width(cls: str) -> int:
    """Room kept in a label for its widest state word, so labels stay put when states change."""
    return _runs_width(_state_words(cls, True, True))


def _runs_width(runs: tuple[str, ...]) -> int:
    """Pixels that words take after a label's name, each after a gap (this font's space is too thin)."""
    return sum(text_width(run, LABEL_SIZE) + RUN_GAP for run in runs)


def _place(ax: int, ay: int, width: int, taken: list[Rect]) -> Rect:
    """A label of `width` near (ax, ay): centred on it if free, else the nearest free nudge."""
    h = LABEL_H
    shifts = [(0, 0), (0, -h), (0, h), (-width // 2, 0), (width // 2, 0), (-width // 2, -h)]
    shifts += [(width // 2, -h), (-width // 2, h), (width // 2, h), (0, -2 * h), (0, 2 * h)]
    best: tuple[int, Rect] | None = None
    for dx, dy in shifts:
        x0 = min(max(ax + dx - width // 2, 1), FRAME_SIZE - 2 - width)
        y0 = min(max(ay + dy - h // 2, 1), MAP_H - 2 - h)
        rect = (x0, y0, x0 + width - 1, y0 + h - 1)
        overlap = sum(_overlap(rect, t) for t in taken)
        if overlap == 0:
            return rect
        if best is None or overlap < best[0]:
            best = (overlap, rect)
    assert best is not None
    return best[1]


def _overlap(a: Rect, b: Rect) -> int:
    w = min(a[2], b[2]) - max(a[0], b[0]) + 3  # a 1-pixel gap counts as touching
    h = min(a[3], b[3]) - max(a[1], b[1]) + 3
    return max(w, 0) * max(h, 0)


# -- the static map ----------------------------------------------------------------------------------
@functools.lru_cache(maxsize=64)  # 64 x 205 KB
def _background(
    plan: FloorPlan, furniture: tuple[Receptacle, ...], opened: frozenset[str], lit: frozenset[str]
) -> tuple[np.ndarray, dict[str, tuple[Rect, np.ndarray]]]:
    """The map with its labels in their open/on look, and each label's box and pixels (drawn again over
    the view cone); cached per look."""
    pixels = _floor(plan, furniture).copy()
    boxes: dict[str, tuple[Rect, np.ndarray]] = {}
    for cls, label in _map_layout(plan, furniture)[1].items():
        is_on = cls in lit or (cls == "SinkBasin" and FAUCET in lit)
        piece = _label(cls, cls in opened, is_on)
        h, w = piece.shape[:2]
        x0, y0, x1, _ = label.rect
        x0 = (x0 + x1 + 1 - w) // 2  # centred in the room kept for its widest state
        pixels[y0 : y0 + h, x0 : x0 + w] = piece
        boxes[cls] = ((x0, y0, x0 + w - 1, y0 + h - 1), piece)
    return _frozen(pixels), boxes


@functools.lru_cache(maxsize=64)
def _floor(plan: FloorPlan, furniture: tuple[Receptacle, ...]) -> np.ndarray:
    """Floor points, furniture, and each receptacle's use point joined to its position; cached per plan."""
    geo, labels = _map_layout(plan, furniture)
    image = Image.new("RGB", (FRAME_SIZE, MAP_H), UNREACHABLE_FILL)
    draw = ImageDraw.Draw(image)
    grid = geo.scale >= 7  # cell lines only where cells are big enough to read
    for ix, iz in plan.cells:
        draw.rectangle(geo.cell(ix, iz), fill=FLOOR, outline=FLOOR_LINE if grid else None)
    half = max(2, round(geo.scale * 0.45))
    for r in furniture:
        fx, fy = (round(v) for v in geo.point(r.x / GRID, r.z / GRID))
        draw.rectangle((fx - half, fy - half, fx + half, fy + half), fill=FURNITURE, outline=FURNITURE_EDGE)
    ring = max(2, round(geo.scale * 0.3))
    for cls, label in labels.items():
        colour = family(cls).header
        draw.line((*label.stand, *label.anchor), fill=colour, width=1)
        sx, sy = label.stand
        draw.ellipse((sx - ring, sy - ring, sx + ring, sy + ring), outline=colour, width=2)
        ax, ay = label.anchor
        draw.rectangle((ax - 2, ay - 2, ax + 2, ay + 2), fill=colour)
    return _frozen(np.array(image))


def _state_words(cls: str, is_open: bool, is_on: bool) -> tuple[str, ...]:
    """The words a map label adds to the class name: only the states worth a look (open, on)."""
    out: list[str] = []
    if cls in OPENABLE and is_open:
        out.append("open")
    if is_on and (cls in LAMPS or cls == "Microwave"):
        out.append("on")
    if is_on and cls == "SinkBasin":
        out += ["faucet", "on"]
    return tuple(out)


@functools.lru_cache(maxsize=256)
def _label(cls: str, is_open: bool, is_on: bool) -> np.ndarray:
    """A receptacle's label: its class in words on its family's colour (yellow when on), "open"/"on"."""
    return label_image(words(cls), family(cls).header, _state_words(cls, is_open, is_on), is_on)


def label_image(name: str, header: tuple[int, int, int], runs: tuple[str, ...], on: bool) -> np.ndarray:
    """A label chip: `name` on the `header` colour (yellow when switched on), then the state words `runs`
    (the ALFRED renderer draws its classes' labels with it too)."""
    width = text_width(name, LABEL_SIZE) + 6 + _runs_width(runs)
    fill, ink, tag = header, HEADER_TEXT, OPEN_TAG
    if on:
        fill, ink, tag = LAMP_ON, TEXT, TEXT
    image = Image.new("RGB", (width, LABEL_H), fill)
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, width - 1, LABEL_H - 1), outline=(255, 255, 255))
    draw.text((3, 1), name, font=font(LABEL_SIZE), fill=ink)
    x = 3 + text_width(name, LABEL_SIZE)
    for run in runs:
        draw.text((x + RUN_GAP, 1), run, font=font(LABEL_SIZE), fill=tag)
        x += RUN_GAP + text_width(run, LABEL_SIZE)
    return _frozen(np.array(image))


# -- the agent -------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=256)
def _agent_sprites(heading: int, scale: float) -> tuple[Sprite, Sprite]:
    """The view cone and the disc with its heading notch, as RGBA sprites centred on the agent's point
    (two, so that the labels under the cone can be drawn again between them)."""
    reach = max(20, round(VIEW_DISTANCE / GRID * scale))
    cone = Image.new("RGBA", (2 * reach + 1, 2 * reach + 1), (0, 0, 0, 0))
    facing = heading - 90  # PIL's angles run clockwise from +x on screen; heading 0 is up
    half = FIELD_OF_VIEW / 2
    ImageDraw.Draw(cone).pieslice(
        (0, 0, 2 * reach, 2 * reach),
        facing - half,
        facing + half,
        fill=(*AGENT_RING, 60),
        outline=(*AGENT_RING, 210),
        width=2,
    )
    r = min(max(round(scale * 0.45), 5), 9)
    c = r + 2
    disc = Image.new("RGBA", (2 * c + 1, 2 * c + 1), (0, 0, 0, 0))
    draw = ImageDraw.Draw(disc)
    draw.ellipse((0, 0, 2 * c, 2 * c), fill=(*AGENT_RING, 255))
    draw.ellipse((c - r, c - r, c + r, c + r), fill=(*AGENT, 255))
    dx, dy = math.sin(math.radians(heading)), -math.cos(math.radians(heading))
    tip = (c + dx * (r - 1), c + dy * (r - 1))
    base = (c - dx * r * 0.3, c - dy * r * 0.3)
    wing = r * 0.6
    notch = [tip, (base[0] - dy * wing, base[1] + dx * wing), (base[0] + dy * wing, base[1] - dx * wing)]
    draw.polygon(notch, fill=(255, 255, 255, 255))
    return _sprite(cone, reach, reach), _sprite(disc, c, c)


# -- the strips ------------------------------------------------------------------------------------
def _status(cls: str, opened: frozenset[str], lit: frozenset[str]) -> tuple[tuple[str, RGB], ...]:
    """The state words of the receptacle in front: open/closed, on/off, the faucet at the sink."""
    out: list[tuple[str, RGB]] = []
    if cls in OPENABLE:
        out.append(("open", OPEN_WORD) if cls in opened else ("closed", DIM_TEXT))
    if cls in LAMPS or cls == "Microwave":
        out.append(("on", ON_WORD) if cls in lit else ("off", DIM_TEXT))
    if cls == "SinkBasin":
        out.append(("faucet on", ON_WORD) if FAUCET in lit else ("faucet off", DIM_TEXT))
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _front_strip(
    cls: str | None, status: tuple[tuple[str, RGB], ...], groups: tuple[Group, ...] | None
) -> np.ndarray:
    """'in front: fridge open' over the chips of what it holds (`groups` None: closed, hidden)."""
    strip = _blank(FRONT_H)
    x = _put(strip, 4, 2, _word("in front:", 11, DIM_TEXT))
    if cls is None:
        _put(strip, x + 4, 2, _word("nothing in reach", 11, TEXT))
        return _frozen(strip)
    x = _put(strip, x + 4, 2, _word(words(cls), 11, TEXT, bold=True))
    for k, (word, colour) in enumerate(status):
        x = _put(strip, x + 5, 2, _word(word + ("," if k < len(status) - 1 else ""), 11, colour))
    if groups is None:
        _put(strip, 6, 19, _word("(closed: contents hidden)", 10, DIM_TEXT))
    elif not groups:
        _put(strip, 6, 19, _word("(empty)", 10, DIM_TEXT))
    else:
        _put(strip, 3, 16, _chips(groups, FRAME_SIZE - 6, FRONT_H - 17))
    return _frozen(strip)


@functools.lru_cache(maxsize=1024)
def _hold_strip(held: Group | None, horizon: int) -> np.ndarray:
    """'holding: apple hot' on the left, the camera horizon ('looking down 30') on the right."""
    strip = _blank(HOLD_H)
    look = (
        "looking straight ahead"
        if horizon == 0
        else f"looking {'down' if horizon > 0 else 'up'} {abs(horizon)}"
    )
    look_w = text_width(look, 11)
    _put(strip, FRAME_SIZE - 4 - look_w, 3, _word(look, 11, TEXT))
    x = _put(strip, 4, 3, _word("holding:", 11, DIM_TEXT))
    if held is None:
        _put(strip, x + 4, 3, _word("nothing", 11, TEXT))
    else:
        _put(strip, x + 3, 1, _chips((held,), FRAME_SIZE - look_w - x - 16, HOLD_H - 1))
    return _frozen(strip)


@functools.lru_cache(maxsize=1024)
def _caption_strip(caption: str, name: str, room: str) -> np.ndarray:
    """The bottom strip: the caption on the left (cut with "…" when long), the floor plan on the right."""
    strip = np.empty((CAPTION_H, FRAME_SIZE, 3), dtype=np.uint8)
    strip[:] = CAPTION_BG
    where = fit_text(name if name.startswith("Generated") else f"{name} {room}", 9, 150)
    where_w = text_width(where, 9)
    _put(strip, FRAME_SIZE - 4 - where_w, 3, _word(where, 9, ROOM_TEXT, CAPTION_BG))
    text, room_left = " ".join(caption.split()), FRAME_SIZE - where_w - 14
    size = 11 if text_width(text, 11) <= room_left else 10
    _put(
        strip,
        4,
        1 if size == 11 else 2,
        _word(fit_text(text, size, room_left), size, CAPTION_TEXT, CAPTION_BG),
    )
    return _frozen(strip)


# -- text pieces -----------------------------------------------------------------------------------
def _blank(height: int) -> np.ndarray:
    """An empty light strip with a rule along its top."""
    strip = np.empty((height, FRAME_SIZE, 3), dtype=np.uint8)
    strip[:] = STRIP_BG
    strip[0] = STRIP_LINE
    return strip


@functools.lru_cache(maxsize=4096)
def _word(text: str, size: int, colour: RGB, background: RGB = STRIP_BG, bold: bool = False) -> np.ndarray:
    """One run of text on `background` (bold: drawn twice, one pixel apart); cached, since strips are
    assembled from these and PIL's text drawing is their slowest part."""
    image = Image.new("RGB", (text_width(text, size) + 2 + bold, size + 5), background)
    draw = ImageDraw.Draw(image)
    for dx in range(1 + bold):
        draw.text((dx, 0), text, font=font(size), fill=colour)
    return _frozen(np.array(image))


@functools.lru_cache(maxsize=2048)
def _chips(groups: tuple[Group, ...], width: int, height: int) -> np.ndarray:
    """The subgoal level's object chips fitted in a `width` x `height` area of the strip's colour."""
    return _frozen(np.array(chips_image(groups, width, height, STRIP_BG)))


def _put(strip: np.ndarray, x: int, y: int, piece: np.ndarray) -> int:
    """Copy `piece` into `strip` at (x, y), clipped at its edges; returns where a text piece's ink ends."""
    h, w = min(piece.shape[0], strip.shape[0] - y), min(piece.shape[1], strip.shape[1] - x)
    if h > 0 and w > 0:
        strip[y : y + h, x : x + w] = piece[:h, :w]
    return x + piece.shape[1] - 2
