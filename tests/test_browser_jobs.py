"""A person starts a relabel job from the Prompts page, watches it finish, and finds it after a reload."""

from __future__ import annotations

from pathlib import Path

from rgvlm_core.jobs import list_jobs
from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app


def test_a_relabel_job_started_in_the_browser_finishes_and_survives_a_reload(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with streamlit_app(Path(sample_ws.root)) as url, chromium_page() as page:
        page.goto(f"{url}/prompts")
        page.get_by_role("tab", name="Relabel").click()
        start = page.get_by_role("button", name="Start relabelling")
        start.wait_for(timeout=30_000)
        start.click()
        page.get_by_text("done ·", exact=False).first.wait_for(timeout=90_000)
        page.screenshot(path=str(ARTIFACTS / "prompts-relabel-done.png"), full_page=True)
        page.reload()
        page.get_by_text("done ·", exact=False).first.wait_for(timeout=30_000)
        assert (
            "rgvlm label --labeller reference"
            in page.get_by_text("rgvlm label --labeller reference").first.inner_text()
        )
    jobs = list_jobs(sample_ws)
    assert len(jobs) == 1 and jobs[0].status == "done" and jobs[0].total == jobs[0].done == 608
    reader = sample_ws.reader()
    assert reader.scalar("SELECT count(DISTINCT run_id) FROM labels") == 1
    reader.close()
