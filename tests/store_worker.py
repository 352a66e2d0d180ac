"""A writer process for the store's concurrency and crash tests (run as a script, not collected).

usage: python tests/store_worker.py WORKSPACE NAME BATCHES ROWS_PER_BATCH
Commits BATCHES batches of steps rows for trajectories named NAME-<batch>, one commit each.
"""

from __future__ import annotations

import sys

import pyarrow as pa

from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import STEPS


def step_rows(trajectory_id: str, n: int) -> pa.Table:
    return pa.table(
        {
            "trajectory_id": [trajectory_id] * n,
            "t": list(range(n)),
            "action": ["MoveAhead_25"] * n,
            "high_idx": [0] * n,
            "subtask_idx": [0] * n,
            "frame": [None] * n,
            "feature_row": [None] * n,
            "sparse_reward": [0.0] * (n - 1) + [1.0],
            "done": [False] * (n - 1) + [True],
            "valid": [True] * n,
            "progress": [None] * n,
            "state": [None] * n,
        },
        schema=STEPS.schema,
    )


def main(argv: list[str]) -> None:
    root, name, batches, rows = argv[0], argv[1], int(argv[2]), int(argv[3])
    ws = Workspace.open(root)
    for b in range(batches):
        ws.commit({"steps": step_rows(f"{name}-{b:04d}", rows)}, message=f"{name} {b}")


if __name__ == "__main__":
    main(sys.argv[1:])
