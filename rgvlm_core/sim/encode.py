"""The symbolic state vector: a fixed-length float32 encoding of a State, for fast CPU learning.

Blocks (in order): agent location one-hot (locations + door), held class one-hot (classes + none),
objects of each class at each location (counts, capped at 2), objects of each class inside a
movable receptacle, movable receptacles holding something, per class counts with each state flag
(hot, cold, clean, sliced), per class counts of objects moved this episode, open receptacles, lit
lamps. Counts are capped at 2, so every entry lies in [0, 2].
"""

from __future__ import annotations

import numpy as np

from rgvlm_core.sim.catalog import LAMPS, LOCATIONS, MOVABLE, OBJECTS, OPENABLE
from rgvlm_core.sim.world import FLAGS, HELD, State

_LOC = {name: i for i, name in enumerate(LOCATIONS)}
_OBJ = {name: i for i, name in enumerate(OBJECTS)}
_MOV = {name: i for i, name in enumerate(MOVABLE)}
N_LOC, N_OBJ = len(LOCATIONS), len(OBJECTS)

AGENT = 0
HELD_BLOCK = AGENT + N_LOC + 1
PRESENCE = HELD_BLOCK + N_OBJ + 1
INSIDE = PRESENCE + N_OBJ * N_LOC
FILLED = INSIDE + N_OBJ
FLAG_BLOCK = FILLED + len(MOVABLE)
MOVED = FLAG_BLOCK + N_OBJ * len(FLAGS)
OPEN = MOVED + N_OBJ
LIT = OPEN + len(OPENABLE)
STATE_DIM = LIT + len(LAMPS)
MAX_COUNT = 2.0


def encode(state: State) -> np.ndarray:
    """The state vector (float32, length STATE_DIM)."""
    v = np.zeros(STATE_DIM, dtype=np.float32)
    v[AGENT + (_LOC[state.agent] if state.agent is not None else N_LOC)] = 1.0
    held_cls = state.objects[state.held].cls if state.held is not None else None
    v[HELD_BLOCK + (_OBJ[held_cls] if held_cls else N_OBJ)] = 1.0
    for i, obj in enumerate(state.objects):
        k = _OBJ[obj.cls]
        where = state.where(i)
        if where != HELD:
            v[PRESENCE + k * N_LOC + _LOC[where]] += 1.0
        if obj.inside >= 0:
            v[INSIDE + k] += 1.0
            v[FILLED + _MOV[state.objects[obj.inside].cls]] = 1.0
        for f, flag in enumerate(FLAGS):
            if getattr(obj, flag):
                v[FLAG_BLOCK + k * len(FLAGS) + f] += 1.0
        if obj.moved:
            v[MOVED + k] += 1.0
    for j, name in enumerate(OPENABLE):
        if name in state.opened:
            v[OPEN + j] = 1.0
    for j, name in enumerate(LAMPS):
        if name in state.lit:
            v[LIT + j] = 1.0
    np.minimum(v, MAX_COUNT, out=v)
    return v
