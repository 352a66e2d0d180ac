"""The Audit page shows what rgvlm_core.audit computes from the store, and links into the Episodes page."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app import audit_widgets as aw
from rgvlm_app import audit_worst as worst
from rgvlm_core import audit
from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.charts_audit import REFERENCE_COLOUR, run_colours
from rgvlm_core.labeling.reference import NoiseConfig, ReferenceLabeller
from rgvlm_core.labeling.runs import RunConfig, label_run
from rgvlm_core.labeling.types import Segment, SegmentLabel
from rgvlm_core.sample import label_sample
from rgvlm_core.workspace import Workspace
from tests.app_support import open_page
from tests.test_audit import mixed_workspace

ROOT = Path(__file__).resolve().parents[1]


def _audit_page(monkeypatch: pytest.MonkeyPatch, ws: Workspace, tab: str | None = None) -> AppTest:
    at = open_page(monkeypatch, ws.root, "audit")
    if tab is not None:
        at.session_state[aw.TAB] = tab
        at.run()
    assert not at.exception, at.exception
    return at


@pytest.fixture()
def labelled_ws(sample_ws: Workspace) -> tuple[Workspace, str, str]:
    """The sample with its reference run and its noisy run (noise 0.2)."""
    reference, noisy = label_sample(sample_ws)
    return sample_ws, reference, noisy


@pytest.fixture()
def mixed(sample_ws: Workspace, tmp_path: Path) -> tuple[Workspace, str, str, str]:
    """Simulator episodes labelled by both reference runs; ALFRED episodes by one noisy run only."""
    return mixed_workspace(sample_ws, tmp_path / "alfred")


def _chart(at: AppTest, trace_type: str) -> dict:
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        if spec["data"] and spec["data"][0]["type"] == trace_type:
            return spec
    raise AssertionError(f"no {trace_type} chart")


def test_the_page_shows_both_sample_runs_against_the_noise_free_reference(
    labelled_ws: tuple[Workspace, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference, noisy = labelled_ws
    at = _audit_page(monkeypatch, ws)
    assert at.selectbox(key=aw.REFERENCE).value == reference
    assert at.selectbox(key=aw.RUN).value == noisy
    bars = _chart(at, "bar")["data"]
    assert {t["name"] for t in bars} == {reference, noisy}
    colours = run_colours([reference, noisy], reference)
    assert {t["name"]: t["marker"]["color"] for t in bars} == colours
    assert colours[reference] == REFERENCE_COLOUR


def test_the_agreement_metrics_are_those_audit_computes(
    labelled_ws: tuple[Workspace, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference, noisy = labelled_ws
    reader = ws.reader()
    expected = audit.agreement(reader, noisy, reference)
    by_task = audit.agreement_by(reader, noisy, reference, "task_type").to_pylist()
    reader.close()
    at = _audit_page(monkeypatch, ws)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Steps scored by both"] == f"{expected['n']:,}"
    assert float(shown["Pearson"]) == pytest.approx(expected["pearson"], abs=5e-4)
    assert float(shown["Spearman"]) == pytest.approx(expected["spearman"], abs=5e-4)
    assert float(shown["Mean absolute error"]) == pytest.approx(expected["mae"], abs=5e-4)
    assert float(shown["Exact matches"].rstrip("%")) == pytest.approx(100 * expected["exact"], abs=0.05)
    assert 0 < expected["pearson"] < 1 and expected["n"] > 0  # the noisy run is imperfect, not empty
    table = next(df.value for df in at.dataframe if "pearson" in df.value.columns)
    assert list(table["group"]) == [r["group"] for r in by_task]
    assert list(table["n"]) == [r["n"] for r in by_task]


def test_the_confusion_counts_are_those_audit_computes(
    labelled_ws: tuple[Workspace, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _, noisy = labelled_ws
    at = _audit_page(monkeypatch, ws, tab="Scored high vs completed")
    at.slider(key=aw.THRESHOLD).set_value(8).run()
    reader = ws.reader()
    expected = {(r["completed"], r["high"]): r["n"] for r in audit.confusion(reader, noisy, 8).to_pylist()}
    by_group = {by: audit.confusion(reader, noisy, 8, by).to_pylist() for by in ("task_type", "n_subtasks")}
    reader.close()

    heatmap = _chart(at, "heatmap")["data"][0]
    assert heatmap["x"][0].startswith("scored high (≥ 8)") and heatmap["y"][0] == "completed a subtask"
    for i, completed in enumerate((True, False)):
        for j, high in enumerate((True, False)):
            assert heatmap["z"][i][j] == expected.get((completed, high), 0)
    assert sum(sum(row) for row in heatmap["z"]) == sum(expected.values())

    for table, by in zip(at.dataframe, ("task_type", "n_subtasks"), strict=True):
        shown_counts = {
            (row["group"], column): row[column]
            for row in table.value.to_dict("records")
            for column in aw.CONFUSION_COLUMNS.values()
        }
        for r in by_group[by]:
            assert shown_counts[(r["grp"], aw.CONFUSION_COLUMNS[(r["completed"], r["high"])])] == r["n"]
        assert sum(shown_counts.values()) == sum(expected.values())


def _worst_tab(monkeypatch: pytest.MonkeyPatch, ws: Workspace, **query: str) -> AppTest:
    at = open_page(monkeypatch, ws.root, "audit", **query)
    at.session_state[aw.TAB] = "Worst episodes"
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_worst_episodes_table_puts_the_ranking_first_and_names_each_episode(
    labelled_ws: tuple[Workspace, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference, noisy = labelled_ws
    at = _worst_tab(monkeypatch, ws)
    reader = ws.reader()
    expected = audit.disagreement_ranking(reader, noisy, reference).to_pylist()
    reader.close()
    [frame] = at.dataframe
    order = list(frame.proto.column_order)
    assert order[:2] == [worst.RANK, worst.MEAN]  # the ranking, left and pinned: never off-screen
    assert {worst.GOAL, worst.TASK_TYPE, worst.SUBTASKS, worst.STEP, worst.SCORES} <= set(order)
    config = json.loads(frame.proto.columns)
    assert all(config[c].get("pinned") for c in order[:2])
    table = frame.value
    assert list(table[worst.RANK]) == list(range(1, len(expected) + 1))
    assert list(table[worst.MEAN]) == pytest.approx([r["mae"] for r in expected])
    assert list(table[worst.GOAL]) == [r["goal"] for r in expected]
    assert list(table[worst.STEP]) == [r["worst_step"] for r in expected]
    assert list(table[worst.SUBTASKS]) == [r["n_subtasks"] for r in expected]
    assert list(table[worst.SCORES]) == [f"{r['worst_score']} vs {r['worst_reference']}" for r in expected]


def test_one_click_on_a_worst_episode_opens_it_in_place_beside_the_reference_at_its_worst_step(
    labelled_ws: tuple[Workspace, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference, noisy = labelled_ws
    at = _worst_tab(monkeypatch, ws)
    reader = ws.reader()
    row = audit.disagreement_ranking(reader, noisy, reference).to_pylist()[2]
    reader.close()
    at.session_state[worst.TABLE] = {"selection": {"rows": [], "columns": [], "cells": [[2, worst.GOAL]]}}
    at.run()  # one click on a cell of the third row
    assert not at.exception, at.exception
    assert dict(at.query_params) == {
        "episode": row["episode_id"],
        "step": str(row["worst_step"]),
        "run": noisy,
        "vs": reference,
    }
    assert not [t for t in at.title if t.value == "Audit"]  # the Episodes page now, in the same session
    assert any(f"Step {row['worst_step']} ·" in m.value for m in at.markdown)


def test_the_page_scopes_every_figure_to_the_dataset_in_the_url_and_names_what_is_missing(
    mixed: tuple[Workspace, str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference, noisy, both = mixed
    at = open_page(monkeypatch, ws.root, "audit", dataset="alfred")
    assert at.segmented_control(key=aw.DATASET).value == "alfred"
    legend = {t["name"] for t in _chart(at, "bar")["data"]}
    assert legend == {html.escape(both, quote=False)}  # the only run that labelled ALFRED
    notes = " ".join(c.value for c in at.caption)
    assert reference in notes and noisy in notes and "ALFRED" in notes  # runs that labelled none of it
    warning = " ".join(w.value for w in at.warning)
    assert "ALFRED" in warning and "rgvlm label --labeller reference --dataset alfred" in warning
    assert at.selectbox(key=aw.RUN).value == both
    assert not at.metric  # agreement needs a reference on ALFRED: none, and nothing made up

    at.session_state[aw.TAB] = "Scored high vs completed"
    at.run()
    reader = ws.reader()
    expected = sum(r["n"] for r in audit.confusion(reader, both, dataset="alfred").to_pylist())
    reader.close()
    assert sum(sum(row) for row in _chart(at, "heatmap")["data"][0]["z"]) == expected


def test_without_a_dataset_in_the_url_the_page_shows_the_most_labelled_one(
    mixed: tuple[Workspace, str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference, _, both = mixed
    at = open_page(monkeypatch, ws.root, "audit")
    control = at.segmented_control(key=aw.DATASET)
    assert control.value == "sim" and len(control.options) == 2
    assert at.selectbox(key=aw.REFERENCE).value == reference
    reader = ws.reader()
    expected = audit.agreement(reader, both, reference, dataset="sim")
    reader.close()
    shown = {m.label: m.value for m in at.metric}
    assert shown["Steps scored by both"] == f"{expected['n']:,}"
    control.set_value("alfred").run()
    assert at.selectbox(key=aw.REFERENCE).value == ""  # the sim reference never labelled ALFRED
    assert not at.metric


def test_a_workspace_of_one_dataset_names_it_without_a_choice(
    labelled_ws: tuple[Workspace, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _audit_page(monkeypatch, labelled_ws[0])
    assert not at.segmented_control
    assert any("household simulator" in c.value for c in at.caption)


def test_a_workspace_without_runs_explains_how_to_create_the_reference(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _audit_page(monkeypatch, sample_ws)
    assert any("rgvlm label --labeller reference" in i.value for i in at.info)
    assert not at.metric and not at.get("plotly_chart")


def test_without_a_noise_free_reference_the_page_says_how_to_make_one(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    noisy = ReferenceLabeller(NoiseConfig.from_level(0.3))
    config = RunConfig(name="noisy-only", filters=EpisodeFilter(limit=10))
    for _ in label_run(sample_ws, noisy, config):
        pass
    at = _audit_page(monkeypatch, sample_ws)
    assert at.selectbox(key=aw.REFERENCE).value == ""
    assert any("rgvlm label --labeller reference" in w.value for w in at.warning)
    assert len(at.get("plotly_chart")) == 1  # the distribution of the one run, still shown


def test_comparing_two_runs_shows_compare_runs_and_a_scatter_of_every_shared_step(
    labelled_ws: tuple[Workspace, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference, noisy = labelled_ws
    at = _audit_page(monkeypatch, ws, tab="Compare two runs")
    reader = ws.reader()
    expected = audit.compare_runs(reader, reference, noisy)
    reader.close()
    shown = {m.label: m.value for m in at.metric}
    assert shown["Steps scored by both"] == f"{expected['n']:,}"
    assert float(shown["Mean score A"]) == pytest.approx(expected["mean_a"], abs=5e-4)
    assert float(shown["Mean score B"]) == pytest.approx(expected["mean_b"], abs=5e-4)
    scatter = _chart(at, "scattergl")["data"][0]
    xs = np.frombuffer(base64.b64decode(scatter["x"]["bdata"]), dtype=scatter["x"]["dtype"])
    assert len(xs) == expected["n"]  # every shared step (below the subsampling limit)
    assert xs.min() >= -0.5 and xs.max() <= 10.5  # scores 0..10, jittered by at most 0.3


class _FailsEverySecondSubtask:
    """A labeller standing in for an LVLM that sometimes answers unusably."""

    name = "flaky"

    def describe(self) -> dict[str, Any]:
        return {"labeller": self.name}

    async def label(self, segment: Segment) -> SegmentLabel:
        if segment.index % 2:
            return SegmentLabel.failed(f"expected {len(segment.steps)} scores, got <b>none</b>")
        return ReferenceLabeller().label_now(segment)

    async def aclose(self) -> None:
        return None


def test_failures_are_listed_with_their_reasons_as_plain_text(
    labelled_ws: tuple[Workspace, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _, _ = labelled_ws
    for _ in label_run(
        ws, _FailsEverySecondSubtask(), RunConfig(name="flaky", filters=EpisodeFilter(limit=20))
    ):
        pass
    at = _audit_page(monkeypatch, ws, tab="Failures")
    assert at.selectbox(key=aw.RUN).value == "flaky"  # the newest run other than the reference
    reader = ws.reader()
    expected = audit.failures(reader, "flaky").to_pylist()
    reader.close()
    assert expected
    [table] = at.dataframe
    assert table.value.to_dict("records") == expected
    assert all("<b>none</b>" in e for e in table.value["error"])  # shown as recorded, not rendered
