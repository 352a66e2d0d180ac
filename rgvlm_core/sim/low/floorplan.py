"""Floor plans of the low-level household: ALFRED's real ones, read from its layout files, and generated.

A floor plan is a set of reachable points on ALFRED's 0.25 m grid and the receptacles the agent can use,
each with the one pose (grid cell, heading, camera horizon) from which it is used. The symbolic world
keeps at most one usable receptacle of each class (so `PutObject(Cabinet)` names one cabinet); a
kitchen's other cabinets stay in the plan as furniture: drawn, never used.

Real floor plans (`load_floor_plan`) come from ALFRED's layouts folder, read at run time and never
copied into the project: `FloorPlanN-layout.npy` (reachable x, z points), `-objects.json` (object classes
present) and `-openable.json` (receptacle id -> [x, z, rotation, horizon]; ids encode positions as
`Type|x|y|z`, sinks and bathtubs as `Sink|x|y|z|SinkBasin`). Only the largest connected set of the
layout's points is kept (a few layouts hold points cut off from the rest). Of several posed instances of a
class the first by id whose pose is on the kept points and not taken is used. Receptacles present but not
posed there (the lamps, and a few cabinets, drawers, shelves, sinks and toilets) are placed by
`place_unposed`: against the edge of the reachable area, facing out of it, at a point chosen by a
generator seeded with the floor plan and the class.

Generated floor plans (`generated_floor_plan`) are rectangular rooms with the receptacles along the walls
and sometimes an island in the middle, for rooms ALFRED never had.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rgvlm_core.errors import UsageError
from rgvlm_core.sim.catalog import LAMPS, OBJECTS, RECEPTACLES

GRID = 0.25  # metres between reachable points (ALFRED's grid)
HEADINGS: tuple[int, ...] = (0, 90, 180, 270)  # ALFRED rotations; 0 faces +z, 90 faces +x
HORIZONS: tuple[int, ...] = (-30, -15, 0, 15, 30, 45, 60)  # camera pitch in degrees, positive = down
STEP = {0: (0, 1), 90: (1, 0), 180: (0, -1), 270: (-1, 0)}  # grid offset of MoveAhead per heading
ROOM_OF_RANGE = {0: "kitchen", 2: "living room", 3: "bedroom", 4: "bathroom"}  # FloorPlan number // 100
FLOOR_PLAN_SETS: dict[str, tuple[int, ...]] = {
    "kitchens": tuple(range(1, 31)),
    "livingrooms": tuple(range(201, 231)),
    "bedrooms": tuple(range(301, 331)),
    "bathrooms": tuple(range(401, 431)),
}
USABLE = frozenset(RECEPTACLES + LAMPS)
# the camera horizon from which a placed (unposed) receptacle is used: tall ones straight ahead
PLACED_HORIZON = {"FloorLamp": 0, "Fridge": 0, "Shelf": 0, "Dresser": 0}
DEFAULT_PLACED_HORIZON = 30
LAYOUTS_ENV = "RGVLM_ALFRED_LAYOUTS"

Cell = tuple[int, int]
Pose = tuple[int, int, int, int]  # (ix, iz, heading in degrees, horizon in degrees)


@dataclass(frozen=True)
class Receptacle:
    """One receptacle instance: its class, id, position (metres) and the pose from which it is used."""

    cls: str
    object_id: str
    x: float
    z: float
    pose: Pose
    posed: bool = True  # False when `place_unposed` chose the pose (ALFRED's layouts give none)


@dataclass(frozen=True, eq=False)
class FloorPlan:
    """A floor plan: reachable cells, usable receptacles (one per class), other furniture, object classes.

    Equal when name, points and usable receptacles are (furniture is only drawn); hashed by name.
    """

    name: str
    room: str
    cells: frozenset[Cell]
    receptacles: tuple[Receptacle, ...]
    furniture: tuple[Receptacle, ...] = ()
    objects: tuple[str, ...] = ()  # catalogue object classes present in the scene
    start: Pose = (0, 0, 0, 30)  # the default initial pose
    _front: dict[Pose, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        poses = [r.pose for r in self.receptacles]
        if len(set(poses)) != len(poses):
            raise ValueError(f"{self.name}: two usable receptacles share a pose")
        if len({r.cls for r in self.receptacles}) != len(self.receptacles):
            raise ValueError(f"{self.name}: two usable receptacles share a class")
        for r in self.receptacles:
            if r.pose[:2] not in self.cells:
                raise ValueError(f"{self.name}: the pose of {r.object_id} is not a reachable point")
        if self.start[:2] not in self.cells:
            raise ValueError(f"{self.name}: the start pose {self.start} is not a reachable point")
        self._front.update({r.pose: r.cls for r in self.receptacles})

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, FloorPlan):
            return NotImplemented
        return (self.name, self.cells, self.receptacles) == (other.name, other.cells, other.receptacles)

    @property
    def locations(self) -> tuple[str, ...]:
        """Usable receptacle classes, in the plan's order (the symbolic state's `locations`)."""
        return tuple(r.cls for r in self.receptacles)

    def front(self, pose: Pose) -> str | None:
        """The receptacle in reach and in front of an agent at `pose` (the rule: the pose is its pose)."""
        return self._front.get(pose)

    def receptacle(self, cls: str) -> Receptacle:
        for r in self.receptacles:
            if r.cls == cls:
                return r
        raise KeyError(f"{self.name} has no usable {cls}")

    def bounds(self) -> tuple[int, int, int, int]:
        """(min ix, min iz, max ix, max iz) over cells and receptacle positions, in grid units."""
        xs = [c[0] for c in self.cells] + [round(r.x / GRID) for r in self.receptacles + self.furniture]
        zs = [c[1] for c in self.cells] + [round(r.z / GRID) for r in self.receptacles + self.furniture]
        return min(xs), min(zs), max(xs), max(zs)


# -- ALFRED's floor plans --------------------------------------------------------------------------
def layouts_dir(root: str | Path | None = None) -> Path:
    """The ALFRED layouts folder: `root`, else $RGVLM_ALFRED_LAYOUTS, else ../shared/alfred/layouts
    beside the working folder or beside the project checkout."""
    return shared_alfred("layouts", LAYOUTS_ENV, root)


def shared_alfred(name: str, env: str, root: str | Path | None = None) -> Path:
    """A folder of the shared ALFRED files: `root`, else $`env`, else ../shared/alfred/`name` beside the
    working folder or beside the project checkout (the first that exists; the first when none does)."""
    if root is not None:
        return Path(root)
    if os.environ.get(env):
        return Path(os.environ[env])
    candidates = [Path.cwd().parent / "shared" / "alfred" / name]
    candidates.append(Path(__file__).resolve().parents[3].parent / "shared" / "alfred" / name)
    return next((p for p in candidates if p.is_dir()), candidates[0])


def parse_floor_plans(text: str) -> tuple[int, ...]:
    """`kitchens,livingrooms,7,301-305` -> floor plan numbers (sets, numbers and ranges, comma separated)."""
    out: list[int] = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        if part in FLOOR_PLAN_SETS:
            out += FLOOR_PLAN_SETS[part]
            continue
        lo, sep, hi = part.removeprefix("FloorPlan").partition("-")
        try:
            numbers = range(int(lo), int(hi) + 1) if sep else [int(lo)]
        except ValueError:
            known = ", ".join(FLOOR_PLAN_SETS)
            raise UsageError(
                f"--floor-plans: {part!r} is not a set ({known}), a number or a range like 301-305"
            ) from None
        for n in numbers:
            if room_of(n) is None:
                raise UsageError(
                    f"--floor-plans: {n} is not an ALFRED floor plan (1-30, 201-230, 301-330, 401-430)"
                )
        out += numbers
    if not out:
        raise UsageError("--floor-plans: name at least one floor plan")
    return tuple(dict.fromkeys(out))


def room_of(number: int) -> str | None:
    """The room kind of ALFRED floor plan `number`, or None when ALFRED has no such floor plan."""
    if not (1 <= number % 100 <= 30):
        return None
    return ROOM_OF_RANGE.get(number // 100)


@functools.cache
def load_floor_plan(number: int, root: str | None = None) -> FloorPlan:
    """ALFRED floor plan `number` from its layout files (cached: one object per floor plan)."""
    room = room_of(number)
    if room is None:
        raise UsageError(f"FloorPlan{number} is not an ALFRED floor plan (1-30, 201-230, 301-330, 401-430)")
    folder = layouts_dir(root)
    name = f"FloorPlan{number}"
    paths = {kind: folder / f"{name}-{kind}" for kind in ("layout.npy", "objects.json", "openable.json")}
    for path in paths.values():
        if not path.is_file():
            raise UsageError(
                f"{path}: ALFRED layout file not found; point ${LAYOUTS_ENV} at ALFRED's layouts folder "
                "(../shared/alfred/layouts here)"
            )
    try:
        points = np.load(paths["layout.npy"])
        present = json.loads(paths["objects.json"].read_text())
        openable = json.loads(paths["openable.json"].read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{folder}/{name}-*: cannot read the layout: {e}") from None
    if points.ndim != 2 or points.shape[1] != 2 or not len(points):
        raise UsageError(f"{paths['layout.npy']}: expected an N x 2 array of x, z points, got {points.shape}")
    cells = largest_component({(round(x / GRID), round(z / GRID)) for x, z in points.tolist()})
    instances = [
        _posed(object_id, value, paths["openable.json"]) for object_id, value in sorted(openable.items())
    ]
    usable, furniture = _choose_instances(instances, cells)
    taken = {r.pose for r in usable}
    for cls in sorted(set(present) & USABLE - {r.cls for r in usable}):
        r = place_unposed(cls, cells, taken, f"{name}/{cls}")
        if r is not None:
            usable.append(r)
            taken.add(r.pose)
    objects = tuple(c for c in OBJECTS if c in set(present))
    return FloorPlan(
        name, room, cells, tuple(usable), tuple(furniture), objects, start=_start_pose(cells, name)
    )


def largest_component(cells: set[Cell]) -> frozenset[Cell]:
    """The largest 4-connected set of points: a few layouts hold points the agent cannot walk to from the
    rest (behind a counter, in a closet); keeping one connected floor keeps every pose reachable."""
    best: set[Cell] = set()
    seen: set[Cell] = set()
    for first in sorted(cells):
        if first in seen:
            continue
        part, todo = {first}, [first]
        while todo:
            x, z = todo.pop()
            for dx, dz in STEP.values():
                nb = (x + dx, z + dz)
                if nb in cells and nb not in part:
                    part.add(nb)
                    todo.append(nb)
        seen |= part
        if len(part) > len(best):
            best = part
    return frozenset(best)


def receptacle_class(object_id: str) -> str:
    """`Cabinet|+00.68|+00.50|-02.20` -> Cabinet; `Sink|-01.90|+00.97|-01.50|SinkBasin` -> SinkBasin."""
    parts = object_id.split("|")
    return parts[-1] if len(parts) > 4 else parts[0]


def _posed(object_id: str, value: object, source: Path) -> Receptacle:
    parts = object_id.split("|")
    try:
        x, z = float(parts[1]), float(parts[3])
        px, pz, rotation, horizon = (float(v) for v in value)  # type: ignore[attr-defined]
    except (IndexError, ValueError, TypeError):
        raise UsageError(
            f"{source}: {object_id!r}: expected Type|x|y|z -> [x, z, rotation, horizon]"
        ) from None
    heading = round(rotation / 90.0) % 4 * 90
    pose = (round(px / GRID), round(pz / GRID), heading, round(horizon / 15.0) * 15)
    return Receptacle(receptacle_class(object_id), object_id, x, z, pose)


def _choose_instances(
    instances: list[Receptacle], cells: frozenset[Cell]
) -> tuple[list[Receptacle], list[Receptacle]]:
    usable: dict[str, Receptacle] = {}
    taken: set[Pose] = set()
    furniture = []
    for r in instances:  # sorted by id
        ok = r.cls in USABLE and r.cls not in usable and r.pose[:2] in cells and r.pose not in taken
        ok = ok and r.pose[3] in HORIZONS
        if ok:
            usable[r.cls] = r
            taken.add(r.pose)
        else:
            furniture.append(r)
    return list(usable.values()), furniture


def edge_poses(cells: frozenset[Cell]) -> list[tuple[Cell, int]]:
    """(cell, heading) pairs where the agent stands on the reachable area's edge facing out of it."""
    out = []
    for cell in sorted(cells):
        for heading, (dx, dz) in STEP.items():
            if (cell[0] + dx, cell[1] + dz) not in cells:
                out.append((cell, heading))
    return out


