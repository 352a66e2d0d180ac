"""Jobs and workspaces are data: the jobs panel and the workspace error show them exactly as written.

A job's command, its progress line, its error and the workspace's path reach Markdown-rendering
elements (markdown, st.progress text, st.error); rendered with a CommonMark parser as the browser
would (`shown`, from tests/app_support.py), each must read as the raw value: no emphasis, link or
tag made from it, no code span broken by a backtick in it, no backslash shown.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_core.workspace import Workspace
from tests.app_support import markdown_texts, shown

ROOT = Path(__file__).resolve().parents[1]
MARKUP = "_x_ *y* [a](b) <b> `tick`"  # emphasis, a link, a tag and a backtick
ARGS = ["label", "--name", f"run{MARKUP}"]


def _write_job(ws: Workspace, job_id: str, *, progress: dict | None = None, end: dict | None = None) -> str:
    """A job folder as rgvlm_core.jobs writes it; returns the job's command as the store reports it."""
    folder = ws.root / "jobs" / job_id
    folder.mkdir(parents=True)
    # The test process stands in for the job's process: alive, so a job without exit.json is running.
    record = {"job_id": job_id, "name": "label", "args": ARGS, "pid": os.getpid(), "started_at": ""}
    (folder / "job.json").write_text(json.dumps(record))
    if progress is not None:
        (folder / "progress.json").write_text(json.dumps(progress))
    if end is not None:
        (folder / "exit.json").write_text(json.dumps(end))
    return " ".join(["rgvlm", *ARGS])


def _panel(root: str) -> None:
    from rgvlm_app.jobs_panel import jobs_panel

    jobs_panel(root)


def _progress_texts(at: AppTest) -> list[str]:
    return [shown(p.proto.text).strip() for p in at.get("progress")]


def test_a_jobs_command_progress_and_error_show_literally_in_the_jobs_panel(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    command = _write_job(ws, "20200101-000000-label-0001", progress={"done": 1, "total": 4, "info": MARKUP})
    _write_job(
        ws,
        "20200101-000000-label-0000",
        end={"status": "failed", "code": 1, "error": f"failed: {MARKUP}", "finished_at": "2020_01_01"},
    )
    at = AppTest.from_function(_panel, args=(str(ws.root),), default_timeout=30).run()
    assert not at.exception, at.exception
    texts = markdown_texts(at)
    assert sum(command in t for t in texts) == 2, texts  # both rows: the command in full
    assert f"failed: {MARKUP}" in texts
    assert _progress_texts(at) == [f"1 of 4 · {MARKUP}"]
    assert not any("\\" in t for t in texts)


def test_a_finished_jobs_time_shows_literally_in_its_progress_line(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    finished = "2020-01-01T00:00:00+00:00 *_x_*"
    _write_job(ws, "20200101-000000-label-0000", end={"status": "done", "code": 0, "finished_at": finished})
    at = AppTest.from_function(_panel, args=(str(ws.root),), default_timeout=30).run()
    assert _progress_texts(at) == [f"finished {finished}"]


def test_a_workspace_path_with_markup_shows_literally_when_it_cannot_be_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "my_under_score_ *star* [a](b)"
    folder.mkdir()
    (folder / "notes.txt").write_text("not a workspace")
    monkeypatch.setenv("RGVLM_WORKSPACE", str(folder))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30).run()
    assert not at.exception, at.exception
    [error] = [shown(e.value).strip() for e in at.error]
    assert f"{folder}: folder exists and is not an rgvlm workspace" in error, error
    assert any(f"Workspace {folder}" == t for t in markdown_texts(at))  # the caption above it
