"""`rgvlm export experiment` and `rgvlm merge`: one grid run in parts (other machines, other days)
compared as one, and refused whenever the parts are not comparable."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment
from rgvlm_core.rl.experiment_io import data_digest, export_experiment, merge_experiment
from rgvlm_core.rl.iql import IQLConfig
from rgvlm_core.sample import label_sample
from rgvlm_core.workspace import Workspace
from tests.cli_support import rgvlm
from tests.labeling_support import sample_workspace

METHODS = ("sparse", "sparse+reference@cost")
Two = tuple[Workspace, Workspace]


def _spec(seeds: tuple[int, ...], methods: tuple[str, ...] = METHODS, **kw: object) -> ExperimentSpec:
    settings: dict[str, object] = {
        "encoder": "hash",
        "episodes_per_length": 1,
        "conditions": ("default",),
        "phrasings": ("unseen",),
        "name": "grid",
        **kw,
    }
    return ExperimentSpec(methods=methods, seeds=seeds, **settings)  # type: ignore[arg-type]


def _run(ws: Workspace, seeds: tuple[int, ...], steps: int = 4, methods: tuple[str, ...] = METHODS) -> int:
    """Run the grid's `seeds`; returns how many runs this call trained."""
    progress = list(run_experiment(ws, _spec(seeds, methods), IQLConfig(steps=steps, log_every=2)))
    return progress[-1].finished - progress[0].finished


def _counts(ws: Workspace) -> dict[str, int]:
    reader = ws.reader()
    try:
        return {
            t: int(reader.scalar(f"SELECT count(*) FROM {t}"))
            for t in ("experiments", "experiment_runs", "train_runs", "train_metrics", "eval_results")
        }
    finally:
        reader.close()


def _evaluations(ws: Workspace, run_ids: list[str]) -> list[tuple[object, ...]]:
    reader = ws.reader()
    try:
        rows = reader.rows(
            "SELECT run_id, condition, phrasing, length, episode, completed, steps FROM eval_results "
            "WHERE run_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY ALL",
            [run_ids],
        )
    finally:
        reader.close()
    return [tuple(r.values()) for r in rows]


@pytest.fixture()
def two(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, Workspace]:
    """Two workspaces with the same episodes and label runs, as two machines importing the same data."""
    a = sample_workspace(tmp_path / "a", tmp_path_factory.getbasetemp())
    b = sample_workspace(tmp_path / "b", tmp_path_factory.getbasetemp())
    label_sample(a)
    label_sample(b)
    return a, b


def test_a_grid_run_in_two_workspaces_merges_into_one_that_trains_nothing_more(
    two: Two, tmp_path: Path
) -> None:
    a, b = two
    assert _run(a, (0,)) == 2
    assert _run(b, (1,)) == 2
    manifest = export_experiment(b, "grid", tmp_path / "part-b")
    assert {(r["method"], r["seed"]) for r in manifest["runs"]} == {(m, 1) for m in METHODS}
    assert manifest["rows"]["experiment_runs"] == manifest["rows"]["train_runs"] == 2

    report = merge_experiment(a, tmp_path / "part-b")
    assert len(report.added) == 2 and report.kept == []
    # the merged runs' rows are exactly the other workspace's
    b_ids = [r["run_id"] for r in manifest["runs"]]
    assert _evaluations(a, b_ids) == _evaluations(b, b_ids) != []
    # resuming the whole grid (seeds 0 and 1) finds every cell done
    assert _run(a, (0, 1)) == 0
    reader = a.reader()
    try:
        from rgvlm_core.rl.experiment import experiment_run_ids

        assert len(experiment_run_ids(reader, "grid")) == 4
    finally:
        reader.close()
    # merging again adds nothing and duplicates nothing
    before = _counts(a)
    again = merge_experiment(a, tmp_path / "part-b")
    assert again.added == [] and len(again.kept) == 2 and _counts(a) == before


