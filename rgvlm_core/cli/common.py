"""State and helpers shared by CLI commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rgvlm_core.workspace import Workspace

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)
_workspace_path: list[Path] = [Path("workspace")]


def set_workspace_path(path: Path) -> None:
    _workspace_path[0] = path


def open_workspace(*, create: bool, seed: bool = True) -> Workspace:
    """Open the chosen workspace; a new, never-imported one is seeded with the sample dataset."""
    ws = Workspace.open(_workspace_path[0], create=create)
    if seed:
        from rgvlm_core.sample import seed_if_empty

        summary = seed_if_empty(ws)
        if summary is not None:
            err_console.print(
                f"new workspace {ws.root}: added the bundled sample dataset ({summary.episodes} episodes); "
                "set RGVLM_NO_SAMPLE=1 to start empty",
                markup=False,
                soft_wrap=True,
            )
    return ws


def print_json(value: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    print(json.dumps(value, indent=1, default=str))


def progress_bar(label: str, *, transient: bool = False) -> Progress:
    """The CLI's progress bar (on stderr): label, bar, done/total, a free `info` field, time left."""
    return Progress(
        TextColumn(label, markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
    )
