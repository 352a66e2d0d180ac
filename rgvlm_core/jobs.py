"""Jobs: CLI commands started as detached processes, recorded in the workspace, polled and cancelled.

Each job is a folder `workspace/jobs/<job_id>/` holding small files, each written atomically:
  job.json       what was started: name, arguments, pid and the process's start time, when
  progress.json  written by the job itself while it runs (done, total, info)
  log.txt        everything the command printed
  exit.json      written by the job as it ends: done, failed (with the error) or cancelled
A job whose process is gone without an exit.json was killed or crashed and shows as failed, never as
running forever; the process's start time guards against a recycled pid. A job outlives the browser
tab (and the dashboard process) that started it. Cancel sends SIGTERM to the job's process group;
the command stops cleanly (a label run commits what it has finished), or is killed after a timeout.
job.json records the arguments with credentials masked (rgvlm_core.redact): a key inside a
`--base-url` reaches the process, never the workspace.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rgvlm_core.errors import RGVLMError
from rgvlm_core.redact import redact_args
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.files import atomic_write_bytes

JOB_DIR_ENV = "RGVLM_JOB_DIR"
STATUSES = ("running", "done", "failed", "cancelled")
_CHILDREN: dict[str, subprocess.Popen[bytes]] = {}  # handles of jobs this process started (reaped on poll)


@dataclass(frozen=True)
class Job:
    """What is known of a job now."""

    job_id: str
    name: str
    args: tuple[str, ...]
    pid: int
    started_at: str
    status: str  # running | done | failed | cancelled
    done: int = 0
    total: int | None = None
    info: str = ""
    exit_code: int | None = None
    error: str | None = None
    finished_at: str | None = None
    log_path: str = ""

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)

    @property
    def command(self) -> str:
        return " ".join(["rgvlm", *self.args])


def jobs_dir(workspace: Workspace) -> Path:
    return workspace.root / "jobs"


def start_job(
    workspace: Workspace, args: list[str], *, name: str, env: Mapping[str, str] | None = None
) -> Job:
    """Start `rgvlm -w WORKSPACE <args>` detached from the caller; returns at once.

    `env` adds to the caller's environment: the way to hand a job a secret, which a command line
    (visible to every user of the machine while the job runs) must not carry.
    """
    if not args:
        raise RGVLMError("a job needs a command")
    job_id = f"{dt.datetime.now():%Y%m%d-%H%M%S}-{_slug(name)}-{uuid.uuid4().hex[:4]}"
    folder = jobs_dir(workspace) / job_id
    folder.mkdir(parents=True)
    log = open(folder / "log.txt", "wb")  # noqa: SIM115 - handed to the child, closed below
    child_env = {**os.environ, **(env or {}), JOB_DIR_ENV: str(folder), "PYTHONUNBUFFERED": "1"}
    child_env["COLUMNS"] = "120"
    cmd = [sys.executable, "-m", "rgvlm_core.cli", "-w", str(workspace.root), *args]
    try:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env,
            start_new_session=True,
        )
    finally:
        log.close()
    _CHILDREN[job_id] = proc
    record = {
        "job_id": job_id,
        "name": name,
        "args": redact_args(args),  # the process got the real ones; the record keeps no key
        "pid": proc.pid,
        "pid_start": _start_time(proc.pid),
        "started_at": _now(),
    }
    _write(folder / "job.json", record)
    return get_job(workspace, job_id)


def get_job(workspace: Workspace, job_id: str) -> Job:
    folder = jobs_dir(workspace) / job_id
    record = _read(folder / "job.json")
    if record is None:
        raise RGVLMError(f"no job {job_id!r} in {workspace.root}")
    child = _CHILDREN.get(job_id)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(job_id, None)  # reaped: no zombie left behind
    progress = _read(folder / "progress.json") or {}
    end = _read(folder / "exit.json")
    if end is not None:
        status, code, error, finished = (
            end["status"],
            end.get("code"),
            end.get("error"),
            end.get("finished_at"),
        )
    elif _alive(record["pid"], record.get("pid_start")):
        status, code, error, finished = "running", None, None, None
    else:
        status, code, finished = "failed", None, None
        error = "the process ended without reporting (killed or crashed); see its log"
    return Job(
        job_id=job_id,
        name=record["name"],
        args=tuple(record["args"]),
        pid=record["pid"],
        started_at=record["started_at"],
        status=status,
        done=int(progress.get("done", 0)),
        total=progress.get("total"),
        info=str(progress.get("info", "")),
        exit_code=code,
        error=error,
        finished_at=finished,
        log_path=str(folder / "log.txt"),
    )


def list_jobs(workspace: Workspace, limit: int = 50) -> list[Job]:
    """The newest jobs first."""
    folder = jobs_dir(workspace)
    if not folder.is_dir():
        return []
    ids = sorted((p.name for p in folder.iterdir() if (p / "job.json").exists()), reverse=True)[:limit]
    return [get_job(workspace, job_id) for job_id in ids]


def cancel_job(workspace: Workspace, job_id: str, timeout_s: float = 10.0) -> Job:
    """Ask a running job to stop (SIGTERM to its process group); kill it if it does not in time."""
    job = get_job(workspace, job_id)
    if job.status != "running":
        return job
    _signal_group(job.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = get_job(workspace, job_id)
        if job.status != "running":
            return job
        time.sleep(0.05)
    _signal_group(job.pid, signal.SIGKILL)
    _write(
        jobs_dir(workspace) / job_id / "exit.json",
        {"status": "cancelled", "code": -9, "error": f"killed after {timeout_s:g} s", "finished_at": _now()},
    )
    return get_job(workspace, job_id)


def read_log(job: Job, max_chars: int = 20_000) -> str:
    """The end of a job's log."""
    try:
        data = Path(job.log_path).read_bytes()
    except OSError:
        return ""
    return data[-max_chars:].decode("utf-8", errors="replace")


