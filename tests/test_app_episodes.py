"""The Episodes page (Streamlit AppTest) and its pure timeline builder.

Runs on a copy of the bundled sample with its two reference label runs (`label_sample`).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app.text import md_escape
from rgvlm_core.charts_episode import FAILED_Y, clicked_step, reward_timeline
from rgvlm_core.labeling.store import add_override, effective_labels
from rgvlm_core.sample import label_sample
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import ANALYSES, LABEL_RUNS, LABELS
from tests import app_support
from tests.app_support import shown
from tests.labeling_support import sample_workspace

ROOT = Path(__file__).resolve().parents[1]
# The sample's longest episode: 25 steps, 5 subtasks (steps 0-1, 2-4, 5-14, 15-16, 17-24).
EPISODE = "sim:train/pick_clean_then_place_in_recep-Apple-None-CounterTop-1/trial_S0000_000019#1"
_TEMPLATE: list[tuple[Path, list[str]]] = []


@pytest.fixture()
def labelled(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, list[str]]:
    """A fresh copy of the sample with its two reference runs (labelled once per session)."""
    if not _TEMPLATE:
        ws = sample_workspace(tmp_path_factory.mktemp("episodes-template"), tmp_path_factory.getbasetemp())
        _TEMPLATE.append((ws.root, label_sample(ws)))
    template, runs = _TEMPLATE[0]
    shutil.copytree(template, tmp_path / "ws")
    return Workspace.open(tmp_path / "ws"), runs


def open_page(monkeypatch: pytest.MonkeyPatch, ws: Workspace, **params: str) -> AppTest:
    """The app on `ws`, switched to the Episodes page as by a link carrying `params`."""
    return app_support.open_page(monkeypatch, ws.root, "episodes", **params)


def step_heading(at: AppTest) -> str:
    return next(m.value for m in at.markdown if m.value.startswith("#### Step"))


def timeline_json(at: AppTest) -> dict[str, Any]:
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    return json.loads(charts[0].proto.spec)


def table_with(at: AppTest, column: str) -> Any:
    """The (first) dataframe on the page that has `column`, as pandas."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def trace_steps(fig: dict[str, Any], run: int | None, signal: str) -> dict[int, Any]:
    """x -> y of the trace with this meta (the builder tags every trace with its run and signal)."""
    traces = [t for t in fig["data"] if t.get("meta") == {"run": run, "signal": signal}]
    assert len(traces) == 1, f"{len(traces)} traces for run {run} {signal}"
    return dict(zip(traces[0]["x"], traces[0]["y"], strict=True))


# -- the page ---------------------------------------------------------------------------------------
def test_page_opens_the_linked_episode_step_and_run(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, step="7", run=runs[1])
    assert step_heading(at) == "#### Step 7 · 8 of 25"
    assert at.session_state["episodes.run"] == runs[1]
    assert "Grab the butter knife" in at.subheader[0].value
    assert any("behaviour: suboptimal" in c.value for c in at.caption)
    assert any("**▶ 3. Put: Drop the butter knife" in m.value for m in at.markdown)  # subtask 3 holds step 7
    assert dict(at.query_params) == {"episode": EPISODE, "step": "7", "run": runs[1]}


def test_first_visit_without_a_link_shows_the_first_episode_with_the_first_run(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws)
    first = ws.reader().scalar("SELECT min(episode_id) FROM episodes")
    assert at.query_params["episode"] == first
    assert at.query_params["run"] == runs[0]
    assert step_heading(at).startswith("#### Step 0 ·")
    assert not at.warning


def test_next_previous_and_the_slider_move_the_step_and_the_url(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE)
    at.button(key="episodes.w.next").click().run()
    at.button(key="episodes.w.next").click().run()
    assert step_heading(at) == "#### Step 2 · 3 of 25"
    at.button(key="episodes.w.prev").click().run()
    assert step_heading(at) == "#### Step 1 · 2 of 25"
    at.slider(key="episodes.w.slider").set_value(20).run()
    assert step_heading(at) == "#### Step 20 · 21 of 25"
    assert at.query_params["step"] == "20"
    assert trace_cursor(timeline_json(at)) == 20
    at.slider(key="episodes.w.slider").set_value(24).run()
    assert at.button(key="episodes.w.next").disabled
    assert not at.exception


