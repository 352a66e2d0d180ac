"""Offline RL datasets from a workspace and a reward source.

One transition per step of every episode (an episode is one annotation, so its subtask instructions
condition the policy): the state before and after the step, the instruction of the subtask the step
serves, the action index and the valid-action mask, a reward, and `done` where a subtask completes
(each subtask is a task of its own for a subtask-conditioned policy, as in SPRINT/BOSS) or the
trajectory ends.

States come from one of two sources: `sim` (simulator episodes: the symbolic state vector, the
simulator's actions and valid-action masks) or `alfred` (ALFRED episodes with feat_conv.pt: the
ResNet-18 features of the step's observation, average-pooled to 512 values; actions are the low-level
tokens present in the data, and every action counts as valid since ALFRED records no validity).

Simulator episodes are of one level per dataset, read from their state dicts: the subgoal level
(sim.encode, sim.world) or the low level (ALFRED's low-level actions on a floor plan: sim.low.encode,
whose vector adds a pose block that does not grow with the floor plan, and sim.low.world). The dataset's
`info` records the level and, at the low level, the floor plans its states stand on, so a run knows
which environment and floor plans to evaluate in; a mix of levels is refused.

Reward sources: `sparse`; `rgvlm:RUN` (a label run's scores, overrides applied, through a mapping);
`sparse+rgvlm:RUN` (r_sparse + lambda * r_vlm); `reference` (rgvlm with the newest noise-free reference
run); `clip:RUN` (a CLIP label run, read like rgvlm). A VLM source may name its mapping after an `@`
(`sparse+rgvlm:RUN@shaped`; raw, cost, centred, shaped: labeling/rewards.py), else it gets the one
asked for (`--vlm-reward`), else the default. Steps whose label failed follow an explicit policy:
`sparse` (the default: such a step gets no VLM reward, only its sparse one) or `drop` (its transitions
are left out); either way the number of affected steps is reported, never silently scored.

Terminal versus cut off: `done` is 1 where a subtask completes (the subtask's episode ends there). A
trajectory that stops before completing its subtasks (a failed or capped episode) was cut off, not
ended: its last transition is not terminal, and IQL bootstraps from the stored state after it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rgvlm_core.catalog import EpisodeFilter, episode_where
from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.labeling.rewards import DEFAULT_MAPPING, check_mapping, combined, step_rewards
from rgvlm_core.rl.encoder import InstructionEncoder, encode_cached
from rgvlm_core.workspace import StoreReader

if TYPE_CHECKING:
    import pandas as pd

FailedPolicy = Literal["sparse", "drop"]
StateSource = Literal["sim", "alfred"]
STATE_SOURCES: tuple[str, ...] = ("sim", "alfred")


@dataclass(frozen=True)
class RewardSource:
    """Where rewards come from: `kind` is sparse, vlm or sparse+vlm; `run_id` names the label run;
    `mapping` turns its scores into rewards (None for sparse); `gamma` is the discount shaping needs
    (None unless the mapping is shaped, so other datasets do not depend on it); `text` is canonical."""

    kind: str
    run_id: str | None = None
    lam: float = 1.0
    text: str = "sparse"
    mapping: str | None = None
    gamma: float | None = None


def split_mapping(text: str) -> tuple[str, str | None]:
    """`sparse+rgvlm:RUN@cost` -> (`sparse+rgvlm:RUN`, `cost`); no `@` -> (text, None)."""
    base, sep, mapping = text.rpartition("@")
    return (base, mapping) if sep else (text, None)


def parse_reward_source(
    text: str, reader: StoreReader, lam: float = 1.0, mapping: str | None = None, gamma: float = 0.97
) -> RewardSource:
    """`sparse`, `rgvlm:RUN`, `sparse+rgvlm:RUN`, `reference`, `sparse+reference` (the newest noise-free
    reference run), `clip:RUN` (RUN must exist), each VLM
    source optionally `@MAPPING`; the mapping in the text wins over `mapping`, which wins over the
    default. The returned text always names the mapping, so a stored run says what it trained on."""
    base, suffix = split_mapping(text)
    if base == "sparse":
        if suffix is not None:
            raise RGVLMError(f"reward source {text!r}: the sparse reward has no VLM score to map; use sparse")
        return RewardSource("sparse", None, lam, "sparse")
    chosen = suffix or mapping or DEFAULT_MAPPING
    if base in ("reference", "sparse+reference"):
        from rgvlm_core.audit import reference_run

        run = reference_run(reader)
        if run is None:
            raise RGVLMError(
                "no reference label run in this workspace; create one with `rgvlm label --labeller reference`"
            )
        kind = "sparse+vlm" if base.startswith("sparse+") else "vlm"
        check_mapping(chosen, with_sparse=kind == "sparse+vlm")
        return _vlm_source(kind, run, lam, f"{base}@{chosen}", chosen, gamma)
    head, sep, run = base.partition(":")
    if not sep or head not in ("rgvlm", "sparse+rgvlm", "clip", "sparse+clip") or not run:
        raise RGVLMError(
            f"unknown reward source {text!r}; use sparse, reference, rgvlm:RUN, sparse+rgvlm:RUN or "
            "clip:RUN, optionally with @raw, @cost, @centred or @shaped"
        )
    if not reader.scalar("SELECT count(*) FROM label_runs WHERE run_id = ?", [run]):
        known = ", ".join(
            r["run_id"] for r in reader.rows("SELECT run_id FROM label_runs ORDER BY created_at")
        )
        raise RGVLMError(f"no label run {run!r}; known: {known or '(none yet)'}")
    _check_labeller(base, head, run, reader)
    kind = "sparse+vlm" if head.startswith("sparse+") else "vlm"
    check_mapping(chosen, with_sparse=kind == "sparse+vlm")
    return _vlm_source(kind, run, lam, f"{base}@{chosen}", chosen, gamma)


def _vlm_source(kind: str, run: str, lam: float, text: str, mapping: str, gamma: float) -> RewardSource:
    return RewardSource(kind, run, lam, text, mapping, gamma if mapping == "shaped" else None)


def _check_labeller(text: str, head: str, run: str, reader: StoreReader) -> None:
    """`clip:RUN` must name a CLIP run and `rgvlm:RUN` an LVLM (or reference) run: a method's name is what
    the Compare page and the report call it, so a mismatch would file CLIP rewards under RG-VLM or back."""
    labeller = reader.scalar("SELECT labeller FROM label_runs WHERE run_id = ?", [run])
    is_clip = labeller == "clip"
    if head.endswith("clip") and not is_clip:
        raise RGVLMError(
            f"reward source {text!r}: label run {run!r} was made by the {labeller} labeller, not CLIP; "
            f"use rgvlm:{run} or sparse+rgvlm:{run}"
        )
    if head.endswith("rgvlm") and is_clip:
        raise RGVLMError(
            f"reward source {text!r}: label run {run!r} is a CLIP run, not an LVLM's; "
            f"use clip:{run} or sparse+clip:{run}"
        )


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
    n_actions: int  # size of the action space: the simulator's, or the ALFRED tokens in the data
    action_tokens: list[str]  # the token of each action index
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


_STEP_SQL = """
    SELECT e.episode_id, e.trajectory_id, e.split, s.t, s.action, s.state, s.feature_row, s.sparse_reward,
           s.subtask_idx, sub.instruction, sub.kind, t.final_state, t.n_steps, t.features_path,
           t.features_layout, t.behaviour, t.n_subtasks, t.completed_subtasks
    FROM (SELECT * FROM episodes {where}) e
    JOIN trajectories t USING (trajectory_id)
    JOIN steps s ON s.trajectory_id = e.trajectory_id
    JOIN subtasks sub ON sub.episode_id = e.episode_id AND sub.idx = s.subtask_idx
    {traj_where}
    ORDER BY e.episode_id, s.t
