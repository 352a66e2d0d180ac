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
# Commands that report progress as thousandths of the whole (`rgvlm experiment`), shown as a percentage:
# "250 of 1000" would read as 1000 of something.
PERCENT_COMMANDS = ("experiment",)
LOG_CHARS = 20_000  # the end of the log shown: an experiment's one line per finished run fits many runs


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
        if job.status == "running":
            _progress(job)
        elif job.status == "done":
            st.progress(1.0, text=f"finished {md_escape(str(job.finished_at))}")
        if job.error and job.status != "done":
            st.error(md_escape(job.error), icon=":material/error:")
        with st.expander("Log"):
            st.code(read_log(job, LOG_CHARS) or "(empty)", language=None)


def split_info(info: str) -> tuple[list[str], list[str]]:
    """A job's info as (summary, details): the `label: detail` parts of a " · "-separated line.

    An experiment reports one line of runs done, each running task and the time left; on the bar it
    would be cut off, so each `task: where it is` part gets a line of its own under the bar.
    """
    parts = [part.strip() for part in info.split(" · ") if part.strip()]
    return [p for p in parts if ": " not in p], [p for p in parts if ": " in p]


def progress_label(job: Job) -> str:
    """How far the job is: done of total, or a percentage for commands that report thousandths."""
    if not job.total:
        return "starting…"
    if job.args[:1] and job.args[0] in PERCENT_COMMANDS:
        return f"{job.fraction or 0.0:.0%}"
    return f"{job.done} of {job.total}"


def _progress(job: Job) -> None:
    """A running job's bar (how far, the info's summary) and one line per detail, all from the job."""
    summary, details = split_info(job.info)
    text = " · ".join([progress_label(job), *(md_escape(part) for part in summary)])
    st.progress(job.fraction or 0.0, text=text)
    if details:
        st.markdown("\n".join(f"- {md_escape(line)}" for line in details))
