"""Offline RL datasets from a workspace and a reward source.

One transition per step of every episode (an episode is one annotation, so its subtask instructions
condition the policy): the simulator's symbolic state vector before and after the step, the
instruction of the subtask the step serves, the action index and the valid-action mask, a reward,
and `done` where a subtask completes (each subtask is a task of its own for a subtask-conditioned
policy, as in SPRINT/BOSS) or the trajectory ends.

Reward sources: `sparse`; `rgvlm:RUN` (score / 10 of a label run, overrides applied); `sparse+rgvlm:RUN`
(r_sparse + lambda * r_vlm); `reference` (rgvlm with the newest noise-free reference run); `clip:RUN`
(a CLIP label run, read like rgvlm). Steps whose label failed follow an explicit policy: `sparse`
(the default: such a step gets no VLM reward, only its sparse one) or `drop` (its transitions are left
out); either way the number of affected steps is reported, never silently scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from rgvlm_core.catalog import EpisodeFilter, episode_where
from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.rewards import combined, vlm_reward
from rgvlm_core.rl.encoder import InstructionEncoder, encode_cached
from rgvlm_core.workspace import StoreReader

FailedPolicy = Literal["sparse", "drop"]


@dataclass(frozen=True)
class RewardSource:
    """Where rewards come from: `kind` is sparse, vlm or sparse+vlm; `run_id` names the label run."""

    kind: str
    run_id: str | None = None
    lam: float = 1.0
    text: str = "sparse"


def parse_reward_source(text: str, reader: StoreReader, lam: float = 1.0) -> RewardSource:
    """`sparse`, `rgvlm:RUN`, `sparse+rgvlm:RUN`, `reference`, `clip:RUN` (RUN must exist)."""
    if text == "sparse":
        return RewardSource("sparse", None, lam, text)
    if text == "reference":
        from rgvlm_core.audit import reference_run

        run = reference_run(reader)
        if run is None:
            raise RGVLMError(
                "no reference label run in this workspace; create one with `rgvlm label --labeller reference`"
            )
        return RewardSource("vlm", run, lam, text)
    head, sep, run = text.partition(":")
    if not sep or head not in ("rgvlm", "sparse+rgvlm", "clip", "sparse+clip") or not run:
        raise RGVLMError(
            f"unknown reward source {text!r}; use sparse, reference, rgvlm:RUN, sparse+rgvlm:RUN or clip:RUN"
        )
    if not reader.scalar("SELECT count(*) FROM label_runs WHERE run_id = ?", [run]):
        known = ", ".join(
            r["run_id"] for r in reader.rows("SELECT run_id FROM label_runs ORDER BY created_at")
        )
        raise RGVLMError(f"no label run {run!r}; known: {known or '(none yet)'}")
    return RewardSource("sparse+vlm" if head.startswith("sparse+") else "vlm", run, lam, text)


@dataclass
class OfflineArrays:
    """The dataset as numpy arrays (see rl.iql.OfflineTensors for the learner's view)."""

    states: np.ndarray
    next_states: np.ndarray
    instruction_ids: np.ndarray
    next_instruction_ids: np.ndarray
    instruction_table: np.ndarray
    instructions: list[str]
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    masks: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.actions)

    def to_tensors(self) -> Any:
        import torch

        from rgvlm_core.rl.iql import OfflineTensors

        return OfflineTensors(
            states=torch.from_numpy(self.states),
            next_states=torch.from_numpy(self.next_states),
            instruction_ids=torch.from_numpy(self.instruction_ids),
            next_instruction_ids=torch.from_numpy(self.next_instruction_ids),
            instruction_table=torch.from_numpy(self.instruction_table),
            actions=torch.from_numpy(self.actions),
            rewards=torch.from_numpy(self.rewards),
            dones=torch.from_numpy(self.dones),
            masks=torch.from_numpy(self.masks),
        )