"""


@dataclass
class _Observed:
    """The part of a dataset that depends on where states come from: one entry per step row."""

    states: np.ndarray
    next_states: np.ndarray
    actions: np.ndarray
    masks: np.ndarray
    action_tokens: list[str]
    info: dict[str, Any]


def _selection(flt: EpisodeFilter, states: StateSource) -> tuple[str, list[Any], str]:
    """The episodes a state source reads (WHERE on episodes, its parameters, WHERE on the joined
    trajectories `t`): simulator states are the generated episodes' and those of ALFRED trajectories
    imported with `--replay` (their final state is stored); ALFRED features are ALFRED's episodes."""
    datasets = ("sim", "alfred") if states == "sim" else (states,)
    where, params = episode_where(replace(flt, datasets=datasets, include_task_only=False))
    traj_where = "WHERE t.dataset = 'sim' OR t.final_state IS NOT NULL" if states == "sim" else ""
    return where, params, traj_where


def build_dataset(
    reader: StoreReader,
    source: RewardSource,
    encoder: InstructionEncoder,
    flt: EpisodeFilter = EpisodeFilter(),
    failed: FailedPolicy = "sparse",
    states: StateSource = "sim",
) -> OfflineArrays:
    """Transitions of the chosen episodes with rewards from `source`.

    `states` picks both the episodes and their state features: "sim" (simulator episodes, symbolic
    state vectors) or "alfred" (ALFRED episodes whose trajectory has feat_conv.pt, pooled ResNet-18
    features); rewards, instructions and dones are built the same way for both.
    """
    if states not in STATE_SOURCES:
        raise UsageError(f"unknown state source {states!r}; use {' or '.join(STATE_SOURCES)}")
    where, params, traj_where = _selection(flt, states)
    rows = reader.rows(_STEP_SQL.format(where=where, traj_where=traj_where), params)
    if states == "sim":
        if not rows:
            raise RGVLMError(
                "no simulator episodes with steps match; generate and import some with `rgvlm sim generate`, "
                "or import ALFRED with `rgvlm import --replay`"
            )
        observed = _sim_observations(rows)
    else:
        rows, observed = _alfred_observations(rows, str(reader.workspace.root))
    return _with_rewards(reader, rows, observed, source, encoder, failed)


