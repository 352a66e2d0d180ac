"""The low-level state vector: the subgoal level's symbolic vector plus where the agent stands.

The pose block does not grow with the floor plan: heading (one-hot, 4), camera horizon (one-hot, 7),
then for each location class of the catalogue (20): whether the room has it, the shortest number of
steps to its interaction pose (divided by STEPS_SCALE, capped at 2), and where it is relative to the
agent, ahead and to the right, in metres divided by METRES_SCALE, clipped to [-2, 2]. What is in front
is the subgoal vector's agent block. Pose blocks are computed once per floor plan for every pose.
"""

from __future__ import annotations

import functools

import numpy as np

from rgvlm_core.sim.catalog import LOCATIONS
from rgvlm_core.sim.encode import STATE_DIM as HIGH_DIM
from rgvlm_core.sim.encode import encode as high_encode
from rgvlm_core.sim.low.floorplan import GRID, HEADINGS, HORIZONS, STEP, FloorPlan
from rgvlm_core.sim.low.nav import navigator
from rgvlm_core.sim.low.world import LowState

STEPS_SCALE = 20.0
METRES_SCALE = 4.0
PER_LOCATION = 4
POSE_DIM = len(HEADINGS) + len(HORIZONS) + PER_LOCATION * len(LOCATIONS)
STATE_DIM = HIGH_DIM + POSE_DIM
LOW, HIGH = -2.0, 2.0  # every entry lies in [LOW, HIGH]


def encode(s: LowState) -> np.ndarray:
    """The state vector (float32, length STATE_DIM)."""
    table = pose_table(s.plan)
    return np.concatenate([high_encode(s.world), table[navigator(s.plan).index(s.pose)]])


@functools.cache
def pose_table(plan: FloorPlan) -> np.ndarray:
    """The pose block of every pose of the plan, in the navigator's pose order."""
    nav = navigator(plan)
    poses = [nav.pose(p) for p in range(nav.n_poses)]
    out = np.zeros((nav.n_poses, POSE_DIM), np.float32)
    xs = np.array([p[0] for p in poses], float) * GRID
    zs = np.array([p[1] for p in poses], float) * GRID
    heading = np.array([HEADINGS.index(p[2]) for p in poses])
    out[np.arange(len(poses)), heading] = 1.0
    out[np.arange(len(poses)), len(HEADINGS) + np.array([HORIZONS.index(p[3]) for p in poses])] = 1.0
    fx = np.array([STEP[p[2]][0] for p in poses], float)  # forward unit vector
    fz = np.array([STEP[p[2]][1] for p in poses], float)
    base = len(HEADINGS) + len(HORIZONS)
    for r in plan.receptacles:
        k = base + PER_LOCATION * LOCATIONS.index(r.cls)
        steps = nav.field(r.pose).astype(float)
        dx, dz = r.x - xs, r.z - zs
        out[:, k] = 1.0
        out[:, k + 1] = np.minimum(steps / STEPS_SCALE, HIGH)
        out[:, k + 2] = np.clip((dx * fx + dz * fz) / METRES_SCALE, LOW, HIGH)  # ahead
        out[:, k + 3] = np.clip((dx * fz - dz * fx) / METRES_SCALE, LOW, HIGH)  # to the right
    return out