def place_unposed(cls: str, cells: frozenset[Cell], taken: set[Pose], key: str) -> Receptacle | None:
    """Put a receptacle the layouts do not pose against the edge of the reachable area.

    The rule: of the edge poses (a reachable point with no reachable neighbour ahead) not taken by
    another receptacle, one drawn by a generator seeded with `key` (the floor plan and class), so the
    same floor plan always gets the same placement. The receptacle stands 0.5 m ahead of that point;
    it is used at horizon 0 when tall (floor lamp, fridge, shelf, dresser), else 30 (looking down).
    """
    horizon = PLACED_HORIZON.get(cls, DEFAULT_PLACED_HORIZON)
    options = [(c, h) for c, h in edge_poses(cells) if (*c, h, horizon) not in taken]
    if not options:
        return None
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    (ix, iz), heading = options[int(np.random.default_rng(seed).integers(len(options)))]
    dx, dz = STEP[heading]
    x, z = (ix + 2 * dx) * GRID, (iz + 2 * dz) * GRID
    return Receptacle(cls, f"{cls}|{x:+.2f}|+00.00|{z:+.2f}", x, z, (ix, iz, heading, horizon), posed=False)


def _start_pose(cells: frozenset[Cell], name: str) -> Pose:
    """The default initial pose: the reachable point nearest the middle of the area, facing +z, horizon 30
    (ALFRED starts most trajectories looking down 30 degrees)."""
    arr = np.array(sorted(cells), dtype=float)
    centre = arr.mean(axis=0)
    i = int(np.argmin(((arr - centre) ** 2).sum(axis=1)))
    return (int(arr[i, 0]), int(arr[i, 1]), 0, 30)


