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


@functools.lru_cache(maxsize=128)  # ALFRED's 120 plans take 141 MB; generated rooms come and go
def pose_table(plan: FloorPlan) -> np.ndarray:
    """The pose block of every pose of the plan, in the navigator's pose order.

    Computed for all poses at once from the index arithmetic of `Navigator` (not pose by pose): every
    floor plan an env or a dataset meets, generated rooms included, pays for this on first use."""
    nav = navigator(plan)
    index = np.arange(nav.n_poses)
    horizon = index % len(HORIZONS)
    heading = index // len(HORIZONS) % len(HEADINGS)
    cell = index // (len(HORIZONS) * len(HEADINGS))
    cells = np.array(nav.cells, float).reshape(len(nav.cells), 2)
    out = np.zeros((nav.n_poses, POSE_DIM), np.float32)
    out[index, heading] = 1.0
    out[index, len(HEADINGS) + horizon] = 1.0
    # the location blocks of all receptacles at once: (receptacle, pose) arrays
    receptacles = plan.receptacles
    fields = nav.fields([r.pose for r in receptacles])
    steps = np.array(fields, float).reshape(len(receptacles), nav.n_poses)
    dx = np.array([r.x for r in receptacles], float)[:, None] - cells[cell, 0] * GRID
    dz = np.array([r.z for r in receptacles], float)[:, None] - cells[cell, 1] * GRID
    forward = np.array([STEP[h] for h in HEADINGS], float)[heading]  # forward unit vector
    fx, fz = forward[:, 0], forward[:, 1]
    blocks = np.stack(
        [
            np.ones_like(steps),  # the room has it
            np.minimum(steps / STEPS_SCALE, HIGH),
            np.clip((dx * fx + dz * fz) / METRES_SCALE, LOW, HIGH),  # ahead
            np.clip((dx * fz - dz * fx) / METRES_SCALE, LOW, HIGH),  # to the right
        ],
        axis=-1,
    )
    base = len(HEADINGS) + len(HORIZONS)
    first = [base + PER_LOCATION * LOCATIONS.index(r.cls) for r in receptacles]
    columns = (np.array(first, int)[:, None] + np.arange(PER_LOCATION)).ravel()
    out[:, columns] = blocks.transpose(1, 0, 2).reshape(nav.n_poses, len(columns))
    return out
