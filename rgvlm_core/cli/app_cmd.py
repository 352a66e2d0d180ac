"""`rgvlm app`: serve the dashboard on the chosen workspace, on a fresh machine as on a used one.

Streamlit always runs headless: a non-headless Streamlit that has never run on the machine stops at
an "Email:" prompt (and exits 255 without a terminal). We open the browser ourselves, once the
server's health check answers, and only where a browser plausibly exists. Stopping `rgvlm app`
(SIGTERM, Ctrl-C, a closed terminal) stops its Streamlit child, so the port is free for the next one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import typer

from rgvlm_core.cli.common import console, err_console, open_workspace
from rgvlm_core.errors import RGVLMError, UsageError

APP_FILE = Path(__file__).resolve().parents[2] / "app.py"
STOP_GRACE_S = 10.0  # how long Streamlit gets to stop after SIGTERM before it is killed
HEALTH_POLL_S = 0.25
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def app_command(
    port: int = typer.Option(8501, "--port", "-p", min=1, max=65535, help="Port to serve on."),
    address: str = typer.Option("127.0.0.1", "--address", help="Address to serve on (loopback by default)."),
    browser: bool = typer.Option(
        True,
        "--browser/--no-browser",
        help="Open a browser tab once the dashboard answers.",
    ),
) -> None:
    """Open the dashboard (Streamlit) on the workspace, served on 127.0.0.1 unless told otherwise."""
    if not APP_FILE.exists():
        raise RGVLMError(
            f"{APP_FILE} not found: the dashboard runs from a source checkout (pip install -e .)"
        )
    _check_port_free(address, port)
    ws = open_workspace(create=True)
    url = f"http://{_browse_host(address)}:{port}"
    env = {**os.environ, "RGVLM_WORKSPACE": str(ws.root)}
    console.print(f"dashboard on {url} for workspace {ws.root}", markup=False, soft_wrap=True)
    raise typer.Exit(_serve(streamlit_command(address, port), env, url, browser))


def streamlit_command(address: str, port: int) -> list[str]:
    """The Streamlit command line: always headless (no prompt, no browser of Streamlit's own)."""
    return [
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
        "true",
        "--browser.gatherUsageStats",
        "false",
    ]


def _serve(cmd: list[str], env: dict[str, str], url: str, browser: bool) -> int:
    """Run Streamlit until it ends or we are told to stop; the child never outlives this process."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in _STOP_SIGNALS}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in _STOP_SIGNALS:
        signal.signal(sig, on_signal)
    try:
        child = subprocess.Popen(
            cmd, env=env, cwd=APP_FILE.parent, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent
        )
        try:
            if browser:
                _open_when_healthy(child, url, stop)
            while child.poll() is None and not stop.wait(HEALTH_POLL_S):
                pass
        finally:
            _stop_child(child)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop.is_set():
        err_console.print("dashboard stopped", markup=False)
        return 0
    code = child.returncode
    if code:
        raise RGVLMError(f"the dashboard server (Streamlit) exited with code {code}; its output is above")
    return 0


def _stop_child(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after a grace period; always reaped."""
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
    child.wait()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the child gets SIGTERM should this process die without stopping it (e.g. SIGKILL)."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def _check_port_free(address: str, port: int) -> None:
    """Refuse at once, naming the port, when something already listens there."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as Streamlit's server binds
        try:
            sock.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UsageError(
                    f"port {port} on {address} is taken (another rgvlm app or server is using it); "
                    f"stop it or choose another with --port"
                ) from None
            raise UsageError(
                f"cannot serve on {address} port {port}: {exc.strerror}; check --address"
            ) from None


def _browse_host(address: str) -> str:
    """Where a browser on this machine reaches the server (a wildcard address means loopback)."""
    return "127.0.0.1" if address in ("0.0.0.0", "", "::") else address


def browser_plausible(env: Mapping[str, str] | None = None, platform: str = sys.platform) -> bool:
    """Whether opening a browser can show something: a desktop, or a browser named in BROWSER.

    Without a display, Python's `webbrowser` would fall back to a text browser (lynx, w3m) that takes
    over the terminal the server logs to; so on a headless Linux we only print the URL.
    """
    found: Mapping[str, str] = os.environ if env is None else env
    if found.get("BROWSER") or platform in ("darwin", "win32"):
        return True
    return bool(found.get("DISPLAY") or found.get("WAYLAND_DISPLAY"))


def _open_when_healthy(child: subprocess.Popen[bytes], url: str, stop: threading.Event) -> None:
    """In the background: wait for /_stcore/health, then open the browser (never blocks the server)."""
    if not browser_plausible():
        err_console.print(f"no display found: open {url} in a browser", markup=False, soft_wrap=True)
        return

    def wait_then_open() -> None:
        import webbrowser

        while child.poll() is None and not stop.is_set():
            if _healthy(url):
                with contextlib.suppress(Exception):  # no usable browser: the URL is printed above
                    webbrowser.open(url, new=2)
                return
            time.sleep(HEALTH_POLL_S)

    threading.Thread(target=wait_then_open, name="rgvlm-open-browser", daemon=True).start()


def _healthy(url: str) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def register(app: typer.Typer) -> None:
    app.command("app")(app_command)
