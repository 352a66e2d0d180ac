"""Putting an export's folder in place: written beside the target under a hidden name, then renamed.

A process killed while writing leaves only a hidden temporary folder, never a half-written export
under the chosen name; replacing an earlier export (`--force`) swaps the folders, then deletes the old.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def temp_beside(target: Path, what: str = "tmp") -> Path:
    """A new hidden folder in the target's parent (same file system, so the final rename is atomic)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    path = target.parent / f".{target.name}.{what}-{uuid.uuid4().hex[:8]}"
    path.mkdir()
    return path


def replace_dir(new: Path, target: Path) -> None:
    """Move the folder `new` to `target`, replacing what is there (an empty folder or an earlier export)."""
    if not target.exists():
        os.replace(new, target)
        return
    old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
