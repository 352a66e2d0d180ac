"""The `rgvlm` command: thin Typer wrappers that parse, call the core and print a summary.

This subpackage is the only part of rgvlm_core that imports typer; the rest of the core stays
free of CLI and UI frameworks. Heavy imports happen inside commands so `rgvlm info` starts fast.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from rgvlm_core.cli import (
    alfred_cmds,
    app_cmd,
    data_cmds,
    experiment_cmds,
    export_cmds,
    label_cmds,
    reward_cmds,
    rl_cmds,
    sim_cmds,
    store_cmds,
)
from rgvlm_core.cli.common import configure_logging, err_console, quiet_library_progress, set_workspace_path
from rgvlm_core.errors import RGVLMError
from rgvlm_core.redact import redact

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
    configure_logging(verbose)
    set_workspace_path(workspace)


data_cmds.register(app)
store_cmds.register(app)
app_cmd.register(app)
sim_cmds.register(app)
label_cmds.register(app)
rl_cmds.register(app)
experiment_cmds.register(app)
reward_cmds.register(app)
export_cmds.register(app)
alfred_cmds.register(app)


def main() -> None:
    """Entry point: user errors become one red line and exit code 1; bugs keep their traceback.

    Run as a job (RGVLM_JOB_DIR set), it also records how it ended, and SIGTERM stops it cleanly.
    Error lines and recorded errors pass through `redact`: they may quote a URL holding a key.
    """
    from rgvlm_core.jobs import JobCancelled, install_job_handlers, record_exit

    quiet_library_progress()
    install_job_handlers()
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        record_exit("done" if code == 0 else "failed", code, None if code == 0 else f"exit code {code}")
        raise
    except RGVLMError as exc:
        message = redact(str(exc))
        record_exit("failed", 1, message)
        err_console.print(
            f"error: {message}", style="bold red", markup=False, highlight=False, soft_wrap=True
        )
        sys.exit(1)
    except JobCancelled:
        record_exit("cancelled", 143, "cancelled")
        err_console.print("cancelled", style="yellow")
        sys.exit(143)
    except BaseException as exc:
        record_exit("failed", 1, redact(f"{type(exc).__name__}: {exc}"))
        raise
