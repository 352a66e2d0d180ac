"""Putting an export's folder in place: written beside the target under a hidden name, then renamed.

A process killed while writing leaves only a hidden temporary folder, never a half-written export
under the chosen name; replacing an earlier export (`--force`) swaps the folders, then deletes the old.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from rgvlm_core.errors import UsageError


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


def marked_format(path: Path) -> str | None:
    """The "format" field of a JSON marker file (an export's metadata or manifest), None when unreadable."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc.get("format") if isinstance(doc, dict) else None


def check_target(out: Path, force: bool, marker: str, fmt: str, what: str) -> None:
    """Refuse, before any work, an output folder that is a file or holds files, unless `force` and it
    holds an earlier export of this kind (its `marker` file says `fmt`): `--force` deletes nothing else."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a folder; choose another output folder")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise UsageError(
            f"{out} already holds files; pass --force to replace the export there, or choose another folder"
        )
    if marked_format(out / marker) != fmt:
        raise UsageError(
            f"{out} is not {what} (no {marker} of one), so --force does not replace it; "
            "choose another folder or empty it yourself"
        )
