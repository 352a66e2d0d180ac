"""The map part of a rendered ALFRED frame (`render.py`): one scene's floor, fixed instances and class
labels, drawn once per scene, and its state-dependent layer (open and switched-on instances, objects and
their chips, the banner), drawn once per look. Kept per scene object, as `level._walks` keeps its walks.
"""

from __future__ import annotations

import functools
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from rgvlm_core.alfred.replay_scene import ReplayScene, Thing, class_of
from rgvlm_core.alfred.thor_facts import OPENABLE, TOGGLEABLE
from rgvlm_core.alfred.world import HALF_SIZE, World
from rgvlm_core.sim.catalog import words
from rgvlm_core.sim.low.floorplan import GRID, room_of
from rgvlm_core.sim.low.render import (
    FLOOR_LINE,
    LABEL_H,
    LABEL_SIZE,
    MAP_H,
    UNREACHABLE_FILL,
    Geometry,
    _frozen,
    _put,
    _word,
    label_image,
)
from rgvlm_core.sim.render_layout import FRAME_SIZE, Rect
from rgvlm_core.sim.render_style import (
    FLOOR,
    HEADER_TEXT,
    LAMP_ON,
    TAG_COLOUR,
    ChipSpec,
    draw_chip,
    family,
    measure_chip,
    text_width,
)

BANNER = "RENDERED from the replayed state, not ALFRED's camera"
BANNER_H = 14
BANNER_BG = (92, 36, 128)
MAP_TOP = BANNER_H + 1  # the map: rows [MAP_TOP, MAP_H)
MAP_PAD = 3
LEADERS = 3  # a class label joins each of its instances with a line up to this many
LONG = 0.5  # metres of half size from which a fixed instance is drawn as long furniture
FLAGS = ("hot", "cold", "clean", "sliced")  # render_style's tag order
DOT_EDGE = (60, 60, 60)
OPEN_EDGE = (0, 150, 70)
PLANS_MAX = 64  # scenes kept with their drawn map (each ~200 KB plus its looks)
LOOKS_MAX = 48  # state-dependent map layers kept per scene


# -- what the state shows --------------------------------------------------------------------------
class Dot(NamedTuple):
    """An object drawn on the map: its pixel, its chip, and whether it is labelled."""

    x: int
    y: int
    spec: ChipSpec
    labelled: bool


class Look(NamedTuple):
    """Everything the state-dependent map layer depends on (its cache key)."""

    opened: frozenset[str]
    on: frozenset[str]
    dots: tuple[Dot, ...]


def chip_spec(w: World, object_id: str) -> ChipSpec:
    """An object's chip: its class in words (a slice as its whole) and its hot/cold/clean/sliced tags."""
    cls = class_of(object_id)
    sliced = cls.endswith("Sliced") or object_id in w.sliced
    tags = [f for f in FLAGS[:3] if object_id in w.changed[f]] + (["sliced"] if sliced else [])
    return ChipSpec(cls.removesuffix("Sliced"), tuple(tags))


def whole_of(object_id: str) -> str:
    return "|".join(object_id.split("|")[:4])


def object_dots(w: World, geo: Geometry) -> tuple[Dot, ...]:
    """The visible objects (not held, not in a closed receptacle); a slice only once it left its whole."""
    dots: dict[tuple[int, int, ChipSpec], bool] = {}
    for object_id in sorted(w.things):
        thing = w.things[object_id]
        if not thing.movable or object_id == w.held or w.hidden(object_id):
            continue
        position = w.position(object_id)
        if thing.cls.endswith("Sliced") and position == w.position(whole_of(object_id)):
            continue  # still lying where the whole was cut: the whole's dot says "sliced"
        spec = chip_spec(w, object_id)
        px, py = (round(c) for c in geo.point(position[0] / GRID, position[2] / GRID))
        touched = object_id in w.parent or bool(spec.tags)
        dots[(px, py, spec)] = dots.get((px, py, spec), False) or touched
    return tuple(Dot(x, y, spec, labelled) for (x, y, spec), labelled in dots.items())