def _sim_observations(rows: list[dict[str, Any]]) -> _Observed:
    """The simulator's symbolic state before and after each step, its action index and valid actions.

    Episodes that share a trajectory (its annotations) repeat its states, and consecutive steps share
    one (the state after a step is the next step's), so each distinct state JSON is parsed, encoded and
    masked once; rows then gather their vectors and masks from those tables by index.
    """
    level, info = _level_of(rows)
    slots: dict[str, int] = {}
    current = [slots.setdefault(row["state"], len(slots)) for row in rows]
    following = current[1:] + current[-1:]  # the next row's state; final steps are set below
    for i, row in enumerate(rows):
        if row["t"] == row["n_steps"] - 1:  # the trajectory's last step: its final state follows
            following[i] = slots.setdefault(row["final_state"] or row["state"], len(slots))
        elif i + 1 == len(rows):
            raise IndexError(f"step rows end inside a trajectory (step {row['t']} of {row['n_steps']})")
    actions = np.asarray([_action_index(level, row) for row in rows], np.int64)
    now, after = np.asarray(current, np.int64), np.asarray(following, np.int64)
    vectors, valid = _state_tables(list(slots), np.unique(now), level)
    return _Observed(vectors[now], vectors[after], actions, valid[now], list(level.tokens), info)


@dataclass(frozen=True)
class SimLevel:
    """What a dataset reads from one level of the simulator: its name, action vocabulary, state vector
    size, and how a stored state dict is parsed, encoded and masked."""

    name: str
    tokens: tuple[str, ...]
    index: dict[str, int]
    dim: int
    parse: Callable[[dict[str, Any]], Any]
    encode: Callable[[Any], np.ndarray]
    mask: Callable[[Any], np.ndarray]


def sim_level(name: str) -> SimLevel:
    """The subgoal, low or ALFRED level's parts (imported here: only the data's level is needed)."""
    if name == ALFRED_LEVEL:
        from rgvlm_core.alfred import level as alfred_level
        from rgvlm_core.alfred.level_state import world_from_doc

        return SimLevel(
            ALFRED_LEVEL,
            alfred_level.ACTION_TOKENS,
            alfred_level.ACTION_INDEX,
            alfred_level.STATE_DIM,
            world_from_doc,
            alfred_level.encode,
            alfred_level.valid_mask,
        )
    if name == "low":
        from rgvlm_core.sim.low import encode as low_encode
        from rgvlm_core.sim.low import world as low_world
        from rgvlm_core.sim.low.serialize import low_state_from_dict

        return SimLevel(
            "low",
            low_world.ACTION_TOKENS,
            low_world.ACTION_INDEX,
            low_encode.STATE_DIM,
            low_state_from_dict,
            low_encode.encode,
            low_world.valid_mask,
        )
    from rgvlm_core.sim import encode as high_encode
    from rgvlm_core.sim import world as high_world
    from rgvlm_core.sim.serialize import state_from_dict

    return SimLevel(
        "subgoal",
        high_world.ACTION_TOKENS,
        high_world.ACTION_INDEX,
        high_encode.STATE_DIM,
        state_from_dict,
        high_encode.encode,
        high_world.valid_mask,
    )


