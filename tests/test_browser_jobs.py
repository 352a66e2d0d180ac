"""A person starts a relabel job from the Prompts page, watches it finish, and finds it after a reload."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from rgvlm_core.jobs import Job, list_jobs, read_log
from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app

FINISHED = re.compile(r"^finished \d{4}-\d\d-\d\dT")  # the progress text of a job that is done


def _job_row(page: Any, job: Job) -> Any:
    """The jobs panel's bordered box for `job` (found by the exact command the store recorded)."""
    command = page.locator("code").filter(has_text=job.command).last
    return command.locator(
        "xpath=ancestor::div[@data-testid='stVerticalBlock'][.//div[@data-testid='stExpander']][1]"
    )


def _assert_row_shows(page: Any, job: Job) -> str:
    """The row says what the store says: status, the command, when it finished, and the log's summary."""
    row = _job_row(page, job)
    row.get_by_text(f"finished {job.finished_at}", exact=True).wait_for(timeout=30_000)
    head = row.locator("p").filter(has=page.locator("code")).first.inner_text()
    assert head.split("·")[0].split()[-1] == job.status == "done", head
    # the finished row replaces the running one; on a busy machine Streamlit may still show the running
    # row's elements (stale) for a moment, so wait for the Cancel button to go rather than look once
    expect(row.get_by_role("button", name="Cancel")).to_have_count(0, timeout=30_000)
    row.get_by_text("Log", exact=True).click()
    shown = row.locator('[data-testid="stCode"]').inner_text()
    log = [line.strip() for line in read_log(job, 4000).splitlines()]
    summaries = [line for line in log if line.startswith("run ")]  # the CLI's one-line summary
    assert len(summaries) == 1 and summaries[0] in shown, (log, shown[-500:])
    return summaries[0]


def test_a_relabel_job_started_in_the_browser_finishes_and_survives_a_reload(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with streamlit_app(Path(sample_ws.root)) as url, chromium_page() as page:
        page.goto(f"{url}/prompts")
        page.get_by_role("tab", name="Relabel").click()
        start = page.get_by_role("button", name="Start relabelling")
        start.wait_for(timeout=30_000)
        command = page.locator('[data-testid="stCode"]').filter(has_text="rgvlm label").first.inner_text()
        start.click()
        page.get_by_text("Started job ", exact=False).first.wait_for(timeout=30_000)
        (job,) = list_jobs(sample_ws)
        assert page.get_by_text(f"Started job {job.job_id}: {job.command}", exact=True).count() == 1
        assert " ".join(command.split()) == job.command
        page.get_by_text(FINISHED).first.wait_for(timeout=90_000)
        (job,) = list_jobs(sample_ws)
        summary = _assert_row_shows(page, job)
        page.screenshot(path=str(ARTIFACTS / "prompts-relabel-done.png"), full_page=True)
        page.reload()
        assert _assert_row_shows(page, job) == summary
    assert job.status == "done" and job.exit_code == 0 and job.total == job.done == 608
    assert job.args[:3] == ("label", "--labeller", "reference")
    reader = sample_ws.reader()
    (run_id,) = [r["run_id"] for r in reader.rows("SELECT DISTINCT run_id FROM labels")]
    assert summary.startswith(f"run {run_id}: {job.total} of {job.total} segments labelled")
    every_step = reader.scalar("SELECT sum(n_steps) FROM episodes")
    assert reader.scalar("SELECT count(*) FROM labels WHERE status = 'ok'") == every_step > 0
    reader.close()
