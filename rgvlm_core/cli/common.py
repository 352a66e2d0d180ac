"""State and helpers shared by CLI commands.

Everything the CLI prints is data until shown otherwise: goals, ids, paths, model text and error
messages can hold `[...]`, so the consoles interpret no Rich markup (a goal with `[/x]` would crash a
table, `[link]` would vanish); styles are given with `style=`, never inside the text.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from rgvlm_core.errors import WorkspaceError, os_reason
from rgvlm_core.jobs import JOB_DIR_ENV
from rgvlm_core.redact import RedactingFilter
from rgvlm_core.workspace import Workspace

console = Console(highlight=False, markup=False)
err_console = Console(stderr=True, highlight=False, markup=False)
_workspace_path: list[Path] = [Path("workspace")]
WORKSPACE_HINT = "choose a folder you can read and write with -w/--workspace or RGVLM_WORKSPACE"
_UNWRITABLE = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC})


def set_workspace_path(path: Path) -> None:
    _workspace_path[0] = path


def open_workspace(*, create: bool, seed: bool = True) -> Workspace:
    """Open the chosen workspace; a new, never-imported one is seeded with the sample dataset.

    A path that cannot be a workspace (a file, a folder we may not read or write) is the user's to
    fix, so it is a one-line WorkspaceError naming the path rather than a traceback.
    """
    path = _workspace_path[0]
    ws = Workspace.open(path, create=create)
    if seed:
        _seed(ws)
    return ws


def _seed(ws: Workspace) -> None:
    from rgvlm_core.sample import seed_if_empty

    try:
        summary = seed_if_empty(ws)
    except OSError as exc:
        if exc.errno not in _UNWRITABLE:
            raise  # anything else reading the bundled sample is a bug: keep its traceback
        raise WorkspaceError(
            f"{ws.root}: cannot write the workspace ({os_reason(exc)}); {WORKSPACE_HINT}"
        ) from None
    if summary is not None:
        err_console.print(
            f"new workspace {ws.root}: added the bundled sample dataset ({summary.episodes} episodes); "
            "set RGVLM_NO_SAMPLE=1 to start empty",
            soft_wrap=True,
        )


def print_json(value: Any) -> None:
    """Machine-readable output: plain JSON on stdout, nothing else."""
    print(json.dumps(value, indent=1, default=str))


@contextlib.contextmanager
def progress_bar(label: str, *, transient: bool = False) -> Iterator[Progress]:
    """The CLI's progress bar (on stderr): label, bar, done/total, a free `info` field, time left.

    A command that fails (or is stopped) inside the bar erases it, so its error line is not left
    under a half-drawn bar. Inside a job there is no bar: the job's progress file carries it
    (jobs.report_progress), and the log keeps only what the command prints.
    """
    progress = Progress(
        TextColumn(label, markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        TimeRemainingColumn(),
        console=err_console,
        transient=transient,
        disable=bool(os.environ.get(JOB_DIR_ENV)),
    )
    with progress:
        try:
            yield progress
        except BaseException:
            progress.live.transient = True
            raise


def configure_logging(verbose: bool) -> None:
    """Log to stderr once, at DEBUG with -v; every line passes through the credential redaction."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


def quiet_library_progress() -> None:
    """No download / "Loading weights" bars from huggingface_hub, transformers or their users.

    The variable is read when those libraries are imported, which the CLI does lazily, so setting it
    here costs nothing (no torch import); libraries already imported are told directly. A user who
    sets HF_HUB_DISABLE_PROGRESS_BARS themselves keeps their choice.
    """
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] not in ("1", "true", "TRUE", "True", "yes", "on"):
        return
    hub = sys.modules.get("huggingface_hub.utils")
    if hub is not None:
        hub.disable_progress_bars()
    transformers_logging = sys.modules.get("transformers.utils.logging")
    if transformers_logging is not None:
        transformers_logging.disable_progress_bar()


def threads_option() -> Any:
    """`--threads` of the commands that train: torch's intra-op threads (rgvlm_core.rl.threads)."""
    return typer.Option(
        None,
        "--threads",
        min=0,
        help="Torch CPU threads of this process (default: RGVLM_THREADS, else 1; 0 = one per core). "
        "One thread does not collapse when other work shares the cores.",
    )


def vlm_reward_option() -> Any:
    """`--vlm-reward NAME`: how VLM scores become rewards (labeling/rewards.py), shared by train and
    experiment so both list the same mappings."""
    from rgvlm_core.labeling.rewards import DEFAULT_MAPPING, MAPPING_HELP

    choices = "; ".join(f"{name}: {text}" for name, text in MAPPING_HELP.items())
    return typer.Option(
        None,
        "--vlm-reward",
        help=f"Mapping of VLM scores to rewards for sources without an @MAPPING (default {DEFAULT_MAPPING}). "
        f"{choices}.",
    )
