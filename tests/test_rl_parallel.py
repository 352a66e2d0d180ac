"""Experiments in parallel: local workers, stacked seeds, resume after a kill, progress and its estimate."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rgvlm_core.errors import UsageError
from rgvlm_core.rl.experiment import ExperimentSpec, plan_tasks, run_experiment
from rgvlm_core.rl.iql import IQLConfig
from rgvlm_core.rl.work import EvalPlan
from rgvlm_core.sample import label_sample

ROOT = Path(__file__).resolve().parents[1]
TINY = IQLConfig(steps=20, log_every=10, hidden=16, batch_size=32)


def grid(name: str, seeds: tuple[int, ...] = (0, 1)) -> ExperimentSpec:
    return ExperimentSpec(
        methods=("sparse", "bc"),
        seeds=seeds,
        encoder="hash",
        episodes_per_length=1,
        conditions=("default",),
        phrasings=("unseen",),
        name=name,
    )


def stored(ws: Any, experiment: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (method, seed) of a finished experiment: its final metrics and its evaluation episodes."""
    reader = ws.reader()
    try:
        runs = reader.rows(
            "SELECT method, seed, run_id FROM experiment_runs WHERE experiment_id = ?", [experiment]
        )
        out = {}
        for r in runs:
            metrics = reader.rows(
                "SELECT step, name, value FROM train_metrics WHERE run_id = ? ORDER BY step, name",
                [r["run_id"]],
            )
            episodes = reader.rows(
                "SELECT condition, length, episode, completed, steps FROM eval_results WHERE run_id = ? "
                "ORDER BY condition, length, episode",
                [r["run_id"]],
            )
            out[(r["method"], int(r["seed"]))] = {"metrics": metrics, "episodes": episodes}
        return out
    finally:
        reader.close()


def test_local_workers_store_exactly_what_one_process_stores(sample_ws) -> None:  # type: ignore[no-untyped-def]
    label_sample(sample_ws)
    list(run_experiment(sample_ws, grid("inline"), TINY, workers=1))
    list(run_experiment(sample_ws, grid("workers"), TINY, workers=2))  # the defaults: one seed per task
    inline, parallel = stored(sample_ws, "inline"), stored(sample_ws, "workers")
    assert sorted(inline) == sorted(parallel) == [("bc", 0), ("bc", 1), ("sparse", 0), ("sparse", 1)]
    for cell, record in inline.items():
        assert parallel[cell] == record, cell  # same code, same seed, one thread each: bit for bit
    assert inline[("sparse", 0)]["metrics"] != inline[("sparse", 1)]["metrics"]


def test_seeds_stacked_in_one_model_train_like_separate_runs(sample_ws) -> None:  # type: ignore[no-untyped-def]
    list(run_experiment(sample_ws, grid("alone"), TINY, workers=1, stack=1))
    list(run_experiment(sample_ws, grid("stacked"), TINY, workers=1, stack=2))
    alone, stacked = stored(sample_ws, "alone"), stored(sample_ws, "stacked")
    assert sorted(alone) == sorted(stacked)
    for cell, record in alone.items():
        mine = stacked[cell]["metrics"]
        assert [(m["step"], m["name"]) for m in mine] == [(m["step"], m["name"]) for m in record["metrics"]]
        for a, b in zip(record["metrics"], mine, strict=True):
            assert b["value"] == pytest.approx(a["value"], rel=1e-4, abs=1e-5), (cell, a["name"], a["step"])
    reader = sample_ws.reader()
    provenance = reader.scalar(
        "SELECT provenance FROM train_runs WHERE starts_with(run_id, 'stacked-') LIMIT 1"
    )
    reader.close()
    assert '"stacked_seeds": [0, 1]' in provenance


def test_on_a_cpu_each_seed_is_its_own_task_so_workers_cannot_change_results() -> None:
    cells = [(m, m, s) for m in ("sparse", "sparse+reference", "bc") for s in range(3)]
    plan = EvalPlan(("default",), 1)
    for workers in (1, 2, 8):
        tasks = plan_tasks("e", cells, TINY, plan, None, workers=workers)
        # costliest first (behaviour cloning trains only its actor), round-robin over methods among
        # equals: an experiment stopped part-way has every method at about the same number of seeds
        assert [(t.method, t.seeds) for t in tasks] == [
            (m, (s,)) for s in range(3) for m in ("sparse", "sparse+reference")
        ] + [("bc", (s,)) for s in range(3)]
    assert all(t.config.beta == 0.0 for t in tasks if t.method == "bc")
    assert all(t.config.beta == TINY.beta for t in tasks if t.method != "bc")
    assert all(len(set(t.run_ids)) == len(t.seeds) for t in tasks)


def test_stacks_split_seeds_evenly_on_a_gpu_or_as_asked() -> None:
    plan = EvalPlan(("default",), 1)
    grid = [(m, m, s) for m in ("a", "b", "c", "d", "e", "bc") for s in range(5)]  # the paper's 6 x 5
    gpu = replace(TINY, device="cuda")
    sizes = [len(t.seeds) for t in plan_tasks("e", grid, gpu, plan, None, workers=2)]
    assert sizes == [3] * 5 + [2] * 5 + [3, 2]  # 30 runs, ~4 tasks per worker: 5 seeds as 3 + 2; bc last
    explicit = plan_tasks("e", grid[:5], TINY, plan, None, workers=2, stack=2)
    assert [t.seeds for t in explicit] == [(0, 1), (2, 3), (4,)]
    cluster = plan_tasks("e", grid[:5], gpu, plan, None, workers=0)
    assert [t.seeds for t in cluster] == [(0,), (1,), (2,), (3,), (4,)]
    with pytest.raises(UsageError, match="stack=0"):
        plan_tasks("e", grid, TINY, plan, None, workers=2, stack=0)


