"""Offline datasets built once per workspace state and shared between processes as memory maps.

`cached_dataset` takes the same arguments as `build_dataset` and returns the same arrays, read from
`<workspace>/rl_cache/datasets/<key>/` as read-only `np.memmap`s: one `.npy` per array and `meta.json`
for the rest. The key digests everything the dataset depends on (see `dataset_key`), so a stale
dataset is never read; a folder that fails its checks (missing or truncated file, wrong shape or
dtype, another format version) is rebuilt, never trusted. Worker processes get the folder
(`dataset_dir`) and open it with `load_cached`: the operating system's page cache holds one copy of
the data for all of them.

Writes are atomic: a builder writes a temporary folder beside the final one and renames it into
place, under a per-key lock, so a second builder waits and then reads the first one's folder, and a
builder killed midway leaves only a temporary folder (swept by the next build).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.rl.dataset import (
    FailedPolicy,
    OfflineArrays,
    RewardSource,
    StateSource,
    build_dataset,
)
from rgvlm_core.rl.encoder import InstructionEncoder
from rgvlm_core.workspace import StoreReader
from rgvlm_core.workspace.files import fsync_dir, pid_alive

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the folder format or the meaning of an array changes
CACHE_SUBDIR = Path("rl_cache") / "datasets"
META_FILE = "meta.json"
ARRAY_FIELDS: tuple[str, ...] = (
    "states",
    "next_states",
    "instruction_ids",
    "next_instruction_ids",
    "instruction_table",
    "actions",
    "rewards",
    "dones",
    "masks",
)
STORE_TABLES: tuple[str, ...] = ("episodes", "trajectories", "steps", "subtasks")  # build_dataset's SQL
# Modules whose code decides the arrays' values: an edit to any of them is a new key, as a bumped
# CACHE_VERSION would be, so a forgotten bump cannot serve arrays an older build made.
_CODE_MODULES: tuple[str, ...] = (
    "rgvlm_core.rl.dataset",
    "rgvlm_core.labeling.rewards",
    "rgvlm_core.labeling.store",
    "rgvlm_core.catalog",
    "rgvlm_core.sim.encode",
    "rgvlm_core.sim.serialize",
    "rgvlm_core.sim.world",
    "rgvlm_core.sim.low.encode",  # the low level's vector, mask, state parser and the pose graph
    "rgvlm_core.sim.low.world",
    "rgvlm_core.sim.low.serialize",
    "rgvlm_core.sim.low.floorplan",
    "rgvlm_core.sim.low.nav",
    "rgvlm_core.alfred.features",
    "rgvlm_core.alfred.level",  # the ALFRED level: replayed households, their vector, mask and rules
    "rgvlm_core.alfred.level_state",
    "rgvlm_core.alfred.replay",
    "rgvlm_core.alfred.world",
    "rgvlm_core.alfred.replay_scene",
    "rgvlm_core.alfred.thor_facts",
)
_BUILD_ATTEMPTS = 3
_TMP_PREFIX = ".tmp-"


@dataclasses.dataclass
class CachedArrays(OfflineArrays):
    """OfflineArrays whose arrays are read-only memory maps of the `.npy` files in `directory`."""

    directory: Path = Path()
    _origin: tuple[np.ndarray, ...] = dataclasses.field(default=(), repr=False)  # the maps as opened

    def to_tensors(self) -> Any:
        """Tensors over copy-on-write maps of the same files: no copy of the data and no warning.

        `torch.from_numpy` on the read-only maps warns (torch cannot mark a tensor read-only), and
        copying would cost one private copy of the dataset per process. A copy-on-write map
        (`mmap_mode="c"`) is writable, shares the page cache with every other process until a page
        is written, and a write (the learner makes none) never reaches the file.
        """
        import torch

        from rgvlm_core.rl.iql import OfflineTensors

        def mapped(name: str) -> Any:
            return torch.from_numpy(_open_array(self.directory, name, "c"))

        return OfflineTensors(
            states=mapped("states"),
            next_states=mapped("next_states"),
            instruction_ids=mapped("instruction_ids"),
            next_instruction_ids=mapped("next_instruction_ids"),
            instruction_table=mapped("instruction_table"),
            actions=mapped("actions"),
            rewards=mapped("rewards"),
            dones=mapped("dones"),
            masks=mapped("masks"),
        )


def cached_dataset(
    reader: StoreReader,
    source: RewardSource,
    encoder: InstructionEncoder,
    flt: EpisodeFilter = EpisodeFilter(),
    failed: FailedPolicy = "sparse",
    states: StateSource = "sim",
) -> OfflineArrays:
    """`build_dataset(...)`, built once per key and then memory-mapped from the workspace cache.

    Returns CachedArrays; only where the store kept changing under every build attempt (the key read
    before a build differed from the one after it) it returns the last build's in-memory arrays,
    which `dataset_dir` answers None for.
    """
    root = reader.workspace.root / CACHE_SUBDIR
    built: OfflineArrays | None = None
    for _ in range(_BUILD_ATTEMPTS):
        key = dataset_key(reader, source, encoder, flt, failed, states)
        final = root / key
        hit = _try_load(final)
        if hit is not None:
            return hit
        with reader.workspace.lock(f"dataset-{key}"):
            hit = _try_load(final)  # another process may have built it while we waited
            if hit is not None:
                return hit
            built = build_dataset(reader, source, encoder, flt, failed, states)
            if dataset_key(reader, source, encoder, flt, failed, states) == key:
                return _publish(final, built)
        log.info("the store changed while dataset %s was built; building again", key)
    log.warning(
        "the store kept changing during %d dataset builds; using the last one uncached", _BUILD_ATTEMPTS
    )
    assert built is not None
    return built


def dataset_key(
    reader: StoreReader,
    source: RewardSource,
    encoder: InstructionEncoder,
    flt: EpisodeFilter = EpisodeFilter(),
    failed: FailedPolicy = "sparse",
    states: StateSource = "sim",
) -> str:
    """A digest of everything the dataset depends on (24 hex digits).

    The shard lists (and schema versions) of the tables build_dataset reads; for a label run, a
    digest of that run's label and override rows instead of the shard lists of those tables (any
    run's commit adds a shard there, and label runs commit every few seconds while they work); the
    reward source (text, kind, resolved run id, lambda), the filter, the failed-label policy, the
    state source, the encoder's name and size, CACHE_VERSION and the code that computes the arrays.
    """
    snap = reader.refresh()
    doc = {
        "cache_version": CACHE_VERSION,
        "code": _code_digest(),
        "tables": {
            t: [snap.tables[t].schema_version if t in snap.tables else None, list(snap.files(t))]
            for t in STORE_TABLES
        },
        "labels": _label_digest(reader, source.run_id) if source.run_id is not None else None,
        "source": dataclasses.asdict(source),
        "filter": dataclasses.asdict(flt),
        "failed": failed,
        "states": states,
        "encoder": [encoder.name, int(encoder.dim)],
    }
    raw = json.dumps(doc, sort_keys=True, default=str).encode()
    return hashlib.sha256(raw).hexdigest()[:24]


def dataset_dir(arrays: OfflineArrays) -> Path | None:
    """The cache folder to hand to another process (`load_cached` opens it), or None for arrays that
    are not, or no longer, exactly the cached files (built uncached, or fields replaced since)."""
    if not isinstance(arrays, CachedArrays) or len(arrays._origin) != len(ARRAY_FIELDS):
        return None
    same = all(getattr(arrays, n) is o for n, o in zip(ARRAY_FIELDS, arrays._origin, strict=True))
    return arrays.directory if same else None


def load_cached(path: Path | str) -> CachedArrays:
    """Open a cache folder written by `cached_dataset` (checked as on every cache hit)."""
    from rgvlm_core.errors import RGVLMError

    arrays = _try_load(Path(path))
    if arrays is None:
        raise RGVLMError(
            f"{path} is not a complete dataset cache folder (missing, partial or another version); "
            "build it again with cached_dataset"
        )
    return arrays


# -- reading -----------------------------------------------------------------------------------
def _try_load(folder: Path) -> CachedArrays | None:
    """The folder's arrays, or None when it is absent or fails a check (then it is rebuilt)."""
    if not folder.is_dir():
        return None
    try:
        meta = json.loads((folder / META_FILE).read_text())
        if meta.get("cache_version") != CACHE_VERSION:
            return None
        arrays = {name: _open_array(folder, name, "r") for name in ARRAY_FIELDS}
        for name, spec in meta["arrays"].items():
            if list(arrays[name].shape) != spec["shape"] or str(arrays[name].dtype) != spec["dtype"]:
                raise ValueError(f"{name}: {arrays[name].shape} {arrays[name].dtype}, meta says {spec}")
        return CachedArrays(
            **arrays,
            instructions=list(meta["instructions"]),
            n_actions=int(meta["n_actions"]),
            action_tokens=list(meta["action_tokens"]),
            info=dict(meta["info"]),
            directory=folder,
            _origin=tuple(arrays[name] for name in ARRAY_FIELDS),
        )
    except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        log.warning("dataset cache %s is unusable (%s); it will be rebuilt", folder, exc)
        return None