@dataclass
class Plan:
    """A scene's map: geometry, floor and fixed instances drawn once, labels placed once, and the
    state-dependent layers drawn per look (bounded)."""

    scene: ReplayScene
    geo: Geometry
    room: str
    fixed: tuple[Thing, ...]
    squares: dict[str, Rect]
    labels: dict[str, tuple[Rect, tuple[tuple[int, int], ...]]]  # class -> label box, the pixels it names
    floor: np.ndarray
    looks: OrderedDict[Look, tuple[np.ndarray, tuple[tuple[Rect, np.ndarray], ...]]]
    dots: OrderedDict[tuple[Any, ...], tuple[Dot, ...]]
    lock: threading.Lock

    def objects(self, w: World) -> tuple[Dot, ...]:
        """The objects' dots of `w`, kept per object state (most steps only move the agent)."""
        key = (
            w.held,
            tuple(sorted(w.parent.items())),
            frozenset(w.opened),
            frozenset(w.sliced),
            *(frozenset(w.changed[f]) for f in FLAGS[:3]),
            len(w.things),
        )
        with self.lock:
            hit = self.dots.get(key)
            if hit is not None:
                self.dots.move_to_end(key)
                return hit
        dots = object_dots(w, self.geo)
        with self.lock:
            self.dots[key] = dots
            while len(self.dots) > LOOKS_MAX:
                self.dots.popitem(last=False)
        return dots

    def background(self, look: Look) -> tuple[np.ndarray, tuple[tuple[Rect, np.ndarray], ...]]:
        with self.lock:
            hit = self.looks.get(look)
            if hit is not None:
                self.looks.move_to_end(look)
                return hit
        drawn = _draw_look(self, look)
        with self.lock:
            self.looks[look] = drawn
            while len(self.looks) > LOOKS_MAX:
                self.looks.popitem(last=False)
        return drawn


_PLANS: OrderedDict[int, Plan] = OrderedDict()
_PLANS_LOCK = threading.Lock()


def plan_of(scene: ReplayScene) -> Plan:
    """The scene's map, drawn once per scene object (kept alive with its entry, as level._walks does)."""
    with _PLANS_LOCK:
        hit = _PLANS.get(id(scene))
        if hit is not None and hit.scene is scene:
            _PLANS.move_to_end(id(scene))
            return hit
    plan = _draw_plan(scene)
    with _PLANS_LOCK:
        _PLANS[id(scene)] = plan
        while len(_PLANS) > PLANS_MAX:
            _PLANS.popitem(last=False)
    return plan


def _geometry(scene: ReplayScene) -> Geometry:
    xs = [c[0] for c in scene.cells] + [t.position[0] / GRID for t in scene.things.values()]
    zs = [c[1] for c in scene.cells] + [t.position[2] / GRID for t in scene.things.values()]
    lo_x, hi_x, lo_z, hi_z = min(xs) - 1, max(xs) + 1, min(zs) - 1, max(zs) + 1
    height = MAP_H - MAP_TOP
    scale = min((FRAME_SIZE - 2 * MAP_PAD) / (hi_x - lo_x), (height - 2 * MAP_PAD) / (hi_z - lo_z))
    ox = (FRAME_SIZE - scale * (hi_x - lo_x)) / 2 - lo_x * scale
    oy = MAP_TOP + (height + scale * (hi_z - lo_z)) / 2 + lo_z * scale
    return Geometry(scale, ox, oy)


def _draw_plan(scene: ReplayScene) -> Plan:
    geo = _geometry(scene)
    fixed = tuple(sorted((t for t in scene.things.values() if not t.movable), key=lambda t: t.object_id))
    squares: dict[str, Rect] = {}
    for t in fixed:
        px, py = (round(c) for c in geo.point(t.position[0] / GRID, t.position[2] / GRID))
        half = max(2, round(geo.scale * (0.7 if HALF_SIZE.get(t.cls, 0.0) >= LONG else 0.45)))
        squares[t.object_id] = (px - half, py - half, px + half, py + half)
    labels = _place_labels(fixed, squares)
    image = Image.new("RGB", (FRAME_SIZE, MAP_H), UNREACHABLE_FILL)
    draw = ImageDraw.Draw(image)
    grid = geo.scale >= 7
    for ix, iz in sorted(scene.cells):
        draw.rectangle(geo.cell(ix, iz), fill=FLOOR, outline=FLOOR_LINE if grid else None)
    for cls, (box, anchors) in sorted(labels.items()):
        for anchor in anchors:
            draw.line((*_nearest_edge(box, anchor), *anchor), fill=family(family_of(cls)).header, width=1)
    number = scene.floor_plan.removeprefix("FloorPlan")
    room = (room_of(int(number)) if number.isdigit() else None) or ""
    pixels = _frozen(np.array(image))
    return Plan(
        scene, geo, room, fixed, squares, labels, pixels, OrderedDict(), OrderedDict(), threading.Lock()
    )


