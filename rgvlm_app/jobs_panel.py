"""A live view of jobs: progress bars, status, log tail and Cancel, refreshed by a timed fragment."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from rgvlm_app.text import md_code, md_escape
from rgvlm_core.jobs import Job, cancel_job, get_job, list_jobs, read_log
from rgvlm_core.workspace import Workspace

STATUS_ICON = {
    "running": ":material/hourglass_top:",
    "done": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/stop_circle:",
}


def jobs_panel(workspace_path: Path | str, job_ids: list[str] | None = None, *, limit: int = 10) -> None:
    """Show jobs (the given ones, or the newest) and keep them live while any is running."""
    _panel(str(workspace_path), tuple(job_ids) if job_ids is not None else None, limit)


@st.fragment(run_every=1.0)
def _panel(workspace_path: str, job_ids: tuple[str, ...] | None, limit: int) -> None:
    ws = Workspace.open(Path(workspace_path), create=False)
    jobs = [get_job(ws, j) for j in job_ids] if job_ids is not None else list_jobs(ws, limit)
    if not jobs:
        st.caption("No jobs yet.")
        return
    for job in jobs:
        _job_row(ws, job)


def _cancel(ws: Workspace, job_id: str) -> None:
    cancel_job(ws, job_id)


def _job_row(ws: Workspace, job: Job) -> None:
    """One job: status and command, Cancel while it runs, progress, error, log.

    Everything in it but the icon is data (job.json, progress.json, exit.json): escaped for Markdown.
    """
    with st.container(border=True):
        head, button = st.columns([6, 1])
        status = md_escape(job.status)
        head.markdown(f"{STATUS_ICON.get(job.status, '')} **{status}** · {md_code(job.command)}")
        if job.status == "running":
            # A callback, not `if button: ... st.rerun(scope="fragment")`: the click's rerun (of the
            # fragment in a browser, of the whole page in AppTest) then draws the job already stopped.
            button.button("Cancel", key=f"cancel-{job.job_id}", on_click=_cancel, args=(ws, job.job_id))
        fraction = job.fraction
        label = f"{job.done} of {job.total}" if job.total else "starting…"
        if job.status == "running":
            st.progress(fraction or 0.0, text=f"{label} · {md_escape(job.info)}" if job.info else label)
        elif job.status == "done":
            st.progress(1.0, text=f"finished {md_escape(str(job.finished_at))}")
        if job.error and job.status != "done":
            st.error(md_escape(job.error), icon=":material/error:")
        with st.expander("Log"):
            st.code(read_log(job, 4000) or "(empty)", language=None)
