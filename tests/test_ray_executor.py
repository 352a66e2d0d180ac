"""`--executor ray`: the same runs as local workers, datasets through Ray's object store, failures and
cancellation stop every Ray task."""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install -e ".[ray]")')

from rgvlm_core.errors import RGVLMError  # noqa: E402
from rgvlm_core.rl import ray_executor  # noqa: E402
from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment  # noqa: E402
from rgvlm_core.rl.iql import IQLConfig  # noqa: E402
from rgvlm_core.rl.work import EvalPlan, RunTask  # noqa: E402

pytestmark = pytest.mark.slow
CPUS = 2
GRID = ExperimentSpec(
    methods=("sparse", "bc"),
    seeds=(0, 1),
    encoder="hash",
    episodes_per_length=1,
    conditions=("default",),
    phrasings=("unseen",),
)
SMALL = IQLConfig(steps=20, hidden=16, batch_size=32, log_every=10)


def _keep(signum: int, frame: Any) -> None:
    """A job's SIGTERM handler stand-in (rgvlm_core.jobs installs a cooperative one)."""


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    """One small local Ray instance for the module, started the way the executor starts one."""
    before = signal.signal(signal.SIGTERM, _keep)
    started = ray_executor.start_ray(CPUS, None)
    yield
    if started:
        ray.shutdown()
    signal.signal(signal.SIGTERM, before)


def stored(ws: Any, experiment: str) -> dict[tuple[str, int], dict[str, Any]]:
    """Per (method, seed) of an experiment: its evaluation episodes and its logged metrics."""
    reader = ws.reader()
    try:
        runs = reader.rows(
            "SELECT method, seed, run_id FROM experiment_runs WHERE experiment_id = ?", [experiment]
        )
        out = {}
        for run in runs:
            episodes = reader.rows(
                "SELECT condition, length, episode, completed, steps FROM eval_results "
                "WHERE run_id = ? ORDER BY ALL",
                [run["run_id"]],
            )
            metrics = reader.rows(
                "SELECT step, name, value FROM train_metrics WHERE run_id = ? ORDER BY step, name",
                [run["run_id"]],
            )
            out[(run["method"], run["seed"])] = {
                "eval": [tuple(e.values()) for e in episodes],
                "metrics": {(m["step"], m["name"]): m["value"] for m in metrics},
            }
        return out
    finally:
        reader.close()


def wait_for_idle_cpus(deadline_s: float = 60.0) -> float:
    """Ray's free CPUs once every task has released its own (or the deadline passed)."""
    end = time.monotonic() + deadline_s
    while True:
        free = ray.available_resources().get("CPU", 0.0)
        if free >= CPUS or time.monotonic() > end:
            return float(free)
        time.sleep(0.5)


def sparse_dataset(ws: Any) -> Any:
    """The sample workspace's sparse-reward dataset, memory-mapped from its cache."""
    from rgvlm_core.rl.dataset import parse_reward_source
    from rgvlm_core.rl.dataset_cache import cached_dataset
    from rgvlm_core.rl.encoder import make_encoder

    reader = ws.reader()
    try:
        return cached_dataset(reader, parse_reward_source("sparse", reader), make_encoder("hash"))
    finally:
        reader.close()


def task(method: str, seed: int, config: IQLConfig, evaluation: EvalPlan | None = None) -> RunTask:
    return RunTask(method, "sparse", (seed,), (f"t-{method}-{seed}",), config, evaluation, threads=1)


def test_ray_runs_store_the_same_results_as_local_runs(sample_ws) -> None:  # type: ignore[no-untyped-def]
    local = replace(GRID, name="local")
    on_ray = replace(GRID, name="on-ray")
    list(run_experiment(sample_ws, local, SMALL, workers=1, stack=2))
    progress = list(run_experiment(sample_ws, on_ray, SMALL, workers=CPUS, executor="ray", stack=2))
    assert progress[-1].phase == "finished" and progress[-1].finished == 4
    expected, got = stored(sample_ws, "local"), stored(sample_ws, "on-ray")
    assert sorted(got) == sorted(expected) == [("bc", 0), ("bc", 1), ("sparse", 0), ("sparse", 1)]
    for key, want in expected.items():
        assert got[key]["eval"] == want["eval"] and len(want["eval"]) == 6, key
        assert got[key]["metrics"].keys() == want["metrics"].keys(), key
        assert list(got[key]["metrics"].values()) == pytest.approx(list(want["metrics"].values()), rel=1e-5)