GENERATED_PREFIX = "Generated"  # sim.low.floorplan.generated_floor_plan names its rooms Generated-...
ALFRED_LEVEL = "alfred"  # replayed ALFRED trajectories (`rgvlm import --replay`): alfred.level
LEVELS = ("subgoal", "low", ALFRED_LEVEL)


@dataclass
class _Levels:
    """Episodes, splits and (low and ALFRED levels) floor plans of each level among step rows, read from
    each trajectory's first state dict."""

    episodes: dict[str, set[str]] = field(default_factory=lambda: {level: set() for level in LEVELS})
    splits: dict[str, set[str]] = field(default_factory=lambda: {level: set() for level in LEVELS})
    plans: set[str] = field(default_factory=set)
    sources: set[str] = field(default_factory=set)  # ALFRED level: the replayed traj_data.json files

    @classmethod
    def of(cls, rows: list[dict[str, Any]]) -> _Levels:
        """Floor plans are named by the state dict's "plan" string, whose first field is the name (low
        level), or by the replayed trajectory's scene (ALFRED level)."""
        from rgvlm_core.alfred.level_state import is_alfred, scene_name
        from rgvlm_core.sim.low.serialize import is_low

        out, level_of = cls(), {}
        for row in rows:
            traj = row["trajectory_id"]
            if traj not in level_of:
                doc = json.loads(row["state"])
                if is_alfred(doc):
                    level_of[traj] = ALFRED_LEVEL
                    out.sources.add(str(doc["source"]))
                    out.plans.add(scene_name(doc))
                else:
                    level_of[traj] = "low" if is_low(doc) else "subgoal"
                    if level_of[traj] == "low":
                        out.plans.add(str(doc.get("plan", "")).split(";", 1)[0])
            out.episodes[level_of[traj]].add(row["episode_id"])
            out.splits[level_of[traj]].add(str(row.get("split")))
        return out


def _level_of(rows: list[dict[str, Any]]) -> tuple[SimLevel, dict[str, Any]]:
    """The one level of the rows' episodes and the dataset's info about it; UsageError when the
    episodes mix levels, naming how many of each and how to choose."""
    found = _Levels.of(rows)
    present = [level for level in LEVELS if found.episodes[level]]
    if len(present) > 1:
        raise UsageError(_mixed_levels(found.episodes, found.splits))
    level = present[0] if present else "subgoal"
    if level == "subgoal":  # info as before the low level: a dataset without "level" is subgoal-level
        return sim_level("subgoal"), {"states": "sim"}
    info: dict[str, Any] = {"states": "sim", "level": level}
    if level == ALFRED_LEVEL:
        info["floor_plans"] = sorted(found.plans)
        info["trajectories"] = len(found.sources)
        info["splits"] = sorted(found.splits[ALFRED_LEVEL])  # evaluation must not meet these tasks
        # the data folder (traj_data.json is <root>/<split>/<task>/<trial>/): its valid splits' tasks
        # are where runs on this data are evaluated
        roots = {str(Path(source).parents[3]) for source in found.sources}
        if len(roots) == 1:
            info["alfred_root"] = roots.pop()
        return sim_level(level), info
    info["floor_plans"] = sorted(n for n in found.plans if not n.startswith(GENERATED_PREFIX))
    info["generated_rooms"] = sum(n.startswith(GENERATED_PREFIX) for n in found.plans)
    return sim_level(level), info


_FIRST_STATES_SQL = """
    SELECT e.episode_id, e.trajectory_id, e.split, s.state
    FROM (SELECT * FROM episodes {where}) e
    JOIN steps s ON s.trajectory_id = e.trajectory_id AND s.t = 0
"""


