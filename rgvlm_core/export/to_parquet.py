"""`rgvlm export parquet DIR`: the exported dataset as plain Parquet, with a README of its columns.

DIR holds `steps.parquet` (one row per step: a full transition), `episodes.parquet` (one row per
episode), `metadata.json` (the provenance: reward source, label run, versions, command) and `README.md`
(every column and the provenance, written from the constants below and the metadata). Both Parquet
files carry the same metadata under the schema key `rgvlm_export`, so a file that travels alone still
says what made it.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rgvlm_core.export.collect import EXPORT_FORMAT, ExportData
from rgvlm_core.export.files import check_target, marked_format, replace_dir, temp_beside

STEPS_FILE = "steps.parquet"
EPISODES_FILE = "episodes.parquet"
METADATA_FILE = "metadata.json"
README_FILE = "README.md"
SCHEMA_KEY = b"rgvlm_export"

# Column name -> meaning; the README's tables are written from these, in this order.
STEP_COLUMNS: dict[str, str] = {
    "episode_id": "The workspace's episode (one annotation of a trajectory); its row in episodes.parquet.",
    "step": "Index of the step in its episode, from 0; rows of an episode are contiguous and in order.",
    "subtask_idx": "The subtask the step serves (0-based, in task order).",
    "instruction": "That subtask's natural-language instruction: the policy's language condition.",
    "state": "State before the step: the simulator's symbolic state vector (states sim) or pooled ResNet-18 "
    "features (states alfred); `state_dim` values.",
    "action": "The action taken: an index into the metadata's `action_tokens`.",
    "action_token": "The same action as a token (`PickupObject(Apple)`).",
    "action_mask": "The valid actions in `state` (`n_actions` booleans); the trainer's actor never picks an "
    "invalid one. ALFRED records no validity: all true.",
    "reward": "The reward under `reward_source`: what IQL trains on.",
    "sparse_reward": "The data's own reward: 1 on the step that completes a subtask, else 0.",
    "terminal": "The trainer's done: the step completes a subtask (each subtask is a task of its own), or "
    "ends a trajectory whose completion is unknown. Not only the last step of an episode.",
    "truncated": "The trajectory stopped here before completing its task (cut off): not terminal; "
    "bootstrap from `next_state`.",
    "next_state": "State after the step: the next row's `state` within the episode; after the last step, "
    "the trajectory's final state.",
    "next_instruction": "The instruction paired with `next_state`: the next step's; after an episode's last "
    "step, that step's own.",
    "vlm_reward_missing": "No VLM reward for the step (its label failed or is absent): `reward` holds only "
    "the sparse part. `rgvlm train --failed-labels drop` leaves such steps out.",
    "reward_source": "The reward source, the same on every row (as in the metadata).",
}
EPISODE_COLUMNS: dict[str, str] = {
    "episode_index": "Position in this export; the episode's id in a Minari export of the same selection.",
    "episode_id": "The workspace's episode id.",
    "trajectory_id": "The trajectory it annotates (episodes of one trajectory share their steps).",
    "dataset": "sim (the embedded simulator) or alfred.",
    "split": "The data split (train, valid_seen, ...).",
    "task_type": "ALFRED's task type.",
    "goal": "The goal sentence of the annotation.",
    "n_subtasks": "Subtasks of the task.",
    "completed_subtasks": "Subtasks the trajectory completed (null where the data does not say).",
    "behaviour": "How the trajectory was made (simulator: expert, suboptimal or failed).",
    "n_steps": "Steps of the episode (its rows in steps.parquet).",
    "first_row": "Row of its first step in steps.parquet.",
    "return": "Sum of its rewards under `reward_source` (undiscounted).",
    "terminated": "Its last step is terminal.",
    "truncated": "It was cut off before completing its task.",
}


def check_parquet_target(out: Path, force: bool) -> None:
    """Refuse, before any work, a DIR that is a file or holds files, unless `force` and it is an earlier
    export (so `--force` can never delete a folder of something else)."""
    check_target(out, force, METADATA_FILE, EXPORT_FORMAT, "an rgvlm export")


def is_export_dir(path: Path) -> bool:
    """Whether `path` holds an export written by this module (its metadata.json says so)."""
    return marked_format(path / METADATA_FILE) == EXPORT_FORMAT


def write_parquet(data: ExportData, out: Path, *, force: bool = False) -> Path:
    """Write the export into `out` (checked again here); returns `out`."""
    check_parquet_target(out, force)
    tmp = temp_beside(out)
    try:
        meta = {SCHEMA_KEY: json.dumps(data.metadata, default=str).encode()}
        steps = steps_table(data)
        pq.write_table(steps.replace_schema_metadata(meta), tmp / STEPS_FILE)
        pq.write_table(episodes_table(data).replace_schema_metadata(meta), tmp / EPISODES_FILE)
        (tmp / METADATA_FILE).write_text(json.dumps(data.metadata, indent=1, default=str), encoding="utf-8")
        (tmp / README_FILE).write_text(readme(data, steps), encoding="utf-8")
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _fixed(values: np.ndarray) -> pa.FixedSizeListArray:
    """An (N, D) array as a fixed-size list column of D values per row."""
    flat = pa.array(np.ascontiguousarray(values).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, values.shape[1])


def steps_table(data: ExportData) -> pa.Table:
    """One row per step: the transition the trainer sees, with its keys and flags (STEP_COLUMNS)."""
    a = data.arrays
    tokens = np.asarray(a.action_tokens, dtype=object)
    columns: dict[str, Any] = {
        "episode_id": pa.array(data.episode_ids, pa.string()),
        "step": pa.array(data.steps, pa.int32()),
        "subtask_idx": pa.array(data.subtask_idx, pa.int32()),
        "instruction": pa.array(data.instructions(), pa.string()),
        "state": _fixed(a.states.astype(np.float32, copy=False)),
        "action": pa.array(a.actions, pa.int64()),
        "action_token": pa.array(tokens[a.actions].tolist(), pa.string()),
        "action_mask": _fixed(a.masks.astype(bool, copy=False)),
        "reward": pa.array(a.rewards, pa.float32()),
        "sparse_reward": pa.array(data.sparse, pa.float32()),
        "terminal": pa.array(data.terminal, pa.bool_()),
        "truncated": pa.array(data.truncated, pa.bool_()),
        "next_state": _fixed(a.next_states.astype(np.float32, copy=False)),
        "next_instruction": pa.array(data.next_instructions(), pa.string()),
        "vlm_reward_missing": pa.array(data.missing, pa.bool_()),
        "reward_source": pa.array([data.metadata.get("reward_source")] * len(data), pa.string()),
    }
    return pa.table(columns)


_FROM_STORE = ("episode_id", "trajectory_id", "dataset", "split", "task_type", "goal", "n_subtasks",
               "completed_subtasks", "behaviour")  # fmt: skip
EPISODE_SCHEMA = pa.schema(
    [
        ("episode_index", pa.int32()),
        ("episode_id", pa.string()),
        ("trajectory_id", pa.string()),
        ("dataset", pa.string()),
        ("split", pa.string()),
        ("task_type", pa.string()),
        ("goal", pa.string()),
        ("n_subtasks", pa.int32()),
        ("completed_subtasks", pa.int32()),
        ("behaviour", pa.string()),
        ("n_steps", pa.int32()),
        ("first_row", pa.int64()),
        ("return", pa.float64()),
        ("terminated", pa.bool_()),
        ("truncated", pa.bool_()),
    ]
)


def episodes_table(data: ExportData) -> pa.Table:
    """One row per episode, in export order (EPISODE_COLUMNS)."""
    rows = []
    for k, ep in enumerate(data.episodes):
        span = data.rows_of(k)
        last = span.stop - 1
        rows.append(
            {
                "episode_index": k,
                **{c: ep.get(c) for c in _FROM_STORE},
                "n_steps": span.stop - span.start,
                "first_row": span.start,
                "return": float(data.arrays.rewards[span].sum()),
                "terminated": bool(data.terminal[last]),
                "truncated": bool(data.truncated[last]),
            }
        )
    return pa.Table.from_pylist(rows, schema=EPISODE_SCHEMA)


def _code(text: object) -> str:
    """`text` as a Markdown code span that nothing inside it can close (data is shown literally)."""
    body = str(text).replace("\n", " ")
    ticks = "`" * (max((len(m) for m in re.findall(r"`+", body)), default=0) + 1)
    pad = " " if body.startswith("`") or body.endswith("`") else ""
    return f"{ticks}{pad}{body}{pad}{ticks}"


def _fenced(text: str, lang: str = "") -> str:
    ticks = "`" * max(3, max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{ticks}{lang}\n{text}\n{ticks}"


def readme(data: ExportData, steps: pa.Table) -> str:
    """The README of an export folder: what it holds, every column, and where it came from."""
    m = data.metadata
    lines = [
        f"# RG-VLM Studio export: {m['episodes']} episodes, {m['steps']} steps",
        "",
        f"Rewards: {_code(m['reward_source'])}, computed by the code `rgvlm train` uses, so these rows are "
        "the transitions IQL would train on for this reward source and these episodes.",
        "",
        *_provenance_lines(m),
        "",
        "## Files",
        "",
        f"- `{STEPS_FILE}`: one row per step (a full transition), episodes contiguous, steps in order.",
        f"- `{EPISODES_FILE}`: one row per episode, in the same order.",
        f"- `{METADATA_FILE}`: the provenance below as JSON (also in both Parquet files' schema metadata, "
        f"key `{SCHEMA_KEY.decode()}`).",
        "",
        "Episodes and endings: a step that completes a subtask is terminal (the trainer treats each subtask "
        "as a task of its own), so an episode of k subtasks can have up to k terminal steps; a trajectory "
        "that stopped before completing its task ends `truncated`, not terminal.",
        "",
        f"## {STEPS_FILE}",
        "",
        *_column_table(steps.schema, STEP_COLUMNS),
        "",
        f"## {EPISODES_FILE}",
        "",
        *_column_table(EPISODE_SCHEMA, EPISODE_COLUMNS),
        "",
        "## Reading it",
        "",
        _fenced(
            "import pandas as pd\n"
            f'steps = pd.read_parquet("{STEPS_FILE}")\n'
            f'episodes = pd.read_parquet("{EPISODES_FILE}")',
            "python",
        ),
        "",
        "## Metadata",
        "",
        _fenced(json.dumps(m, indent=1, default=str), "json"),
        "",
    ]
    return "\n".join(lines)


def _provenance_lines(m: dict[str, Any]) -> list[str]:
    lines = [
        "## Provenance",
        "",
        f"- Made by {_code(m['command'] or '(no command recorded)')} with rgvlm {m['rgvlm_version']} "
        f"at {m['created_at']}, from the workspace {_code(m['workspace'])} (snapshot {m['snapshot']}).",
        f"- Episodes: {m['episodes']} ({m['states']} states, {m['filters']}); steps: {m['steps']}, of which "
        f"{m['terminal_steps']} terminal; {m['truncated_episodes']} episodes truncated; "
        f"{m['steps_without_vlm_reward']} steps without a VLM reward.",
    ]
    if not m["label_runs"]:
        lines.append("- Label run: none (the sparse reward is the data's own).")
    for run in m["label_runs"]:
        prompt = (run.get("prompt") or {}).get("prompt_id")
        lines += [
            f"- Label run {_code(run['run_id'])}: labeller {_code(run['labeller'])}, {run['labeller_is']}; "
            f"backend {_code(run.get('backend'))}, model {_code(run.get('model'))}, "
            f"prompt version {_code(prompt)}; {run['overridden_steps']} exported steps carry a person's "
            "override (it wins over the run's score).",
        ]
        if run["labeller"] == "reference":
            lines.append(
                "- **These labels come from the reference labeller, which reads ground truth; they are not "
                "a vision-language model's.**"
            )
    return lines


def _column_table(schema: pa.Schema, meanings: dict[str, str]) -> list[str]:
    rows = ["| column | type | meaning |", "|---|---|---|"]
    for name in schema.names:
        rows.append(f"| `{name}` | `{schema.field(name).type}` | {meanings[name]} |")
    return rows


__all__ = [
    "EPISODES_FILE",
    "EPISODE_COLUMNS",
    "EPISODE_SCHEMA",
    "METADATA_FILE",
    "README_FILE",
    "STEPS_FILE",
    "STEP_COLUMNS",
    "check_parquet_target",
    "episodes_table",
    "is_export_dir",
    "readme",
    "steps_table",
    "write_parquet",
]