def trace_cursor(fig: dict[str, Any]) -> float:
    lines = [s for s in fig["layout"]["shapes"] if s.get("type") == "line"]
    assert len(lines) == 1
    return float(lines[0]["x0"])


def test_a_link_to_an_unknown_episode_warns_and_falls_back(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = labelled
    at = open_page(monkeypatch, ws, episode="sim:nope#0", step="3", run="no-such-run")
    warnings = " ".join(w.value for w in at.warning)
    assert "no episode 'sim:nope#0'" in shown(warnings)
    assert "no\\-such\\-run" in warnings
    assert at.query_params["episode"] != "sim:nope#0"
    assert not at.exception


def test_timeline_traces_hold_the_stores_scores_for_both_runs(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, runs = labelled
    add_override(ws, runs[0], EPISODE, 5, 1, "reads the wrong object")
    at = open_page(monkeypatch, ws, episode=EPISODE, vs=runs[1])
    fig = timeline_json(at)
    reader = ws.reader()
    for i, run in enumerate(runs):
        stored = effective_labels(reader, run, [EPISODE]).to_pylist()
        assert trace_steps(fig, i, "score") == {r["t"]: r["score"] for r in stored}
    assert trace_steps(fig, 0, "overridden") == {5: 1}
    assert trace_steps(fig, 1, "overridden") == {}
    steps = reader.rows(
        "SELECT t, sparse_reward FROM steps WHERE trajectory_id = "
        "(SELECT trajectory_id FROM episodes WHERE episode_id = ?) ORDER BY t",
        [EPISODE],
    )
    assert trace_steps(fig, None, "sparse") == {r["t"]: r["sparse_reward"] for r in steps}
    bands = [s for s in fig["layout"]["shapes"] if s.get("type") == "rect"]
    assert [(b["x0"], b["x1"]) for b in bands] == [
        (-0.5, 1.5),
        (1.5, 4.5),
        (4.5, 14.5),
        (14.5, 16.5),
        (16.5, 24.5),
    ]
    # both runs side by side: one analysis each, and one table of both runs' scores
    assert len(at.code) == 2
    assert len(at.dataframe) == 1 and len(at.table) == 1  # the episode list; the side-by-side table


def test_an_override_is_stored_and_shown_as_overridden(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, step="12")
    at.number_input[0].set_value(4)
    next(t for t in at.text_input if t.label == "Reason (required)").input("walks to the wrong place")
    _submit(at)
    assert not at.exception, at.exception
    stored = {r["t"]: r for r in effective_labels(ws.reader(), runs[0], [EPISODE]).to_pylist()}
    assert (stored[12]["score"], stored[12]["status"]) == (4, "overridden")
    assert stored[12]["override_reason"] == "walks to the wrong place"
    assert stored[12]["run_score"] not in (None, 4)  # the run's own score is kept
    table = at.table[0].value
    row = next(r for r in table.to_dict("records") if r["step"].endswith("[12]"))  # the current step
    assert row["A score"].endswith("[4]") and row["A run score"].endswith(f"[{stored[12]['run_score']}]")
    assert md_escape("override: walks to the wrong place") in row["A reason"]
    assert trace_steps(timeline_json(at), 0, "overridden") == {12: 4}
    assert any("Overridden: the run said" in c.value for c in at.caption)


def _submit(at: AppTest) -> None:
    next(b for b in at.button if b.label == "Save override").click().run()


def test_labels_written_elsewhere_show_on_the_next_run(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, step="6")
    assert trace_steps(timeline_json(at), 0, "overridden") == {}
    add_override(ws, runs[0], EPISODE, 6, 10, "set from the CLI")  # another process, same store
    at.run()
    assert trace_steps(timeline_json(at), 0, "overridden") == {6: 10}


def test_the_page_modules_never_import_torch() -> None:
    code = (
        "import sys, rgvlm_app.player, rgvlm_app.timeline, rgvlm_core.charts_episode; "
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_an_override_without_a_reason_is_refused_with_an_error(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, step="3")
    _submit(at)
    assert any("needs a reason" in e.value for e in at.error)
    assert "overridden" not in effective_labels(ws.reader(), runs[0], [EPISODE]).column("status").to_pylist()


def test_analysis_and_failures_show_as_plain_text(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = labelled
    hostile = "**bold** <img src=x onerror=alert(1)> [link](http://x)"
    _failing_run(ws, "flaky", hostile)
    at = open_page(monkeypatch, ws, episode=EPISODE, step="3", run="flaky")
    codes = [c.value for c in at.code]
    assert hostile in codes  # stage-one text, verbatim in a code block
    assert "model said: " + hostile in codes  # the failure reason, likewise
    assert "{not json" in codes  # and the stage-two answer as received
    assert not any("onerror" in m.value for m in at.markdown)
    fig = timeline_json(at)
    assert trace_steps(fig, 0, "failed") == {2: FAILED_Y, 3: FAILED_Y, 4: FAILED_Y}
    assert trace_steps(fig, 0, "score")[3] is None


def _failing_run(ws: Workspace, run_id: str, text: str) -> None:
    """A run whose second segment (steps 2-4) failed, written straight to the store."""
    now = dt.datetime.now(dt.timezone.utc)
    run = {"run_id": run_id, "labeller": "lvlm", "model": "test-model", "unit": "subtask", "created_at": now}
    labels = [
        {
            "run_id": run_id,
            "episode_id": EPISODE,
            "t": t,
            "segment_id": "subtask1" if 2 <= t <= 4 else "subtask0",
            "score": None if 2 <= t <= 4 else 5,
            "reward": None if 2 <= t <= 4 else 0.5,
            "status": "failed" if 2 <= t <= 4 else "ok",
            "reason": None,
        }
        for t in range(5)
    ]
    analyses = [
        {"run_id": run_id, "episode_id": EPISODE, "segment_id": "subtask0", "first_step": 0, "last_step": 1,
         "status": "ok", "analysis": "fine", "created_at": now},
        {"run_id": run_id, "episode_id": EPISODE, "segment_id": "subtask1", "first_step": 2, "last_step": 4,
         "status": "failed", "analysis": text, "error": "model said: " + text, "raw": "{not json",
         "created_at": now},
    ]  # fmt: skip
    ws.commit(
        {
            LABEL_RUNS.name: pa.Table.from_pylist([run], schema=LABEL_RUNS.schema),
            LABELS.name: pa.Table.from_pylist(labels, schema=LABELS.schema),
            ANALYSES.name: pa.Table.from_pylist(analyses, schema=ANALYSES.schema),
        }
    )


def test_without_a_run_the_page_plays_the_episode_and_shows_sparse_rewards_only(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, step="4", run="none")
    assert at.session_state["episodes.run"] is None
    assert [t["meta"]["signal"] for t in timeline_json(at)["data"]] == ["sparse"]
    assert not at.code and not any(b.label == "Save override" for b in at.button)
    assert at.query_params["run"] == "none"


def test_an_empty_workspace_says_how_to_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    at = open_page(monkeypatch, Workspace.open(tmp_path / "empty"))
    assert any("rgvlm import" in i.value for i in at.info)


def test_play_starts_and_stop_stops(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE)
    at.button(key="episodes.w.play").click().run()
    assert at.session_state["episodes.playing"]
    assert at.button(key="episodes.w.play").label == "Stop"
    at.button(key="episodes.w.play").click().run()
    assert not at.session_state["episodes.playing"]


def test_the_list_filters_and_sorts(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, run=runs[1])
    at.multiselect(key="episodes.w.n_subtasks").set_value([6]).run()
    at.selectbox(key="episodes.w.order").set_value("most disagreement with the reference").run()
    listed = table_with(at, "Δ ref")
    assert set(listed["subtasks"]) == {6}
    assert list(listed["Δ ref"]) == sorted(listed["Δ ref"], reverse=True)
    assert at.query_params["episode"] in set(listed["episode"])  # the shown episode follows the list


# -- the pure timeline builder ----------------------------------------------------------------------
def _labels(statuses: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "t": t,
            "score": None if s == "failed" else 9 if s == "overridden" else t,
            "status": s,
            "run_score": None if s == "failed" else t,
            "reason": "r",
            "override_reason": "o" if s == "overridden" else None,
        }
        for t, s in enumerate(statuses)
    ]


def test_reward_timeline_marks_failed_and_overridden_steps_distinctly() -> None:
    steps = [{"t": t, "sparse_reward": float(t == 3)} for t in range(4)]
    fig = reward_timeline(
        steps,
        _labels(["ok", "failed", "overridden", "ok"]),
        _labels(["ok", "ok", "ok", "failed"]),
        subtasks=[{"idx": 0, "kind": "Pickup", "first_step": 0, "last_step": 3, "completed": False}],
        cursor=2,
        run_names=("a", "b"),
    ).to_plotly_json()
    by_meta = {(t["meta"]["run"], t["meta"]["signal"]): t for t in fig["data"]}
    assert list(by_meta[(0, "score")]["y"]) == [0, None, 9, 3]
    assert list(by_meta[(0, "failed")]["x"]) == [1]
    assert by_meta[(0, "failed")]["y"][0] < 0 < min(fig["layout"]["yaxis"]["range"][1], 10)
    assert list(by_meta[(0, "overridden")]["y"]) == [9]
    assert list(by_meta[(1, "failed")]["x"]) == [3]
    assert by_meta[(0, "score")]["line"]["color"] != by_meta[(1, "score")]["line"]["color"]
    assert by_meta[(None, "sparse")]["yaxis"] == "y2"
    assert "not completed" in fig["layout"]["annotations"][0]["text"]


def test_reward_timeline_puts_subtask_labels_above_the_plot_where_no_point_is() -> None:
    steps = [{"t": t, "sparse_reward": 0.0} for t in range(30)]
    subtasks = [
        {"idx": 0, "kind": "Pickup", "first_step": 0, "last_step": 0, "completed": True},
        {"idx": 1, "kind": "Heat", "first_step": 1, "last_step": 1, "completed": True},
        {"idx": 2, "kind": "Put", "first_step": 2, "last_step": 29, "completed": False},
    ]
    fig = reward_timeline(steps, _labels(["ok"] * 30), subtasks=subtasks, cursor=4).to_plotly_json()
    labels = fig["layout"]["annotations"]
    assert [a["text"].split("</span> ")[-1] for a in labels] == [
        "1 Pickup",
        "2 Heat",
        "3 Put (not completed)",
    ]
    for label in labels:  # in paper coordinates, anchored at their bottom on or above the plot's top edge
        assert (label["yref"], label["yanchor"]) == ("paper", "bottom") and label["y"] >= 1
    assert labels[0]["y"] != labels[1]["y"]  # neighbours too narrow for their labels take two rows
    assert fig["layout"]["margin"]["t"] >= 40  # room above the plot for both rows


def test_reward_timeline_is_a_valid_plotly_figure() -> None:
    fig = reward_timeline(
        [{"t": t, "sparse_reward": float(t == 3)} for t in range(4)],
        _labels(["ok", "failed", "overridden", "ok"]),
        _labels(["ok", "ok", "ok", "failed"]),
        subtasks=[{"idx": 0, "kind": "Pickup", "first_step": 0, "last_step": 3, "completed": True}],
        cursor=1,
    )
    checked = go.Figure(fig.to_dict())  # Plotly's validation, which the page's builder skips for speed
    assert len(checked.data) >= 2, "the run's scores and the sparse reward at least"


def test_reward_timeline_without_runs_shows_sparse_reward_only() -> None:
    fig = reward_timeline([{"t": 0, "sparse_reward": 1.0}], None)
    assert [t.meta["signal"] for t in fig.data] == ["sparse"]


@pytest.mark.parametrize(
    ("points", "expected"),
    [([], None), ([{"x": 3.0, "y": 7}], 3), ([{"x": 40}], 9), ([{"x": -2}], 0), ([{"y": 1}, {"x": 5}], 5)],
)
def test_clicked_step_is_the_clicked_points_step_within_the_episode(
    points: list[dict[str, Any]], expected: int | None
) -> None:
    assert clicked_step(points, 10) == expected


def test_the_playback_speed_sets_the_players_interval_and_survives_a_step(
    labelled: tuple[Workspace, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rgvlm_app import player

    ws, _ = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE)
    assert at.selectbox(key="episodes.w.speed").value == "1x"
    at.button(key="episodes.w.play").click().run()
    at.selectbox(key="episodes.w.speed").set_value("4x").run()
    assert at.session_state["episodes.speed"] == "4x" and at.session_state["episodes.playing"]
    at.button(key="episodes.w.next").click().run()
    assert at.selectbox(key="episodes.w.speed").value == "4x"
    # the page's fragment reruns at the chosen speed's interval: a quarter of 1x's
    assert player.interval_of(at.session_state["episodes.speed"]) == pytest.approx(player.PLAY_INTERVAL_S / 4)
    assert player.interval_of("0.5x") == pytest.approx(1.6) and player.interval_of("bogus") == 0.8
