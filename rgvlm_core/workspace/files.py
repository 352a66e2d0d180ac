"""Crash-safe file primitives: atomic replace, advisory locks, and named fault-injection points.

Everything the store guarantees under concurrency and SIGKILL rests on two POSIX facts: `rename`
within one file system is atomic, and an `flock` dies with its process (no stale locks).
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PAUSE_ENV = "RGVLM_PAUSE_AT"
PAUSE_MARKER_ENV = "RGVLM_PAUSE_MARKER"


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(final: Path) -> Path:
    """A per-process temporary name beside `final`; readers never glob or read these."""
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")


def atomic_write_bytes(final: Path, data: bytes) -> None:
    """Write `data` so that `final` holds either its old content or all of `data`, never a mix."""
    tmp = temp_name(final)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    pause_point("atomic-write-before-rename")
    os.replace(tmp, final)
    fsync_dir(final.parent)


@contextmanager
def file_lock(path: Path, *, timeout_s: float = 120.0) -> Iterator[None]:
    """Hold an exclusive advisory lock on `path`; released on exit or when the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not lock {path} within {timeout_s:.0f} s") from exc
                time.sleep(0.005)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_pause_hits: dict[str, int] = {}


def pause_point(name: str) -> None:
    """Fault injection for crash tests: stop here forever when RGVLM_PAUSE_AT names this point.

    The crash tests set RGVLM_PAUSE_AT (`point` or `point@N` for its N-th hit), wait for the marker
    file, then SIGKILL the process, so a kill lands at an exact instant of a write instead of
    wherever a timer happens to fall.
    """
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _pause_hits[name] = _pause_hits.get(name, 0) + 1
    if _pause_hits[name] != int(nth or 1):
        return
    marker = os.environ.get(PAUSE_MARKER_ENV)
    if marker:
        Path(marker).write_text(f"{os.getpid()} {name}\n")
    while True:
        time.sleep(3600)