# -- inside the job process ------------------------------------------------------------------------
class JobCancelled(BaseException):  # a signal, like KeyboardInterrupt, not an error
    """Raised in a job's main thread when it is asked to stop (SIGTERM)."""


class _Reporter:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.last = 0.0

    def progress(self, done: int, total: int | None, info: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.last >= 0.25 or (total is not None and done >= total):
            _write(
                self.folder / "progress.json",
                {"done": done, "total": total, "info": info, "updated_at": _now()},
            )
            self.last = now

    def finish(self, status: str, code: int, error: str | None = None) -> None:
        _write(
            self.folder / "exit.json", {"status": status, "code": code, "error": error, "finished_at": _now()}
        )


def _reporter() -> _Reporter | None:
    folder = os.environ.get(JOB_DIR_ENV)
    return _Reporter(Path(folder)) if folder else None


def report_progress(done: int, total: int | None, info: str = "", *, force: bool = False) -> None:
    """Called by long commands; a no-op outside a job, throttled inside one (`force`: write it anyway,
    for a change the page must not miss, such as a finished run)."""
    reporter = _reporter()
    if reporter is not None:
        _REPORTERS.setdefault(str(reporter.folder), reporter).progress(done, total, info, force=force)


_REPORTERS: dict[str, _Reporter] = {}


_CANCEL = threading.Event()
_COOPERATIVE = [0]


def cancel_requested() -> bool:
    """Whether this process was asked to stop (loops inside `cooperative()` check it and stop cleanly)."""
    return _CANCEL.is_set()


@contextlib.contextmanager
def cooperative() -> Iterator[None]:
    """A section whose loop checks `cancel_requested()`; outside one, SIGTERM raises JobCancelled at once."""
    _COOPERATIVE[0] += 1
    try:
        yield
    finally:
        _COOPERATIVE[0] -= 1


def install_job_handlers() -> None:
    """In a job process: SIGTERM asks the running command to stop (see `cooperative`)."""
    if _reporter() is None:
        return

    def stop(signum: int, frame: Any) -> None:
        _CANCEL.set()
        if _COOPERATIVE[0] == 0:
            raise JobCancelled()

    signal.signal(signal.SIGTERM, stop)


def record_exit(status: str, code: int, error: str | None = None) -> None:
    """In a job process: say how it ended (no-op outside a job)."""
    reporter = _reporter()
    if reporter is not None:
        reporter.finish(status, code, error)


# -- helpers ---------------------------------------------------------------------------------------
def _write(path: Path, doc: dict[str, Any]) -> None:
    atomic_write_bytes(path, json.dumps(doc, indent=1).encode())


def _read(path: Path) -> dict[str, Any] | None:
    try:
        return dict(json.loads(path.read_bytes()))
    except (OSError, ValueError):
        return None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "job"


def _start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (Linux), to tell it from a later one with its pid."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int, start: int | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)
    if state in ("Z", "X"):
        return False  # a zombie: it has ended
    return start is None or _start_time(pid) == start


def _signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


__all__ = [
    "STATUSES",
    "Job",
    "JobCancelled",
    "cancel_job",
    "get_job",
    "list_jobs",
    "read_log",
    "report_progress",
    "start_job",
]
