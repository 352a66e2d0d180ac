"""The memory-mapped dataset cache (rl.dataset_cache) and the faster simulator observations."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.store import add_override
from rgvlm_core.rl import dataset as dataset_module
from rgvlm_core.rl import dataset_cache
from rgvlm_core.rl.dataset import OfflineArrays, _Observed, build_dataset, parse_reward_source
from rgvlm_core.rl.dataset_cache import (
    ARRAY_FIELDS,
    cached_dataset,
    dataset_dir,
    dataset_key,
    load_cached,
)
from rgvlm_core.rl.encoder import HashEncoder
from rgvlm_core.workspace import Workspace
from tests.conftest import PROJECT_ROOT


def sim_observations_per_row(rows: list[dict[str, Any]]) -> _Observed:
    """`_sim_observations` as it was before issue 12 (one parse per row and step): the yardstick the
    faster version must equal bit for bit (bench/dataset_cache.py times the two)."""
    from rgvlm_core.sim.encode import STATE_DIM, encode
    from rgvlm_core.sim.serialize import state_from_dict
    from rgvlm_core.sim.world import ACTION_INDEX, ACTION_TOKENS, N_ACTIONS, valid_mask

    states = np.zeros((len(rows), STATE_DIM), np.float32)
    next_states = np.zeros_like(states)
    masks = np.zeros((len(rows), N_ACTIONS), bool)
    actions = np.zeros(len(rows), np.int64)
    cache: dict[str, np.ndarray] = {}

    def vector(state_json: str) -> np.ndarray:
        if state_json not in cache:
            cache[state_json] = encode(state_from_dict(json.loads(state_json)))
        return cache[state_json]

    for i, row in enumerate(rows):
        last = row["t"] == row["n_steps"] - 1
        nxt = rows[i + 1]["state"] if not last else row["final_state"]
        states[i], next_states[i] = vector(row["state"]), vector(nxt or row["state"])
        masks[i] = valid_mask(state_from_dict(json.loads(row["state"])))
        actions[i] = ACTION_INDEX[row["action"]]
    return _Observed(states, next_states, actions, masks, list(ACTION_TOKENS), {"states": "sim"})


def step_rows(ws: Workspace) -> list[dict[str, Any]]:
    """The step rows build_dataset reads for the simulator episodes."""
    where, params, traj_where = dataset_module._selection(EpisodeFilter(), "sim")
    reader = ws.reader()
    try:
        return reader.rows(dataset_module._STEP_SQL.format(where=where, traj_where=traj_where), params)
    finally:
        reader.close()


def import_generated(ws: Workspace, out: Path, episodes: int, seed: int) -> None:
    """Generate simulator episodes (no frames) and import them into `ws`."""
    from rgvlm_core.importer import ImportConfig, import_alfred
    from rgvlm_core.sim.generate import GenerateConfig, generate

    config = GenerateConfig(episodes=episodes, seed=seed, frames=False, annotations=2)
    for _ in generate(out, config):
        pass
    for _ in import_alfred(ws, out, ImportConfig()):
        pass


def assert_same_arrays(a: OfflineArrays, b: OfflineArrays) -> None:
    for name in ARRAY_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.shape == y.shape and np.array_equal(x, y), name
    assert a.instructions == b.instructions and a.action_tokens == b.action_tokens
    assert a.n_actions == b.n_actions and a.info == b.info


@pytest.fixture(scope="module")
def labelled_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The sample with its two reference label runs, made once for this module."""
    from rgvlm_core.sample import label_sample
    from tests.labeling_support import sample_workspace

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RGVLM_NO_SAMPLE", "1")
        ws = sample_workspace(tmp_path_factory.mktemp("labelled"), tmp_path_factory.getbasetemp())
        runs = label_sample(ws)
    return ws.root, runs


@pytest.fixture()
def labelled(labelled_template: tuple[Path, list[str]], tmp_path: Path) -> tuple[Workspace, list[str]]:
    root, runs = labelled_template
    shutil.copytree(root, tmp_path / "ws")
    return Workspace.open(tmp_path / "ws"), runs


