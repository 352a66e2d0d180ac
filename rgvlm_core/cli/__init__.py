"""The `rgvlm` command: thin Typer wrappers that parse, call the core and print a summary.

This subpackage is the only part of rgvlm_core that imports typer; the rest of the core stays
free of CLI and UI frameworks. Heavy imports happen inside commands so `rgvlm info` starts fast.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer

from rgvlm_core.cli import app_cmd, data_cmds, label_cmds, sim_cmds, store_cmds
from rgvlm_core.cli.common import err_console, set_workspace_path
from rgvlm_core.errors import RGVLMError

app = typer.Typer(
    name="rgvlm",
    help="RG-VLM Studio: vision-language-model rewards for offline RL datasets.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root(
    workspace: Path = typer.Option(
        Path("workspace"),
        "--workspace",
        "-w",
        envvar="RGVLM_WORKSPACE",
        help="Workspace folder (created on first import).",
        show_default=True,
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log debug messages."),
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING, format="%(name)s: %(message)s")
    set_workspace_path(workspace)


data_cmds.register(app)
store_cmds.register(app)
app_cmd.register(app)
sim_cmds.register(app)
label_cmds.register(app)


def main() -> None:
    """Entry point: user errors become one red line and exit code 1; bugs keep their traceback."""
    try:
        app()
    except RGVLMError as exc:
        err_console.print(f"error: {exc}", style="bold red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)
