"""A base URL holding a key, typed into the Prompts page, reaches the label job through its environment:
a command line is visible to every user of the machine (`ps`, /proc/PID/cmdline) while the job runs."""

from __future__ import annotations

import base64
import time
from pathlib import Path

from rgvlm_app.prompt_jobs import BackendChoice
from rgvlm_core.jobs import get_job, read_log, start_job
from rgvlm_core.labeling.factory import BASE_URL_ENV
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT
from tests.fake_openai import FakeOpenAI

KEY = "sk-typed-into-the-page-3c9e"


def _choice(*urls: str) -> BackendChoice:
    return BackendChoice("openai", "fake-vlm", urls, "RGVLM_TEST_NO_KEY", 2, DEFAULT_PROMPT.prompt_id)


def test_plain_base_urls_stay_on_the_command_line_and_keyed_ones_move_to_the_environment() -> None:
    plain = _choice("http://127.0.0.1:8000/v1", "http://127.0.0.1:8001/v1")
    assert plain.args().count("--base-url") == 2 and plain.env() == {}
    keyed = _choice("http://127.0.0.1:8000/v1", f"http://u:{KEY}@127.0.0.1:8001/v1")
    assert "--base-url" not in keyed.args() and KEY not in " ".join(keyed.args())
    assert keyed.env() == {BASE_URL_ENV: f"http://127.0.0.1:8000/v1,http://u:{KEY}@127.0.0.1:8001/v1"}
    assert _choice(f"http://127.0.0.1:8000/v1?api_key={KEY}").env(), "a key parameter counts too"


def test_a_job_given_a_keyed_url_authenticates_without_the_key_on_its_command_line(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI(delay_s=0.2) as fake:
        choice = _choice(f"http://apiuser:{KEY}@127.0.0.1:{fake.port}/v1")
        args = ["label", *choice.args(), "--name", "keyed", "--limit", "1"]
        job = start_job(sample_ws, args, name="keyed", env=choice.env())
        cmdline = Path(f"/proc/{job.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        deadline = time.monotonic() + 300
        while (job := get_job(sample_ws, job.job_id)).status == "running":
            assert time.monotonic() < deadline, read_log(job)
            time.sleep(0.2)
        auth = {h.get("authorization") for h in fake.headers}
    assert "rgvlm_core.cli" in cmdline and "label" in cmdline, cmdline
    assert KEY not in cmdline and KEY not in job.command
    assert job.status == "done", read_log(job)
    assert "Basic " + base64.b64encode(f"apiuser:{KEY}".encode()).decode() in auth
    assert KEY not in read_log(job)