def test_progress_counts_runs_reports_speed_and_ends_with_every_run_finished(sample_ws) -> None:  # type: ignore[no-untyped-def]
    progress = list(run_experiment(sample_ws, grid("watched"), TINY, workers=1, stack=2))
    fractions = [p.fraction for p in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert progress[-1].phase == "finished" and progress[-1].finished == progress[-1].runs == 4
    finished = [p.finished_run for p in progress if p.finished_run is not None]
    assert sorted((f.method, f.seed) for f in finished) == [
        ("bc", 0),
        ("bc", 1),
        ("sparse", 0),
        ("sparse", 1),
    ]
    assert all("subtasks completed over 6 evaluation episodes" in f.line() for f in finished)
    bc_line = next(f.line() for f in finished if f.method == "bc")
    assert "actor loss" in bc_line and "q loss" not in bc_line and "nan" not in bc_line  # BC trains no Q
    training = [t for p in progress for t in p.active if t.phase == "train"]
    assert training and all(t.updates_per_s and t.updates_per_s > 0 for t in training)
    assert "updates/s" in training[0].text() and "runs 0/4" in progress[1].text()


def test_an_experiment_already_finished_reports_it_without_training_again(sample_ws) -> None:  # type: ignore[no-untyped-def]
    list(run_experiment(sample_ws, grid("done", seeds=(0,)), TINY, workers=1))
    again = list(run_experiment(sample_ws, grid("done", seeds=(0,)), TINY, workers=2))
    assert len(again) == 1 and again[0].phase == "finished" and again[0].finished == 2
    reader = sample_ws.reader()
    assert reader.scalar("SELECT count(*) FROM train_runs") == 2
    reader.close()


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_killed_experiment_leaves_no_worker_running_and_resumes_to_a_consistent_store(sample_ws) -> None:  # type: ignore[no-untyped-def]
    args = [
        sys.executable, "-m", "rgvlm_core.cli", "-w", str(sample_ws.root), "experiment",
        "--methods", "sparse,bc", "--seeds", "2", "--steps", "1500", "--log-every", "50", "-k", "1",
        "--conditions", "default", "--phrasings", "unseen", "--encoder", "hash", "--iql", "hidden=16",
        "--batch-size", "32", "--workers", "2", "--stack", "1", "--name", "killed",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        workers: set[int] = set()
        while time.monotonic() < deadline:
            reader = sample_ws.reader()
            logged = reader.scalar("SELECT count(*) FROM train_metrics")
            reader.close()
            workers |= {p for p in _children(driver.pid) if "spawn" in _cmdline(p)}
            if logged and len(workers) >= 2:
                break
            assert driver.poll() is None, "the experiment ended before it could be killed"
            time.sleep(0.2)
        assert len(workers) >= 2, "no worker processes seen"
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        deadline = time.monotonic() + 30
        while any(_alive(p) for p in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(_alive(p) for p in workers), "a worker outlived its killed driver"
    finally:
        if driver.poll() is None:
            driver.kill()
    resumed = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert "experiment killed: 4 runs finished" in resumed.stdout
    reader = sample_ws.reader()
    cells = reader.rows("SELECT method, seed, count(*) AS n FROM experiment_runs GROUP BY ALL ORDER BY ALL")
    per_run = reader.rows(
        "SELECT r.run_id, count(DISTINCT t.run_id) AS trained, count(e.run_id) AS episodes "
        "FROM experiment_runs r LEFT JOIN train_runs t USING (run_id) "
        "LEFT JOIN eval_results e USING (run_id) "
        "GROUP BY ALL"
    )
    reader.close()
    assert [(c["method"], c["seed"], c["n"]) for c in cells] == [
        ("bc", 0, 1),
        ("bc", 1, 1),
        ("sparse", 0, 1),
        ("sparse", 1, 1),
    ]
    assert all(r["trained"] == 1 and r["episodes"] == 6 for r in per_run), per_run


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def test_a_script_without_a_main_guard_runs_its_experiment_once(sample_ws, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Spawned workers must not re-run the caller's script (which would start the experiment again)."""
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment\n"
        "from rgvlm_core.rl.iql import IQLConfig\n"
        "from rgvlm_core.workspace import Workspace\n"
        "print('script body ran', flush=True)\n"
        f"ws = Workspace.open({str(sample_ws.root)!r})\n"
        "spec = ExperimentSpec(methods=('sparse', 'bc'), seeds=(0,), encoder='hash', episodes_per_length=1,\n"
        "                      conditions=('default',), name='unguarded')\n"
        "for p in run_experiment(ws, spec, IQLConfig(steps=10, log_every=5, hidden=16, batch_size=32),\n"
        "                        workers=2, stack=1):\n"
        "    pass\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ran = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.count("script body ran") == 1, ran.stdout + ran.stderr
    reader = sample_ws.reader()
    assert reader.scalar("SELECT count(*) FROM experiment_runs WHERE experiment_id = 'unguarded'") == 2
    assert reader.scalar("SELECT count(*) FROM train_runs") == 2
    reader.close()
