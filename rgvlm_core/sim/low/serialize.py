"""Low-level states as JSON-ready dicts, each carrying its floor plan in a compact string.

A state dict is the subgoal level's (`serialize.state_to_dict`) plus "level": "low", "pose":
[ix, iz, heading, horizon] and "plan": the floor plan as one string (name, room, start, reachable points
as a hex bitmap over their bounding box, usable receptacles). A state is thereby readable on its own,
wherever it travels (traj_data.json, the store, a training set), without ALFRED's layout files; parsing
is cached per plan string, so the many states of one plan share one FloorPlan object.
"""

from __future__ import annotations

import functools
from typing import Any

from rgvlm_core.sim.low.floorplan import FloorPlan, Receptacle
from rgvlm_core.sim.low.world import LowState
from rgvlm_core.sim.serialize import state_from_dict, state_to_dict

LEVEL = "low"


def is_low(doc: dict[str, Any]) -> bool:
    """Whether a state dict is a low-level one."""
    return doc.get("level") == LEVEL


def low_state_to_dict(s: LowState) -> dict[str, Any]:
    return {**state_to_dict(s.world), "level": LEVEL, "pose": list(s.pose), "plan": plan_to_string(s.plan)}


def low_state_from_dict(doc: dict[str, Any]) -> LowState:
    """The inverse of low_state_to_dict (raises KeyError/ValueError on malformed input)."""
    if not is_low(doc):
        raise ValueError(f"not a low-level state (level={doc.get('level')!r})")
    plan = plan_from_string(str(doc["plan"]))
    x, z, heading, horizon = (int(v) for v in doc["pose"])
    world = state_from_dict(doc)
    pose = (x, z, heading, horizon)
    if world.agent != plan.front(pose):
        raise ValueError(
            f"state says the agent faces {world.agent!r}, its pose {pose} faces {plan.front(pose)!r}"
        )
    return LowState(plan, world, pose)


@functools.lru_cache(maxsize=256)
def plan_to_string(plan: FloorPlan) -> str:
    """`name;room;start;x0,z0,w,d,hexbitmap;cls,id,x,z,ix,iz,heading,horizon,posed|...`."""
    xs = [c[0] for c in plan.cells]
    zs = [c[1] for c in plan.cells]
    x0, z0 = min(xs), min(zs)
    w, d = max(xs) - x0 + 1, max(zs) - z0 + 1
    bits = 0
    for x, z in plan.cells:
        bits |= 1 << ((z - z0) * w + (x - x0))
    grid = f"{x0},{z0},{w},{d},{bits:x}"
    recs = "|".join(
        ",".join(
            [
                r.cls,
                r.object_id.replace("|", "!"),
                f"{r.x:g}",
                f"{r.z:g}",
                *map(str, r.pose),
                str(int(r.posed)),
            ]
        )
        for r in plan.receptacles
    )
    start = ",".join(map(str, plan.start))
    objects = ",".join(plan.objects)
    return ";".join([plan.name, plan.room, start, grid, recs, objects])


@functools.lru_cache(maxsize=256)
def plan_from_string(text: str) -> FloorPlan:
    name, room, start, grid, recs, objects = text.split(";")
    x0, z0, w, d, hexbits = grid.split(",")
    bits, x0i, z0i, wi, di = int(hexbits, 16), int(x0), int(z0), int(w), int(d)
    cells = frozenset((x0i + k % wi, z0i + k // wi) for k in range(wi * di) if bits >> k & 1)
    receptacles = []
    for part in filter(None, recs.split("|")):
        cls, object_id, x, z, ix, iz, heading, horizon, posed = part.split(",")
        pose = (int(ix), int(iz), int(heading), int(horizon))
        receptacles.append(
            Receptacle(cls, object_id.replace("!", "|"), float(x), float(z), pose, posed == "1")
        )
    sx, sz, sh, sv = (int(v) for v in start.split(","))
    return FloorPlan(
        name, room, cells, tuple(receptacles), (), tuple(filter(None, objects.split(","))), (sx, sz, sh, sv)
    )


def floor_plan_document(plan: FloorPlan) -> dict[str, Any]:
    """The whole floor plan, furniture included, as JSON (for frames and the player; not needed by rules)."""

    def rec(r: Receptacle) -> dict[str, Any]:
        return {
            "class": r.cls,
            "object_id": r.object_id,
            "x": r.x,
            "z": r.z,
            "pose": list(r.pose),
            "posed": r.posed,
        }

    return {
        "name": plan.name,
        "room": plan.room,
        "cells": sorted([list(c) for c in plan.cells]),
        "receptacles": [rec(r) for r in plan.receptacles],
        "furniture": [rec(r) for r in plan.furniture],
        "objects": list(plan.objects),
        "start": list(plan.start),
    }
