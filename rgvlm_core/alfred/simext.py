"""The `rgvlm_sim` key: what the embedded simulator adds to an ALFRED-format traj_data.json.

Simulator trajectories use ALFRED's layout so that one reader serves both, plus this key holding
what ALFRED cannot express: the symbolic state before each step, whether the step was valid and
made progress, the reward it earned (completion-based, so a failed episode's unfinished subtask is
not rewarded), and how the episode was generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from rgvlm_core.alfred.checks import FieldError, as_dict, as_int, as_list, as_str, member, short

KEY = "rgvlm_sim"
VERSION = 1
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


def parse_sim_extension(value: Any, n_low: int, n_subtasks: int) -> SimExtension:
    """Check the key against the plan it travels with (raises FieldError naming the field)."""
    ext = as_dict(value, KEY)
    version = as_int(member(ext, "version", KEY), f"{KEY}.version")
    if version != VERSION:
        raise FieldError(
            f"{KEY}.version", f"this rgvlm reads version {VERSION}, got {version}; upgrade rgvlm"
        )
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
    states = tuple(
        orjson.dumps(as_dict(v, f"{KEY}.states[{t}]"), option=orjson.OPT_SORT_KEYS).decode()
        for t, v in enumerate(_per_step(ext, "states", n_low))
    )
    every = as_list(ext["states"], f"{KEY}.states")
    final = None
    if len(every) > n_low:
        final = orjson.dumps(
            as_dict(every[n_low], f"{KEY}.states[{n_low}]"), option=orjson.OPT_SORT_KEYS
        ).decode()
    return SimExtension(behaviour, condition, completed, rewards, progress, valid, states, final)


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
