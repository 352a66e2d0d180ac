"""Where ALFRED data lies on disk: the import root, its trajectory files and its splits file.

Layout (alfred-format.md): `<root>/<split>/<task_dir>/<trial>/traj_data.json` for train and valid,
`<root>/<split>/<trial>/traj_data.json` for the test splits. A splits file (`oct21.json`) maps each
split to `{"task": "<task_dir>/<trial>" or "<trial>", "repeat_idx": k}` entries, one per annotation.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from rgvlm_core.alfred.checks import (
    FieldError,
    as_dict,
    as_int,
    as_list,
    as_str,
    json_type,
    member,
    one_line,
    short,
)
from rgvlm_core.alfred.files import RefusedPath, folder_problem, list_folder, read_capped
from rgvlm_core.errors import DataFormatError, RGVLMError, UsageError

log = logging.getLogger(__name__)

ALFRED_SPLITS: tuple[str, ...] = ("train", "valid_seen", "valid_unseen", "tests_seen", "tests_unseen")
# the splits whose trajectories can be evaluation tasks (tests carry no plan), seen and unseen scenes first
EVAL_SPLITS: tuple[str, ...] = ("valid_seen", "valid_unseen", "train")
TEST_SPLITS: frozenset[str] = frozenset({"tests_seen", "tests_unseen"})
TRAJECTORY_FILE = "traj_data.json"
SPLITS_FILE_NAMES = ("oct21.json", "splits*.json")  # file names find_splits_file looks for, in order


def check_splits(splits: Sequence[str] | None) -> tuple[str, ...]:
    """The chosen splits in ALFRED's order (all when None); an unknown name is a UsageError."""
    if splits is None:
        return ALFRED_SPLITS
    if isinstance(splits, str):
        splits = (splits,)
    unknown = [s for s in splits if s not in ALFRED_SPLITS]
    if unknown:
        raise UsageError(f"unknown ALFRED split {unknown[0]!r}; choose from {', '.join(ALFRED_SPLITS)}")
    return tuple(s for s in ALFRED_SPLITS if s in splits)


def _has_split_folders(path: Path) -> bool:
    return any((path / split).is_dir() for split in ALFRED_SPLITS)


def find_alfred_root(path: Path) -> Path:
    """The folder holding the split folders: `path` itself, or its only child that holds them.

    Accepts e.g. `.../json_2.1.0` or `.../alfred` containing `json_2.1.0`; raises RGVLMError otherwise.
    """
    path = Path(path)
    problem = (
        f"{path}: not an ALFRED-format folder: expected split folders "
        f"{', '.join(s + '/' for s in ALFRED_SPLITS[:2])}, ... or a traj_data.json below"
    )
    not_folder = folder_problem(path)
    if not_folder is not None:
        raise RGVLMError(
            f"{problem} (no such folder)" if not os.path.lexists(path) else f"{path}: {not_folder}"
        )
    if _has_split_folders(path):
        return path
    try:
        children = list_folder(path)
    except RefusedPath as exc:
        raise RGVLMError(f"{path}: {exc.reason}") from None
    found = [Path(c.path) for c in children if _is_folder(c) and _has_split_folders(Path(c.path))]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(child.name for child in found)
        raise RGVLMError(f"{problem} (several candidates: {names}; pass one of them)")
    if path.name in ALFRED_SPLITS:
        raise RGVLMError(f"{problem} ({path.name} is itself a split folder; pass its parent {path.parent})")
    raise RGVLMError(problem)


@dataclass(frozen=True)
class Entry:
    """A trajectory file found under the import root, or an entry refused on the way to one.

    `problem` None: `path` is `<split>/.../traj_data.json` (of any file type; the reader checks it).
    Otherwise `path` is a split, task or trial entry that should be a folder and is not, or could
    not be listed, and `problem` says why in one line.
    """

    split: str
    path: Path
    problem: str | None = None


def scan_trajectory_files(root: Path, splits: Sequence[str] | None = None) -> list[Entry]:
    """Every traj_data.json under `root` and every refused entry on the way, in split then path order.

    Walks `<split>/<task_dir>/<trial>/` (`<split>/<trial>/` for test splits) one listing per folder.
    An entry where a folder belongs that is not one (a file, a FIFO, a dangling link, a loop) is
    refused by name, never skipped silently; hidden entries (.DS_Store) are left out, and a trial
    folder without a traj_data.json is not a trajectory.
    """
    root = Path(root)
    found: list[Entry] = []
    for split in check_splits(splits):
        split_dir = root / split
        if not os.path.lexists(split_dir):
            continue
        problem = folder_problem(split_dir)
        if problem is not None:
            found.append(Entry(split, split_dir, problem))
        else:
            found.extend(_scan_folder(split, split_dir, 1 if split in TEST_SPLITS else 2))
    return found


def _scan_folder(split: str, folder: Path, depth: int) -> list[Entry]:
    """Entries under `folder`, a folder holding trial folders `depth` levels down."""
    try:
        children = list_folder(folder)
    except RefusedPath as refused:
        return [Entry(split, folder, refused.reason)]
    found: list[Entry] = []
    for child in children:
        path = Path(child.path)
        if not _is_folder(child):  # the listing's file type: no stat unless the entry is a link
            found.append(Entry(split, path, folder_problem(path) or "not a folder"))
        elif depth > 1:
            found.extend(_scan_folder(split, path, depth - 1))
        elif os.path.lexists(path / TRAJECTORY_FILE):
            found.append(Entry(split, path / TRAJECTORY_FILE))
    return found


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()  # follows links; a link loop raises
    except OSError:
        return False


def list_trajectory_files(root: Path, splits: Sequence[str] | None = None) -> list[tuple[str, Path]]:
    """(split, traj_data.json path) for every trajectory under `root`, in split order then by path.

    A traj_data.json is listed whatever its file type, so that the reader refuses it by name.
    """
    return [(e.split, e.path) for e in scan_trajectory_files(root, splits) if e.problem is None]


def trajectory_path(root: Path, split: str, task: str) -> Path:
    """Where the splits-file entry `task` of `split` lies: `<root>/<split>/<task>/traj_data.json`."""
    return Path(root) / split / task / TRAJECTORY_FILE


@dataclass(frozen=True)
class SplitsSearch:
    """Where find_splits_file looked: the file chosen (or None) and candidates refused on the way."""

    path: Path | None
    refused: tuple[DataFormatError, ...] = ()


def find_splits_file(root: Path) -> Path | None:
    """oct21.json or splits*.json in root, root/splits, root's parent or its splits/ (first wins).

    Only a JSON object whose keys are all split names counts; other files are skipped.
    """
    return search_splits_file(root).path


def search_splits_file(root: Path) -> SplitsSearch:
    """find_splits_file, also returning the candidates that were no readable file (a FIFO, a link to
    /dev/zero, a folder, a giant file): each is an error naming it, so it is reported, not skipped."""
    root = Path(root)
    refused: list[DataFormatError] = []
    for folder in (root, root / "splits", root.parent, root.parent / "splits"):
        if not folder.is_dir():
            continue
        candidates = [folder / SPLITS_FILE_NAMES[0], *sorted(folder.glob(SPLITS_FILE_NAMES[1]))]
        for candidate in candidates:
            if not os.path.lexists(candidate):
                continue
            try:
                data = read_capped(candidate)
            except RefusedPath as exc:
                problem = f"not used as the splits file: {exc.reason}"
                refused.append(DataFormatError(str(candidate), "", problem))
                continue
            if _looks_like_splits(candidate, data):
                log.info("using splits file %s", candidate)
                return SplitsSearch(candidate, tuple(refused))
    return SplitsSearch(None, tuple(refused))


def _looks_like_splits(path: Path, data: bytes) -> bool:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        log.debug("not a splits file: %s (%s)", path, one_line(exc))
        return False
    return type(doc) is dict and bool(doc) and all(key in ALFRED_SPLITS for key in doc)


def load_splits(path: Path) -> dict[str, list[tuple[str, int]]]:
    """split -> [(task, repeat_idx)] from a splits file; DataFormatError naming the file and field.

    `task` is "<task_dir>/<trial>" (train, valid) or "<trial>" (test splits); repeat_idx >= 0.
    """
    path = Path(path)
    source = str(path)
    try:
        doc = orjson.loads(read_capped(path))
    except RefusedPath as exc:
        raise DataFormatError(source, "", exc.reason) from None
    except orjson.JSONDecodeError as exc:
        problem = f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise DataFormatError(source, "(json)", problem) from exc
    try:
        return _parse_splits(doc)
    except FieldError as exc:
        raise DataFormatError(source, exc.field, exc.problem) from None


def _parse_splits(doc: Any) -> dict[str, list[tuple[str, int]]]:
    if type(doc) is not dict:
        raise FieldError(
            "", f"expected a JSON object mapping split names to entry lists, got {json_type(doc)}"
        )
    result: dict[str, list[tuple[str, int]]] = {}
    for split, entries in doc.items():
        if split not in ALFRED_SPLITS:
            raise FieldError(
                split, f"unknown split name {short(split)}; expected one of {', '.join(ALFRED_SPLITS)}"
            )
        parsed = []
        for i, entry in enumerate(as_list(entries, split)):
            field = f"{split}[{i}]"
            entry = as_dict(entry, field)
            task = as_str(member(entry, "task", field), f"{field}.task")
            repeat_idx = as_int(member(entry, "repeat_idx", field), f"{field}.repeat_idx")
            if repeat_idx < 0:
                raise FieldError(
                    f"{field}.repeat_idx", f"expected an annotation index >= 0, got {repeat_idx}"
                )
            _check_task(task, split, f"{field}.task")
            parsed.append((task, repeat_idx))
        result[split] = parsed
    return result


def _check_task(task: str, split: str, field: str) -> None:
    parts = task.split("/")
    expected = 1 if split in TEST_SPLITS else 2
    shape = "'<trial>'" if expected == 1 else "'<task_dir>/<trial>'"
    if len(parts) != expected or any(part in ("", ".", "..") for part in parts):
        raise FieldError(field, f"expected {shape} for split {split}, got {short(task)}")
