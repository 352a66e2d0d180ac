"""The dataset an export writes: the trainer's transitions, grouped by episode, with their provenance.

Built on rl.dataset, never beside it: `build_dataset` gives states, actions, rewards, dones and
valid-action masks exactly as IQL gets them; `reward_rows` (the same reward code, without states) gives
each row's episode, step, subtask, sparse reward and whether the trajectory was cut off there. Both
read rows in the same order (episode id, then step); their rewards and dones are compared, so a label
run committing between the two reads cannot leave a mixed export.

Episodes: one exported episode per workspace episode (one annotation of a trajectory), every step in
order. Endings follow the trainer: a step that completes a subtask is terminal (each subtask is a task
of its own for the subtask-conditioned policy, as in SPRINT/BOSS), so an episode of k subtasks has up
to k terminal steps, the last on its final step; a trajectory that stopped before completing its task
ends truncated (cut off, not terminal: IQL bootstraps from its final state). Steps without a VLM reward
keep their sparse reward (the trainer's default, `--failed-labels sparse`) and are flagged, so a
consumer can drop them as `--failed-labels drop` would.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.labeling.rewards import DEFAULT_MAPPING
from rgvlm_core.rl.config import IQLConfig
from rgvlm_core.rl.dataset import (
    STATE_SOURCES,
    OfflineArrays,
    RewardSource,
    build_dataset,
    parse_reward_source,
    reward_rows,
    sim_level,
)
from rgvlm_core.workspace import StoreReader

if TYPE_CHECKING:
    import pandas as pd

EXPORT_FORMAT = "rgvlm-export"
EXPORT_FORMAT_VERSION = 1  # bump when a column, a metadata key or the meaning of a value changes
REWARD_HELP = (
    "sparse, reference, sparse+reference, rgvlm:RUN, sparse+rgvlm:RUN or clip:RUN; a VLM source may "
    "end in @MAPPING (e.g. sparse+reference@shaped). The same sources as `rgvlm train --reward`."
)
LABELLER_NOTES = {
    "reference": "the reference labeller: ground truth read from the simulator state or the ALFRED plan "
    "(with the noise its settings record), not a vision-language model",
    "lvlm": "a large vision-language model (the two-stage RG-VLM labeller)",
    "clip": "the CLIP similarity baseline, not the two-stage RG-VLM labeller",
}


@dataclass(frozen=True)
class ExportConfig:
    """What to export. The help texts are the CLI's."""

    reward: str = field(default="sparse", metadata={"help": REWARD_HELP})
    lam: float = field(default=1.0, metadata={"help": "Weight of the VLM reward in sparse+rgvlm."})
    vlm_reward: str | None = field(
        default=None,
        metadata={
            "help": f"Mapping of VLM scores for a source without @MAPPING (default {DEFAULT_MAPPING})."
        },
    )
    gamma: float = field(
        default=IQLConfig().gamma,
        metadata={"help": "Discount of the shaped mapping, as IQL's gamma (other mappings ignore it)."},
    )
    states: str = field(
        default="sim",
        metadata={"help": "State features: sim (simulator episodes) or alfred (ALFRED ResNet features)."},
    )
    filters: EpisodeFilter = field(
        default_factory=EpisodeFilter, metadata={"help": "Which episodes; a limit counts episodes."}
    )
    command: str = field(default="", metadata={"help": "The command line, recorded in the metadata."})

    def __post_init__(self) -> None:
        if self.states not in STATE_SOURCES:
            raise UsageError(f"--states must be {' or '.join(STATE_SOURCES)}, got {self.states!r}")
        if not 0.0 <= self.gamma <= 1.0:
            raise UsageError(f"--gamma must be between 0 and 1, got {self.gamma!r}")


@dataclass
class ExportData:
    """The trainer's transitions of the chosen episodes, episode by episode, and what an export adds.

    Per step row (N of them, episodes contiguous, steps in order): `episode_ids`, `steps` (t),
    `subtask_idx`, `sparse` (the data's own reward), `truncated` (cut off here), `missing` (no VLM
    reward: the sparse one stands), and the trainer's `arrays`. Per episode (E): `episodes` (its rows
    of the store, in export order), `starts` (E + 1 row offsets) and `final_masks` (the valid actions in
    its final observation). `metadata`: the provenance both formats record.
    """

    arrays: OfflineArrays
    episode_ids: list[str]
    steps: np.ndarray
    subtask_idx: np.ndarray
    sparse: np.ndarray
    truncated: np.ndarray
    missing: np.ndarray
    episodes: list[dict[str, Any]]
    starts: np.ndarray
    final_masks: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.episode_ids)

    @property
    def terminal(self) -> np.ndarray:
        """Per step: the trainer's `done` (a subtask completed here) as booleans."""
        return self.arrays.dones > 0

    def instructions(self) -> list[str]:
        """Per step: the instruction of the subtask the step serves."""
        table = self.arrays.instructions
        return [table[k] for k in self.arrays.instruction_ids]

    def next_instructions(self) -> list[str]:
        """Per step: the instruction paired with the next state: the next step's within the episode (the
        next subtask's after a completion, as the env shows it); after the last step, that step's own.

        The trainer pairs a terminal last step with whatever row follows; its value never counts there
        (a terminal transition does not bootstrap), so the export names the episode's own instead.
        """
        now = self.instructions()
        after = now[1:] + now[-1:]
        for end in self.starts[1:]:
            after[int(end) - 1] = now[int(end) - 1]
        return after

    def rows_of(self, k: int) -> slice:
        """The step rows of the k-th exported episode."""
        return slice(int(self.starts[k]), int(self.starts[k + 1]))


