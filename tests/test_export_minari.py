"""`rgvlm export minari NAME`: a Minari dataset that `minari.load_dataset` reads as the trainer's data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.cli_support import rgvlm
from tests.export_support import FEW_RUN, generated_workspace, one_red_line, sim_episode_count, trainer_view

SKIP = "minari is not installed (an optional extra: pip install -e '.[minari]'; CI installs it)"


@pytest.fixture()
def minari() -> Any:
    return pytest.importorskip("minari", reason=SKIP)


@pytest.fixture()
def ws(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_workspace(tmp_path, tmp_path_factory.getbasetemp())


def _export(ws: Path, root: Path, name: str, *args: str) -> None:
    result = rgvlm("-w", str(ws), "export", "minari", name, "--root", str(root), *args)
    assert result.returncode == 0, result.stderr


def _load(minari: Any, root: Path, dataset_id: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return minari.load_dataset(dataset_id)


def test_the_dataset_loads_back_as_the_trainers_episodes(
    minari: Any, ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "minari"
    _export(ws, root, "rgvlm/household-ref", "--reward", "sparse+reference")
    dataset = _load(minari, root, "rgvlm/household-ref-v0", monkeypatch)
    seen = trainer_view(ws, "sparse+reference")
    a = seen.arrays
    meta = dataset.storage.metadata["rgvlm"]
    order = list(dict.fromkeys(seen.episode_ids))
    assert dataset.total_episodes == sim_episode_count(ws) == len(order) and meta["episode_ids"] == order
    assert dataset.total_steps == len(a)
    starts = [seen.episode_ids.index(e) for e in order] + [len(a)]
    instructions = [a.instructions[k] for k in a.instruction_ids]
    for k, episode in enumerate(dataset.iterate_episodes()):
        rows = slice(starts[k], starts[k + 1])
        obs = episode.observations
        np.testing.assert_array_equal(obs["state"][:-1], a.states[rows])
        np.testing.assert_array_equal(obs["state"][1:], a.next_states[rows])  # contiguous, final state last
        assert obs["instruction"] == [*instructions[rows], instructions[rows][-1]]
        np.testing.assert_array_equal(episode.actions, a.actions[rows])
        np.testing.assert_array_equal(episode.rewards, a.rewards[rows])
        np.testing.assert_array_equal(episode.terminations, a.dones[rows] > 0)
        np.testing.assert_array_equal(episode.truncations, seen.cutoff[rows])
        np.testing.assert_array_equal(episode.infos["action_mask"][:-1], a.masks[rows])
        assert episode.terminations[-1] != episode.truncations[-1], "every episode ends one way or the other"
    assert seen.cutoff.any(), "the data holds truncated episodes"


def test_spaces_env_and_provenance_are_recorded(
    minari: Any, ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gymnasium

    root = tmp_path / "minari"
    _export(ws, root, "household-few-v3", "-r", f"sparse+rgvlm:{FEW_RUN}@raw", "--lambda", "0.5")
    dataset = _load(minari, root, "household-few-v3", monkeypatch)
    space = dataset.observation_space
    assert isinstance(space, gymnasium.spaces.Dict) and set(space.spaces) == {"state", "instruction"}
    assert isinstance(space["state"], gymnasium.spaces.Box)
    assert isinstance(space["instruction"], gymnasium.spaces.Text)
    episode = dataset[0]
    assert all(space["instruction"].contains(t) for t in episode.observations["instruction"])
    assert all(space["state"].contains(s) for s in episode.observations["state"])
    assert dataset.env_spec.id == "rgvlm/Household-v0" and dataset.env_spec.kwargs == {"level": "subgoal"}
    env = dataset.recover_environment(eval_env=True)
    assert env.unwrapped.phrasing == "unseen"
    meta = dataset.storage.metadata["rgvlm"]
    assert meta["reward_source"] == f"sparse+rgvlm:{FEW_RUN}@raw" and meta["reward"]["lambda"] == 0.5
    run = meta["label_runs"][0]
    assert run["run_id"] == FEW_RUN and run["labeller"] == "reference"
    assert run["settings"]["labeller"]["noise"]["flip"] == pytest.approx(0.3)
    assert "not a vision-language model" in run["labeller_is"] and meta["command"].startswith("rgvlm ")
    missing = np.concatenate([ep.infos["vlm_reward_missing"][1:] for ep in dataset.iterate_episodes()])
    assert 0 < missing.sum() == meta["steps_without_vlm_reward"]


def test_the_dataset_root_comes_from_minaris_variable_and_may_be_relative(
    minari: Any, ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "from-env"
    env = {"MINARI_DATASETS_PATH": "from-env"}
    result = rgvlm("-w", str(ws), "export", "minari", "plain", "-k", "1", env=env)
    assert result.returncode == 0, result.stderr
    assert "plain-v0" in result.stdout and (root / "plain-v0" / "data" / "metadata.json").is_file()
    dataset = _load(minari, root, "plain-v0", monkeypatch)
    assert dataset.storage.metadata["rgvlm"]["filters"] == "--n-subtasks 1"
    assert dataset.storage.metadata["dataset_size"] == dataset.storage.get_size()
    assert all(len(set(ep.infos["subtask_idx"])) == 1 for ep in dataset.iterate_episodes())
    assert [p.name for p in root.iterdir()] == ["plain-v0"], "no temporary folder left"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--reward", "dense"], "unknown reward source 'dense'"),
        (["--split", "nosuch"], "--split nosuch"),
        (["--episode", "sim:ghost"], "--episode sim:ghost"),
    ],
)
def test_bad_input_is_one_red_line_naming_the_value_and_writes_nothing(
    minari: Any, ws: Path, tmp_path: Path, args: list[str], named: str
) -> None:
    root = tmp_path / "minari"
    line = one_red_line(rgvlm("-w", str(ws), "export", "minari", "bad", "--root", str(root), *args))
    assert named in line
    assert not root.exists() or not any(root.iterdir()), "nothing written"


def test_an_existing_dataset_is_replaced_only_with_force(
    minari: Any, ws: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "minari"
    _export(ws, root, "ns/again-v0", "-r", "sparse")
    metadata = root / "ns" / "again-v0" / "data" / "metadata.json"
    before = metadata.read_text()
    line = one_red_line(rgvlm("-w", str(ws), "export", "minari", "ns/again-v0", "--root", str(root)))
    assert "'ns/again-v0' already exists" in line and "--force" in line and metadata.read_text() == before
    _export(ws, root, "ns/again-v0", "-r", "reference", "--force")
    assert json.loads(metadata.read_text())["rgvlm"]["reward_source"] == "reference@cost"
    assert _load(minari, root, "ns/again-v0", monkeypatch).total_episodes == sim_episode_count(ws)
    assert sorted(p.name for p in root.iterdir()) == ["ns"]


def test_a_malformed_name_is_refused(minari: Any, ws: Path, tmp_path: Path) -> None:
    line = one_red_line(rgvlm("-w", str(ws), "export", "minari", "bad name!", "--root", str(tmp_path / "m")))
    assert "'bad name!' is not a Minari id" in line and not (tmp_path / "m").exists()


def test_without_minari_the_command_says_how_to_install_it(ws: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker" / "minari"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('minari hidden for this test')\n")
    from tests.cli_support import ROOT

    env = {"PYTHONPATH": f"{blocker.parent}:{ROOT}"}
    result = rgvlm("-w", str(ws), "export", "minari", "x", "--root", str(tmp_path / "m"), env=env)
    line = one_red_line(result)
    assert "needs the minari package" in line and 'pip install "rgvlm-studio[minari]"' in line
    assert not (tmp_path / "m").exists()


def test_alfred_feature_states_get_an_unbounded_box_and_the_datas_instructions(
    minari: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gymnasium

    from tests.export_support import alfred_workspace

    ws = alfred_workspace(tmp_path)
    root = tmp_path / "minari"
    _export(ws, root, "alfred-features", "--states", "alfred")
    dataset = _load(minari, root, "alfred-features-v0", monkeypatch)
    space = dataset.observation_space
    assert space["state"] == gymnasium.spaces.Box(-np.inf, np.inf, (512,), np.float32)
    assert dataset.env_spec is None and dataset.total_episodes == 3
    texts = [t for ep in dataset.iterate_episodes() for t in ep.observations["instruction"]]
    assert texts and all(space["instruction"].contains(t) for t in texts)
