"""Run an experiment's tasks as Ray tasks: on a local Ray instance, or on a cluster the driver joins.

Same contract as rl.executors.ProcessExecutor: `run(tasks, datasets)` yields `(task index, event)` as the
work produces them, and only the driver writes them into the workspace. Differences that matter:

- Datasets travel through Ray's object store, not as cache folders: each distinct source's arrays are
  `ray.put` once as plain numpy (read from the memory-mapped cache), so a worker on another machine needs
  neither the workspace nor its path. Every task of that source reads the same stored copy.
- Each task is one streaming-generator Ray task declaring what it uses (`num_cpus` = its torch threads,
  one GPU for a cuda device), so Ray packs tasks onto nodes; the driver reads every task's events as
  they arrive (Logged events stream live) and stops them all on cancellation, error or close.
- A task Ray could never place (more CPUs or a GPU than any node has) is refused before anything starts,
  instead of waiting forever as Ray would.
- Ray never retries a task (`max_retries=0`): a replayed task would send its events twice.

Overhead: the time from submitting a task to its Started event (a worker process, imports, arguments)
and each task's total are logged at debug with a `ray_timing` record attribute (a `TaskTiming`), and
the time to start or join Ray with `ray_init_s`; bench/ray_overhead.py reads both.
"""

from __future__ import annotations

import logging
import re
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.rl.dataset import OfflineArrays
from rgvlm_core.rl.dataset_cache import ARRAY_FIELDS
from rgvlm_core.rl.work import Event, RunTask, Started, execute

log = logging.getLogger(__name__)

POLL_S = 0.5  # how often the driver checks for cancellation while no task has news
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # Ray colours its tracebacks
INSTALL_HINT = '--executor ray needs Ray: pip install -e ".[ray]" (or pip install "ray>=2.9")'


@dataclass
class TaskTiming:
    """When one task was submitted, sent its Started event and ended (perf_counter seconds)."""

    label: str
    submitted: float
    started: float | None = None
    ended: float | None = None

    @property
    def queued_s(self) -> float | None:
        """Submit -> Started: Ray's per-task overhead (scheduling, worker start, imports, arguments)."""
        return None if self.started is None else self.started - self.submitted

    @property
    def total_s(self) -> float | None:
        return None if self.ended is None else self.ended - self.submitted


class RayExecutor:
    """Ray tasks on a local instance of `workers` CPUs (0: all cores) or on the cluster at `address`.

    `address`: "auto" (the cluster this machine belongs to), "host:6379" or "ray://host:10001". A joined
    cluster decides its own size (`workers` is not used) and is left running; a local instance started
    here is shut down when `run` ends, however it ends. Where Ray is already initialised in this process
    (a test, a notebook) that instance is used and left as it is.
    """

    def __init__(self, workers: int, address: str | None = None):
        try:
            import ray  # noqa: F401
        except ImportError:
            raise RGVLMError(INSTALL_HINT) from None
        if workers < 0:
            raise UsageError(f"workers={workers}: give 0 (all cores) or more")
        self.workers = workers
        self.address = address
        self.timings: list[TaskTiming] = []

    def run(self, tasks: Sequence[RunTask], datasets: Mapping[str, Any]) -> Iterator[tuple[int, Event]]:
        """Every task's events, interleaved as they arrive; raises RGVLMError naming a task that fails."""
        import ray

        if not tasks:
            return
        started_here = start_ray(self.workers, self.address)
        generators: dict[Any, int] = {}
        try:
            check_feasible(tasks)
            shared = {
                source: put_dataset(datasets[source]) for source in dict.fromkeys(t.source for t in tasks)
            }
            remote = _remote_task()
            self.timings = []
            for index, task in enumerate(tasks):
                self.timings.append(TaskTiming(task.label, time.perf_counter()))
                call = remote.options(name=task.label, **resources(task))
                generators[call.remote(task, shared[task.source])] = index
            yield from self._stream(tasks, generators)
        finally:
            for generator in generators:
                ray.cancel(generator, recursive=True)
            generators.clear()
            if started_here:
                ray.shutdown()

    def _stream(self, tasks: Sequence[RunTask], generators: dict[Any, int]) -> Iterator[tuple[int, Event]]:
        """Read every generator's next event as soon as it is ready; stop early when cancelled."""
        import ray

        from rgvlm_core.jobs import cancel_requested

        while generators:
            ready, _ = ray.wait(list(generators), num_returns=1, timeout=POLL_S)
            if not ready:
                if cancel_requested():
                    return
                continue
            ready, _ = ray.wait(list(generators), num_returns=len(generators), timeout=0)
            generator: Any
            for generator in ready:
                index = generators[generator]
                try:
                    ref = next(generator)
                except StopIteration:
                    del generators[generator]
                    self._ended(index)
                    continue
                event = _fetch(ref, tasks[index])
                if isinstance(event, Started):
                    self._started(index)
                yield index, event
                if cancel_requested():
                    return

    def _started(self, index: int) -> None:
        timing = self.timings[index]
        timing.started = time.perf_counter()
        log.debug(
            "%s started %.2f s after it was submitted",
            timing.label,
            timing.queued_s,
            extra={"ray_timing": timing},
        )

    def _ended(self, index: int) -> None:
        timing = self.timings[index]
        timing.ended = time.perf_counter()
        log.debug(
            "%s ended %.2f s after it was submitted",
            timing.label,
            timing.total_s,
            extra={"ray_timing": timing},
        )


