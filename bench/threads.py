"""IQL updates/s by torch thread count, on a quiet machine and beside other work (the thread policy).

The policy in rgvlm_core/rl/threads.py (one intra-op thread per training process) rests on these
figures. Each measurement is a fresh process (threads are fixed per process) training the default IQL
network (hidden 256 x 2, batch 256) on random data of the simulator's size (870 state values, 384-value
instructions, 60 actions) for `--seconds`; printed: updates/s for 1 and 2 threads
  - quiet: nothing else running (as quiet as the machine is: the load average is printed),
  - beside a CPU-bound process (`while True: pass`): the dashboard, a labelling job, another user,
  - beside a second training run with the same thread count (two runs of one experiment).
Ratios are against the quiet 1-thread figure of the same invocation.

usage: python bench/threads.py [--seconds 6] [--threads 1,2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = "--worker"


def worker(threads: int, seconds: float) -> None:
    """Train for `seconds` after a short warm-up; print updates/s."""
    sys.path.insert(0, str(ROOT))
    import torch

    from rgvlm_core.rl.config import IQLConfig
    from rgvlm_core.rl.iql import OfflineTensors, train
    from rgvlm_core.rl.threads import apply_threads

    apply_threads(threads)
    n, state, text, actions = 20_000, 870, 384, 60
    g = torch.Generator().manual_seed(0)
    data = OfflineTensors(
        states=torch.rand(n, state, generator=g),
        next_states=torch.rand(n, state, generator=g),
        instruction_ids=torch.randint(0, 50, (n,), generator=g),
        next_instruction_ids=torch.randint(0, 50, (n,), generator=g),
        instruction_table=torch.rand(50, text, generator=g),
        actions=torch.randint(0, actions, (n,), generator=g),
        rewards=torch.rand(n, generator=g),
        dones=torch.zeros(n),
        masks=torch.ones(n, actions, dtype=torch.bool),
    )
    config = IQLConfig(steps=10**9, log_every=10)
    t0, s0 = 0.0, 0
    for step, _, _ in train(data, actions, config):
        if s0 == 0:  # the first 10 updates are the warm-up
            t0, s0 = time.perf_counter(), step
        elif time.perf_counter() - t0 >= seconds:
            print(f"{(step - s0) / (time.perf_counter() - t0):.1f}")
            return


def _measure(threads: int, seconds: float, beside: str | None) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    other = None
    if beside == "cpu":
        other = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    elif beside == "run":
        other = subprocess.Popen(
            [sys.executable, __file__, WORKER, str(threads), str(seconds + 4)],
            env=env,
            stdout=subprocess.DEVNULL,
        )
    try:
        time.sleep(0.5 if other else 0)
        out = subprocess.run(
            [sys.executable, __file__, WORKER, str(threads), str(seconds)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout.split()[-1])
    finally:
        if other is not None:
            other.kill()
            other.wait()


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    counts = [int(t) for t in args.threads.split(",")]
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores; load average {load:.2f} at start; {args.seconds:.0f} s each")
    print(f"{'situation':34s} " + " ".join(f"{f'{t} thread(s)':>14s}" for t in counts))
    base = None
    for label, beside in (
        ("quiet", None),
        ("beside a CPU-bound process", "cpu"),
        ("beside a second run (same threads)", "run"),
    ):
        rates = [_measure(t, args.seconds, beside) for t in counts]
        base = base or rates[0]
        cells = " ".join(f"{r:7.1f} ({r / base:4.2f}x)" for r in rates)
        print(f"{label:34s} {cells}   load {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == WORKER:
        worker(int(sys.argv[2]), float(sys.argv[3]))
    else:
        main()