class _TextOnly:
    """build_dataset's encoder slot: exports carry the instruction text, so nothing is embedded."""

    name = "text"
    dim = 0

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.zeros((len(texts), 0), np.float32)


def collect(reader: StoreReader, config: ExportConfig) -> ExportData:
    """The chosen episodes as the trainer sees them under `config.reward`, with their provenance.

    Raises RGVLMError for an unknown reward source and for filters no episode with steps matches, naming
    the value; both are checked before any state is built.
    """
    source = parse_reward_source(config.reward, reader, config.lam, config.vlm_reward, config.gamma)
    keys = chosen_rows(reader, source, config)
    ids = tuple(dict.fromkeys(keys["episode_id"].astype(str)))
    # exactly the episodes of `keys`: build_dataset reads every episode its filter matches, so the
    # rows of both agree even where the two would choose differently from the filter alone
    flt = EpisodeFilter(episode_ids=ids)
    arrays = build_dataset(reader, source, _TextOnly(), flt, "sparse", config.states)  # type: ignore[arg-type]
    _check_same_rows(arrays, keys)
    episode_ids = keys["episode_id"].astype(str).tolist()
    starts = np.flatnonzero([i == 0 or episode_ids[i] != episode_ids[i - 1] for i in range(len(episode_ids))])
    starts = np.append(starts, len(episode_ids))
    episodes = _episode_rows(reader, list(ids))
    data = ExportData(
        arrays=arrays,
        episode_ids=episode_ids,
        steps=keys["t"].to_numpy(np.int64),
        subtask_idx=keys["subtask_idx"].to_numpy(np.int64),
        sparse=keys["sparse"].to_numpy(np.float32),
        truncated=keys["cutoff"].to_numpy(bool),
        missing=keys["missing"].to_numpy(bool),
        episodes=episodes,
        starts=starts,
        final_masks=_final_masks(arrays, episodes, starts),
    )
    data.metadata = provenance(reader, source, config, data)
    return data


_FEATURED_SQL = "SELECT trajectory_id FROM trajectories WHERE features_path IS NOT NULL"


def chosen_rows(reader: StoreReader, source: RewardSource, config: ExportConfig) -> pd.DataFrame:
    """The step rows of the chosen episodes (reward_rows: keys, rewards, endings), in the trainer's order.

    A limit keeps the first N episodes by id (build_dataset itself ignores a limit). RGVLMError naming
    the filters when no episode with steps matches.
    """
    keys = reward_rows(reader, source, replace(config.filters, limit=None), config.states)  # type: ignore[arg-type]
    if config.states == "alfred":  # build_dataset keeps only the trajectories with features
        with_features = {r["trajectory_id"] for r in reader.rows(_FEATURED_SQL)}
        keys = keys[keys["trajectory_id"].isin(with_features)]
    if config.filters.limit is not None:
        first = list(dict.fromkeys(keys["episode_id"]))[: config.filters.limit]
        keys = keys[keys["episode_id"].isin(first)]
    if keys.empty:
        what = "simulator" if config.states == "sim" else "ALFRED (with feat_conv.pt features)"
        shown = describe_filters(config.filters)
        if shown == "(no filters)":
            hint = "generate and import some with `rgvlm sim generate`"
            if config.states == "alfred":
                hint = "import ALFRED's json_feat download with `rgvlm import`"
            raise RGVLMError(f"no {what} episodes with steps in {reader.workspace.root}; {hint}")
        raise RGVLMError(f"no {what} episodes with steps match {shown}; list them with `rgvlm episodes`")
    return keys.reset_index(drop=True)


def describe_filters(flt: EpisodeFilter) -> str:
    """The filters as the command line gave them (`--split valid_seen --n-subtasks 7`)."""
    parts = [f"--split {v}" for v in flt.splits]
    parts += [f"--task-type {v}" for v in flt.task_types]
    parts += [f"--n-subtasks {v}" for v in flt.n_subtasks]
    parts += [f"--episode {v}" for v in flt.episode_ids]
    parts += [f"--text {flt.text!r}"] if flt.text else []
    parts += [f"--limit {flt.limit}"] if flt.limit is not None else []
    return " ".join(parts) or "(no filters)"


