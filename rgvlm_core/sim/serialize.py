"""States as small JSON-ready dicts: how they travel in generated traj_data.json and the store."""

from __future__ import annotations

from typing import Any

from rgvlm_core.sim.world import FLAGS, Obj, State


def state_to_dict(state: State) -> dict[str, Any]:
    """Compact and readable: objects as [class, location, container index, flags, moved]."""
    return {
        "room": state.room,
        "locations": list(state.locations),
        "agent": state.agent,
        "held": state.held,
        "opened": sorted(state.opened),
        "lit": sorted(state.lit),
        "objects": [
            [o.cls, o.loc, o.inside, " ".join(f for f in FLAGS if getattr(o, f)), o.moved]
            for o in state.objects
        ],
    }


def state_from_dict(doc: dict[str, Any]) -> State:
    """The inverse of state_to_dict (raises KeyError/ValueError on malformed input)."""
    objects = []
    for cls, loc, inside, flags, moved in doc["objects"]:
        names = set(flags.split())
        unknown = names - set(FLAGS)
        if unknown:
            raise ValueError(f"unknown object flags {sorted(unknown)}")
        objects.append(
            Obj(
                cls,
                loc,
                int(inside),
                hot="hot" in names,
                cold="cold" in names,
                clean="clean" in names,
                sliced="sliced" in names,
                moved=bool(moved),
            )
        )
    return State(
        room=doc["room"],
        locations=tuple(doc["locations"]),
        objects=tuple(objects),
        agent=doc["agent"],
        held=doc["held"],
        opened=frozenset(doc["opened"]),
        lit=frozenset(doc["lit"]),
    )
