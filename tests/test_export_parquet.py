"""`rgvlm export parquet DIR`: the trainer's dataset as Parquet, with a README of columns and provenance."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from rgvlm_core.export.to_parquet import EPISODE_COLUMNS, STEP_COLUMNS
from tests.cli_support import rgvlm
from tests.export_support import FEW_RUN, generated_workspace, one_red_line, sim_episode_count, trainer_view


@pytest.fixture()
def ws(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generated_workspace(tmp_path, tmp_path_factory.getbasetemp())


def _export(ws: Path, out: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = rgvlm("-w", str(ws), "export", "parquet", str(out), *args)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "metadata.json").read_text())


def _stack(column: object) -> np.ndarray:
    return np.stack(column.to_numpy(zero_copy_only=False))  # type: ignore[attr-defined]


def test_steps_are_the_trainers_transitions_for_the_reward_source(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    meta = _export(ws, out, "--reward", "sparse+reference@raw")
    steps = pq.read_table(out / "steps.parquet")
    seen = trainer_view(ws, "sparse+reference@raw")
    a = seen.arrays
    assert steps.schema.names == list(STEP_COLUMNS), "every column documented, in order"
    assert steps.num_rows == len(a) and steps.column("episode_id").to_pylist() == seen.episode_ids
    np.testing.assert_array_equal(_stack(steps.column("state")), a.states)
    np.testing.assert_array_equal(_stack(steps.column("next_state")), a.next_states)
    np.testing.assert_array_equal(_stack(steps.column("action_mask")), a.masks)
    np.testing.assert_array_equal(steps.column("action").to_numpy(), a.actions)
    np.testing.assert_array_equal(steps.column("reward").to_numpy(), a.rewards)
    np.testing.assert_array_equal(steps.column("terminal").to_numpy(), a.dones > 0)
    np.testing.assert_array_equal(steps.column("truncated").to_numpy(), seen.cutoff)
    assert steps.column("instruction").to_pylist() == [a.instructions[k] for k in a.instruction_ids]
    assert steps.column("action_token").to_pylist() == [a.action_tokens[k] for k in a.actions]
    assert set(steps.column("reward_source").to_pylist()) == {"sparse+reference@raw"}
    assert seen.cutoff.any() and (a.dones > 0).sum() > steps.num_rows // 8, "the data has both endings"
    assert meta["episodes"] == sim_episode_count(ws) and meta["steps"] == len(a)


def test_metadata_and_readme_record_the_reward_source_and_label_run(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    meta = _export(ws, out, "-r", "reference")
    run = meta["label_runs"][0]
    assert meta["reward_source"] == "reference@cost" and meta["reward"]["label_run"] == run["run_id"]
    assert run["labeller"] == "reference" and "not a vision-language model" in run["labeller_is"]
    assert run["settings"]["labeller"]["ground_truth"] is True and run["prompt"] is None
    assert meta["rgvlm_version"] and meta["command"].startswith("rgvlm -w ")
    assert "export parquet" in meta["command"]
    schema_meta = pq.read_schema(out / "episodes.parquet").metadata[b"rgvlm_export"]
    assert json.loads(schema_meta)["reward_source"] == "reference@cost"
    readme = (out / "README.md").read_text()
    for column in [*STEP_COLUMNS, *EPISODE_COLUMNS]:
        assert f"| `{column}` |" in readme
    assert run["run_id"] in readme and "not a vision-language model" in readme
    sparse = _export(ws, tmp_path / "sparse")
    assert sparse["label_runs"] == [] and "Label run: none" in (tmp_path / "sparse" / "README.md").read_text()


def test_episodes_table_matches_the_steps(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _export(ws, out, "-r", "sparse+reference")
    steps = pq.read_table(out / "steps.parquet").to_pandas()
    episodes = pq.read_table(out / "episodes.parquet").to_pandas()
    assert list(episodes.columns) == list(EPISODE_COLUMNS)
    assert list(episodes.episode_id) == list(dict.fromkeys(steps.episode_id))
    by = steps.groupby("episode_id", sort=False)
    assert np.allclose(episodes["return"], by.reward.sum().to_numpy())
    assert (episodes.n_steps.to_numpy() == by.size().to_numpy()).all()
    assert (steps.step.to_numpy()[episodes.first_row] == 0).all()
    assert (episodes.terminated ^ episodes.truncated).all(), "every episode ends one way or the other"
    cut = episodes[episodes.truncated]
    assert len(cut) and (cut.completed_subtasks < cut.n_subtasks).all()


def test_missing_labels_are_flagged_and_overrides_counted(ws: Path, tmp_path: Path) -> None:
    seen = trainer_view(ws, f"sparse+rgvlm:{FEW_RUN}@raw")
    first = seen.episode_ids[0]
    person = rgvlm("-w", str(ws), "override", FEW_RUN, first, "0", "3", "--reason", "a person says so")
    assert person.returncode == 0, person.stderr
    out = tmp_path / "out"
    meta = _export(ws, out, "-r", f"sparse+rgvlm:{FEW_RUN}@raw")
    steps = pq.read_table(out / "steps.parquet").to_pandas()
    missing = steps.vlm_reward_missing.to_numpy()
    assert 0 < missing.sum() < len(steps) and meta["steps_without_vlm_reward"] == missing.sum()
    np.testing.assert_array_equal(steps.reward[missing], steps.sparse_reward[missing])
    row = steps[(steps.episode_id == first) & (steps.step == 0)].iloc[0]
    assert row.reward == pytest.approx(row.sparse_reward + 0.3)
    assert meta["label_runs"][0]["overridden_steps"] == 1


def test_filters_choose_the_episodes(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    meta = _export(ws, out, "-k", "2", "-k", "3", "--limit", "3")
    episodes = pq.read_table(out / "episodes.parquet").to_pandas()
    assert len(episodes) == 3 and set(episodes.n_subtasks) <= {2, 3}
    assert meta["filters"] == "--n-subtasks 2 --n-subtasks 3 --limit 3"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--reward", "dense"], "unknown reward source 'dense'"),
        (["--reward", "rgvlm:ghost"], "no label run 'ghost'"),
        (["--split", "nosuch"], "--split nosuch"),
        (["--states", "pixels"], "'pixels'"),
    ],
)
def test_bad_input_is_one_red_line_naming_the_value_and_writes_nothing(
    ws: Path, tmp_path: Path, args: list[str], named: str
) -> None:
    out = tmp_path / "out"
    line = one_red_line(rgvlm("-w", str(ws), "export", "parquet", str(out), *args))
    assert named in line
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["ws"], "nothing written"


def test_an_existing_export_is_replaced_only_with_force(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _export(ws, out, "-r", "sparse")
    before = (out / "steps.parquet").read_bytes()
    line = one_red_line(rgvlm("-w", str(ws), "export", "parquet", str(out), "-r", "reference"))
    assert str(out) in line and "--force" in line
    assert (out / "steps.parquet").read_bytes() == before
    assert _export(ws, out, "-r", "reference", "--force")["reward_source"] == "reference@cost"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "ws"], "no temporary folder left"


def test_force_never_replaces_a_folder_that_is_not_an_export(ws: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    line = one_red_line(rgvlm("-w", str(ws), "export", "parquet", str(precious), "--force"))
    assert "is not an rgvlm export" in line and (precious / "notes.txt").read_text() == "keep me"


def test_alfred_feature_states_export_the_episodes_that_have_features(tmp_path: Path) -> None:
    from tests.export_support import alfred_workspace

    ws = alfred_workspace(tmp_path)
    out = tmp_path / "out"
    meta = _export(ws, out, "--states", "alfred")
    steps = pq.read_table(out / "steps.parquet").to_pandas()
    assert meta["states"] == "alfred" and meta["state_dim"] == 512 and meta["episodes"] == 3
    assert steps.episode_id.str.contains("trial_T20190101_000000_000000").all()
    states = np.stack(steps.state.to_numpy())
    np.testing.assert_array_equal(states[:, 0], steps.step.to_numpy(np.float32))  # row t's features
    assert np.stack(steps.action_mask.to_numpy()).all(), "ALFRED records no validity: every action allowed"
