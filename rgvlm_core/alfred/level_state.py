"""States of replayed ALFRED trajectories in the store: what changes is stored per step, the household is
set up again from the trajectory's own traj_data.json (and the layouts) when the state is read.

A stored state is one JSON object: `{"alfred": 1, "source": <traj_data.json>, "pose": [x, z, heading,
horizon], "held": id, "parent": {id: id}, "opened": [...], "on": [...], "sliced": [...], "hot": [...],
"cold": [...], "clean": [...]}`. The source path is the one the import read (absolute), so moving the
ALFRED folder after an import makes its states unreadable; reading one then names the missing file.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson

from rgvlm_core.alfred.replay import replay
from rgvlm_core.alfred.replay_scene import ReplayScene, scene_of
from rgvlm_core.alfred.world import INTERACTIONS, World, new_world, resolve
from rgvlm_core.errors import RGVLMError

KEY = "alfred"
VERSION = 1


def is_alfred(doc: dict[str, Any]) -> bool:
    """Whether a stored state dict is a replayed ALFRED state."""
    return KEY in doc


def scene_name(doc: dict[str, Any]) -> str:
    """The floor plan a stored state stands on (read from its source trajectory)."""
    return scene_from_source(str(doc["source"])).floor_plan


def world_doc(w: World, source: str) -> dict[str, Any]:
    return {
        KEY: VERSION,
        "source": source,
        "pose": list(w.pose),
        "held": w.held,
        "parent": dict(sorted(w.parent.items())),
        "opened": sorted(w.opened),
        "on": sorted(w.on),
        "sliced": sorted(w.sliced),
        **{flag: sorted(ids) for flag, ids in w.changed.items()},
    }


@functools.lru_cache(maxsize=64)
def scene_from_source(source: str) -> ReplayScene:
    """The household of the trajectory file `source`, set up once per process (64 kept)."""
    try:
        doc = orjson.loads(Path(source).read_bytes())
    except (OSError, ValueError) as e:
        raise RGVLMError(
            f"{source}: cannot read the ALFRED trajectory a stored state was replayed from ({e}); "
            "the state names the file the import read: was the folder moved?"
        ) from None
    return scene_of(doc)


def world_from_doc(doc: dict[str, Any]) -> World:
    """The World a stored state describes (its household set up from its source trajectory)."""
    w = new_world(scene_from_source(str(doc["source"])))
    x, z, heading, horizon = (int(v) for v in doc["pose"])
    w.pose = (x, z, heading, horizon)
    _, slice_effect = INTERACTIONS["SliceObject"]
    for whole in doc.get("sliced", []):  # the pieces exist once their whole is sliced
        resolve(w, whole)
        slice_effect(w, whole)
    parent = dict(doc.get("parent", {}))
    for object_id in [*doc.get("opened", []), *doc.get("on", []), *parent, *parent.values()]:
        resolve(w, object_id)
    if doc.get("held"):
        resolve(w, doc["held"])
    w.held = doc.get("held")
    w.parent = parent
    w.opened = set(doc.get("opened", []))
    w.on = set(doc.get("on", []))
    w.changed = {flag: set(doc.get(flag, [])) for flag in ("hot", "cold", "clean")}
    return w


def replay_states(traj: dict[str, Any], source: str) -> tuple[list[str], str] | str:
    """The state JSON before each low action and after the last, or why the trajectory cannot have
    states (its replay failed somewhere, or an action is outside the ALFRED level's space)."""
    from rgvlm_core.alfred.level import token_of

    result = replay(traj, source, keep_states=True)
    if result.failure is not None:
        f = result.failure
        return f"replay failed at step {f.step}, {f.what}: {f.why}"
    for t, a in enumerate(traj["plan"]["low_actions"]):
        try:
            token_of(a.get("api_action") or {})
        except KeyError as e:
            return f"step {t}: {e.args[0]}"
    texts = [orjson.dumps(world_doc(w, source)).decode() for w in result.states]
    return texts[:-1], texts[-1]
