"""Navigation on a floor plan's pose graph: where each low-level movement leads, and shortest paths.

A pose is (grid cell, heading, camera horizon). `MoveAhead_25` moves one 0.25 m point in the heading
when that point is reachable; the rotations turn by 90 degrees; the looks tilt the camera by 15 degrees
within ALFRED's range (-30 up to 60 down). Every move costs one step, so a breadth-first distance
field from a receptacle's pose gives exact shortest paths (what A* with an admissible heuristic
returns, computed once per receptacle for every start at once, which is what the expert and the
progress measure need: a path length from wherever the agent stands).
"""

from __future__ import annotations

import functools

import numpy as np

from rgvlm_core.sim.low.floorplan import HEADINGS, HORIZONS, STEP, FloorPlan, Pose

NAV_ACTIONS: tuple[str, ...] = ("MoveAhead_25", "RotateLeft_90", "RotateRight_90", "LookUp_15", "LookDown_15")
N_NAV = len(NAV_ACTIONS)
UNREACHABLE = np.iinfo(np.int32).max
_NH, _NV = len(HEADINGS), len(HORIZONS)
_HEADING_INDEX = {h: i for i, h in enumerate(HEADINGS)}
_HORIZON_INDEX = {v: i for i, v in enumerate(HORIZONS)}


class Navigator:
    """Pose indexing, the movement table and cached distance fields of one floor plan."""

    def __init__(self, plan: FloorPlan) -> None:
        self.plan = plan
        self.cells = sorted(plan.cells)
        self._cell_index = {c: i for i, c in enumerate(self.cells)}
        n = len(self.cells) * _NH * _NV
        self.n_poses = n
        nxt = np.full((n, N_NAV), -1, dtype=np.int32)
        for ci, (x, z) in enumerate(self.cells):
            for hi, heading in enumerate(HEADINGS):
                dx, dz = STEP[heading]
                ahead = self._cell_index.get((x + dx, z + dz))
                for vi in range(_NV):
                    p = (ci * _NH + hi) * _NV + vi
                    if ahead is not None:
                        nxt[p, 0] = (ahead * _NH + hi) * _NV + vi
                    nxt[p, 1] = (ci * _NH + (hi - 1) % _NH) * _NV + vi
                    nxt[p, 2] = (ci * _NH + (hi + 1) % _NH) * _NV + vi
                    if vi > 0:
                        nxt[p, 3] = p - 1
                    if vi < _NV - 1:
                        nxt[p, 4] = p + 1
        self.next = nxt

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
        q = int(self.next[self.index(pose), nav])
        return None if q < 0 else self.pose(q)

    @functools.cache  # noqa: B019 (one navigator per floor plan, cached for the process's life)
    def field(self, target: Pose) -> np.ndarray:
        """Steps from every pose to `target` (UNREACHABLE where no path exists)."""
        dist = np.full(self.n_poses, UNREACHABLE, dtype=np.int32)
        goal = self.index(target)
        dist[goal] = 0
        frontier = np.zeros(self.n_poses, dtype=bool)
        frontier[goal] = True
        d = 0
        while frontier.any():
            d += 1
            new = np.zeros(self.n_poses, dtype=bool)
            for a in range(N_NAV):
                ok = self.next[:, a] >= 0
                reach = ok & frontier[np.where(ok, self.next[:, a], 0)]
                new |= reach & (dist == UNREACHABLE)
            dist[new] = d
            frontier = new
        return dist

    def distance(self, pose: Pose, target: Pose) -> int:
        return int(self.field(target)[self.index(pose)])

    def path(self, pose: Pose, target: Pose) -> list[int]:
        """Navigation actions of a shortest path (ties broken in NAV_ACTIONS order); [] when there."""
        dist = self.field(target)
        p = self.index(pose)
        if dist[p] == UNREACHABLE:
            raise ValueError(f"{self.plan.name}: no path from {pose} to {target}")
        out: list[int] = []
        while dist[p] > 0:
            for a in range(N_NAV):
                q = int(self.next[p, a])
                if q >= 0 and dist[q] == dist[p] - 1:
                    out.append(a)
                    p = q
                    break
        return out


@functools.cache
def navigator(plan: FloorPlan) -> Navigator:
    """The navigator of a floor plan (one per plan object, built on first use)."""
    return Navigator(plan)