@pytest.fixture()
def counted_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every build_dataset call the cache makes appends to this list."""
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> OfflineArrays:
        calls.append(1)
        return build_dataset(*args, **kwargs)

    monkeypatch.setattr(dataset_cache, "build_dataset", counting)
    return calls


# -- _sim_observations ---------------------------------------------------------------------------
def test_sim_observations_equal_the_per_row_implementation_bit_for_bit(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    import_generated(ws, tmp_path / "data", episodes=30, seed=5)
    rows = step_rows(ws)
    assert len({r["trajectory_id"] for r in rows}) < len({r["episode_id"] for r in rows}), "shared trajs"
    new, old = dataset_module._sim_observations(rows), sim_observations_per_row(rows)
    for name in ("states", "next_states", "actions", "masks"):
        a, b = getattr(new, name), getattr(old, name)
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), name
    assert new.action_tokens == old.action_tokens and new.info == old.info


def test_sim_observations_of_rows_ending_inside_a_trajectory_is_an_error(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    import_generated(ws, tmp_path / "data", episodes=2, seed=1)
    rows = [r for r in step_rows(ws) if r["n_steps"] > 1]
    cut = rows[: next(i for i, r in enumerate(rows) if r["t"] == 0 and i > 0) - 1]
    with pytest.raises(IndexError):
        sim_observations_per_row(cut)
    with pytest.raises(IndexError):
        dataset_module._sim_observations(cut)


# -- cache hits and misses -----------------------------------------------------------------------
def test_a_cache_hit_returns_equal_arrays_without_building_again(
    labelled: tuple[Workspace, list[str]], counted_builds: list[int]
) -> None:
    ws, (_, noisy) = labelled
    reader = ws.reader()
    source = parse_reward_source(f"sparse+rgvlm:{noisy}", reader, lam=0.5)
    first = cached_dataset(reader, source, HashEncoder())
    reader.close()
    other = ws.reader()  # as another process would: a fresh reader
    second = cached_dataset(other, parse_reward_source(f"sparse+rgvlm:{noisy}", other, 0.5), HashEncoder())
    direct = build_dataset(other, source, HashEncoder())
    other.close()
    assert len(counted_builds) == 1
    assert_same_arrays(first, direct)
    assert_same_arrays(second, direct)
    assert dataset_dir(first) == dataset_dir(second) is not None
    assert dataset_dir(first).parent == ws.root / "rl_cache" / "datasets"  # type: ignore[union-attr]


def test_cached_arrays_are_read_only_memory_maps(labelled: tuple[Workspace, list[str]]) -> None:
    ws, _ = labelled
    reader = ws.reader()
    data = cached_dataset(reader, parse_reward_source("sparse", reader), HashEncoder())
    reader.close()
    for name in ARRAY_FIELDS:
        value = getattr(data, name)
        assert isinstance(value, np.memmap) and not value.flags.writeable, name
    with pytest.raises(ValueError):
        data.rewards[0] = 5.0


def test_to_tensors_of_cached_arrays_neither_warns_nor_changes_the_files(
    labelled: tuple[Workspace, list[str]],
) -> None:
    ws, _ = labelled
    reader = ws.reader()
    data = cached_dataset(reader, parse_reward_source("sparse", reader), HashEncoder())
    reader.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensors = data.to_tensors()
    for name in ARRAY_FIELDS:
        assert np.array_equal(getattr(tensors, name).numpy(), getattr(data, name)), name
    tensors.rewards[0] = 99.0  # a private page: the file and every other process's view keep their data
    folder = dataset_dir(data)
    assert folder is not None and load_cached(folder).rewards[0] != 99.0


def test_dataset_dir_is_none_for_built_or_replaced_arrays(labelled: tuple[Workspace, list[str]]) -> None:
    ws, _ = labelled
    reader = ws.reader()
    source = parse_reward_source("sparse", reader)
    data = cached_dataset(reader, source, HashEncoder())
    built = build_dataset(reader, source, HashEncoder())
    reader.close()
    assert dataset_dir(built) is None
    assert dataset_dir(dataclasses.replace(data, rewards=np.zeros_like(data.rewards))) is None
    assert dataset_dir(data) is not None


def test_load_cached_opens_the_folder_a_worker_is_given(labelled: tuple[Workspace, list[str]]) -> None:
    ws, _ = labelled
    reader = ws.reader()
    data = cached_dataset(reader, parse_reward_source("sparse", reader), HashEncoder())
    reader.close()
    folder = dataset_dir(data)
    assert folder is not None
    assert_same_arrays(load_cached(str(folder)), data)
    with pytest.raises(RGVLMError, match="not a complete dataset cache"):
        load_cached(folder.parent / "no-such-key")


# -- the key ---------------------------------------------------------------------------------------
def _key(ws: Workspace, text: str, lam: float = 1.0, **kw: Any) -> str:
    reader = ws.reader()
    try:
        return dataset_key(reader, parse_reward_source(text, reader, lam), HashEncoder(), **kw)
    finally:
        reader.close()


def test_the_key_changes_with_a_new_override_of_the_run(labelled: tuple[Workspace, list[str]]) -> None:
    ws, (clean, _) = labelled
    before = _key(ws, f"rgvlm:{clean}")
    reader = ws.reader()
    row = reader.rows(f"SELECT episode_id, t FROM labels WHERE run_id = '{clean}' LIMIT 1")[0]
    reader.close()
    add_override(ws, clean, row["episode_id"], row["t"], 3, "a person disagrees")
    assert _key(ws, f"rgvlm:{clean}") != before


def test_the_key_changes_with_new_label_rows_of_the_run_only(labelled: tuple[Workspace, list[str]]) -> None:
    ws, (clean, noisy) = labelled
    clean_before, noisy_before, sparse_before = (
        _key(ws, f"rgvlm:{clean}"),
        _key(ws, f"rgvlm:{noisy}"),
        _key(ws, "sparse"),
    )
    reader = ws.reader()
    extra = reader.query(f"SELECT * FROM labels WHERE run_id = '{clean}' LIMIT 1")
    reader.close()
    extra = extra.set_column(
        extra.schema.get_field_index("t"), "t", pa.array([999], extra.schema.field("t").type)
    )
    ws.commit({"labels": extra})
    assert _key(ws, f"rgvlm:{clean}") != clean_before
    # Keyed on the run's own rows, not the labels shard list: another run's rows leave a dataset's key alone,
    # so a label run in progress does not invalidate every cached dataset at each of its commits.
    assert _key(ws, f"rgvlm:{noisy}") == noisy_before
    assert _key(ws, "sparse") == sparse_before


def test_the_key_changes_when_new_episodes_are_imported(
    labelled: tuple[Workspace, list[str]], tmp_path: Path
) -> None:
    ws, _ = labelled
    before = _key(ws, "sparse")
    import_generated(ws, tmp_path / "more", episodes=2, seed=77)
    assert _key(ws, "sparse") != before


def test_the_key_changes_with_lambda_filter_policy_and_encoder(labelled: tuple[Workspace, list[str]]) -> None:
    ws, (_, noisy) = labelled
    text = f"sparse+rgvlm:{noisy}"
    base = _key(ws, text)
    reader = ws.reader()
    source = parse_reward_source(text, reader)
    variants = [
        _key(ws, text, lam=0.5),
        _key(ws, text, flt=EpisodeFilter(n_subtasks=(2,))),
        _key(ws, text, failed="drop"),
        dataset_key(reader, source, HashEncoder(dim=32)),
        _key(ws, f"rgvlm:{noisy}"),
    ]
    again = dataset_key(reader, source, HashEncoder())
    reader.close()
    assert len({base, *variants}) == 1 + len(variants)
    assert again == base


def test_a_store_change_during_a_build_is_built_again_under_the_new_key(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, (clean, _) = labelled
    reader = ws.reader()
    row = reader.rows(f"SELECT episode_id, t FROM labels WHERE run_id = '{clean}' ORDER BY episode_id, t")[0]
    calls: list[int] = []

    def build_then_override(*args: Any, **kwargs: Any) -> OfflineArrays:
        built = build_dataset(*args, **kwargs)
        if not calls:
            add_override(ws, clean, row["episode_id"], row["t"], 3, "changed while building")
        calls.append(1)
        return built

    monkeypatch.setattr(dataset_cache, "build_dataset", build_then_override)
    data = cached_dataset(reader, parse_reward_source(f"rgvlm:{clean}@raw", reader), HashEncoder())
    reader.close()
    assert len(calls) == 2 and data.rewards[0] == pytest.approx(0.3)
    assert dataset_dir(data) is not None and dataset_dir(data).name == _key(ws, f"rgvlm:{clean}@raw")  # type: ignore[union-attr]


# -- damaged folders and concurrent builders -------------------------------------------------------
def _truncate(folder: Path) -> None:
    path = folder / "states.npy"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _delete(folder: Path) -> None:
    (folder / "masks.npy").unlink()


def _wrong_shape(folder: Path) -> None:
    np.save(folder / "rewards.npy", np.zeros(3, np.float32))


def _bad_meta(folder: Path) -> None:
    (folder / "meta.json").write_text("{not json")


@pytest.mark.parametrize("damage", [_truncate, _delete, _wrong_shape, _bad_meta])
def test_a_damaged_cache_folder_is_rebuilt_not_trusted(
    labelled: tuple[Workspace, list[str]], counted_builds: list[int], damage: Any
) -> None:
    ws, _ = labelled
    reader = ws.reader()
    source = parse_reward_source("sparse", reader)
    first = cached_dataset(reader, source, HashEncoder())
    folder = dataset_dir(first)
    assert folder is not None
    expected = build_dataset(reader, source, HashEncoder())
    del first
    damage(folder)
    again = cached_dataset(reader, source, HashEncoder())
    reader.close()
    assert len(counted_builds) == 2
    assert_same_arrays(again, expected)
    assert dataset_dir(again) == folder and load_cached(folder) is not None


def test_a_killed_builders_temporary_folder_is_swept_and_never_read(
    labelled: tuple[Workspace, list[str]],
) -> None:
    ws, _ = labelled
    root = ws.root / "rl_cache" / "datasets"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    stale = root / f".tmp-{int(dead.stdout)}-abcd1234"
    stale.mkdir(parents=True)
    (stale / "states.npy").write_bytes(b"partial")
    reader = ws.reader()
    data = cached_dataset(reader, parse_reward_source("sparse", reader), HashEncoder())
    reader.close()
    assert not stale.exists() and dataset_dir(data) is not None


_WORKER = """
import hashlib, sys
from rgvlm_core.rl import dataset_cache
from rgvlm_core.rl.dataset import build_dataset, parse_reward_source
from rgvlm_core.rl.encoder import HashEncoder
from rgvlm_core.workspace import Workspace