def test_merging_into_an_empty_workspace_brings_the_plan_to_resume_there(two: Two, tmp_path: Path) -> None:
    a, b = two
    _run(b, (0,))
    export_experiment(b, "grid", tmp_path / "part")
    assert len(merge_experiment(a, tmp_path / "part").added) == 2
    assert _run(a, (0, 1)) == 2  # only seed 1 trains


def test_a_part_planned_otherwise_is_refused_naming_the_settings(two: Two, tmp_path: Path) -> None:
    a, b = two
    _run(a, (0,), steps=4)
    _run(b, (1,), steps=6)
    export_experiment(b, "grid", tmp_path / "part")
    before = _counts(a)
    with pytest.raises(UsageError, match=r"iql\.steps: 4 vs 6"):
        merge_experiment(a, tmp_path / "part")
    assert _counts(a) == before


def test_runs_trained_on_other_labels_under_the_same_name_are_refused(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from rgvlm_core.catalog import EpisodeFilter
    from rgvlm_core.labeling.factory import default_run_name
    from rgvlm_core.labeling.reference import NoiseConfig, ReferenceLabeller
    from rgvlm_core.labeling.runs import RunConfig, label_run

    a = sample_workspace(tmp_path / "a", tmp_path_factory.getbasetemp())
    b = sample_workspace(tmp_path / "b", tmp_path_factory.getbasetemp())
    label_sample(a)
    # b's run carries the reference run's name but noisy scores: the names match, the data does not
    name = default_run_name(ReferenceLabeller(NoiseConfig.from_level(0.0)), "subtask", EpisodeFilter())
    for _ in label_run(b, ReferenceLabeller(NoiseConfig.from_level(0.2)), RunConfig(name=name)):
        pass
    _run(b, (0,), methods=("sparse", f"sparse+rgvlm:{name}@cost"))
    export_experiment(b, "grid", tmp_path / "part")
    before = _counts(a)
    with pytest.raises(UsageError, match=r"training data of sparse\+rgvlm:.*@cost differs here"):
        merge_experiment(a, tmp_path / "part")
    assert _counts(a) == before


def test_a_damaged_export_is_refused_naming_the_file(two: Two, tmp_path: Path) -> None:
    a, b = two
    _run(b, (0,))
    export_experiment(b, "grid", tmp_path / "part")
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "part", broken)
    (broken / "eval_results.parquet").write_bytes(b"not parquet")
    with pytest.raises(UsageError, match=r"eval_results\.parquet: cannot be read"):
        merge_experiment(a, broken)
    manifest = json.loads((tmp_path / "part" / "experiment.json").read_text())
    manifest["format"] = "something-else/9"
    (broken / "experiment.json").write_text(json.dumps(manifest))
    with pytest.raises(UsageError, match=r"experiment\.json: format 'something-else/9'"):
        merge_experiment(a, broken)
    with pytest.raises(UsageError, match="no such folder"):
        merge_experiment(a, tmp_path / "nowhere")
    assert _counts(a)["train_runs"] == 0


def test_export_refuses_an_unknown_experiment_and_a_folder_of_something_else(
    two: Two, tmp_path: Path
) -> None:
    a, _ = two
    with pytest.raises(UsageError, match="experiment 'grid' has no finished run"):
        export_experiment(a, "grid", tmp_path / "part")
    _run(a, (0,))
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(UsageError, match="already holds files"):
        export_experiment(a, "grid", other)
    with pytest.raises(UsageError, match="not an experiment export"):
        export_experiment(a, "grid", other, force=True)
    assert (other / "notes.txt").read_text() == "keep me"


def test_resuming_an_experiment_with_other_settings_is_refused_naming_them(two: Two) -> None:
    a, _ = two
    _run(a, (0,), steps=4)
    with pytest.raises(UsageError, match=r"iql\.steps: 4 vs 8"):
        _run(a, (0, 1), steps=8)
    with pytest.raises(UsageError, match=r"episodes_per_length: 1 vs 2"):
        list(run_experiment(a, _spec((0,), episodes_per_length=2), IQLConfig(steps=4, log_every=2)))


