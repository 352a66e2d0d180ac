"""Reader for the ALFRED dataset (json_2.1.0 layout): trajectories, episodes, frames, features, splits.

See `docs/alfred-format.md` for the format and `reader.py` for how it maps onto `episodes`.
"""

from rgvlm_core.alfred.features import inspect_features
from rgvlm_core.alfred.reader import ReadResult, iter_alfred, read_trajectory
from rgvlm_core.alfred.splits import (
    ALFRED_SPLITS,
    find_alfred_root,
    find_splits_file,
    list_trajectory_files,
    load_splits,
    scan_trajectory_files,
    search_splits_file,
)

__all__ = [
    "ALFRED_SPLITS",
    "ReadResult",
    "find_alfred_root",
    "find_splits_file",
    "inspect_features",
    "iter_alfred",
    "list_trajectory_files",
    "load_splits",
    "read_trajectory",
    "scan_trajectory_files",
    "search_splits_file",
]