# -- generated floor plans -------------------------------------------------------------------------
def generated_floor_plan(rng: np.random.Generator, room: str, locations: tuple[str, ...]) -> FloorPlan:
    """A rectangular room of 10-14 x 8-12 points holding `locations` along its walls (and, in one room
    in two, an island of unreachable floor in the middle); each receptacle is used from the edge point in
    front of it. Deterministic for the generator's state."""
    for _ in range(20):
        width, depth = int(rng.integers(10, 15)), int(rng.integers(8, 13))
        cells = {(x, z) for x in range(width) for z in range(depth)}
        if rng.random() < 0.5:
            w, d = int(rng.integers(2, 4)), int(rng.integers(2, 4))
            x0, z0 = int(rng.integers(2, width - w - 1)), int(rng.integers(2, depth - d - 1))
            cells -= {(x, z) for x in range(x0, x0 + w) for z in range(z0, z0 + d)}
        frozen = frozenset(cells)
        walls = [(c, h) for c, h in edge_poses(frozen) if _on_wall(c, h, width, depth)]
        order = rng.permutation(len(walls))
        receptacles: list[Receptacle] = []
        used: set[Cell] = set()
        for cls in locations:
            for k in order:
                (ix, iz), heading = walls[int(k)]
                near = {(ix + a, iz + b) for a in (-1, 0, 1) for b in (-1, 0, 1)}
                if near & used:
                    continue  # one receptacle per stretch of wall
                used.add((ix, iz))
                dx, dz = STEP[heading]
                x, z = (ix + 1.5 * dx) * GRID, (iz + 1.5 * dz) * GRID
                horizon = PLACED_HORIZON.get(cls, DEFAULT_PLACED_HORIZON)
                object_id = f"{cls}|{x:+.2f}|+00.00|{z:+.2f}"
                receptacles.append(Receptacle(cls, object_id, x, z, (ix, iz, heading, horizon), posed=False))
                break
        if len(receptacles) == len(locations):
            name = f"Generated-{room.replace(' ', '')}-{int(rng.integers(1 << 30)):09d}"
            objects = ()
            return FloorPlan(name, room, frozen, tuple(receptacles), (), objects, _start_pose(frozen, name))
    raise AssertionError(f"could not lay out {len(locations)} receptacles in a generated {room}")


def _on_wall(cell: Cell, heading: int, width: int, depth: int) -> bool:
    x, z = cell
    return (
        (heading == 0 and z == depth - 1)
        or (heading == 180 and z == 0)
        or (heading == 90 and x == width - 1)
        or (heading == 270 and x == 0)
    )
