"""Which shards of a table can hold an episode's rows, from the Parquet footers' statistics.

A label run writes a shard per batch of episodes, so an ALFRED-train workspace holds hundreds of
label and analysis shards. A query over a table's view opens every one of them (about 230 ms for
one episode's labels among 369 shards); the same query over the one or two shards whose range of
episode ids holds the episode takes a few milliseconds. Shards are immutable, so each file's range
is read once per process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import pyarrow.parquet as pq

from rgvlm_core.workspace import Workspace

EPISODE_COLUMN = "episode_id"

_RANGES: dict[str, tuple[str, str] | None] = {}
_LOCK = threading.Lock()


def episode_range(path: str) -> tuple[str, str] | None:
    """The least and greatest episode id in a shard; None when its footer does not say."""
    with _LOCK:
        if path in _RANGES:
            return _RANGES[path]
    meta = pq.read_metadata(path)
    found: tuple[str, str] | None = None
    if EPISODE_COLUMN in meta.schema.names:
        column = meta.schema.names.index(EPISODE_COLUMN)
        stats = [meta.row_group(i).column(column).statistics for i in range(meta.num_row_groups)]
        if stats and all(s is not None and s.has_min_max for s in stats):
            found = (min(str(s.min) for s in stats), max(str(s.max) for s in stats))
    with _LOCK:
        _RANGES[path] = found
    return found


def shards_holding(workspace: Workspace, files: Sequence[str], episode_id: str) -> list[str]:
    """The paths of the shards (snapshot-relative `files`) that may hold rows of `episode_id`."""
    out = []
    store = str(workspace.store_dir)
    for name in files:
        path = os.path.join(store, name)
        bounds = episode_range(path)
        if bounds is None or bounds[0] <= episode_id <= bounds[1]:
            out.append(path)
    return out