def sim_episode_levels(reader: StoreReader, flt: EpisodeFilter = EpisodeFilter()) -> dict[str, int]:
    """How many of the chosen simulator episodes are of each level ({"subgoal": n, "low": m}): what a
    check that works at one level only (the reward check's exact solve) asks before it runs."""
    where, params = episode_where(replace(flt, datasets=("sim",), include_task_only=False))
    found = _Levels.of(reader.rows(_FIRST_STATES_SQL.format(where=where), params))
    return {level: len(found.episodes[level]) for level in ("subgoal", "low")}


def _mixed_levels(episodes: dict[str, set[str]], splits: dict[str, set[str]]) -> str:
    names = {"subgoal": "subgoal-level", "low": "low-level", ALFRED_LEVEL: "replayed ALFRED"}
    present = [level for level in LEVELS if episodes[level]]
    counts = " and ".join(f"{len(episodes[level])} {names[level]}" for level in present)
    split_sets = [splits[level] for level in present]
    if all(not (a & b) for i, a in enumerate(split_sets) for b in split_sets[i + 1 :]):
        whose = {"low": "the low level's", ALFRED_LEVEL: "the replayed ALFRED episodes'"}
        whose["subgoal"] = "the subgoal level's"
        order = [level for level in ("low", ALFRED_LEVEL, "subgoal") if level in present]
        listing = "; ".join(f"{whose[level]}: {', '.join(sorted(splits[level]))}" for level in order)
        how = f"filter by split ({listing})"
    else:
        how = "filter by episode ids, or import each level into a workspace of its own"
    return (
        f"the chosen simulator episodes mix levels: {counts} episodes; a dataset holds one level (their "
        f"states, actions and masks differ); choose one level's episodes: {how}"
    )


def _action_index(level: SimLevel, row: dict[str, Any]) -> int:
    try:
        return level.index[row["action"]]
    except KeyError:
        raise RGVLMError(
            f"episode {row['episode_id']} step {row['t']}: action {row['action']!r} is not a "
            f"{level.name}-level action of the simulator"
        ) from None


def dataset_floor_plans(info: dict[str, Any]) -> tuple[int, ...] | None:
    """The ALFRED floor plan numbers a low-level dataset's states stand on (what its run evaluates on);
    None for generated rooms only, or a dataset that records no floor plans (the subgoal level)."""
    numbers = tuple(int(n.removeprefix("FloorPlan")) for n in info.get("floor_plans", ()))
    return numbers or None


def _state_tables(texts: list[str], acting: np.ndarray, level: SimLevel) -> tuple[np.ndarray, np.ndarray]:
    """The state vector of every distinct state JSON, and the valid-action mask of those at `acting`
    (states some step acts in; a mask of a state only reached at the end is never read)."""
    vectors = np.zeros((len(texts), level.dim), np.float32)
    masks = np.zeros((len(texts), len(level.tokens)), bool)
    needs_mask = np.zeros(len(texts), bool)
    needs_mask[acting] = True
    for k, text in enumerate(texts):
        state = level.parse(json.loads(text))
        vectors[k] = level.encode(state)
        if needs_mask[k]:
            masks[k] = level.mask(state)
    return vectors, masks


def _alfred_observations(
    rows: list[dict[str, Any]], workspace: str
) -> tuple[list[dict[str, Any]], _Observed]:
    """Pooled feat_conv.pt rows as states, for the step rows whose trajectory has features.

    Returns those rows and their observations. Each trajectory's file is read once, however many
    annotations (episodes) tell it. Actions index the tokens present in the data, sorted.
    """
    from rgvlm_core.alfred.features import pooled_step_features

    kept = [r for r in rows if r["features_path"]]
    if not kept:
        raise RGVLMError(
            f"no ALFRED episode in {workspace} has feat_conv.pt features; import the json_feat download "
            "(ResNet-18 features) with `rgvlm import`, or train on the simulator with --states sim"
        )
    feature_rows: dict[str, dict[int, int]] = {}
    for r in kept:
        feature_rows.setdefault(r["trajectory_id"], {})[r["t"]] = r["feature_row"]
    pooled: dict[str, np.ndarray] = {}
    for r in kept:
        traj = r["trajectory_id"]
        if traj not in pooled:
            step_rows = [feature_rows[traj][t] for t in range(r["n_steps"])]
            # DEVIATION: states are the 512x7x7 maps average-pooled to 512 values, an input the MLPs take.
            pooled[traj] = pooled_step_features(Path(r["features_path"]), r["features_layout"], step_rows)
    tokens = sorted({r["action"] for r in kept})
    index = {token: k for k, token in enumerate(tokens)}
    states = np.stack([pooled[r["trajectory_id"]][r["t"]] for r in kept])
    next_states = np.stack([pooled[r["trajectory_id"]][r["t"] + 1] for r in kept])
    actions = np.asarray([index[r["action"]] for r in kept], np.int64)
    # DEVIATION: ALFRED records no action validity (every logged action succeeded), so every action
    # is allowed in every state.
    masks = np.ones((len(kept), len(tokens)), bool)
    skipped = len({r["episode_id"] for r in rows}) - len({r["episode_id"] for r in kept})
    info = {"states": "alfred", "episodes_without_features": skipped}
    return kept, _Observed(states, next_states, actions, masks, tokens, info)


