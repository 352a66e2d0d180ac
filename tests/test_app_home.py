"""The dashboard's home page renders the workspace's real counts (Streamlit AppTest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.workspace import Workspace
from tests.alfred_factory import write_test_trial, write_trajectory

ROOT = Path(__file__).resolve().parents[1]


def _import(ws_path: Path, data: Path) -> None:
    ws = Workspace.open(ws_path)
    for _ in import_alfred(ws, data, ImportConfig()):
        pass


def _home(monkeypatch: pytest.MonkeyPatch, ws_path: Path) -> AppTest:
    monkeypatch.setenv("RGVLM_WORKSPACE", str(ws_path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def test_home_page_shows_counts_and_charts_computed_from_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "alfred"
    for i in range(3):
        write_trajectory(data, "train", trial=f"trial_T20190101_000000_00000{i}")
    write_trajectory(data, "valid_unseen", trial="trial_T20190101_000000_000009", n_annotations=2)
    write_test_trial(data, "tests_unseen")
    _import(tmp_path / "ws", data)

    at = _home(monkeypatch, tmp_path / "ws")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Episodes"] == "14"
    assert metrics["Trajectories"] == "5"
    assert metrics["Steps"] == "32"
    charts = at.get("plotly_chart")
    assert len(charts) == 3
    by_split = json.loads(charts[0].proto.spec)["data"][0]
    assert dict(zip(by_split["x"], by_split["y"], strict=True)) == {
        "train": 9,
        "valid_unseen": 2,
        "tests_unseen": 3,
    }
    assert any("task-only" in c.value for c in at.caption)


def test_home_page_on_an_empty_workspace_explains_how_to_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _home(monkeypatch, tmp_path / "empty")
    assert any("rgvlm import" in info.value for info in at.info)
    assert not at.get("plotly_chart")


def test_home_page_on_a_folder_that_is_not_a_workspace_shows_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    (folder / "song.mp3").write_bytes(b"\x00")
    at = _home(monkeypatch, folder)
    assert any("not an rgvlm workspace" in e.value for e in at.error)


def test_a_new_workspace_opens_on_the_bundled_sample_dataset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RGVLM_NO_SAMPLE")
    at = _home(monkeypatch, tmp_path / "fresh")
    metrics = {m.label: m.value for m in at.metric}
    sample = json.loads((ROOT / "sample_data" / "household" / "MANIFEST.json").read_text())["counts"]
    assert metrics["Trajectories"] == str(sample["episodes"])
    assert any("household simulator" in c.value for c in at.caption)
    assert len(at.get("plotly_chart")) == 3


def test_home_page_shows_labels_training_and_running_jobs_at_a_glance(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rgvlm_core.jobs import cancel_job, start_job
    from rgvlm_core.rl.config import IQLConfig
    from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment
    from rgvlm_core.sample import label_sample

    label_sample(sample_ws)
    spec = ExperimentSpec(
        methods=("sparse",),
        seeds=(0,),
        episodes_per_length=1,
        conditions=("default",),
        encoder="hash",
        name="glance",
    )
    for _ in run_experiment(sample_ws, spec, IQLConfig(steps=4, log_every=2, hidden=8, batch_size=8)):
        pass
    job = start_job(sample_ws, ["train", "--steps", "1000000", "--encoder", "hash"], name="long train")
    try:
        at = _home(monkeypatch, sample_ws.root)
        text = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
        assert "2 label runs" in text and "not an LVLM" in text
        assert "1 training runs · 1 evaluated" in text
        assert "Newest experiment `glance`: 1 of 1 runs finished" in text
        assert "1 running" in text and "Jobs in progress" in [h.value for h in at.subheader]
        links = {link.proto.label: link.proto for link in at.get("page_link")}
        assert links["Compare its methods"].page == "compare"
        assert links["Compare its methods"].query_string == "experiment=glance"
    finally:
        cancel_job(sample_ws, job.job_id)


def _chart_counts(chart) -> dict[str, int]:  # type: ignore[no-untyped-def]
    trace = json.loads(chart.proto.spec)["data"][0]
    keys, values = (trace["y"], trace["x"]) if trace.get("orientation") == "h" else (trace["x"], trace["y"])
    return dict(zip(keys, values, strict=True))


def test_the_overview_charts_one_dataset_at_a_time_and_says_which(
    sample_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rgvlm_core.catalog import dataset_counts
    from tests.test_audit import mixed_workspace

    ws = mixed_workspace(sample_ws, tmp_path / "alfred")[0]
    reader = ws.reader()
    expected = {d: dataset_counts(reader, d) for d in ("alfred", "sim")}
    reader.close()
    for query, dataset, name in ((None, "sim", "household simulator"), ("alfred", "alfred", "ALFRED")):
        monkeypatch.setenv("RGVLM_WORKSPACE", str(ws.root))
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
        if query:
            at.query_params["dataset"] = query
        at.run()
        assert not at.exception, at.exception
        assert at.segmented_control(key="dataset").value == dataset  # the largest one unless the URL says
        charts = at.get("plotly_chart")
        assert len(charts) == 3
        for chart, key in zip(charts, ("by_split", "by_n_subtasks", "by_task_type"), strict=True):
            assert _chart_counts(chart) == expected[dataset][key]
            assert name in json.loads(chart.proto.spec)["layout"]["title"]["text"]
        n = expected[dataset]["episodes"]
        assert any(f"{name}: {n:,} of 201 episodes" in c.value for c in at.caption)


def test_the_overview_names_runs_that_labelled_only_some_datasets(
    sample_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_audit import mixed_workspace

    ws, reference, noisy, both = mixed_workspace(sample_ws, tmp_path / "alfred")
    at = _home(monkeypatch, ws.root)
    [note] = [c.value for c in at.caption if "labelled only" in c.value]
    assert "labelled only household simulator" in note
    assert reference in note and noisy in note and both not in note  # the third run labelled both
