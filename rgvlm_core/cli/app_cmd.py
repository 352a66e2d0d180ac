"""`rgvlm app`: open the dashboard on the chosen workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

from rgvlm_core.cli.common import console, open_workspace
from rgvlm_core.errors import RGVLMError

APP_FILE = Path(__file__).resolve().parents[2] / "app.py"


def app_command(
    port: int = typer.Option(8501, "--port", "-p", help="Port to serve on."),
    address: str = typer.Option("127.0.0.1", "--address", help="Address to serve on (loopback by default)."),
    browser: bool = typer.Option(True, "--browser/--no-browser", help="Open a browser tab."),
) -> None:
    """Open the dashboard (Streamlit) on the workspace, served on 127.0.0.1 unless told otherwise."""
    if not APP_FILE.exists():
        raise RGVLMError(
            f"{APP_FILE} not found: the dashboard runs from a source checkout (pip install -e .)"
        )
    ws = open_workspace(create=True)
    env = {**os.environ, "RGVLM_WORKSPACE": str(ws.root)}
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_FILE),
        "--server.address",
        address,
        "--server.port",
        str(port),
        "--server.headless",
        "false" if browser else "true",
        "--browser.gatherUsageStats",
        "false",
    ]
    console.print(f"dashboard on http://{address}:{port} for workspace {ws.root}", markup=False)
    raise typer.Exit(subprocess.call(cmd, env=env, cwd=APP_FILE.parent))


def register(app: typer.Typer) -> None:
    app.command("app")(app_command)
