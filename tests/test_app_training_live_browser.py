"""A real `rgvlm experiment` job watched on the Training page in a browser, never reloaded.

Streamlit's AppTest runs a page once per call and never fires a fragment's timer, so whether the page
shows what a running job stores, by itself, is only visible in a browser. The job is paused
(SIGSTOP to its process group) at the moments checked, so "while it still runs" holds by
construction rather than by racing it; it is always resumed (and cancelled if need be) at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from typing import Any

from rgvlm_app.jobs_panel import progress_label, split_info
from rgvlm_core.compare import runs_table
from rgvlm_core.jobs import Job, cancel_job, get_job, read_log, start_job
from rgvlm_core.workspace import Workspace
from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app

TIMEOUT_S = 120
RUNS = 4  # 2 methods x 2 seeds
ARGS = [
    "experiment", "--methods", "sparse,bc", "--seeds", "2", "--steps", "20", "--encoder", "hash",
    "-k", "1", "--conditions", "default", "--log-every", "5", "--name", "live", "--workers", "1",
    "--stack", "1",
]  # fmt: skip
TQDM = re.compile(r"\d+%\|| it/s\]|s/it\]")  # a tqdm bar's percentage or rate


def _signal(job: Job, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(job.pid, sig)  # the job and its workers: start_job gives it its own process group


@contextlib.contextmanager
def _experiment(ws: Workspace) -> Iterator[Job]:
    """The job, paused from the start; resumed and, if still running, cancelled whatever happens."""
    job = start_job(ws, ARGS, name="experiment live")
    _signal(job, signal.SIGSTOP)
    try:
        yield job
    finally:
        _signal(job, signal.SIGCONT)
        cancel_job(ws, job.job_id)


def _until(what: str, check: Callable[[], Any], page: Any | None = None) -> Any:
    """Wait for `check()` to return something true; fail naming `what` after TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while not (value := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        if page is not None:
            page.wait_for_timeout(250)
        else:
            time.sleep(0.25)
    return value


def _finished_lines(job: Job) -> list[str]:
    return [line for line in read_log(job).splitlines() if line.startswith("finished ")]


def _stored_runs(ws: Workspace) -> list[str]:
    reader = ws.reader()
    try:
        return list(runs_table(reader)["run_id"])
    finally:
        reader.close()


def _shown_runs(page: Any) -> list[str]:
    """The run ids in the Finished runs table (its grid's accessible table: one row per run)."""
    table = page.locator("[data-testid='stDataFrame']").filter(
        has=page.locator("th", has_text="reward_source")
    )
    if not table.count():
        return []
    return [t.strip() for t in table.first.locator("tbody tr > :first-child").all_text_contents()]


def _progress_text(page: Any) -> str:
    bars = page.locator("[data-testid='stProgress']")
    return " ".join(bars.first.inner_text().split()) if bars.count() else ""


def test_finished_runs_and_progress_show_while_a_real_experiment_runs_and_its_log_has_a_line_per_run(
    sample_ws: Workspace,
) -> None:
    ws = sample_ws
    with _experiment(ws) as job, streamlit_app(ws.root) as url, chromium_page() as page:
        page.goto(f"{url}/training")
        page.get_by_text("No finished training run yet", exact=False).wait_for(timeout=TIMEOUT_S * 1000)
        assert get_job(ws, job.job_id).status == "running" and _shown_runs(page) == []

        _signal(job, signal.SIGCONT)
        _until("the first finished run in the log", lambda: _finished_lines(job))
        _signal(job, signal.SIGSTOP)  # paused: still running while the page is checked
        now = get_job(ws, job.job_id)
        assert now.status == "running", (now.status, read_log(now))
        stored = _stored_runs(ws)
        assert 1 <= len(stored) < RUNS, stored
        _until(f"the page (not reloaded) to list {stored}", lambda: _shown_runs(page) == stored, page)
        summary, _ = split_info(now.info)
        bar = " · ".join([progress_label(now), *summary])
        assert re.fullmatch(rf"\d+% · runs \d/{RUNS}( · about .+ left)?", bar), bar  # the job's own ETA
        _until(f"the job's progress {bar!r}", lambda: _progress_text(page) == bar, page)
        page.screenshot(path=str(ARTIFACTS / "training-live-experiment.png"), full_page=True)

        _signal(job, signal.SIGCONT)
        done = _until("the job to end", lambda: (j := get_job(ws, job.job_id)).status != "running" and j)
        assert done.status == "done", (done.status, done.error, read_log(done))
        stored = _stored_runs(ws)
        _until("the page to list every run", lambda: _shown_runs(page) == stored, page)
        page.get_by_text("Log", exact=True).first.click()
        shown_log = page.locator("[data-testid='stCode']").filter(has_text="finished ").first.inner_text()

    lines = _finished_lines(done)
    assert len(stored) == RUNS and len(lines) == RUNS, (stored, read_log(done))
    for run_id in stored:  # one line per run, naming it
        assert sum(f"({run_id}):" in line for line in lines) == 1, (run_id, lines)
    for line in lines:
        assert line in shown_log, (line, shown_log)
    log = read_log(done)
    assert "Loading weights" not in log and not TQDM.search(log), log
