"""Where an experiment's tasks run: in this process, or in local worker processes (Ray: rl.ray_executor).

Every executor takes the tasks and their datasets and yields `(task index, event)` pairs as the work
produces them (rl.work); the driver alone writes them into the workspace. Workers are spawned (not
forked: torch's thread pools do not survive a fork), start once per experiment, and take tasks from a
shared queue, so a fast task never waits behind a slow one. Datasets reach them as the folder of their
memory-mapped cache (rl.dataset_cache): one copy in the page cache for every worker.

A worker whose driver dies stops by itself (it watches its parent), and the driver stops its workers
when it is cancelled, fails or finishes, so no training outlives the command that started it.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import sys
import threading
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.rl.work import Event, RunTask, execute

POLL_S = 0.5  # how often the driver checks for cancellation and dead workers while it waits


class Executor(Protocol):
    """Runs tasks somewhere and reports their events; `workers` = tasks that can run at once."""

    workers: int

    def run(self, tasks: Sequence[RunTask], datasets: Mapping[str, Any]) -> Iterator[tuple[int, Event]]: ...


class InlineExecutor:
    """Runs the tasks one after another in this process: no start-up cost, for one task or one core."""

    workers = 1

    def run(self, tasks: Sequence[RunTask], datasets: Mapping[str, Any]) -> Iterator[tuple[int, Event]]:
        from rgvlm_core.jobs import cancel_requested

        for index, task in enumerate(tasks):
            for event in execute(task, datasets[task.source]):
                yield index, event
                if cancel_requested():
                    return


@dataclass(frozen=True)
class _Failed:
    """A worker's task raised: the exception's text and traceback."""

    message: str
    trace: str


@dataclass(frozen=True)
class _Done:
    pass


class ProcessExecutor:
    """`workers` local processes, each running one task at a time (one torch thread each by default)."""

    def __init__(self, workers: int):
        if workers < 1:
            raise UsageError(f"workers={workers}: give at least 1")
        self.workers = workers

    def run(self, tasks: Sequence[RunTask], datasets: Mapping[str, Any]) -> Iterator[tuple[int, Event]]:
        from rgvlm_core.jobs import cancel_requested
        from rgvlm_core.rl.dataset_cache import dataset_dir

        if not tasks:
            return
        context = mp.get_context("spawn")
        todo: Any = context.Queue()
        events: Any = context.Queue()
        for index, task in enumerate(tasks):
            arrays = datasets[task.source]
            folder = dataset_dir(arrays)
            todo.put((index, task, str(folder) if folder is not None else arrays))
        count = min(self.workers, len(tasks))
        for _ in range(count):
            todo.put(None)
        procs = [
            context.Process(
                target=_worker, args=(todo, events, os.getpid()), daemon=True, name=f"rgvlm-worker-{i}"
            )
            for i in range(count)
        ]
        with _main_not_rerun():
            for proc in procs:
                proc.start()
        remaining = set(range(len(tasks)))
        try:
            while remaining:
                try:
                    index, event = events.get(timeout=POLL_S)
                except queue.Empty:
                    if cancel_requested():
                        return
                    dead = [p for p in procs if not p.is_alive() and p.exitcode not in (0, None)]
                    if dead:
                        raise RGVLMError(
                            f"worker process {dead[0].name} died (exit code {dead[0].exitcode}) "
                            f"with {len(remaining)} task(s) unfinished; out of memory?"
                        ) from None
                    continue
                if isinstance(event, _Failed):
                    raise RGVLMError(f"{tasks[index].label}: {event.message}\n{event.trace}")
                if isinstance(event, _Done):
                    remaining.discard(index)
                    continue
                yield index, event
                if cancel_requested():
                    return
        finally:
            for proc in procs:
                if proc.is_alive():
                    proc.terminate()
            for proc in procs:
                proc.join(timeout=5)
            todo.close()
            events.close()


@contextlib.contextmanager
def _main_not_rerun() -> Iterator[None]:
    """Start spawned workers without re-running the caller's main script in them.

    Spawn re-imports the parent's `__main__` file in every child (to find functions defined there),
    so a user's script that calls `run_experiment` without an `if __name__ == "__main__":` guard would
    start the experiment again in each worker. The workers need nothing from `__main__` (their target
    lives here), so the main module is hidden from spawn while they start.
    """
    main = sys.modules.get("__main__")
    saved = {name: getattr(main, name) for name in ("__file__", "__spec__") if hasattr(main, name)}
    try:
        for name in saved:
            setattr(main, name, None)
        yield
    finally:
        for name, value in saved.items():
            setattr(main, name, value)


def _worker(todo: Any, events: Any, parent: int) -> None:
    """A worker process: runs tasks from `todo` until its sentinel, reports on `events`."""
    from rgvlm_core.rl.dataset_cache import load_cached

    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    loaded: dict[str, Any] = {}
    while (item := todo.get()) is not None:
        index, task, data = item
        try:
            if isinstance(data, str):
                data = loaded.setdefault(data, load_cached(data))
            for event in execute(task, data):
                events.put((index, event))
            events.put((index, _Done()))
        except Exception as exc:  # reported to the driver, which raises it with the task's name
            events.put((index, _Failed(f"{type(exc).__name__}: {exc}", traceback.format_exc())))
            return


def _watch_parent(parent: int) -> None:
    """Exit when the driver is gone (killed without the chance to stop its workers)."""
    import time

    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def make_executor(name: str, workers: int, address: str | None = None, tasks: int = 0) -> Executor:
    """The executor called `name` (local or ray); local with one worker or one task runs in-process."""
    if name == "ray":
        from rgvlm_core.rl.ray_executor import RayExecutor

        return RayExecutor(workers=workers, address=address)
    if name != "local":
        raise UsageError(f"executor {name!r}: use local or ray")
    if address is not None:
        raise UsageError("--address is for --executor ray")
    if workers < 1:
        raise UsageError(f"workers={workers}: give at least 1")
    return InlineExecutor() if workers == 1 or tasks == 1 else ProcessExecutor(workers)


__all__ = ["Executor", "InlineExecutor", "ProcessExecutor", "make_executor"]