def build_dataset(
    reader: StoreReader,
    source: RewardSource,
    encoder: InstructionEncoder,
    flt: EpisodeFilter = EpisodeFilter(),
    failed: FailedPolicy = "sparse",
) -> OfflineArrays:
    """Transitions of the chosen simulator episodes with rewards from `source`."""
    from rgvlm_core.sim.encode import STATE_DIM, encode
    from rgvlm_core.sim.serialize import state_from_dict
    from rgvlm_core.sim.world import ACTION_INDEX, N_ACTIONS, valid_mask

    where, params = episode_where(replace(flt, datasets=("sim",), include_task_only=False))
    rows = reader.rows(
        f"""
        SELECT e.episode_id, s.t, s.action, s.state, s.sparse_reward, s.subtask_idx, sub.instruction,
               t.final_state, t.n_steps
        FROM (SELECT * FROM episodes {where}) e
        JOIN trajectories t USING (trajectory_id)
        JOIN steps s ON s.trajectory_id = e.trajectory_id
        JOIN subtasks sub ON sub.episode_id = e.episode_id AND sub.idx = s.subtask_idx
        ORDER BY e.episode_id, s.t
        """,
        params,
    )
    if not rows:
        raise RGVLMError(
            "no simulator episodes with steps match; generate and import some with `rgvlm sim generate`"
        )
    vlm: dict[tuple[str, int], float | None] = {}
    if source.run_id is not None:
        from rgvlm_core.labeling.store import effective_labels

        for lab in effective_labels(reader, source.run_id).to_pylist():
            vlm[(lab["episode_id"], lab["t"])] = None if lab["score"] is None else float(lab["score"])
    keep: list[int] = []
    states = np.zeros((len(rows), STATE_DIM), np.float32)
    next_states = np.zeros_like(states)
    masks = np.zeros((len(rows), N_ACTIONS), bool)
    actions, rewards, dones = (
        np.zeros(len(rows), np.int64),
        np.zeros(len(rows), np.float32),
        np.zeros(len(rows), np.float32),
    )
    instructions: list[str] = []
    failed_steps = unlabelled = 0
    cache: dict[str, np.ndarray] = {}

    def vector(state_json: str) -> np.ndarray:
        if state_json not in cache:
            cache[state_json] = encode(state_from_dict(json.loads(state_json)))
        return cache[state_json]

    for i, row in enumerate(rows):
        last = row["t"] == row["n_steps"] - 1
        nxt = rows[i + 1]["state"] if not last else row["final_state"]
        state = state_from_dict(json.loads(row["state"]))
        states[i], next_states[i] = vector(row["state"]), vector(nxt or row["state"])
        masks[i] = valid_mask(state)
        actions[i] = ACTION_INDEX[row["action"]]
        # DEVIATION: the end of a trajectory that did not complete its subtask is treated as terminal
        # (no bootstrap past the data), as offline datasets without timeouts commonly are.
        dones[i] = 1.0 if row["sparse_reward"] > 0 or last else 0.0
        instructions.append(row["instruction"])
        sparse = float(row["sparse_reward"])
        if source.kind == "sparse":
            rewards[i] = sparse
            keep.append(i)
            continue
        score = vlm.get((row["episode_id"], row["t"]), "missing")
        if score == "missing":
            unlabelled += 1
        if score is None or score == "missing":
            failed_steps += 1
            if failed == "drop":
                continue
            r_vlm = 0.0
        else:
            r_vlm = float(vlm_reward(score))
        rewards[i] = sparse + source.lam * r_vlm if source.kind == "sparse+vlm" else source.lam * r_vlm
        keep.append(i)
    idx = np.asarray(keep, dtype=np.int64)
    texts = sorted(set(instructions))
    table = encode_cached(encoder, texts, reader.workspace.root / "rl_cache")
    position = {t: k for k, t in enumerate(texts)}
    ids = np.asarray([position[t] for t in instructions], np.int64)
    next_ids = np.append(ids[1:], ids[-1])
    info = {
        "reward_source": source.text,
        "lambda": source.lam,
        "transitions": len(idx),
        "episodes": len({r["episode_id"] for r in rows}),
        "instructions": len(texts),
        "failed_label_policy": failed,
        "steps_without_vlm_reward": failed_steps,
        "steps_without_label": unlabelled,
        "encoder": encoder.name,
    }
    return OfflineArrays(
        states=states[idx],
        next_states=next_states[idx],
        instruction_ids=ids[idx],
        next_instruction_ids=next_ids[idx],
        instruction_table=table,
        instructions=texts,
        actions=actions[idx],
        rewards=rewards[idx],
        dones=dones[idx],
        masks=masks[idx],
        info=info,
    )


__all__ = ["OfflineArrays", "RewardSource", "build_dataset", "combined", "parse_reward_source"]
