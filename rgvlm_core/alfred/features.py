"""ALFRED's precomputed ResNet-18 features (`feat_conv.pt`): which row layout a file has.

A file holds a float tensor [T, 512, 7, 7]. Three layouts exist (alfred-format.md):
- "low_actions":   T == len(low_actions), row t is the observation before low action t;
- "low_actions+1": T == len(low_actions) + 1 (json_feat download), row t as above, one final row;
- "images+10":     T == len(images) + 10 (full download), one row per `images` entry, the last 10
                   repeating the last frame; the reader maps step t to the row of its first image.
torch is imported inside the function, so importing this module stays light.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rgvlm_core.alfred.checks import one_line
from rgvlm_core.alfred.files import MAX_FEATURES_BYTES, RefusedPath, read_capped, read_head, regular_file
from rgvlm_core.errors import DataFormatError

log = logging.getLogger(__name__)

FEATURES_FILE = "feat_conv.pt"
FEATURE_LAYOUTS: tuple[str, ...] = ("low_actions", "low_actions+1", "images+10")
FEATURE_ROW_SHAPE: tuple[int, int, int] = (512, 7, 7)
IMAGES_PADDING = 10  # rows after the last image in the "images+10" layout
_PICKLE_PROTO = b"\x80"  # first byte of a legacy (pre-zip) torch file: pickle's PROTO opcode


def feature_layout(n_rows: int, n_low_actions: int, n_images: int) -> str | None:
    """The layout whose row count is `n_rows`, or None.

    When two layouts give the same T (only possible with fewer images than low actions, which real
    data never has), the first in this order wins: low_actions, low_actions+1, images+10.
    """
    candidates = (n_low_actions, n_low_actions + 1, n_images + IMAGES_PADDING)
    for layout, expected in zip(FEATURE_LAYOUTS, candidates, strict=True):
        if n_rows == expected:
            return layout
    return None


def inspect_features(path: Path, n_low_actions: int, n_images: int, *, source: str | None = None) -> str:
    """The layout name of the feat_conv.pt at `path` (see `feature_layout` for ties).

    Raises DataFormatError (source = `source` or the path) when the file cannot be read as a tensor,
    is not a float tensor [T, 512, 7, 7], or its T matches no layout.
    """
    import torch

    where = source if source is not None else str(path)
    tensor = _load(path, where)
    if not isinstance(tensor, torch.Tensor):
        raise DataFormatError(where, "", f"expected a tensor [T, 512, 7, 7], got a {type(tensor).__name__}")
    shape = tuple(tensor.shape)
    if len(shape) != 4 or shape[1:] != FEATURE_ROW_SHAPE:
        raise DataFormatError(
            where, "shape", f"expected [T, 512, 7, 7] (ResNet-18 conv features), got {list(shape)}"
        )
    if not tensor.is_floating_point():
        raise DataFormatError(where, "dtype", f"expected a float tensor, got {tensor.dtype}")
    layout = feature_layout(shape[0], n_low_actions, n_images)
    if layout is None:
        raise DataFormatError(
            where,
            "shape[0]",
            f"T={shape[0]} matches no layout: expected {n_low_actions} (low_actions), "
            f"{n_low_actions + 1} (low_actions+1) or {n_images + IMAGES_PADDING} (images+10)",
        )
    return layout


def pooled_step_features(path: Path, layout: str, step_rows: Sequence[int]) -> np.ndarray:
    """Step states for offline RL: float32 [len(step_rows) + 1, 512], each row a 7x7 average pool.

    Row t is step t's observation (row `step_rows[t]` of the file), the extra last row the view after
    the last step: the file's last row where the layout has rows beyond the steps (low_actions+1: the
    observation after the last action; images+10: the last frame, repeated), else the last step's own.
    Pooling keeps the channels a ResNet-18 learned and gives an MLP a 512-value vector. The file is
    memory-mapped and loaded once per call; only the rows asked for are read.
    """
    import torch

    tensor = _load(path, str(path))
    shape = list(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
    if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape[1:]) != FEATURE_ROW_SHAPE:
        raise DataFormatError(str(path), "", f"expected a tensor [T, 512, 7, 7], got {shape}; re-import it")
    n_rows = int(tensor.shape[0])
    after_last = n_rows - 1 if layout in ("low_actions+1", "images+10") else step_rows[-1]
    wanted = [*step_rows, after_last]
    if max(wanted) >= n_rows:
        problem = f"has {n_rows} rows but the workspace needs row {max(wanted)}; re-import it"
        raise DataFormatError(str(path), "shape[0]", problem)
    pooled = tensor[torch.as_tensor(wanted)].to(torch.float32).mean(dim=(2, 3))
    return pooled.numpy()


def _load(path: Path, where: str) -> Any:
    """torch.load, memory-mapped where the file allows it (zip format), else a plain load.

    Only a regular file of at most MAX_FEATURES_BYTES is opened: torch.load would block on a FIFO
    and read a link to /dev/zero forever. The plain load reads capped bytes, not the path, so a file
    swapped or grown since the check cannot make it read more.
    """
    import torch

    try:
        regular_file(path, MAX_FEATURES_BYTES)
    except RefusedPath as exc:
        raise DataFormatError(where, "", exc.reason) from None
    try:
        return torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except Exception as exc:  # mmap needs the zip format: old (legacy) files get a plain load
        log.debug("mmap load of %s failed (%s); loading it whole", path, one_line(exc))
    try:
        if not read_head(path, 1).startswith(_PICKLE_PROTO):  # junk is refused before reading it all
            raise DataFormatError(where, "", "not a readable torch tensor file (neither zip nor pickle)")
        data = read_capped(path, MAX_FEATURES_BYTES)
    except RefusedPath as exc:
        raise DataFormatError(where, "", exc.reason) from None
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure here means the file is not a readable tensor file
        raise DataFormatError(
            where, "", f"not a readable torch tensor file ({type(exc).__name__}: {one_line(exc, 100)})"
        ) from exc
