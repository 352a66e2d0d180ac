"""Table specifications: names, column constants, Arrow schemas and schema versions.

Every table carries a schema version: in its spec here, in the store's snapshot, in each Parquet
file's name and key-value metadata. Opening a workspace whose table is newer than this code is an
error; an older one needs an explicit migration (`MIGRATIONS`, `rgvlm migrate`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

# Column names used across the core (one place, so a rename is one edit).
TRAJECTORY_ID = "trajectory_id"
EPISODE_ID = "episode_id"
DATASET = "dataset"
SPLIT = "split"
TASK_TYPE = "task_type"
N_SUBTASKS = "n_subtasks"
N_STEPS = "n_steps"
TASK_ONLY = "task_only"
IMPORT_ID = "import_id"


@dataclass(frozen=True)
class TableSpec:
    """One logical table: its Arrow schema, version, natural key and on-disk sort order."""

    name: str
    version: int
    schema: pa.Schema
    key: tuple[str, ...]
    sort_by: tuple[str, ...]

    def empty(self) -> pa.Table:
        return self.schema.empty_table()


TRAJECTORIES = TableSpec(
    name="trajectories",
    version=1,
    schema=pa.schema(
        [
            (TRAJECTORY_ID, pa.string()),
            (DATASET, pa.string()),
            (SPLIT, pa.string()),
            (TASK_TYPE, pa.string()),
            ("task_id", pa.string()),
            ("scene", pa.string()),
            ("source_dir", pa.string()),
            (N_STEPS, pa.int32()),
            (N_SUBTASKS, pa.int32()),
            ("has_frames", pa.bool_()),
            ("features_path", pa.string()),
            ("features_layout", pa.string()),
            (TASK_ONLY, pa.bool_()),
            ("completed_subtasks", pa.int32()),
            ("behaviour", pa.string()),
            ("condition", pa.string()),
            ("final_state", pa.string()),
            (IMPORT_ID, pa.string()),
        ]
    ),
    key=(TRAJECTORY_ID,),
    sort_by=(TRAJECTORY_ID,),
)

EPISODES = TableSpec(
    name="episodes",
    version=1,
    schema=pa.schema(
        [
            (EPISODE_ID, pa.string()),
            (TRAJECTORY_ID, pa.string()),
            (DATASET, pa.string()),
            (SPLIT, pa.string()),
            (TASK_TYPE, pa.string()),
            ("repeat_idx", pa.int32()),
            ("goal", pa.string()),
            (N_SUBTASKS, pa.int32()),
            (N_STEPS, pa.int32()),
            (TASK_ONLY, pa.bool_()),
            ("instructions", pa.list_(pa.string())),
            (IMPORT_ID, pa.string()),
        ]
    ),
    key=(EPISODE_ID,),
    sort_by=(EPISODE_ID,),
)

SUBTASKS = TableSpec(
    name="subtasks",
    version=1,
    schema=pa.schema(
        [
            (EPISODE_ID, pa.string()),
            (TRAJECTORY_ID, pa.string()),
            ("idx", pa.int32()),
            ("kind", pa.string()),
            ("instruction", pa.string()),
            ("first_step", pa.int32()),
            ("last_step", pa.int32()),
            ("high_idxs", pa.list_(pa.int32())),
            ("completed", pa.bool_()),
        ]
    ),
    key=(EPISODE_ID, "idx"),
    sort_by=(EPISODE_ID, "idx"),
)

STEPS = TableSpec(
    name="steps",
    version=1,
    schema=pa.schema(
        [
            (TRAJECTORY_ID, pa.string()),
            ("t", pa.int32()),
            ("action", pa.string()),
            ("high_idx", pa.int32()),
            ("subtask_idx", pa.int32()),
            ("frame", pa.string()),
            ("feature_row", pa.int32()),
            ("sparse_reward", pa.float32()),
            ("done", pa.bool_()),
            ("valid", pa.bool_()),
            ("progress", pa.bool_()),
            ("state", pa.string()),
        ]
    ),
    key=(TRAJECTORY_ID, "t"),
    sort_by=(TRAJECTORY_ID, "t"),
)

IMPORTS = TableSpec(
    name="imports",
    version=1,
    schema=pa.schema(
        [
            (IMPORT_ID, pa.string()),
            ("source", pa.string()),
            ("started_at", pa.timestamp("us", tz="UTC")),
            ("finished_at", pa.timestamp("us", tz="UTC")),
            ("trajectories", pa.int64()),
            ("episodes", pa.int64()),
            ("steps", pa.int64()),
            ("skipped", pa.int64()),
            ("refused", pa.int64()),
            ("errors", pa.list_(pa.string())),
        ]
    ),
    key=(IMPORT_ID,),
    sort_by=("started_at",),
)

_UTC = pa.timestamp("us", tz="UTC")
RUN_ID = "run_id"

PROMPTS = TableSpec(
    name="prompts",
    version=2,
    schema=pa.schema(
        [
            ("prompt_id", pa.string()),
            ("stage1_system", pa.string()),
            ("stage1_user", pa.string()),
            ("frame_label", pa.string()),
            ("stage2_system", pa.string()),
            ("stage2_user", pa.string()),
            ("repair", pa.string()),
            ("ask_progress", pa.bool_()),  # v2: stage two also asks how far the subtask is done
            ("parent", pa.string()),
            ("note", pa.string()),
            ("created_at", pa.string()),
        ]
    ),
    key=("prompt_id",),
    sort_by=("prompt_id",),
)

LABEL_RUNS = TableSpec(
    name="label_runs",
    version=1,
    schema=pa.schema(
        [
            (RUN_ID, pa.string()),
            ("labeller", pa.string()),
            ("backend", pa.string()),
            ("model", pa.string()),
            ("prompt_id", pa.string()),
            ("unit", pa.string()),
            ("settings", pa.string()),  # JSON: everything that made the labels (no secrets)
            ("filters", pa.string()),  # JSON: which episodes
            ("command", pa.string()),
            ("versions", pa.string()),  # JSON: package versions
            ("created_at", _UTC),
        ]
    ),
    key=(RUN_ID,),
    sort_by=("created_at",),
)

LABELS = TableSpec(
    name="labels",
    version=2,
    schema=pa.schema(
        [
            (RUN_ID, pa.string()),
            (EPISODE_ID, pa.string()),
            ("t", pa.int32()),
            ("segment_id", pa.string()),
            ("score", pa.int8()),  # null when the segment failed
            # v2: how far the subtask is done after the step, 0..10; null when not asked or failed
            ("progress", pa.int8()),
            ("reward", pa.float32()),  # score / 10
            ("status", pa.string()),  # ok | failed
            ("reason", pa.string()),
        ]
    ),
    key=(RUN_ID, EPISODE_ID, "t"),
    sort_by=(RUN_ID, EPISODE_ID, "t"),
)

ANALYSES = TableSpec(
    name="analyses",
    version=1,
    schema=pa.schema(
        [
            (RUN_ID, pa.string()),
            (EPISODE_ID, pa.string()),
            ("segment_id", pa.string()),
            ("first_step", pa.int32()),
            ("last_step", pa.int32()),
            ("status", pa.string()),
            ("error", pa.string()),
            ("analysis", pa.string()),  # stage-one text
            ("raw", pa.string()),  # stage-two answer as received
            ("prompt_tokens", pa.int64()),
            ("completion_tokens", pa.int64()),
            ("latency_s", pa.float64()),
            ("calls", pa.int32()),
            ("cost", pa.float64()),
            ("cache_key", pa.string()),
            ("cached", pa.bool_()),
            ("created_at", _UTC),
        ]
    ),
    key=(RUN_ID, EPISODE_ID, "segment_id"),
    sort_by=(RUN_ID, EPISODE_ID, "segment_id"),
)

LABEL_CACHE = TableSpec(
    name="label_cache",
    version=1,
    schema=pa.schema([("cache_key", pa.string()), ("label", pa.string()), ("created_at", _UTC)]),
    key=("cache_key",),
    sort_by=("cache_key",),
)

OVERRIDES = TableSpec(
    name="overrides",
    version=1,
    schema=pa.schema(
        [
            (RUN_ID, pa.string()),
            (EPISODE_ID, pa.string()),
            ("t", pa.int32()),
            ("score", pa.int8()),
            ("reason", pa.string()),
            ("author", pa.string()),
            ("created_at", _UTC),
        ]
    ),
    key=(RUN_ID, EPISODE_ID, "t", "created_at"),
    sort_by=(RUN_ID, EPISODE_ID, "t", "created_at"),
)

TRAIN_RUNS = TableSpec(
    name="train_runs",
    version=1,
    schema=pa.schema(
        [
            (RUN_ID, pa.string()),
            ("reward_source", pa.string()),
            ("lam", pa.float64()),
            ("seed", pa.int64()),
            ("steps", pa.int64()),
            ("encoder", pa.string()),
            ("config", pa.string()),  # JSON: the resolved IQL config
            ("spec", pa.string()),  # JSON: reward source, filters, failed-label policy
            ("dataset", pa.string()),  # JSON: transitions, episodes, instructions, steps without VLM reward
            ("provenance", pa.string()),  # JSON: label run (labeller, model, prompt), package versions
            ("checkpoint", pa.string()),  # path relative to the workspace
            ("started_at", _UTC),
            ("finished_at", _UTC),
        ]
    ),
    key=(RUN_ID,),
    sort_by=("started_at",),
)

TRAIN_METRICS = TableSpec(
    name="train_metrics",
    version=1,
    schema=pa.schema(
        [(RUN_ID, pa.string()), ("step", pa.int64()), ("name", pa.string()), ("value", pa.float64())]
    ),
    key=(RUN_ID, "step", "name"),
    sort_by=(RUN_ID, "step", "name"),
)

EVAL_RESULTS = TableSpec(
    name="eval_results",
    version=2,
    schema=pa.schema(
        [
            (RUN_ID, pa.string()),
            ("condition", pa.string()),
            ("phrasing", pa.string()),  # v2: seen (training phrasings) or unseen (held out)
            ("seed", pa.int64()),
            ("length", pa.int32()),
            ("episode", pa.int32()),
            ("task_type", pa.string()),
            ("room", pa.string()),
            ("goal", pa.string()),
            (N_SUBTASKS, pa.int32()),
            ("completed", pa.int32()),
            ("success", pa.bool_()),
            ("steps", pa.int32()),
            ("first_kind", pa.string()),  # v2: the kind of the task's first subtask (Pickup, ...)
            ("evaluated_at", _UTC),
        ]
    ),
    key=(RUN_ID, "condition", "phrasing", "seed", "length", "episode"),
    sort_by=(RUN_ID, "condition", "phrasing", "length", "episode"),
)

EVAL_CURVES = TableSpec(
    name="eval_curves",
    version=1,
    schema=pa.schema(
        [
            (RUN_ID, pa.string()),
            ("step", pa.int64()),  # training updates done when the policy was evaluated
            ("condition", pa.string()),
            ("phrasing", pa.string()),
            ("length", pa.int32()),
            ("episodes", pa.int32()),
            ("proportion", pa.float64()),  # mean proportion of subtasks completed
            ("success", pa.float64()),  # share of tasks completed in full
        ]
    ),
    key=(RUN_ID, "step", "condition", "phrasing", "length"),
    sort_by=(RUN_ID, "step", "condition", "phrasing", "length"),
)

EXPERIMENTS = TableSpec(
    name="experiments",
    version=1,
    schema=pa.schema(
        [
            ("experiment_id", pa.string()),
            ("methods", pa.string()),  # JSON list of method specs as given (e.g. "sparse+rgvlm:RUN")
            ("seeds", pa.string()),  # JSON list of training seeds
            ("config", pa.string()),  # JSON: IQL config, evaluation (conditions, episodes, seed), lambda
            ("command", pa.string()),
            ("created_at", _UTC),
        ]
    ),
    key=("experiment_id", "created_at"),
    sort_by=("created_at",),
)

EXPERIMENT_RUNS = TableSpec(
    name="experiment_runs",
    version=1,
    schema=pa.schema(
        [
            ("experiment_id", pa.string()),
            ("method", pa.string()),
            ("seed", pa.int64()),
            (RUN_ID, pa.string()),
            ("finished_at", _UTC),
        ]
    ),
    key=("experiment_id", "method", "seed"),
    sort_by=("experiment_id", "method", "seed"),
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TRAJECTORIES,
        EPISODES,
        SUBTASKS,
        STEPS,
        IMPORTS,
        PROMPTS,
        LABEL_RUNS,
        LABELS,
        ANALYSES,
        LABEL_CACHE,
        OVERRIDES,
        TRAIN_RUNS,
        TRAIN_METRICS,
        EVAL_RESULTS,
        EVAL_CURVES,
        EXPERIMENTS,
        EXPERIMENT_RUNS,
    )
}


def _with_column(name: str, kind: pa.DataType, value: object = None) -> Callable[[pa.Table], pa.Table]:
    """A migration adding one column, every row `value` (null by default)."""

    def upgrade(table: pa.Table) -> pa.Table:
        return table.append_column(name, pa.array([value] * table.num_rows, type=kind))

    return upgrade


def _eval_results_v2(table: pa.Table) -> pa.Table:
    # v1 evaluations always used held-out phrasings; the first subtask's kind was not recorded
    table = _with_column("phrasing", pa.string(), "unseen")(table)
    return _with_column("first_kind", pa.string())(table)


# (table, from_version) -> function upgrading one Parquet file's rows to from_version + 1.
MIGRATIONS: dict[tuple[str, int], Callable[[pa.Table], pa.Table]] = {
    ("labels", 1): _with_column("progress", pa.int8()),
    ("prompts", 1): _with_column("ask_progress", pa.bool_(), False),  # v1 versions never asked it
    ("eval_results", 1): _eval_results_v2,
}