def _check_same_rows(arrays: OfflineArrays, keys: Any) -> None:
    """The two reads saw the same rows: same count, same rewards, same dones (else the store moved)."""
    same = (
        len(keys) == len(arrays)
        and np.array_equal(keys["reward"].to_numpy(np.float32), arrays.rewards, equal_nan=True)
        and np.array_equal(keys["done"].to_numpy(bool), arrays.dones > 0)
    )
    if not same:
        raise RGVLMError(
            "the workspace changed while the export read it (a label run or an import was writing); "
            "run the export again"
        )


_EPISODES_SQL = """
    SELECT e.episode_id, e.trajectory_id, e.dataset, e.split, e.task_type, e.goal, e.n_subtasks, e.n_steps,
           t.behaviour, t.completed_subtasks, t.final_state
    FROM episodes e JOIN trajectories t USING (trajectory_id)
    WHERE e.episode_id IN (SELECT unnest(?))
"""


def _episode_rows(reader: StoreReader, order: list[str]) -> list[dict[str, Any]]:
    """The store's rows of the exported episodes, in export order."""
    by_id = {r["episode_id"]: r for r in reader.rows(_EPISODES_SQL, [order])}
    return [by_id[e] for e in order]


def _final_masks(arrays: OfflineArrays, episodes: list[dict[str, Any]], starts: np.ndarray) -> np.ndarray:
    """The valid actions in each episode's final observation (the state after its last step).

    Simulator episodes: the mask of the trajectory's final state, as the dataset reads it (the last
    step's own state where none was stored); ALFRED: every action, as build_dataset has it.
    """
    out = np.ones((len(episodes), arrays.n_actions), bool)
    if arrays.info.get("states") != "sim":
        return out
    level = sim_level(str(arrays.info.get("level", "subgoal")))
    known: dict[str, np.ndarray] = {}
    for k, row in enumerate(episodes):
        text = row["final_state"]
        if not text:
            out[k] = arrays.masks[int(starts[k + 1]) - 1]
            continue
        if text not in known:
            known[text] = level.mask(level.parse(json.loads(text)))
        out[k] = known[text]
    return out


def provenance(
    reader: StoreReader, source: RewardSource, config: ExportConfig, data: ExportData
) -> dict[str, Any]:
    """What made the export: the reward source, the label run behind it, versions, command, figures."""
    import rgvlm_core

    info = {k: v for k, v in data.arrays.info.items() if k not in ("action_tokens", "encoder")}
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rgvlm_version": rgvlm_core.__version__,
        "command": config.command,
        "workspace": str(reader.workspace.root),
        "snapshot": reader.refresh().version,
        "reward_source": source.text,
        "reward": {
            "kind": source.kind,
            "label_run": source.run_id,
            "mapping": source.mapping,
            "lambda": source.lam if source.kind == "sparse+vlm" else None,
            "gamma": source.gamma,
        },
        "label_runs": label_run_records(reader, source.run_id, [e["episode_id"] for e in data.episodes]),
        "states": config.states,
        "level": info.get("level", "subgoal") if config.states == "sim" else None,
        "state_dim": int(data.arrays.states.shape[1]),
        "n_actions": data.arrays.n_actions,
        "action_tokens": list(data.arrays.action_tokens),
        "filters": describe_filters(config.filters),
        "episodes": len(data.episodes),
        "steps": len(data),
        "terminal_steps": int(data.terminal.sum()),
        "truncated_episodes": int(data.truncated.sum()),
        "steps_without_vlm_reward": int(data.missing.sum()),
        "failed_labels": "sparse: a step without a VLM reward keeps its sparse reward and is flagged",
        "dataset": info,
    }


def label_run_records(
    reader: StoreReader, run_id: str | None, episode_ids: list[str]
) -> list[dict[str, Any]]:
    """The label run behind the rewards as the store records it (none for the sparse reward): labeller
    (and what it is), backend, model, prompt version, settings, command, versions, and how many of the
    exported steps carry a person's override."""
    if run_id is None:
        return []
    rows = reader.rows("SELECT * FROM label_runs WHERE run_id = ?", [run_id])
    if not rows:
        raise RGVLMError(f"no label run {run_id!r}")
    run = dict(rows[0])
    for key in ("settings", "filters", "versions"):
        run[key] = json.loads(run[key]) if run.get(key) else None
    run["created_at"] = str(run["created_at"]) if run.get("created_at") is not None else None
    run["labeller_is"] = LABELLER_NOTES.get(str(run.get("labeller")), str(run.get("labeller")))
    prompt = None
    if run.get("prompt_id"):
        found = reader.rows(
            "SELECT prompt_id, parent, note, created_at FROM prompts WHERE prompt_id = ?", [run["prompt_id"]]
        )
        prompt = found[0] if found else {"prompt_id": run["prompt_id"]}
    run["prompt"] = prompt
    run["overridden_steps"] = reader.scalar(
        "SELECT count(*) FROM (SELECT DISTINCT episode_id, t FROM overrides "
        "WHERE run_id = ? AND episode_id IN (SELECT unnest(?)))",
        [run_id, episode_ids],
    )
    return [run]


__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "REWARD_HELP",
    "ExportConfig",
    "ExportData",
    "chosen_rows",
    "collect",
    "describe_filters",
    "label_run_records",
    "provenance",
]
