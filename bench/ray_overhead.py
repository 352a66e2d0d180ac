"""What `--executor ray` costs over local worker processes (issue 12, item 5), on the same grid.

The grid (methods x seeds, each run trained then evaluated) runs twice through `run_experiment` in one
workspace: with local worker processes, then on a local Ray instance that the executor starts and shuts
down itself (as `rgvlm experiment --executor ray` without --address does). Before timing, a one-step
warm-up run builds the dataset cache and the evaluation embeddings, so neither side pays for them.

Prints each side's wall time and their ratio, Ray's start-up time, and per task the time from submit to
its Started event, the time from a free CPU slot to its Started event (worker start or reuse, imports,
arguments: Ray's per-task overhead, without the wait behind other tasks) and its total; then checks
that both sides stored the same evaluation episodes (completed and steps, per method and seed).
Exit status 1 if they differ. Wall-clock seconds; the 1-minute load average is printed (shared machine).

usage: python bench/ray_overhead.py [--workspace DIR] [--steps 500] [--seeds 2] [--workers 2] [--stack 1]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment
from rgvlm_core.rl.iql import IQLConfig
from rgvlm_core.sample import SAMPLE_DIR
from rgvlm_core.workspace import Workspace


class Timings(logging.Handler):
    """Collects rl.ray_executor's debug records: task timings and Ray's start-up time."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.tasks: dict[str, Any] = {}
        self.init_s: float | None = None

    def emit(self, record: logging.LogRecord) -> None:
        timing = getattr(record, "ray_timing", None)
        if timing is not None:
            self.tasks[timing.label] = timing
        if hasattr(record, "ray_init_s"):
            self.init_s = record.ray_init_s


def workspace(path: Path | None) -> Workspace:
    """The given workspace, or a fresh one holding the bundled sample."""
    if path is not None:
        return Workspace.open(path)
    ws = Workspace.open(Path(tempfile.mkdtemp(prefix="ray-bench-")) / "ws")
    for _ in import_alfred(ws, SAMPLE_DIR, ImportConfig()):
        pass
    return ws


def timed_run(ws: Workspace, spec: ExperimentSpec, config: IQLConfig, **kw: Any) -> float:
    start = time.perf_counter()
    *_, last = run_experiment(ws, spec, config, **kw)
    assert last is not None and last.phase == "finished", last
    return time.perf_counter() - start


def episodes(ws: Workspace, experiment: str) -> dict[tuple[str, int], list[tuple[Any, ...]]]:
    reader = ws.reader()
    try:
        rows = reader.rows(
            "SELECT r.method, r.seed, e.condition, e.length, e.episode, e.completed, e.steps "
            "FROM experiment_runs r JOIN eval_results e USING (run_id) WHERE r.experiment_id = ? "
            "ORDER BY ALL",
            [experiment],
        )
    finally:
        reader.close()
    out: dict[tuple[str, int], list[tuple[Any, ...]]] = {}
    for row in rows:
        values = list(row.values())
        out.setdefault((values[0], values[1]), []).append(tuple(values[2:]))
    return out


def _s(value: float | None) -> str:
    return f"{value:6.2f}" if value is not None else "   n/a"


def _slot_delay(timing: Any, timings: list[Any]) -> float | None:
    """Started minus the moment a CPU was free for it: its submit, or the end of the task it waited for
    (submit->Started of a task queued behind others includes their run time, which is not overhead)."""
    if timing.started is None:
        return None
    ends = [t.ended for t in timings if t is not timing and t.ended is not None and t.ended <= timing.started]
    return timing.started - max([timing.submitted, *ends])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspace", type=Path, default=None, help="default: a temporary sample workspace")
    parser.add_argument("--methods", default="sparse,bc")
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=2, help="evaluation episodes per length")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stack", type=int, default=1)
    args = parser.parse_args()

    import ray

    handler = Timings()
    logger = logging.getLogger("rgvlm_core.rl.ray_executor")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    ws = workspace(args.workspace)
    tag = f"{int(time.time())}"
    grid = ExperimentSpec(
        methods=tuple(args.methods.split(",")),
        seeds=tuple(range(args.seeds)),
        encoder="hash",
        episodes_per_length=args.episodes,
        conditions=("default",),
    )
    config = IQLConfig(steps=args.steps, hidden=args.hidden, batch_size=args.batch, log_every=50)
    warm = replace(grid, seeds=(0,), methods=grid.methods[:1], episodes_per_length=1, name=f"warm-{tag}")
    timed_run(ws, warm, replace(config, steps=1, log_every=1), workers=1)  # dataset cache, embeddings

    cells = len(grid.methods) * len(grid.seeds)
    print(
        f"grid: {cells} runs ({args.methods} x {args.seeds} seeds), {args.steps} steps, "
        f"hidden {args.hidden}, batch {args.batch}, {args.episodes} eval episodes per length; "
        f"workers {args.workers}, stack {args.stack}; load average {os.getloadavg()[0]:.2f}"
    )
    kw = {"workers": args.workers, "stack": args.stack}
    local_s = timed_run(ws, replace(grid, name=f"local-{tag}"), config, executor="local", **kw)
    ray_s = timed_run(ws, replace(grid, name=f"ray-{tag}"), config, executor="ray", **kw)
    print(f"local workers: {local_s:7.2f} s")
    print(
        f"ray (local instance, started and shut down by the executor): {ray_s:7.2f} s"
        f"   ratio ray/local {ray_s / local_s:.2f}"
    )
    print(
        f"ray start-up (ray.init): {handler.init_s:.2f} s"
        if handler.init_s is not None
        else "ray start-up: n/a"
    )
    if handler.init_s is not None:
        print(f"ray without its start-up: {ray_s - handler.init_s:7.2f} s")
    timings = list(handler.tasks.values())
    for timing in timings:
        print(
            f"  task {timing.label:<16} submit->Started {_s(timing.queued_s)} s"
            f"   free slot->Started {_s(_slot_delay(timing, timings))} s   submit->end {_s(timing.total_s)} s"
        )
    print(f"ray still initialised after the run: {ray.is_initialized()} (expected False)")
    local, on_ray = episodes(ws, f"local-{tag}"), episodes(ws, f"ray-{tag}")
    same = local == on_ray and len(local) == cells
    print(f"same evaluation episodes on both: {same} ({sum(map(len, local.values()))} episodes per side)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if same and not ray.is_initialized() else 1


if __name__ == "__main__":
    raise SystemExit(main())
