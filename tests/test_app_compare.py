"""The Compare page shows the store's evaluations aggregated over seeds, keeps its choice in the URL,
and downloads exactly what `rgvlm_core.report` computes."""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from rgvlm_app import compare_widgets as cw
from rgvlm_core.charts_compare import method_colour, method_colours
from rgvlm_core.compare import methods_in_order
from rgvlm_core.report import build_comparison
from rgvlm_core.rl.config import IQLConfig
from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment
from rgvlm_core.sample import label_sample
from rgvlm_core.workspace import Workspace
from tests.labeling_support import sample_workspace

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "smoke"
CONDITIONS = ("default", "randomized")


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The sample, labelled, with experiment `smoke`: sparse, reference, bc x seeds 0, 1 (tiny IQL)."""
    workspace = sample_workspace(tmp_path_factory.mktemp("compare"), tmp_path_factory.getbasetemp())
    label_sample(workspace)
    spec = ExperimentSpec(
        methods=("sparse", "reference", "bc"),
        seeds=(0, 1),
        episodes_per_length=2,
        encoder="hash",
        name=EXPERIMENT,
    )
    for _ in run_experiment(workspace, spec, IQLConfig(steps=10, hidden=16, batch_size=32, log_every=5)):
        pass
    return workspace


def _table(ws: Workspace, name: str) -> pd.DataFrame:
    """A store table read straight from its Parquet shards (not through rgvlm_core)."""
    import duckdb

    files = [str(ws.path_of(f)) for f in ws.snapshot().files(name)]
    return duckdb.connect().execute("SELECT * FROM read_parquet(?)", [files]).to_arrow_table().to_pandas()


@pytest.fixture(scope="module")
def store(ws: Workspace) -> dict[str, Any]:
    """Per run: its experiment method, training seed, reward source, and mean proportion per task cell."""
    import duckdb

    runs = _table(ws, "experiment_runs").merge(_table(ws, "train_runs")[["run_id", "reward_source"]])
    con = duckdb.connect()
    con.register("evals", _table(ws, "eval_results"))
    sql = "SELECT run_id, condition, length, avg(completed / n_subtasks) AS p FROM evals GROUP BY ALL"
    per_run = (
        con.execute(sql)
        .to_arrow_table()
        .to_pandas()
        .merge(runs[["run_id", "method", "seed", "reward_source"]])
    )
    return {"runs": runs, "per_run": per_run}


def _label(method: str, reward_source: str) -> str:
    names = {"sparse": "Sparse", "bc": "Behaviour cloning"}
    run, _, mapping = reward_source.removeprefix("rgvlm:").partition("@")
    return names.get(method, f"RG-VLM ({run}, {mapping or 'raw'})")  # stored without a mapping: raw


def _method(reward_source: str) -> str:
    """The Compare page's method of a run stored with this source (a VLM source names its mapping)."""
    return reward_source if reward_source == "sparse" or "@" in reward_source else f"{reward_source}@raw"