def test_a_run_merged_without_its_checkpoint_says_so_when_evaluated(
    two: Two, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from rgvlm_core.rl.runs import evaluate_run

    a, b = two
    _run(b, (0,))
    manifest = export_experiment(b, "grid", tmp_path / "bare")
    merge_experiment(a, tmp_path / "bare")
    run_id = manifest["runs"][0]["run_id"]
    with pytest.raises(RGVLMError, match="has no checkpoint"):
        list(evaluate_run(a, run_id, episodes_per_length=1, lengths=(1,)))

    assert export_experiment(b, "grid", tmp_path / "full", checkpoints=True)["checkpoints"] is True
    c = sample_workspace(tmp_path / "c", tmp_path_factory.getbasetemp())
    label_sample(c)
    merge_experiment(c, tmp_path / "full")
    assert list(evaluate_run(c, run_id, episodes_per_length=1, lengths=(1,)))


def test_the_data_digest_follows_content_not_storage(two: Two) -> None:
    from rgvlm_core.rl.dataset import build_dataset, parse_reward_source
    from rgvlm_core.rl.dataset_cache import cached_dataset
    from rgvlm_core.rl.encoder import make_encoder

    a, _ = two
    reader = a.reader()
    try:
        source = parse_reward_source("sparse", reader)
        built = build_dataset(reader, source, make_encoder("hash"))
        cached = cached_dataset(reader, source, make_encoder("hash"))
    finally:
        reader.close()
    assert data_digest(built) == data_digest(cached)
    built.rewards = np.array(built.rewards, copy=True)
    built.rewards[0] += 1.0
    assert data_digest(built) != data_digest(cached)


def test_the_cli_exports_and_merges_with_a_summary_and_json(two: Two, tmp_path: Path) -> None:
    a, b = two
    _run(b, (0,))
    out = tmp_path / "part"
    done = rgvlm("-w", str(b.root), "export", "experiment", "grid", str(out))
    assert done.returncode == 0, done.stderr
    assert "wrote 2 finished runs of grid" in done.stdout and f"rgvlm merge {out}" in done.stdout
    merged = rgvlm("-w", str(a.root), "merge", str(out), "--json")
    assert merged.returncode == 0, merged.stderr
    doc = json.loads(merged.stdout)
    assert doc["experiment"] == "grid" and len(doc["added"]) == 2 and doc["kept"] == []
    again = rgvlm("-w", str(a.root), "merge", str(out))
    assert again.returncode == 0 and "0 runs added, 2 already here" in again.stdout
    refused = rgvlm("-w", str(a.root), "merge", str(tmp_path / "nowhere"))
    assert refused.returncode == 1 and "no such folder" in refused.stderr


def test_runs_record_their_commit_and_a_merge_notes_runs_computed_by_other_code(
    two: Two, tmp_path: Path
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rgvlm_core.rl.runs import code_commit

    a, b = two
    _run(b, (0,))
    manifest = export_experiment(b, "grid", tmp_path / "part")
    assert code_commit() is not None  # this checkout is a git repository
    assert manifest["code"]["runs"] == [code_commit()]
    assert merge_experiment(a, tmp_path / "part").notes == []

    file = tmp_path / "part" / "train_runs.parquet"
    runs = pq.read_table(file)
    older = [
        json.dumps({**json.loads(p), "commit": "0123abc"}) for p in runs.column("provenance").to_pylist()
    ]
    pq.write_table(
        runs.set_column(runs.schema.get_field_index("provenance"), "provenance", pa.array(older)), file
    )
    c = sample_workspace(tmp_path / "c", tmp_path.parent)
    label_sample(c)
    notes = merge_experiment(c, tmp_path / "part").notes
    assert len(notes) == 1 and "runs computed at 0123abc" in notes[0]
