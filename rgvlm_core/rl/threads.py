"""How many CPU threads torch may use in a training or evaluation process.

Torch starts one intra-op thread per core. On a machine whose cores are shared (the dashboard, a labelling
job, a second run, another user), those threads spin-wait for each other on every small matmul, and IQL's
updates (batch 256, 256-wide MLPs) slow down 4-16x: `bench/iql_speed.py` measured 8.1 updates/s with 2
threads beside one CPU-bound process against 33.2 with 1 thread. One thread per process is nearly as fast on
an idle machine and does not collapse on a busy one, so it is the default; parallelism comes from running
several processes (runs), not from threads inside one.

`RGVLM_THREADS` (or a command's `--threads`) overrides it; 0 means torch's own default (one per core).
"""

from __future__ import annotations

import os

from rgvlm_core.errors import UsageError

THREADS_ENV = "RGVLM_THREADS"
DEFAULT_THREADS = 1


def thread_count(requested: int | None = None) -> int:
    """The intra-op thread count to use: `requested`, else RGVLM_THREADS, else 1; 0 = torch's default."""
    if requested is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return DEFAULT_THREADS
        try:
            requested = int(text)
        except ValueError:
            raise UsageError(f"{THREADS_ENV}={text!r}: must be a whole number (0 = one per core)") from None
    if requested < 0:
        raise UsageError(f"threads={requested}: must be 0 (one per core) or more")
    return requested


def apply_threads(requested: int | None = None) -> int:
    """Set torch's intra-op threads for this process by the policy above; returns the count in use."""
    import torch

    count = thread_count(requested)
    if count > 0:
        torch.set_num_threads(count)
    return torch.get_num_threads()


__all__ = ["DEFAULT_THREADS", "THREADS_ENV", "apply_threads", "thread_count"]
