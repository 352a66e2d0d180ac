"""Jobs: detached CLI processes recorded in the workspace, visible after a reload, cancellable, honest
about processes that died."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from rgvlm_core.errors import RGVLMError
from rgvlm_core.jobs import Job, cancel_job, get_job, list_jobs, read_log, start_job
from rgvlm_core.workspace import Workspace
from tests.fake_openai import FakeOpenAI, lvlm_label_args


def _wait(ws: Workspace, job_id: str, until: tuple[str, ...], timeout_s: float = 90.0) -> Job:
    deadline = time.monotonic() + timeout_s
    while True:
        job = get_job(ws, job_id)
        if job.status in until:
            return job
        assert time.monotonic() < deadline, f"job stayed {job.status}: {read_log(job)}"
        time.sleep(0.1)


def _running(pid: int) -> bool:
    from rgvlm_core.jobs import _alive

    return _alive(pid, None)


def test_a_finished_job_reports_done_with_progress_and_its_log(sample_ws) -> None:  # type: ignore[no-untyped-def]
    job = start_job(sample_ws, ["label", "--labeller", "reference", "--name", "ref"], name="reference labels")
    assert job.status == "running" and job.pid > 0
    done = _wait(sample_ws, job.job_id, ("done", "failed"))
    assert done.status == "done" and done.exit_code == 0, read_log(done)
    assert done.total == done.done == 608
    assert "run ref: 608 of 608 segments labelled" in read_log(done)
    reader = sample_ws.reader()
    assert reader.scalar("SELECT count(*) FROM labels WHERE run_id = 'ref'") == 1502
    reader.close()


def test_a_job_is_still_listed_after_a_reload_by_another_process(sample_ws) -> None:  # type: ignore[no-untyped-def]
    job = start_job(sample_ws, ["info", "--json"], name="info")
    _wait(sample_ws, job.job_id, ("done",))
    fresh = Workspace.open(sample_ws.root, create=False)  # as a new dashboard process would
    from rgvlm_core import jobs

    jobs._CHILDREN.clear()  # forget the handles this process holds
    listed = list_jobs(fresh)
    assert [j.job_id for j in listed] == [job.job_id] and listed[0].status == "done"


def test_cancel_stops_the_process_cleanly_and_keeps_finished_work(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI(delay_s=0.2) as fake:
        args = [
            "label",
            *lvlm_label_args(fake.base_url, "slow", "--concurrency", "2", "--flush-every", "1000"),
        ]
        job = start_job(sample_ws, args, name="slow lvlm run")
        deadline = time.monotonic() + 60
        while get_job(sample_ws, job.job_id).done < 4:
            assert time.monotonic() < deadline, read_log(get_job(sample_ws, job.job_id))
            time.sleep(0.1)
        stopped = cancel_job(sample_ws, job.job_id)
        assert stopped.status == "cancelled" and stopped.exit_code == 143, read_log(stopped)
        deadline = time.monotonic() + 10
        while _running(job.pid):
            assert time.monotonic() < deadline, "the process did not exit after cancelling"
            time.sleep(0.05)
        assert "Task was destroyed" not in read_log(stopped)
    reader = sample_ws.reader()
    kept = reader.scalar("SELECT count(*) FROM analyses WHERE run_id = 'slow'")
    reader.close()
    assert kept >= 4, "segments finished before the cancel are committed, so a rerun resumes"


def test_a_job_killed_outright_shows_as_failed_never_as_running(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI(delay_s=0.5) as fake:
        args = ["label", *lvlm_label_args(fake.base_url, "doomed")]
        job = start_job(sample_ws, args, name="doomed")
        _wait(sample_ws, job.job_id, ("running",))
        time.sleep(1.0)
        os.killpg(job.pid, signal.SIGKILL)
        died = _wait(sample_ws, job.job_id, ("failed",), timeout_s=10)
    assert died.error is not None and "ended without reporting" in died.error


def test_a_job_that_fails_records_the_error_line(sample_ws) -> None:  # type: ignore[no-untyped-def]
    job = start_job(sample_ws, ["import", "/nonexistent/folder"], name="bad import")
    failed = _wait(sample_ws, job.job_id, ("failed", "done"))
    assert failed.status == "failed" and failed.exit_code == 1
    assert failed.error is not None and "no such file or folder" in failed.error


def test_unknown_jobs_and_empty_commands_are_refused(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    with pytest.raises(RGVLMError, match="no job"):
        get_job(ws, "nope")
    with pytest.raises(RGVLMError, match="needs a command"):
        start_job(ws, [], name="empty")
    assert list_jobs(ws) == []