def _page(monkeypatch: pytest.MonkeyPatch, ws: Workspace, **query: str) -> AppTest:
    monkeypatch.setenv("RGVLM_WORKSPACE", str(ws.root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    return at


def _array(value: Any) -> list[float]:
    if isinstance(value, dict):  # Plotly's typed-array encoding
        return np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"]).tolist()
    return [float(v) for v in value]


def _completion(at: AppTest) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    chart = next(c for c in at.get("plotly_chart") if "compare.completion" in c.proto.id)
    return json.loads(chart.proto.spec)["data"], json.loads(chart.proto.config)


def workspace_colours(ws: Workspace) -> dict[str, str]:
    reader = ws.reader()
    try:
        return method_colours(methods_in_order(reader))
    finally:
        reader.close()


def _panel(trace: dict[str, Any]) -> str:
    return "default" if trace.get("xaxis", "x") in ("x", "x1") else "randomized"


def test_the_bars_are_each_methods_mean_over_seeds_with_a_student_t_interval(
    ws: Workspace, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(monkeypatch, ws)
    assert at.session_state[cw.MODE] == cw.EXPERIMENT_MODE
    assert at.selectbox(key=cw.EXPERIMENT).value == EXPERIMENT  # the newest experiment by default
    traces, config = _completion(at)
    per_run = store["per_run"]
    expected = per_run.groupby(["method", "reward_source", "condition", "length"])["p"].agg(list)
    bars = [t for t in traces if t["type"] == "bar"]
    assert len(bars) == 4  # sparse and reference (bc is a reference line) x two conditions
    for method in ("sparse", "reference"):
        source = per_run.loc[per_run["method"] == method, "reward_source"].iloc[0]
        for condition in CONDITIONS:
            [bar] = [b for b in bars if b["name"] == _label(method, source) and _panel(b) == condition]
            assert bar["marker"]["color"] == method_colour(_method(source), workspace_colours(ws))
            assert _array(bar["x"]) == [1, 2, 3, 4, 5, 6]
            values = [expected[(method, source, condition, n)] for n in range(1, 7)]
            assert all(len(v) == 2 for v in values)  # one proportion per training seed
            means = [np.mean(v) for v in values]
            assert _array(bar["y"]) == pytest.approx(means)
            half = [stats.t.ppf(0.975, len(v) - 1) * np.std(v, ddof=1) / np.sqrt(len(v)) for v in values]
            up = [min(1.0, m + h) - m for m, h in zip(means, half, strict=True)]  # clipped to [0, 1]
            down = [m - max(0.0, m - h) for m, h in zip(means, half, strict=True)]
            assert _array(bar["error_y"]["array"]) == pytest.approx(up)
            assert _array(bar["error_y"]["arrayminus"]) == pytest.approx(down)
    lines = {(t["name"], _panel(t)): _array(t["y"]) for t in traces if t["type"] == "scatter"}
    for condition in CONDITIONS:
        want = [np.mean(expected[("bc", "sparse", condition, n)]) for n in range(1, 7)]
        assert lines[("Behaviour cloning", condition)] == pytest.approx(want)
        assert lines[("Expert", condition)] == [1.0] * 6  # the planner, replayed on the same tasks
    assert config["toImageButtonOptions"] == {
        "format": "png",
        "filename": "rgvlm-completion-by-length",
        "scale": 2,
    }
    assert any("camera button" in c.value for c in at.caption)
    [success_chart] = [c for c in at.get("plotly_chart") if "compare.success" in c.proto.id]
    success = json.loads(success_chart.proto.spec)
    assert {t["name"]: t["marker"]["color"] for t in success["data"]}["Sparse"] == method_colour("sparse")
    [table] = [t for t in (df.value for df in at.dataframe) if {"seeds", "length"} <= set(t.columns)]
    assert set(table["phrasing"]) == {"unseen"}  # the default: held-out phrasings
    assert len(table) == 4 * 2 * 6  # sparse, reference, bc, expert x conditions x lengths
    assert set(table.columns) >= {"method", "condition", "length", "mean", "ci_low", "ci_high", "seeds"}


def test_the_seed_toggle_adds_each_runs_own_proportion_as_a_point(
    ws: Workspace, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(monkeypatch, ws)
    traces, _ = _completion(at)
    assert not [t for t in traces if t.get("mode") == "markers"]
    at.toggle(key=cw.SEED_POINTS).set_value(True).run()
    points = [t for t in _completion(at)[0] if t.get("mode") == "markers"]
    shown = sorted(y for t in points for y in _array(t["y"]))
    bars = store["per_run"][store["per_run"]["method"] != "bc"]
    assert len(shown) == len(bars) == 2 * 2 * 2 * 6  # 2 methods x 2 seeds x 2 conditions x 6 lengths
    assert shown == pytest.approx(sorted(bars["p"]))


def test_the_url_chooses_the_runs_and_follows_the_choice(
    ws: Workspace, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = store["runs"]
    sparse = sorted(runs.loc[runs["method"] == "sparse", "run_id"])
    at = _page(monkeypatch, ws, runs=",".join(sparse))
    assert at.session_state[cw.MODE] == cw.RUNS_MODE
    assert sorted(at.multiselect(key=cw.RUNS).value) == sparse
    traces, _ = _completion(at)
    assert {t["name"] for t in traces if t["type"] == "bar"} == {"Sparse"}
    assert sorted(at.query_params["runs"].split(",")) == sparse

    bc = runs.loc[runs["method"] == "bc", "run_id"].iloc[0]
    at.multiselect(key=cw.RUNS).select(bc).run()
    assert at.query_params["runs"].split(",") == [*at.multiselect(key=cw.RUNS).value]
    assert bc in at.query_params["runs"].split(",")

    at = _page(monkeypatch, ws, experiment=EXPERIMENT)
    assert at.session_state[cw.MODE] == cw.EXPERIMENT_MODE and at.query_params["experiment"] == EXPERIMENT
    at.query_params.clear()
    at.query_params["runs"] = sparse[0]  # a link followed later in the same session (e.g. from Overview)
    at.switch_page("pages/compare.py").run()
    assert at.multiselect(key=cw.RUNS).value == [sparse[0]]


def test_an_unknown_run_or_experiment_in_the_url_is_named_in_a_warning(
    ws: Workspace, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    known = store["runs"]["run_id"].iloc[0]
    at = _page(monkeypatch, ws, runs=f"{known},ghost-run-s9")
    [warning] = at.warning
    assert "ghost-run-s9" in warning.value and "Showing the others" in warning.value
    assert at.multiselect(key=cw.RUNS).value == [known]
    assert at.query_params["runs"] == known  # the link now says what is shown

    at = _page(monkeypatch, ws, experiment="no-such-experiment")
    [warning] = at.warning
    assert "no-such-experiment" in warning.value
    assert at.selectbox(key=cw.EXPERIMENT).value == EXPERIMENT  # falls back to the newest experiment
    assert at.get("plotly_chart")


class _KeptMediaFiles(MediaFileManager):
    """AppTest's media manager, kept after the run so a test can read what a download serves."""

    last: MediaFileManager | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _KeptMediaFiles.last = self


def _download(at: AppTest, key: str) -> bytes:
    button = next(b for b in at.get("download_button") if b.proto.id.endswith(key))
    manager = _KeptMediaFiles.last
    assert manager is not None
    url = button.proto.url or manager.execute_deferred(button.proto.deferred_file_id)
    file = manager.read_file(url.rsplit("/", 1)[-1])
    assert file is not None
    return file.content


def test_the_downloads_are_the_comparisons_csv_and_its_self_contained_report(
    ws: Workspace, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streamlit.testing.v1.app_test.MediaFileManager", _KeptMediaFiles)
    at = _page(monkeypatch, ws)
    reader = ws.reader()
    expected = build_comparison(reader, list(store["runs"]["run_id"])).csv()
    reader.close()
    assert _download(at, cw.CSV).decode() == expected
    page = _download(at, cw.HTML).decode()
    assert f"RG-VLM Studio: {EXPERIMENT}" in page and "Plotly" in page and 'src="http' not in page


def test_a_run_finished_while_the_page_is_open_shows_on_the_next_rerun(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy = Workspace.open(shutil.copytree(ws.root, tmp_path / "ws"))
    at = _page(monkeypatch, copy)
    assert at.selectbox(key=cw.EXPERIMENT).options == [f"{EXPERIMENT} · 6 runs"]
    spec = ExperimentSpec(
        methods=("sparse",), seeds=(7,), episodes_per_length=1, encoder="hash", name="later"
    )
    for _ in run_experiment(copy, spec, IQLConfig(steps=5, hidden=16, batch_size=32, log_every=5)):
        pass
    at.run()
    assert at.selectbox(key=cw.EXPERIMENT).options == [
        "later · 1 run",
        f"{EXPERIMENT} · 6 runs",
    ]  # newest first
    assert at.selectbox(key=cw.EXPERIMENT).value == EXPERIMENT  # the choice stays
    at.segmented_control(key=cw.MODE).set_value(cw.RUNS_MODE).run()
    assert any("seed 7" in option for option in at.multiselect(key=cw.RUNS).options)


def test_the_learning_curves_are_drawn_only_once_their_expander_is_open(
    ws: Workspace, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(monkeypatch, ws)
    assert not [c for c in at.get("plotly_chart") if "compare.curves" in c.proto.id]
    at.session_state[cw.CURVES] = True  # as a click on the expander
    at.run()
    assert not at.exception, at.exception
    [chart] = [c for c in at.get("plotly_chart") if "compare.curves" in c.proto.id]
    q_lines = json.loads(chart.proto.spec)["data"]  # the default metric: q loss, which BC does not train
    assert len(q_lines) == sum(store["runs"]["method"] != "bc")
    assert any("No losses/q for bc" in c.value for c in at.caption)
    at.selectbox(key=cw.CURVE_METRIC).set_value("losses/actor").run()
    [chart] = [c for c in at.get("plotly_chart") if "compare.curves" in c.proto.id]
    lines = json.loads(chart.proto.spec)["data"]
    assert len(lines) == len(store["runs"])  # one line per run, in its method's colour
    colours = {t["legendgroup"]: t["line"]["color"] for t in lines}
    assert colours["sparse"] == method_colour("sparse") and colours["bc"] == method_colour("bc")


def test_a_workspace_without_evaluated_runs_says_how_to_get_some(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(monkeypatch, sample_ws)
    assert any("rgvlm experiment" in i.value and "Training page" in i.value for i in at.info)
    assert not at.get("plotly_chart")
