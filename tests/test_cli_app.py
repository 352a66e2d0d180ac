"""`rgvlm app` on a fresh machine: served headless with no prompt, stopped with its Streamlit child.

Each test runs the real command in a subprocess, as a new user would, with HOME an empty folder (no
~/.streamlit: Streamlit has never run here) and stdin not a terminal.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.browser_support import free_port

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 120.0  # generous: the machine is shared; no assertion depends on how long it takes


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")}
    return {
        **env,
        "HOME": str(home),
        "PYTHONPATH": str(ROOT),
        "RGVLM_WORKSPACE": str(tmp_path / "ws"),
        "RGVLM_NO_SAMPLE": "1",
        **extra,
    }


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "rgvlm_core.cli", "app", *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=log.parent,
        )


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while True:
        assert proc.poll() is None, f"rgvlm app exited with {proc.returncode}:\n{log.read_text()}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        assert time.monotonic() < deadline, f"the dashboard never answered:\n{log.read_text()}"
        time.sleep(0.25)


def _wait_for_file(path: Path, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while not path.exists():
        assert proc.poll() is None, f"rgvlm app exited with {proc.returncode}:\n{log.read_text()}"
        assert time.monotonic() < deadline, f"no browser was opened:\n{log.read_text()}"
        time.sleep(0.25)


def _descendants(pid: int) -> set[int]:
    """Every process below `pid` (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "stop"),
    [(["--no-browser"], signal.SIGTERM), ([], signal.SIGINT)],
    ids=["no-browser-sigterm", "browser-sigint"],
)
def test_app_serves_a_fresh_machine_without_a_prompt_and_stops_with_its_child(
    tmp_path: Path, flags: list[str], stop: signal.Signals
) -> None:
    port = free_port()
    opened = tmp_path / "opened.txt"
    recorder = tmp_path / "record_browser.py"
    recorder.write_text("import sys, pathlib\npathlib.Path(sys.argv[1]).write_text(sys.argv[2])\n")
    # A stand-in browser that writes down the URL it was asked to open: no real browser starts.
    env = _env(tmp_path, BROWSER=f"{sys.executable} {recorder} {opened} %s")
    log = tmp_path / "app.log"
    proc = _start(["--port", str(port), *flags], env, log)
    try:
        _wait_healthy(proc, port, log)
        children = _descendants(proc.pid)
        assert children, "the dashboard should run in a Streamlit child process"
        if not flags:  # rgvlm app opens the browser once it sees the server healthy: give it that moment
            _wait_for_file(opened, proc, log)
        proc.send_signal(stop)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    output = log.read_text()
    assert "Email" not in output, output
    assert not [pid for pid in children if _alive(pid)], f"Streamlit outlived rgvlm app:\n{output}"
    assert _port_free(port), f"port {port} still taken after rgvlm app stopped:\n{output}"
    assert f"http://127.0.0.1:{port}" in output
    if flags == ["--no-browser"]:
        assert not opened.exists()
    else:
        assert opened.read_text() == f"http://127.0.0.1:{port}"


def test_app_on_a_taken_port_says_so_in_one_red_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "rgvlm_core.cli", "app", "--port", str(port), "--no-browser"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=_env(tmp_path),
            timeout=120,
        )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert f"port {port}" in lines[0] and "--port" in lines[0]


def test_a_browser_is_opened_only_where_one_can_show_the_page() -> None:
    from rgvlm_core.cli.app_cmd import browser_plausible

    assert not browser_plausible({}, "linux")  # a server over ssh: webbrowser would start lynx
    assert browser_plausible({"DISPLAY": ":0"}, "linux")
    assert browser_plausible({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert browser_plausible({"BROWSER": "firefox"}, "linux")
    assert browser_plausible({}, "darwin")


def test_streamlit_always_runs_headless_whatever_the_browser_flag() -> None:
    from rgvlm_core.cli.app_cmd import streamlit_command

    cmd = streamlit_command("127.0.0.1", 8501)
    assert cmd[cmd.index("--server.headless") + 1] == "true"
