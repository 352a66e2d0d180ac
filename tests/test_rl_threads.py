"""The thread policy of training and evaluation processes (rl.threads) and device checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from rgvlm_core.errors import UsageError
from rgvlm_core.rl.threads import THREADS_ENV, thread_count


def test_one_thread_is_the_default_and_the_environment_or_an_argument_overrides_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert thread_count() == 1
    monkeypatch.setenv(THREADS_ENV, "2")
    assert thread_count() == 2
    assert thread_count(3) == 3, "an explicit --threads wins over the environment"
    monkeypatch.setenv(THREADS_ENV, "0")
    assert thread_count() == 0, "0 = torch's own default"


@pytest.mark.parametrize("bad", ["two", "1.5", "-1"])
def test_a_bad_thread_setting_is_a_usage_error_naming_it(monkeypatch, bad: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(THREADS_ENV, bad)
    with pytest.raises(UsageError, match=f"{bad}"):
        thread_count()


def test_a_training_process_runs_torch_on_one_thread_unless_told_otherwise(sample_ws) -> None:  # type: ignore[no-untyped-def]
    """In a fresh process (torch defaults to one thread per core), train_run applies the policy and
    records the count in the run's provenance."""
    code = (
        "import json, sys, torch\n"
        "from rgvlm_core.workspace import Workspace\n"
        "from rgvlm_core.rl.iql import IQLConfig\n"
        "from rgvlm_core.rl.runs import TrainSpec, train_run\n"
        "ws = Workspace.open(sys.argv[1])\n"
        "spec = TrainSpec(encoder='hash', name=sys.argv[2])\n"
        "cfg = IQLConfig(steps=2, batch_size=8, hidden=8, log_every=1)\n"
        "threads = int(sys.argv[3]) if len(sys.argv) > 3 else None\n"
        "for _ in train_run(ws, spec, cfg, threads=threads): pass\n"
        "print(torch.get_num_threads())\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in (THREADS_ENV, "OMP_NUM_THREADS")}

    def train(*args: str) -> str:
        out = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()[-1]

    assert train(str(sample_ws.root), "one") == "1"
    assert train(str(sample_ws.root), "two", "2") == "2"
    reader = sample_ws.reader()
    rows = reader.rows("SELECT run_id, provenance FROM train_runs ORDER BY run_id")
    reader.close()
    assert {r["run_id"]: json.loads(r["provenance"])["threads"] for r in rows} == {"one": 1, "two": 2}


def test_a_device_this_torch_cannot_use_is_a_usage_error_not_an_assertion() -> None:
    import torch

    from rgvlm_core.rl.iql import IQL, IQLConfig, check_device

    assert check_device("cpu").type == "cpu"
    with pytest.raises(UsageError, match="not a torch device"):
        check_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match=r"'cuda'.*use --device cpu"):
            IQL(4, 4, 3, IQLConfig(device="cuda"))


def test_rgvlm_train_takes_threads_from_its_option(sample_ws) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, THREADS_ENV: "1"}
    args = ["-w", str(sample_ws.root), "train", "--encoder", "hash", "--steps", "2", "--batch-size", "8"]
    args += ["--log-every", "1", "--iql", "hidden=8", "--threads", "2", "--name", "cli-two"]
    out = subprocess.run(
        [sys.executable, "-m", "rgvlm_core.cli", *args], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    reader = sample_ws.reader()
    row = reader.rows("SELECT provenance FROM train_runs WHERE run_id = 'cli-two'")
    reader.close()
    assert json.loads(row[0]["provenance"])["threads"] == 2, "--threads wins over RGVLM_THREADS"