def _open_array(folder: Path, name: str, mode: str) -> np.ndarray:
    """One array file as a memory map: "r" read-only, "c" copy-on-write (see CachedArrays)."""
    return np.load(folder / f"{name}.npy", mmap_mode=mode, allow_pickle=False)  # type: ignore[arg-type]


# -- writing -----------------------------------------------------------------------------------
def _publish(final: Path, arrays: OfflineArrays) -> CachedArrays:
    """Write the arrays to a temporary folder beside `final`, rename it into place, open it.

    An existing `final` here failed its checks (the caller holds the key's lock and found no usable
    folder): it is moved aside and removed. Where a rename still finds a folder in place (a builder
    that does not take the lock), that folder wins and ours is removed.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep_temporaries(final.parent)
    tmp = final.parent / f"{_TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:8]}"
    _write_folder(tmp, arrays)
    if final.exists():
        _remove(final)
    try:
        os.rename(tmp, final)
        fsync_dir(final.parent)
    except OSError:
        log.info("dataset cache %s was written by another process first; using it", final.name)
        shutil.rmtree(tmp, ignore_errors=True)
    loaded = _try_load(final)
    if loaded is None:
        raise OSError(f"dataset cache {final} could not be read back after writing it")
    return loaded


def _write_folder(folder: Path, arrays: OfflineArrays) -> None:
    """Every array as .npy, then meta.json last (its presence marks a folder written to the end)."""
    folder.mkdir()
    specs = {}
    for name in ARRAY_FIELDS:
        value = np.ascontiguousarray(getattr(arrays, name))
        with open(folder / f"{name}.npy", "wb") as handle:
            np.save(handle, value, allow_pickle=False)
            handle.flush()
            os.fsync(handle.fileno())
        specs[name] = {"shape": list(value.shape), "dtype": str(value.dtype)}
    meta = {
        "cache_version": CACHE_VERSION,
        "arrays": specs,
        "instructions": list(arrays.instructions),
        "n_actions": int(arrays.n_actions),
        "action_tokens": list(arrays.action_tokens),
        "info": arrays.info,
    }
    (folder / META_FILE).write_text(json.dumps(meta, indent=1, default=_json_default))
    fsync_dir(folder)


def _json_default(value: Any) -> Any:
    """numpy scalars in `info` as plain numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _remove(folder: Path) -> None:
    """Rename aside first, so no reader ever sees a half-deleted folder under the key's name."""
    trash = folder.parent / f"{_TMP_PREFIX}{os.getpid()}-trash-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _sweep_temporaries(parent: Path) -> None:
    """Remove temporary folders of builders that no longer run (killed midway)."""
    for entry in parent.glob(f"{_TMP_PREFIX}*"):
        try:
            pid = int(entry.name[len(_TMP_PREFIX) :].split("-")[0])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            shutil.rmtree(entry, ignore_errors=True)


# -- key parts ---------------------------------------------------------------------------------
def _label_digest(reader: StoreReader, run_id: str) -> list[Any]:
    """Counts and order-free digests of the run's label rows and override rows: every column that
    `effective_labels` reads, so a new, changed or overriding row is a new key."""
    labels = reader.rows(
        "SELECT count(*) AS n, sum(hash(episode_id, t, segment_id, score, status))::VARCHAR AS h "
        "FROM labels WHERE run_id = ?",
        [run_id],
    )[0]
    overrides = reader.rows(
        "SELECT count(*) AS n, sum(hash(episode_id, t, score, reason, created_at))::VARCHAR AS h "
        "FROM overrides WHERE run_id = ?",
        [run_id],
    )[0]
    return [labels["n"], labels["h"], overrides["n"], overrides["h"]]


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    """A digest of the source files of the modules that compute the arrays (read once per process,
    without importing them)."""
    digest = hashlib.sha256()
    for name in _CODE_MODULES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ImportError(f"no source for {name}")
        digest.update(name.encode() + b"\0" + Path(spec.origin).read_bytes())
    return digest.hexdigest()[:16]


__all__ = [
    "CACHE_VERSION",
    "CachedArrays",
    "cached_dataset",
    "dataset_dir",
    "dataset_key",
    "load_cached",
]