def test_workers_never_read_the_workspace_dataset_cache(sample_ws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from rgvlm_core.rl.dataset_cache import dataset_dir

    put = ray_executor.put_dataset
    moved: list[Path] = []

    def put_then_hide_the_cache(arrays: Any) -> Any:
        ref = put(arrays)
        folder = dataset_dir(arrays)
        assert folder is not None  # the driver's dataset is the memory-mapped cache folder
        folder.rename(folder.with_name(folder.name + "-hidden"))
        moved.append(folder)
        return ref

    monkeypatch.setattr(ray_executor, "put_dataset", put_then_hide_the_cache)
    spec = replace(GRID, methods=("sparse",), seeds=(0,), name="hidden-cache")
    progress = list(run_experiment(sample_ws, spec, SMALL, workers=CPUS, executor="ray"))
    assert moved and not moved[0].exists()
    assert progress[-1].phase == "finished" and len(stored(sample_ws, "hidden-cache")) == 1


def test_a_task_failing_in_its_worker_is_named_and_stops_the_other_tasks(sample_ws) -> None:  # type: ignore[no-untyped-def]
    data = sparse_dataset(sample_ws)
    endless = task("sparse", 0, replace(SMALL, steps=10**6, log_every=100))
    # evaluation with no instruction embeddings: the worker raises KeyError once training ends
    broken = task("bc", 1, SMALL, EvalPlan(("default",), 1))
    runner = ray_executor.RayExecutor(workers=CPUS)
    with pytest.raises(RGVLMError, match=r"bc seed 1: KeyError: .*was not embedded"):
        for _ in runner.run([endless, broken], {"sparse": data}):
            pass
    assert wait_for_idle_cpus() == CPUS  # the endless task was cancelled, not left running


def test_a_task_no_ray_node_can_hold_is_refused_by_name_before_anything_runs(sample_ws) -> None:  # type: ignore[no-untyped-def]
    data = sparse_dataset(sample_ws)
    on_gpu = task("sparse", 4, replace(SMALL, device="cuda"))
    runner = ray_executor.RayExecutor(workers=CPUS)
    with pytest.raises(RGVLMError, match=r"sparse seed 4: needs 1 CPU\(s\) and 1 GPU\(s\).*device cuda"):
        list(runner.run([on_gpu], {"sparse": data}))
    assert runner.timings == []  # nothing was submitted


def test_cancelling_stops_the_remaining_ray_tasks(sample_ws, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    seen_training = [False]
    monkeypatch.setattr("rgvlm_core.jobs.cancel_requested", lambda: seen_training[0])
    spec = replace(GRID, name="cancelled")
    long = replace(SMALL, steps=20_000, log_every=10)
    last = None
    for last in run_experiment(sample_ws, spec, long, workers=CPUS, executor="ray", stack=1):
        seen_training[0] = seen_training[0] or any(t.phase == "train" for t in last.active)
    assert last is not None and last.finished == 0 and last.phase == "running"
    assert stored(sample_ws, "cancelled") == {}
    assert wait_for_idle_cpus() == CPUS


def test_ray_keeps_the_jobs_sigterm_handler_and_tasks_declare_their_resources() -> None:
    assert signal.getsignal(signal.SIGTERM) is _keep  # ray.init replaces it; start_ray puts it back
    assert ray_executor.resources(task("a", 0, replace(SMALL, device="cuda:1"))) == {
        "num_cpus": 1,
        "num_gpus": 1,
    }
    assert ray_executor.resources(replace(task("a", 0, SMALL), threads=3)) == {"num_cpus": 3, "num_gpus": 0}
    assert ray_executor.resources(replace(task("a", 0, SMALL), threads=0)) == {"num_cpus": 1, "num_gpus": 0}


def test_without_ray_the_executor_says_how_to_install_it(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(RGVLMError, match=r'pip install -e "\.\[ray\]"'):
        ray_executor.RayExecutor(workers=2)