def start_ray(workers: int, address: str | None) -> bool:
    """Join `address` or start a local instance (unless Ray is already up); True if one was started here.

    ray.init replaces this process's SIGTERM handler with one that exits at once; the handler in place
    before (a job's cooperative cancel, rgvlm_core.jobs) is put back, so cancelling a job still stops it
    cleanly.
    """
    import ray

    if ray.is_initialized():
        return False
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    begun = time.perf_counter()
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address is None:
            # "local": a new instance even where RAY_ADDRESS or a running cluster would be found
            ray.init(address="local", num_cpus=workers or None, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        raise RGVLMError(
            f"could not start or join {where}: {exc}; check `ray status` on the head node"
        ) from exc
    finally:
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)
    seconds = time.perf_counter() - begun
    log.debug("Ray %s in %.2f s", "joined" if address else "started", seconds, extra={"ray_init_s": seconds})
    return address is None


def resources(task: RunTask) -> dict[str, Any]:
    """What a task declares to Ray: a CPU per torch thread (at least one), a GPU for a cuda device."""
    cpus = max(1, task.threads or 1)
    gpus = 1 if str(task.config.device).startswith("cuda") else 0
    return {"num_cpus": cpus, "num_gpus": gpus}


def check_feasible(tasks: Sequence[RunTask]) -> None:
    """Refuse, naming it, a task no live node can hold (Ray would keep it pending forever)."""
    import ray

    nodes = [node.get("Resources", {}) for node in ray.nodes() if node.get("Alive")]
    for task in tasks:
        need = resources(task)
        if not any(
            node.get("CPU", 0) >= need["num_cpus"] and node.get("GPU", 0) >= need["num_gpus"]
            for node in nodes
        ):
            sizes = ", ".join(f"{n.get('CPU', 0):g} CPU/{n.get('GPU', 0):g} GPU" for n in nodes) or "none"
            raise RGVLMError(
                f"{task.label}: needs {need['num_cpus']} CPU(s) and {need['num_gpus']} GPU(s) "
                f"(device {task.config.device}) but no Ray node has them "
                f"(nodes: {sizes}); lower --threads, use --device cpu, or add such a node"
            )


def put_dataset(arrays: OfflineArrays) -> Any:
    """One object-store copy of a dataset as plain numpy (memory maps are read here, in the driver)."""
    import ray

    payload = {
        "arrays": {name: np.ascontiguousarray(np.asarray(getattr(arrays, name))) for name in ARRAY_FIELDS},
        "instructions": list(arrays.instructions),
        "n_actions": int(arrays.n_actions),
        "action_tokens": list(arrays.action_tokens),
        "info": dict(arrays.info),
    }
    return ray.put(payload)


@dataclass
class StoreArrays(OfflineArrays):
    """OfflineArrays over read-only numpy views of Ray's object store (shared by the node's workers)."""

    def to_tensors(self) -> Any:
        # torch warns that it cannot mark a tensor over a read-only array as read-only; the learner never
        # writes its dataset, and copying would cost one private copy of the data per task.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return super().to_tensors()


def rebuild(payload: Mapping[str, Any]) -> StoreArrays:
    """The worker's dataset from `put_dataset`'s payload (no file is opened)."""
    return StoreArrays(
        **payload["arrays"],
        instructions=payload["instructions"],
        n_actions=payload["n_actions"],
        action_tokens=payload["action_tokens"],
        info=payload["info"],
    )


def run_task(task: RunTask, payload: Mapping[str, Any]) -> Iterator[Event]:
    """The body of one Ray task (in the worker): the task's events on the shared dataset."""
    yield from execute(task, rebuild(payload))


_REMOTE: list[Any] = []


def _remote_task() -> Any:
    """`run_task` as a streaming Ray task, made once (ray is imported only when this executor is used)."""
    import ray

    if not _REMOTE:
        _REMOTE.append(ray.remote(num_returns="streaming", max_retries=0)(run_task))
    return _REMOTE[0]


def _fetch(ref: Any, task: RunTask) -> Event:
    """One event, or RGVLMError naming the task and the worker's error."""
    import ray
    from ray.exceptions import RayError, RayTaskError

    try:
        event: Event = ray.get(ref)
        return event
    except RayTaskError as exc:
        cause = exc.cause if isinstance(exc.cause, BaseException) else None
        message = f"{type(cause).__name__}: {cause}" if cause is not None else str(exc).splitlines()[-1]
        trace = _ANSI.sub("", str(getattr(exc, "traceback_str", "")))
        raise RGVLMError(f"{task.label}: {message}\n{trace}") from None
    except RayError as exc:  # the worker died (out of memory, node lost) or Ray failed
        raise RGVLMError(f"{task.label}: its Ray worker failed: {type(exc).__name__}: {exc}") from None


__all__ = [
    "INSTALL_HINT",
    "RayExecutor",
    "StoreArrays",
    "TaskTiming",
    "check_feasible",
    "put_dataset",
    "rebuild",
    "resources",
    "run_task",
    "start_ray",
]