def family_of(cls: str) -> str:
    """The class whose family paint an ALFRED class takes: openables as cabinets, lamps and switches as
    a desk lamp; others as the generated household's catalogue says (tables by default)."""
    if cls in OPENABLE:
        return "Cabinet"
    if cls in TOGGLEABLE and cls != "Microwave":
        return "DeskLamp"
    return cls


def _place_labels(
    fixed: tuple[Thing, ...], squares: dict[str, Rect]
) -> dict[str, tuple[Rect, tuple[tuple[int, int], ...]]]:
    """One label per class, beside the instance nearest the class's middle, placed greedily where it
    overlaps no square and no earlier label (classes by name). It names every instance of a class of up
    to `LEADERS` (a line to each), else the one it stands by (cabinets and drawers come by the dozen)."""
    by_class: dict[str, list[tuple[int, int]]] = {}
    for t in fixed:
        r = squares[t.object_id]
        by_class.setdefault(t.cls, []).append(((r[0] + r[2]) // 2, (r[1] + r[3]) // 2))
    taken = list(squares.values())
    out: dict[str, tuple[Rect, tuple[tuple[int, int], ...]]] = {}
    for cls in sorted(by_class):
        centres = by_class[cls]
        mx, my = sum(c[0] for c in centres) / len(centres), sum(c[1] for c in centres) / len(centres)
        anchor = min(centres, key=lambda c: (math.hypot(c[0] - mx, c[1] - my), c))
        width = text_width(words(cls), LABEL_SIZE) + 6 + _reserve(cls, len(centres))
        rect = _place(*anchor, width, taken)
        taken.append(rect)
        out[cls] = (rect, tuple(sorted(set(centres))) if len(centres) <= LEADERS else (anchor,))
    return out


def _reserve(cls: str, count: int) -> int:
    """Room kept in a label for its widest state ("2 open", "on")."""
    runs = ([f"{count} open" if count > 1 else "open"] if cls in OPENABLE else []) + (
        [f"{count} on" if count > 1 else "on"] if cls in TOGGLEABLE else []
    )
    return sum(text_width(r, LABEL_SIZE) + 4 for r in runs)


def _place(ax: int, ay: int, width: int, taken: list[Rect]) -> Rect:
    """A label box of `width` near (ax, ay): above it if free, else the first free nudge in `_SHIFTS`
    order, else the least-overlapping one (overlap as `_overlap` counts it, for all nudges at once)."""
    h = LABEL_H
    rects = []
    for dx, dy in _SHIFTS:
        x0 = min(max(ax + round(dx * (width // 2 + 6)) - width // 2, 1), FRAME_SIZE - 2 - width)
        y0 = min(max(ay + dy * h - h // 2, MAP_TOP + 1), MAP_H - 2 - h)
        rects.append((x0, y0, x0 + width - 1, y0 + h - 1))
    r, t = np.array(rects)[:, None, :], np.array(taken, dtype=int).reshape(1, -1, 4)
    w = np.minimum(r[..., 2], t[..., 2]) - np.maximum(r[..., 0], t[..., 0]) + 3
    ht = np.minimum(r[..., 3], t[..., 3]) - np.maximum(r[..., 1], t[..., 1]) + 3
    overlap = (np.clip(w, 0, None) * np.clip(ht, 0, None)).sum(axis=1)
    return rects[int(np.argmin(overlap))]  # the first of the least overlapping: `_SHIFTS` order


# where a label is tried, in order: (x in half widths plus a gap, y in label heights) from its anchor
_SHIFTS = ((0, -1), (0, 1), (1, 0), (-1, 0), (0, 0), (0, -2), (0, 2), (1, -1), (-1, -1), (1, 1), (-1, 1))


def _nearest_edge(box: Rect, point: tuple[int, int]) -> tuple[int, int]:
    return min(max(point[0], box[0]), box[2]), min(max(point[1], box[1]), box[3])


def _draw_look(plan: Plan, look: Look) -> tuple[np.ndarray, tuple[tuple[Rect, np.ndarray], ...]]:
    """The map in one look: instances open/on, class labels with their state, objects and their chips."""
    image = Image.fromarray(plan.floor)
    draw = ImageDraw.Draw(image)
    for t in plan.fixed:
        paint = family(family_of(t.cls))
        box = plan.squares[t.object_id]
        if t.object_id in look.opened:
            draw.rectangle(box, fill=(250, 250, 246), outline=OPEN_EDGE, width=2)
        elif t.object_id in look.on:
            draw.rectangle(box, fill=LAMP_ON, outline=paint.header)
        else:
            draw.rectangle(box, fill=paint.header, outline=(255, 255, 255))
    taken = [box for box, _ in plan.labels.values()] + list(plan.squares.values())
    for dot in look.dots:
        colour = next((TAG_COLOUR[t] for t in dot.spec.tags), (255, 255, 255))
        draw.ellipse((dot.x - 2, dot.y - 2, dot.x + 2, dot.y + 2), fill=colour, outline=DOT_EDGE)
    for dot in look.dots:
        if dot.labelled:
            chip = measure_chip(dot.spec, 9, 120)
            rect = _place(dot.x, dot.y, chip.width, taken)
            rect = (rect[0], rect[1], rect[0] + chip.width - 1, rect[1] + chip.height - 1)
            taken.append(rect)
            draw_chip(draw, chip, rect[0], rect[1])
    pixels = np.array(image)
    boxes: list[tuple[Rect, np.ndarray]] = []
    for cls, (box, _) in sorted(plan.labels.items()):
        ids = [t.object_id for t in plan.fixed if t.cls == cls]
        piece = _label(cls, _count_word(ids, look.opened, "open"), _count_word(ids, look.on, "on"))
        h, w = piece.shape[:2]
        x0 = (box[0] + box[2] + 1 - w) // 2
        pixels[box[1] : box[1] + h, x0 : x0 + w] = piece
        boxes.append(((x0, box[1], x0 + w - 1, box[1] + h - 1), piece))
    pixels[:MAP_TOP] = banner()
    return _frozen(pixels), tuple(boxes)


def _count_word(ids: list[str], which: frozenset[str], word: str) -> str:
    n = sum(i in which for i in ids)
    if n == 0:
        return ""
    return word if len(ids) == 1 else f"{n} {word}"


@functools.lru_cache(maxsize=512)
def _label(cls: str, opened: str, on: str) -> np.ndarray:
    """A class label: its name in words on its family's colour (yellow when one is on), then states."""
    runs = tuple(r for r in (opened, on) if r)
    return label_image(words(cls), family(family_of(cls)).header, runs, bool(on))


@functools.cache
def banner() -> np.ndarray:
    """The top rows: the banner saying this is a drawing of the replayed state, and a rule under it."""
    strip = np.empty((MAP_TOP, FRAME_SIZE, 3), dtype=np.uint8)
    strip[:] = BANNER_BG
    strip[-1] = (255, 255, 255)
    pieces = [_word(w, 10, HEADER_TEXT, BANNER_BG, bold=True) for w in BANNER.split()]
    gap = 4  # bold text drawn twice eats the font's thin spaces: words are set apart by hand
    x = (FRAME_SIZE - sum(p.shape[1] for p in pieces) - gap * (len(pieces) - 1)) // 2
    for piece in pieces:
        _put(strip, max(x, 1), 0, piece[:BANNER_H])
        x += piece.shape[1] + gap
    return _frozen(strip)
