"""An API key given inside a base URL is used for the requests and never stored, logged or printed."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from rgvlm_core.jobs import get_job, read_log, start_job
from rgvlm_core.redact import redact
from tests.fake_openai import FakeOpenAI, lvlm_label_args

ROOT = Path(__file__).resolve().parents[1]
USER_KEY = "sk-userinfo-7f3a9c2e"
QUERY_KEY = "sk-query-51d0b8aa"


def _keyed_urls(fake: FakeOpenAI) -> list[str]:
    host = f"127.0.0.1:{fake.port}"
    return [f"http://apiuser:{USER_KEY}@{host}/v1", f"http://{host}/v1?api_key={QUERY_KEY}"]


def _files_holding(root: Path, *secrets: str) -> list[str]:
    """Files under `root` whose bytes, or (Parquet) whose decoded rows, contain any of `secrets`."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.suffix == ".parquet":
            data += json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
        if any(s.encode() in data for s in secrets):
            found.append(str(path.relative_to(root)))
    return found


def _label_args(fake: FakeOpenAI, name: str) -> list[str]:
    urls = _keyed_urls(fake)
    args = lvlm_label_args(urls[0], name, "--base-url", urls[1], "--limit", "1", "--concurrency", "2")
    return ["-v", "label", *args]


def test_a_key_in_the_base_url_authenticates_but_is_never_stored_or_printed(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI() as fake:
        result = subprocess.run(
            [sys.executable, "-m", "rgvlm_core.cli", "-w", str(sample_ws.root), *_label_args(fake, "keyed")],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
            timeout=300,
        )
        auth = [h.get("authorization") for h in fake.headers]
    assert result.returncode == 0, result.stderr
    assert " 0 failed" in result.stdout, result.stdout + result.stderr
    basic = "Basic " + base64.b64encode(f"apiuser:{USER_KEY}".encode()).decode()
    assert basic in auth, "the userinfo key still authenticates the requests to its server"
    assert None in auth, "the other server (key in the query) is used too"
    assert USER_KEY not in result.stdout + result.stderr
    assert QUERY_KEY not in result.stdout + result.stderr
    assert "HTTP Request" in result.stderr, "the verbose log is on, and scrubbed"
    assert _files_holding(sample_ws.root, USER_KEY, QUERY_KEY) == []


def test_a_job_with_a_key_in_the_base_url_records_and_logs_no_key(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI() as fake:
        job = start_job(sample_ws, _label_args(fake, "keyed-job"), name="keyed job")
        deadline = time.monotonic() + 300
        while (job := get_job(sample_ws, job.job_id)).status == "running":
            assert time.monotonic() < deadline, read_log(job)
            time.sleep(0.2)
        served = len(fake.requests)
    assert job.status == "done", read_log(job)
    assert served > 0
    assert USER_KEY not in job.command and QUERY_KEY not in job.command
    assert "***" in job.command
    assert _files_holding(sample_ws.root, USER_KEY, QUERY_KEY) == []


def test_a_refused_request_reports_its_url_without_the_key(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI(api_key="another-key") as fake:  # refuses, and echoes the key it got (401)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "rgvlm_core.cli",
                "-w",
                str(sample_ws.root),
                *_label_args(fake, "refused"),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
            timeout=300,
        )
    assert result.returncode == 1 and "no step got a label" in result.stderr, result.stderr
    assert f"127.0.0.1:{fake.port}/v1/chat/completions" in result.stderr
    basic = base64.b64encode(f"apiuser:{USER_KEY}".encode()).decode()  # the server echoes this
    for secret in (USER_KEY, QUERY_KEY, basic):
        assert secret not in result.stdout + result.stderr
    assert _files_holding(sample_ws.root, USER_KEY, QUERY_KEY, basic) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://user:pw@host:8000/v1", "http://***@host:8000/v1"),
        ("https://tok@host/v1", "https://***@host/v1"),
        ("http://host/v1?api_key=abc&api-version=2024", "http://host/v1?api_key=***&api-version=2024"),
        ("http://host/v1?Key=abc#x", "http://host/v1?Key=***#x"),
        ("http://host/v1?access_token=a&token=b", "http://host/v1?access_token=***&token=***"),
        (
            "rgvlm label --base-url http://u:k@h/v1 --model m",
            "rgvlm label --base-url http://***@h/v1 --model m",
        ),
        (
            "cannot reach 'http://u:k@h/v1/chat/completions': refused",
            "cannot reach 'http://***@h/v1/chat/completions': refused",
        ),
        ("Authorization: Bearer sk-123", "Authorization: Bearer ***"),
        ("server said: Basic dXNlcjpwdw==", "server said: Basic ***"),
        ("Basic authentication failed", "Basic authentication failed"),
        ("http://127.0.0.1:8000/v1 and plain text", "http://127.0.0.1:8000/v1 and plain text"),
        ("user@example.com wrote", "user@example.com wrote"),
    ],
)
def test_redact_masks_credentials_and_keeps_everything_else(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected
