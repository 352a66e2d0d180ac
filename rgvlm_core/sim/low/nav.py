"""Navigation on a floor plan's pose graph: where each low-level movement leads, and shortest paths.

A pose is (grid cell, heading, camera horizon). `MoveAhead_25` moves one 0.25 m point in the heading
when that point is reachable; the rotations turn by 90 degrees; the looks tilt the camera by 15 degrees
within ALFRED's range (-30 up to 60 down). Every move costs one step, so a breadth-first distance
field from a receptacle's pose gives exact shortest paths (what A* with an admissible heuristic
returns, computed once per receptacle for every start at once, which is what the expert and the
progress measure need: a path length from wherever the agent stands).

Speed: the tables are built with numpy, not per pose in Python, because every floor plan (and every
generated room) pays for them on first use (ALFRED's plans have 700 to 14,000 poses). The pose graph
is the product of the (cell, heading) graph and the horizon line (looks change only the horizon,
moves and turns never do, and neither depends on the other), so a distance is the (cell, heading)
distance plus the horizon difference: `fields` searches a graph seven times smaller.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from rgvlm_core.sim.low.floorplan import HEADINGS, HORIZONS, STEP, FloorPlan, Pose

NAV_ACTIONS: tuple[str, ...] = ("MoveAhead_25", "RotateLeft_90", "RotateRight_90", "LookUp_15", "LookDown_15")
N_NAV = len(NAV_ACTIONS)
UNREACHABLE = np.iinfo(np.int32).max
_NH, _NV = len(HEADINGS), len(HORIZONS)
_HEADING_INDEX = {h: i for i, h in enumerate(HEADINGS)}
_HORIZON_INDEX = {v: i for i, v in enumerate(HORIZONS)}


class Navigator:
    """Pose indexing, the movement table and cached distance fields of one floor plan.

    Pose index p = (cell index * headings + heading index) * horizons + horizon index, cells sorted."""

    def __init__(self, plan: FloorPlan) -> None:
        self.plan = plan
        self.cells = sorted(plan.cells)
        self._cell_index = {c: i for i, c in enumerate(self.cells)}
        n_cells = len(self.cells)
        self.n_poses = n_cells * _NH * _NV
        xz = np.array(self.cells, dtype=np.int64).reshape(n_cells, 2)
        # the cell one MoveAhead leads to, per (cell, heading): -1 where that point is not reachable
        lo = xz.min(axis=0) - 1
        grid = np.full(tuple(xz.max(axis=0) - lo + 2), -1, dtype=np.int64)
        grid[xz[:, 0] - lo[0], xz[:, 1] - lo[1]] = np.arange(n_cells)
        steps = np.array([STEP[h] for h in HEADINGS], dtype=np.int64)  # (headings, 2)
        ahead = grid[xz[:, None, 0] + steps[:, 0] - lo[0], xz[:, None, 1] + steps[:, 1] - lo[1]]
        ci = np.arange(n_cells)[:, None, None]
        hi = np.arange(_NH)[None, :, None]
        vi = np.arange(_NV)[None, None, :]
        p = (ci * _NH + hi) * _NV + vi
        nxt = np.full((n_cells, _NH, _NV, N_NAV), -1, dtype=np.int32)
        nxt[..., 0] = np.where(ahead[:, :, None] >= 0, (ahead[:, :, None] * _NH + hi) * _NV + vi, -1)
        nxt[..., 1] = (ci * _NH + (hi - 1) % _NH) * _NV + vi
        nxt[..., 2] = (ci * _NH + (hi + 1) % _NH) * _NV + vi
        nxt[..., 3] = np.where(vi > 0, p - 1, -1)
        nxt[..., 4] = np.where(vi < _NV - 1, p + 1, -1)
        self.next = nxt.reshape(self.n_poses, N_NAV)
        self.can_move = self.next >= 0  # the navigation part of the action mask, by pose
        # the (cell, heading) graph: where MoveAhead and the turns lead from node c * headings + h, and
        # `n_cells * headings` (a node never reached) where MoveAhead is blocked
        moves = nxt[:, :, 0, :3] // _NV
        self._ch_next = np.where(moves >= 0, moves, n_cells * _NH).reshape(n_cells * _NH, 3)
        self._fields: dict[Pose, np.ndarray] = {}  # distance fields by target, for the process's life

    def index(self, pose: Pose) -> int:
        x, z, heading, horizon = pose
        return (self._cell_index[(x, z)] * _NH + _HEADING_INDEX[heading]) * _NV + _HORIZON_INDEX[horizon]

    def pose(self, index: int) -> Pose:
        rest, vi = divmod(index, _NV)
        ci, hi = divmod(rest, _NH)
        x, z = self.cells[ci]
        return (x, z, HEADINGS[hi], HORIZONS[vi])

    def move(self, pose: Pose, nav: int) -> Pose | None:
        """The pose after navigation action `nav` (an index into NAV_ACTIONS), or None when blocked."""
        q = self.next.item(self.index(pose), nav)
        return None if q < 0 else self.pose(q)

    def field(self, target: Pose) -> np.ndarray:
        """Steps from every pose to `target` (UNREACHABLE where no path exists); cached. The first one
        asked for brings every usable receptacle's along (the targets the expert and the pose table
        walk to): one search for all of them costs about what one costs."""
        found = self._fields.get(target)
        if found is None:
            found = self.fields([target, *(r.pose for r in self.plan.receptacles)])[0]
        return found

    def fields(self, targets: Sequence[Pose]) -> list[np.ndarray]:
        """`field(t)` for each target, those not cached yet found by one breadth-first search for all of
        them together (a pose table needs every receptacle's field: one search instead of ~6).

        The search runs over (cell, heading) nodes, a node one step further than the nearest node it
        leads to; the horizon difference is then added (see the module's docstring)."""
        missing = [t for t in dict.fromkeys(targets) if t not in self._fields]
        if missing:
            goals = [divmod(self.index(t), _NV) for t in missing]
            n_nodes, columns = len(self._ch_next), np.arange(len(missing))
            nodes = np.array([node for node, _ in goals])
            dist = np.full((n_nodes, len(missing)), UNREACHABLE, dtype=np.int32)
            dist[nodes, columns] = 0
            frontier = np.zeros((n_nodes + 1, len(missing)), dtype=bool)  # last row: a blocked move's
            frontier[nodes, columns] = True
            d = 0
            while True:
                d += 1
                new = frontier[self._ch_next].any(axis=1) & (dist == UNREACHABLE)
                if not new.any():
                    break
                dist[new] = d
                frontier[:n_nodes] = new
            horizons = np.arange(_NV, dtype=np.int32)
            for k, (target, (_, goal_v)) in enumerate(zip(missing, goals, strict=True)):
                steps = dist[:, k, None]
                out = np.where(steps == UNREACHABLE, UNREACHABLE, steps + np.abs(horizons - goal_v))
                self._fields[target] = out.astype(np.int32).ravel()
        return [self._fields[t] for t in targets]

    def distance(self, pose: Pose, target: Pose) -> int:
        return self.field(target).item(self.index(pose))

    def path(self, pose: Pose, target: Pose) -> list[int]:
        """Navigation actions of a shortest path (ties broken in NAV_ACTIONS order); [] when there."""
        dist = self.field(target)
        p = self.index(pose)
        if dist.item(p) == UNREACHABLE:
            raise ValueError(f"{self.plan.name}: no path from {pose} to {target}")
        out: list[int] = []
        left = dist.item(p)
        while left > 0:
            for a, q in enumerate(self.next[p].tolist()):
                if q >= 0 and dist.item(q) == left - 1:
                    out.append(a)
                    p, left = q, left - 1
                    break
        return out


@functools.lru_cache(maxsize=128)  # every ALFRED plan, and the generated rooms of late
def navigator(plan: FloorPlan) -> Navigator:
    """The navigator of a floor plan (one per plan object, built on first use)."""
    return Navigator(plan)
