"""Reading an import folder we cannot trust: regular files only, never more than a cap, and folders only
where folders belong.

An import folder may hold anything where a traj_data.json, a feat_conv.pt, a frame or a task folder
should be: a symbolic link loop, a dangling link, a FIFO (opening one for reading blocks until a writer
comes), a link to /dev/zero (endless), a folder, a sparse file of a terabyte. Each must become one
refusal naming the path and what it is, never a hang, a MemoryError or a silent skip. So the type is
checked with os.stat on the resolved path before anything is opened, the file is opened with
O_NONBLOCK and checked again on the open descriptor (it may have been swapped meanwhile), and at most
cap + 1 bytes are read whatever the size claims to be. Links to regular files and folders are fine.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from rgvlm_core.alfred.checks import one_line

# ALFRED's traj_data.json files are under 1 MiB (the largest of the 412 real samples: 0.66 MB) and its
# splits file oct21.json a few MB; 64 MiB leaves room for any real file and refuses a runaway one.
MAX_JSON_BYTES = 64 << 20
# feat_conv.pt holds [T, 512, 7, 7] float32 rows of 100,352 bytes: 1 GiB is T = 10,700, ten times the
# longest ALFRED trajectory. It is memory-mapped, so the cap guards the whole-file fallback load.
MAX_FEATURES_BYTES = 1 << 30
# A frame: ALFRED's are 300x300 JPEGs of ~20 KB; a generous cap that still bounds what a label run reads
# when a frame was replaced (by a FIFO, a link to /dev/zero, a huge file) after the import checked it.
MAX_FRAME_BYTES = 32 << 20
_CHUNK = 1 << 20

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISREG, "a regular file"),
)


class RefusedPath(Exception):
    """A path that is not what the import expects; `reason` says what it is instead, in one line."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


def kind_of(mode: int) -> str:
    """What a stat mode describes, in words ("a FIFO (named pipe)", "a folder", ...)."""
    for test, name in _KINDS:
        if test(mode):
            return name
    return "an unknown kind of file"


def _via_link(path: Path, kind: str) -> str:
    """`kind`, prefixed with the link's target when `path` is a symbolic link (to say why)."""
    try:
        return f"a link to {os.readlink(path)}, {kind}"
    except OSError:  # not a link
        return kind


def resolve_stat(path: Path) -> os.stat_result:
    """os.stat following links; a loop, a dangling link or an unreadable path is a RefusedPath."""
    try:
        return os.stat(path)
    except OSError as exc:
        raise RefusedPath(path, _stat_problem(path, exc)) from None


def _stat_problem(path: Path, exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "not a file: a symbolic link loop"
    if exc.errno in (errno.ENOENT, errno.ENOTDIR) and os.path.islink(path):
        return f"not a file: a dangling link to {os.readlink(path)}, which does not exist"
    return f"cannot be read: {one_line(exc.strerror or exc)}"


def regular_file(path: Path, max_bytes: int) -> os.stat_result:
    """The stat of `path` (links followed) if it is a regular file of at most `max_bytes`; else RefusedPath.

    For files opened by others by name (torch.load memory-maps feat_conv.pt); read_capped is the
    safe way to read bytes.
    """
    info = resolve_stat(path)
    if not stat.S_ISREG(info.st_mode):
        raise RefusedPath(path, f"not a regular file: {_via_link(path, kind_of(info.st_mode))}")
    if info.st_size > max_bytes:
        raise RefusedPath(path, _too_big(max_bytes))
    return info


def file_problem(path: Path) -> str | None:
    """Why `path` (links followed) is not a regular file, or None when it is one (of any size)."""
    try:
        regular_file(path, max_bytes=1 << 62)
    except RefusedPath as refused:
        return refused.reason
    return None


def _too_big(max_bytes: int) -> str:
    return f"larger than {max_bytes >> 20} MiB, the limit for this file (not a file of the ALFRED format)"


def read_capped(path: Path, max_bytes: int = MAX_JSON_BYTES) -> bytes:
    """The bytes of the regular file `path`: at most max_bytes, else RefusedPath; never blocks.

    The size is never trusted (a file may grow, or report 0 like /proc files): at most max_bytes + 1
    bytes are read, and one more than the cap means the file is refused.
    """
    regular_file(path, max_bytes)
    data = _read_at_most(path, max_bytes + 1)
    if len(data) > max_bytes:
        raise RefusedPath(path, _too_big(max_bytes))
    return data


def read_head(path: Path, n_bytes: int) -> bytes:
    """The first n_bytes (or fewer) of the regular file `path`, to recognise its format; never blocks."""
    resolve_stat(path)
    return _read_at_most(path, n_bytes)


def _read_at_most(path: Path, limit: int) -> bytes:
    """Open with O_NONBLOCK (a FIFO swapped in since the stat cannot block us), check the open
    descriptor is a regular file, and read at most `limit` bytes."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise RefusedPath(path, _stat_problem(path, exc)) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise RefusedPath(path, f"not a regular file: {_via_link(path, kind_of(mode))}")
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(_CHUNK, left))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise RefusedPath(path, f"cannot be read: {one_line(exc.strerror or exc)}") from None
    finally:
        os.close(fd)
    return b"".join(chunks)


def folder_problem(path: Path) -> str | None:
    """Why `path` (links followed) is not a folder, or None when it is one."""
    try:
        info = resolve_stat(path)
    except RefusedPath as refused:
        return refused.reason.replace("not a file:", "not a folder:")
    if stat.S_ISDIR(info.st_mode):
        return None
    return f"not a folder: {_via_link(path, kind_of(info.st_mode))}"


def list_folder(path: Path) -> list[os.DirEntry[str]]:
    """The entries of a folder sorted by name, hidden ones (.DS_Store, ._x) left out; else RefusedPath."""
    try:
        with os.scandir(path) as entries:
            return sorted((e for e in entries if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as exc:
        raise RefusedPath(path, f"cannot list the folder: {one_line(exc.strerror or exc)}") from None
