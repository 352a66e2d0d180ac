"""The Training page while an experiment runs: its progress read legibly, its finished runs kept live.

The jobs here are job folders as rgvlm_core.jobs writes them, with the test process standing in for
the job's process (alive, so a job without exit.json is running); the info line is built by the
experiment's own progress type, so the page is checked against the text a real job reports.
A real job, watched in a browser, is in test_app_training_live_browser.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import streamlit
from streamlit.testing.v1 import AppTest

from rgvlm_app import training_widgets as tw
from rgvlm_core.rl.experiment import ExperimentProgress, TaskProgress
from rgvlm_core.workspace import Workspace
from tests.app_support import markdown_texts, open_page, shown

EXPERIMENT = ["experiment", "--methods", "sparse,bc", "--seeds", "2", "--encoder", "hash", "--name", "live"]
PROGRESS = ExperimentProgress(
    "live",
    runs=12,
    finished=3,
    active=(
        TaskProgress("sparse seeds 0,1", "train", 1500, 3000, 35.2),
        TaskProgress("bc seeds 0,1", "evaluate", 100, 480),
    ),
    fraction=0.25,
    eta_s=250.0,
)


def _write_job(ws: Workspace, job_id: str, args: list[str], progress: dict[str, Any] | None) -> Path:
    folder = ws.root / "jobs" / job_id
    folder.mkdir(parents=True)
    record = {"job_id": job_id, "name": "experiment live", "args": args, "pid": os.getpid(), "started_at": ""}
    (folder / "job.json").write_text(json.dumps(record))
    if progress is not None:
        (folder / "progress.json").write_text(json.dumps(progress))
    return folder


def _end(folder: Path) -> None:
    (folder / "exit.json").write_text(json.dumps({"status": "done", "code": 0, "finished_at": "2020-01-01"}))


def _experiment_progress(progress: ExperimentProgress) -> dict[str, Any]:
    """What `rgvlm experiment` reports to its job (rgvlm_core/cli/experiment_cmds.py)."""
    return {"done": int(1000 * progress.fraction), "total": 1000, "info": progress.text()}


def _panel(root: str) -> None:
    from rgvlm_app.jobs_panel import jobs_panel

    jobs_panel(root)


def _lines(at: AppTest) -> list[str]:
    """Every line of text the page shows in Markdown (a list shows one line per item)."""
    return [line.strip() for text in markdown_texts(at) for line in text.splitlines()]


def _progress_texts(at: AppTest) -> list[str]:
    return [shown(p.proto.text).strip() for p in at.get("progress")]


def test_a_running_experiment_shows_its_runs_done_and_time_left_on_the_bar_and_each_task_on_a_line(
    tmp_path: Path,
) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    _write_job(ws, "20200101-000000-experiment-0001", EXPERIMENT, _experiment_progress(PROGRESS))
    at = AppTest.from_function(_panel, args=(str(ws.root),), default_timeout=30).run()
    assert not at.exception, at.exception
    assert "about 4 min 10 s left" in PROGRESS.text()  # the time left comes from the job's own line
    assert _progress_texts(at) == ["25% · runs 3/12 · about 4 min 10 s left"]
    texts = _lines(at)
    assert "sparse seeds 0,1: step 1500/3000 at 35 updates/s" in texts, texts
    assert "bc seeds 0,1: evaluating 100/480 episodes" in texts, texts


def test_the_jobs_panel_shows_the_newest_progress_of_a_running_experiment_on_each_run(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    folder = _write_job(ws, "20200101-000000-experiment-0001", EXPERIMENT, _experiment_progress(PROGRESS))
    at = AppTest.from_function(_panel, args=(str(ws.root),), default_timeout=30).run()
    later = ExperimentProgress(
        "live", 12, 4, (TaskProgress("bc seeds 2,3", "train", 20, 3000, 41.0),), 0.4, 65.0
    )
    (folder / "progress.json").write_text(json.dumps(_experiment_progress(later)))
    at.run()
    assert _progress_texts(at) == ["40% · runs 4/12 · about 1 min 05 s left"]
    texts = _lines(at)
    assert "bc seeds 2,3: step 20/3000 at 41 updates/s" in texts
    assert not any(t.startswith("sparse seeds 0,1") for t in texts), texts


def test_other_jobs_keep_their_count_and_whole_info_on_the_bar(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    progress = {"done": 5, "total": 608, "info": "ok 5 failed 0 cached 0"}
    _write_job(ws, "20200101-000000-label-0001", ["label", "--labeller", "reference"], progress)
    at = AppTest.from_function(_panel, args=(str(ws.root),), default_timeout=30).run()
    assert _progress_texts(at) == ["5 of 608 · ok 5 failed 0 cached 0"]


@pytest.fixture()
def fragments(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, float | None]]:
    """Every fragment the page declares on a run: (function name, run_every)."""
    declared: list[tuple[str, float | None]] = []
    real = streamlit.fragment

    def spy(func: Callable[..., Any] | None = None, *, run_every: Any = None) -> Any:
        def wrap(f: Callable[..., Any]) -> Any:
            declared.append((f.__name__, run_every))
            return real(f, run_every=run_every)

        return wrap if func is None else wrap(func)

    monkeypatch.setattr(streamlit, "fragment", spy)
    return declared


def test_finished_runs_are_reread_on_a_timer_while_a_training_job_runs_and_not_after(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch, fragments: list[tuple[str, float | None]]
) -> None:
    folder = _write_job(sample_ws, "20200101-000000-experiment-0001", EXPERIMENT, None)
    at = open_page(monkeypatch, sample_ws.root, "training", timeout=60)
    finished = [every for name, every in fragments if name == "_finished_runs"]
    assert finished and set(finished) == {tw.REFRESH_S}, fragments
    assert any("No finished training run" in i.value for i in at.info)
    _end(folder)
    fragments.clear()
    at.run()
    assert not at.exception, at.exception
    assert [every for name, every in fragments if name == "_finished_runs"] == [None], fragments
