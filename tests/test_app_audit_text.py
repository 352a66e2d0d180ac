"""Ids, paths, models and goals are data: the Overview and the Audit show them exactly as written.

Markdown elements (markdown, captions, alerts, expander labels) are rendered here with a CommonMark
parser, as the browser would, and their visible text must hold the raw value: neither markup made
from the data (a `[x](y)` link, `*emphasis*`, a `<b>` tag) nor escapes shown literally (`\\-` in a
code span). Tables and widget options show the raw value; Plotly text is HTML-escaped.
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app import audit_widgets as aw
from rgvlm_app.text import md_code, md_escape
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import EXPERIMENTS
from tests.app_support import markdown_texts, open_page, shown
from tests.test_audit import GOAL_WITH_MARKUP, RUN_WITH_MARKUP, mixed_workspace

ROOT = Path(__file__).resolve().parents[1]
MARKUP = "*[x](y)<b>"
EXPERIMENT = f"exp_1.0-{MARKUP}"
MODEL = f"org/model_v1.5-{MARKUP}"
DATA_DIR = f"data_{MARKUP}-1.0"


def test_the_helpers_keep_any_text_literal() -> None:
    for text in (RUN_WITH_MARKUP, GOAL_WITH_MARKUP, "a `tick` and ``two``", "`edge`", "$x$ :red[y] ~z~ # h"):
        assert shown(md_escape(text)).strip() == text
        assert shown(md_code(text)).strip() == text
    assert md_code("reference-noise0.2-001d8a") == "`reference-noise0.2-001d8a`"


@pytest.fixture()
def mixed(sample_ws: Workspace, tmp_path: Path) -> tuple[Workspace, str, str, str]:
    return mixed_workspace(sample_ws, tmp_path / DATA_DIR)


def _add_experiment(ws: Workspace) -> None:
    row = {
        "experiment_id": EXPERIMENT,
        "methods": json.dumps(["sparse"]),
        "seeds": json.dumps([0]),
        "config": "{}",
        "command": "",
        "created_at": dt.datetime.now(dt.timezone.utc),
    }
    ws.commit({EXPERIMENTS.name: pa.Table.from_pylist([row], schema=EXPERIMENTS.schema)})


def _add_finished_job(ws: Workspace) -> str:
    folder = ws.root / "jobs" / "20200101-000000-label-0000"
    folder.mkdir(parents=True)
    args = ["label", "--name", RUN_WITH_MARKUP]
    record = {"job_id": folder.name, "name": "label", "args": args, "pid": 999_999_999, "started_at": ""}
    (folder / "job.json").write_text(json.dumps(record))
    (folder / "exit.json").write_text(json.dumps({"status": "done", "code": 0, "finished_at": ""}))
    return " ".join(["rgvlm", *args])


def test_ids_models_paths_and_commands_show_literally_on_the_overview(
    mixed: tuple[Workspace, str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = mixed[0]
    _add_experiment(ws)
    command = _add_finished_job(ws)
    monkeypatch.setenv("RGVLM_MODEL", MODEL)
    monkeypatch.setenv("RGVLM_WORKSPACE", str(ws.root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    texts = markdown_texts(at)
    for raw in (RUN_WITH_MARKUP, EXPERIMENT, MODEL, command, str(ws.root)):
        assert any(raw in t for t in texts), f"{raw!r} is not shown literally in {texts}"
    assert any(DATA_DIR in t for t in texts)  # the import's source folder, in its expander label
    assert not any("\\" in t for t in texts)  # no escape shown


def test_run_ids_and_goals_show_literally_on_the_audit_page(
    mixed: tuple[Workspace, str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _, _, both = mixed
    at = open_page(monkeypatch, ws.root, "audit", dataset="alfred")
    assert at.selectbox(key=aw.RUN).value == both  # options are plain text: the raw id
    legend = {t["name"] for c in at.get("plotly_chart") for t in json.loads(c.proto.spec)["data"]}
    assert html.escape(both, quote=False) in legend  # Plotly renders tags: escaped for it
    at.session_state[aw.TAB] = "Failures"
    at.run()
    assert any(both in t for t in markdown_texts(at))  # "<run> has no failed segment"
    at.segmented_control(key=aw.DATASET).set_value("sim").run()  # three runs there: a comparison
    at.session_state[aw.TAB] = "Compare two runs"
    at.run()
    [scatter] = [
        json.loads(c.proto.spec)["layout"] for c in at.get("plotly_chart") if "scaleanchor" in c.proto.spec
    ]
    assert scatter["yaxis"]["title"]["text"] == "B: " + html.escape(both, quote=False)
    assert not any("\\" in t for t in markdown_texts(at))


def test_goals_show_as_written_in_the_worst_episodes_table(
    mixed: tuple[Workspace, str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rgvlm_core.catalog import EpisodeFilter
    from rgvlm_core.labeling.reference import ReferenceLabeller
    from rgvlm_core.labeling.runs import RunConfig, label_run

    ws, _, _, both = mixed
    config = RunConfig(name="reference-alfred", filters=EpisodeFilter(datasets=("alfred",)))
    for _ in label_run(ws, ReferenceLabeller(), config):
        pass
    at = open_page(monkeypatch, ws.root, "audit", dataset="alfred")
    assert at.selectbox(key=aw.REFERENCE).value == "reference-alfred"
    at.session_state[aw.TAB] = "Worst episodes"
    at.run()
    [table] = at.dataframe
    assert set(table.value["goal"]) == {GOAL_WITH_MARKUP}  # a table cell is plain text: never escaped
    assert at.selectbox(key=aw.RUN).value == both