def _vlm_labels(reader: StoreReader, source: RewardSource) -> dict[tuple[str, int], tuple[Any, Any]]:
    """(episode, t) -> (score, progress) of the label run (overrides applied; None where not answered)."""
    out: dict[tuple[str, int], tuple[Any, Any]] = {}
    if source.run_id is not None:
        from rgvlm_core.labeling.store import effective_labels

        for lab in effective_labels(reader, source.run_id).to_pylist():
            out[(lab["episode_id"], lab["t"])] = (lab["score"], lab.get("progress"))
    return out


@dataclass
class StepRewards:
    """Per step row: the reward, `done` (a subtask completed: terminal), `cutoff` (the last step of a
    trajectory that stopped before finishing: not terminal), and `missing` (no VLM reward)."""

    rewards: np.ndarray
    dones: np.ndarray
    cutoff: np.ndarray
    missing: np.ndarray
    unlabelled: int


def _endings(rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(terminal, cut off) per step row, from the sparse reward and what the trajectory completed."""
    sparse = np.asarray([float(r["sparse_reward"]) for r in rows])
    last = np.asarray([r["t"] == r["n_steps"] - 1 for r in rows], bool)
    unfinished = np.asarray(
        [r["completed_subtasks"] is not None and r["completed_subtasks"] < r["n_subtasks"] for r in rows],
        bool,
    )
    cutoff = last & unfinished & (sparse <= 0)
    # a trajectory that completed its task ends with a completing step; one whose completion is
    # unknown is taken to end where it ends, as before
    terminal = (sparse > 0) | (last & ~cutoff)
    return terminal, cutoff


def step_rewards_of(
    rows: list[dict[str, Any]], source: RewardSource, labels: dict[tuple[str, int], tuple[Any, Any]]
) -> StepRewards:
    """The reward of every step row (consecutive steps of episodes, in order) under `source`."""
    sparse = np.asarray([float(r["sparse_reward"]) for r in rows])
    terminal, cutoff = _endings(rows)
    if source.kind == "sparse":
        none = np.zeros(len(rows), bool)
        return StepRewards(sparse.astype(np.float32), terminal.astype(np.float32), cutoff, none, 0)
    found = [labels.get((r["episode_id"], r["t"])) for r in rows]
    unlabelled = sum(f is None for f in found)
    scores = np.asarray([np.nan if f is None or f[0] is None else float(f[0]) for f in found])
    progress = np.asarray([np.nan if f is None or f[1] is None else float(f[1]) for f in found])
    if source.mapping == "shaped" and len(rows) and not np.isfinite(progress).any():
        raise RGVLMError(
            f"label run {source.run_id!r} has no progress answers, and the shaped mapping is built from "
            "them; relabel with the progress question (`rgvlm label --progress`) or choose raw, cost or "
            "centred"
        )
    segment = [(r["episode_id"], r["subtask_idx"]) for r in rows]
    segment_start = np.asarray([i == 0 or segment[i] != segment[i - 1] for i in range(len(rows))], bool)
    rewards, missing = step_rewards(
        source.mapping or DEFAULT_MAPPING,
        sparse,
        scores,
        progress=progress,
        segment_start=segment_start,
        terminal=terminal,
        lam=source.lam,
        gamma=source.gamma if source.gamma is not None else 0.97,
        with_sparse=source.kind == "sparse+vlm",
    )
    return StepRewards(rewards.astype(np.float32), terminal.astype(np.float32), cutoff, missing, unlabelled)


_REWARD_SQL = """
    SELECT e.episode_id, e.trajectory_id, s.t, s.sparse_reward, s.subtask_idx, sub.kind, t.n_steps,
           t.behaviour, t.n_subtasks, t.completed_subtasks
    FROM (SELECT * FROM episodes {where}) e
    JOIN trajectories t USING (trajectory_id)
    JOIN steps s ON s.trajectory_id = e.trajectory_id
    JOIN subtasks sub ON sub.episode_id = e.episode_id AND sub.idx = s.subtask_idx
    {traj_where}
    ORDER BY e.episode_id, s.t
"""


def reward_rows(
    reader: StoreReader,
    source: RewardSource,
    flt: EpisodeFilter = EpisodeFilter(),
    states: StateSource = "sim",
) -> pd.DataFrame:
    """Every step of the chosen episodes with its reward under `source`, without states or encoders:
    episode_id, trajectory_id, t, subtask_idx, kind, behaviour, sparse, reward, done, cutoff, missing.
    What audits of a reward read (the reward sanity check), computed by the same code as training's."""
    import pandas as pd

    where, params, traj_where = _selection(flt, states)
    rows = reader.rows(_REWARD_SQL.format(where=where, traj_where=traj_where), params)
    out = step_rewards_of(rows, source, _vlm_labels(reader, source))
    frame = pd.DataFrame(rows).reindex(
        columns=["episode_id", "trajectory_id", "t", "subtask_idx", "kind", "behaviour", "sparse_reward"]
    )
    return frame.rename(columns={"sparse_reward": "sparse"}).assign(
        reward=out.rewards, done=out.dones > 0, cutoff=out.cutoff, missing=out.missing
    )


def _with_rewards(
    reader: StoreReader,
    rows: list[dict[str, Any]],
    observed: _Observed,
    source: RewardSource,
    encoder: InstructionEncoder,
    failed: FailedPolicy,
) -> OfflineArrays:
    """Add rewards, dones and instructions to the observed steps: the same for every state source."""
    out = step_rewards_of(rows, source, _vlm_labels(reader, source))
    keep = np.flatnonzero(~out.missing) if failed == "drop" else np.arange(len(rows))
    instructions = [row["instruction"] for row in rows]
    texts = sorted(set(instructions))
    table = encode_cached(encoder, texts, reader.workspace.root / "rl_cache")
    position = {t: k for k, t in enumerate(texts)}
    ids = np.asarray([position[t] for t in instructions], np.int64)
    next_ids = np.append(ids[1:], ids[-1])
    # after a cut-off the next state still serves the same subtask (the next row is another episode)
    next_ids[out.cutoff] = ids[out.cutoff]
    idx = keep.astype(np.int64)
    info = {
        "reward_source": source.text,
        "vlm_reward": source.mapping,
        "lambda": source.lam,
        "transitions": len(idx),
        "episodes": len({r["episode_id"] for r in rows}),
        "instructions": len(texts),
        "failed_label_policy": failed,
        "steps_without_vlm_reward": int(out.missing.sum()),
        "steps_without_label": out.unlabelled,
        "cut_off_steps": int(out.cutoff[idx].sum()),
        "encoder": encoder.name,
        "n_actions": len(observed.action_tokens),
        "action_tokens": observed.action_tokens,
        **observed.info,
    }
    return OfflineArrays(
        states=observed.states[idx],
        next_states=observed.next_states[idx],
        instruction_ids=ids[idx],
        next_instruction_ids=next_ids[idx],
        instruction_table=table,
        instructions=texts,
        actions=observed.actions[idx],
        rewards=out.rewards[idx],
        dones=out.dones[idx],
        masks=observed.masks[idx],
        n_actions=len(observed.action_tokens),
        action_tokens=observed.action_tokens,
        info=info,
    )


__all__ = [
    "STATE_SOURCES",
    "OfflineArrays",
    "RewardSource",
    "SimLevel",
    "StateSource",
    "StepRewards",
    "build_dataset",
    "combined",
    "dataset_floor_plans",
    "parse_reward_source",
    "reward_rows",
    "sim_episode_levels",
    "sim_level",
    "split_mapping",
    "step_rewards_of",
]
