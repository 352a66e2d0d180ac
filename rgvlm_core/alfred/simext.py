"""The `rgvlm_sim` key: what the embedded simulator adds to an ALFRED-format traj_data.json.

Simulator trajectories use ALFRED's layout so that one reader serves both, plus this key holding
what ALFRED cannot express: the symbolic state before each step, whether the step was valid and
made progress, the reward it earned (completion-based, so a failed episode's unfinished subtask is
not rewarded), and how the episode was generated.

Version 1 is the subgoal level's. Version 2 adds "level": "subgoal" (as version 1) or "low" (ALFRED's
low-level actions on a floor plan): a low-level file holds the floor plan once, as "plan" (the string
of sim.low.serialize.plan_to_string), and its states without it; the reader puts it back into each
state before storing it, so a stored state JSON reads on its own (sim.low.serialize.low_state_from_dict).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from rgvlm_core.alfred.checks import FieldError, as_dict, as_int, as_list, as_str, member, short

KEY = "rgvlm_sim"
VERSION = 2  # the newest this reader reads; version 1 (no "level": the subgoal level) is read as before
VERSIONS = (1, 2)
LEVELS = ("subgoal", "low")
BEHAVIOURS = ("expert", "suboptimal", "failed")
CONDITIONS = ("default", "randomized")


@dataclass(frozen=True)
class SimExtension:
    behaviour: str
    condition: str
    completed: int
    rewards: tuple[int, ...]
    progress: tuple[bool, ...]
    valid: tuple[bool, ...]
    states: tuple[str, ...]  # compact JSON of each step's state
    final_state: str | None = None  # the state after the last action
    level: str = "subgoal"  # the simulator's level: subgoal or low


def parse_sim_extension(value: Any, n_low: int, n_subtasks: int) -> SimExtension:
    """Check the key against the plan it travels with (raises FieldError naming the field)."""
    ext = as_dict(value, KEY)
    version = as_int(member(ext, "version", KEY), f"{KEY}.version")
    if version not in VERSIONS:
        raise FieldError(
            f"{KEY}.version", f"this rgvlm reads versions 1 and {VERSION}, got {version}; upgrade rgvlm"
        )
    level = _level(ext, version)
    plan = as_str(member(ext, "plan", KEY), f"{KEY}.plan") if level == "low" else None
    behaviour = _choice(ext, "behaviour", BEHAVIOURS)
    condition = _choice(ext, "condition", CONDITIONS)
    completed = as_int(member(ext, "completed", KEY), f"{KEY}.completed")
    if not 0 <= completed <= n_subtasks:
        raise FieldError(
            f"{KEY}.completed", f"expected 0..{n_subtasks} (the plan's subtasks), got {completed}"
        )
    rewards = tuple(as_int(v, f"{KEY}.rewards[{t}]") for t, v in enumerate(_per_step(ext, "rewards", n_low)))
    if sum(rewards) != completed:
        raise FieldError(f"{KEY}.rewards", f"sum to {sum(rewards)} but {KEY}.completed is {completed}")
    progress = tuple(
        _bool(v, f"{KEY}.progress[{t}]") for t, v in enumerate(_per_step(ext, "progress", n_low))
    )
    valid = tuple(_bool(v, f"{KEY}.valid[{t}]") for t, v in enumerate(_per_step(ext, "valid", n_low)))
    states = tuple(_state(v, t, plan) for t, v in enumerate(_per_step(ext, "states", n_low)))
    every = as_list(ext["states"], f"{KEY}.states")
    final = _state(every[n_low], n_low, plan) if len(every) > n_low else None
    return SimExtension(behaviour, condition, completed, rewards, progress, valid, states, final, level)


def _level(ext: dict[str, Any], version: int) -> str:
    """The level a file says (absent: subgoal); only version 2 can say low."""
    if "level" not in ext:
        return "subgoal"
    level = _choice(ext, "level", LEVELS)
    if level == "low" and version < 2:
        raise FieldError(f"{KEY}.level", f"low-level files are version 2, this one says version {version}")
    return level


def _state(value: Any, t: int, plan: str | None) -> str:
    """One state as compact JSON with sorted keys; a low-level one gets the file's floor plan back."""
    doc = as_dict(value, f"{KEY}.states[{t}]")
    if plan is not None:
        if doc.get("level") != "low":
            raise FieldError(
                f"{KEY}.states[{t}].level",
                f"expected 'low' in a low-level file, got {short(doc.get('level'))}",
            )
        doc = {**doc, "plan": plan}
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()


def _choice(ext: dict[str, Any], key: str, allowed: tuple[str, ...]) -> str:
    value = as_str(member(ext, key, KEY), f"{KEY}.{key}")
    if value not in allowed:
        raise FieldError(f"{KEY}.{key}", f"expected one of {', '.join(allowed)}, got {short(value)}")
    return value


def _per_step(ext: dict[str, Any], key: str, n_low: int) -> list[Any]:
    values = as_list(member(ext, key, KEY), f"{KEY}.{key}")
    if len(values) < n_low:
        raise FieldError(f"{KEY}.{key}", f"has {len(values)} entries for {n_low} low actions")
    return values[:n_low]  # states may carry one more: the state after the last action


def _bool(value: Any, field: str) -> bool:
    if type(value) is not bool:
        raise FieldError(field, f"expected true or false, got {short(value)}")
    return value