builds = []
def counting(*args, **kwargs):
    builds.append(1)
    return build_dataset(*args, **kwargs)
dataset_cache.build_dataset = counting
reader = Workspace.open(sys.argv[1], create=False).reader()
data = dataset_cache.cached_dataset(reader, parse_reward_source(sys.argv[2], reader), HashEncoder())
digest = hashlib.sha256(b"".join(getattr(data, n).tobytes() for n in dataset_cache.ARRAY_FIELDS))
print(len(builds), digest.hexdigest(), dataset_cache.dataset_dir(data))
"""


def test_two_processes_building_at_once_build_once_and_read_equal_arrays(
    labelled: tuple[Workspace, list[str]],
) -> None:
    ws, (_, noisy) = labelled
    command = [sys.executable, "-c", _WORKER, str(ws.root), f"sparse+rgvlm:{noisy}"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=PROJECT_ROOT) for _ in range(2)]
    outputs = [p.communicate(timeout=240)[0].split() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(o[0]) for o in outputs) == [0, 1], "one builds, the other waits and reads its folder"
    assert outputs[0][1] == outputs[1][1] and outputs[0][2] == outputs[1][2]
    reader = ws.reader()
    expected = build_dataset(reader, parse_reward_source(f"sparse+rgvlm:{noisy}", reader), HashEncoder())
    reader.close()
    assert_same_arrays(load_cached(outputs[0][2]), expected)
    assert [p.name for p in (ws.root / "rl_cache" / "datasets").iterdir()] == [Path(outputs[0][2]).name]


def test_cache_meta_records_its_version(labelled: tuple[Workspace, list[str]]) -> None:
    ws, _ = labelled
    reader = ws.reader()
    data = cached_dataset(reader, parse_reward_source("sparse", reader), HashEncoder())
    reader.close()
    folder = dataset_dir(data)
    assert folder is not None
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["cache_version"] == dataset_cache.CACHE_VERSION
    meta["cache_version"] = dataset_cache.CACHE_VERSION + 1
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(RGVLMError):
        load_cached(folder)
