"""How long the comparison loop takes on this machine (issue 12's targets), each figure against a baseline
measured in the same invocation.

Workspace: the paper comparison's data (scripts/paper_comparison.sh: 1,500 generated episodes, a
reference and a noisy label run); built under WORKSPACE if missing. Figures:

1. Contention: IQL updates/s of one training process (the default policy: one torch thread) alone, and
   beside a CPU-bound process (`while True: pass`). Target: beside >= 80% of alone.
2. One 300-step run with 3 evaluation tasks per length, from command to stored result (a fresh
   `rgvlm experiment` process). Target: <= 10 s. Baseline: the same process doing nothing but
   `import torch` (the floor any command that trains pays).
3. The paper grid (6 methods x 5 seeds, `--steps`, `-k` tasks per length and condition): parallel
   workers with stacked seeds (the default) against one process running one run at a time
   (`--workers 1 --stack 1`, the pre-issue-12 way), both at `--baseline-steps` so the baseline stays
   short; then, with --full, the default path at the paper's size (target: <= 10 minutes).

usage: python bench/experiment_speed.py [WORKSPACE] [--full] [--steps 3000] [-k 20] [--baseline-steps 300]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

METHODS = "sparse,rgvlm:reference,sparse+rgvlm:reference,rgvlm:noisy-0.2,sparse+rgvlm:noisy-0.2,bc"
ENV = {**os.environ, "RGVLM_NO_SAMPLE": "1", "PYTHONPATH": str(ROOT)}


def rgvlm(ws: Path, *args: str) -> float:
    """Run one `rgvlm` command; its wall time in seconds (raises if it fails)."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "rgvlm_core.cli", "-w", str(ws), *args],
        env=ENV,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    return time.perf_counter() - start


def ensure_workspace(ws: Path) -> None:
    if (ws / "store").exists():
        return
    data = ws.with_name(ws.name + ".data")
    print(f"building the paper workspace at {ws} (once)")
    if not data.exists():
        gen = "--episodes 1500 --seed 11 --no-frames --mix expert=0.4,suboptimal=0.4,failed=0.2"
        rgvlm(
            ws,
            "sim",
            "generate",
            *gen.split(),
            "--randomized",
            "0.5",
            "--annotations",
            "2",
            "--out",
            str(data),
        )
    rgvlm(ws, "import", str(data))
    rgvlm(ws, "label", "--labeller", "reference", "--name", "reference")
    rgvlm(
        ws, "label", "--labeller", "reference", "--noise", "0.2", "--noise-seed", "0", "--name", "noisy-0.2"
    )


def updates_per_s(ws: Path, seconds: float) -> float:
    """Updates/s of a one-seed learner on the workspace's sparse dataset, under the thread policy."""
    from rgvlm_core.rl.config import IQLConfig
    from rgvlm_core.rl.dataset import parse_reward_source
    from rgvlm_core.rl.dataset_cache import cached_dataset
    from rgvlm_core.rl.encoder import make_encoder
    from rgvlm_core.rl.iql import IQL
    from rgvlm_core.rl.threads import apply_threads
    from rgvlm_core.workspace import Workspace

    apply_threads(None)
    reader = Workspace.open(ws).reader()
    try:
        arrays = cached_dataset(reader, parse_reward_source("sparse", reader), make_encoder("minilm"))
    finally:
        reader.close()
    data = arrays.to_tensors().with_sparse_states()
    learner = IQL(data.states.shape[1], data.instruction_table.shape[1], arrays.n_actions, IQLConfig())
    for _ in range(3):
        learner.update(data.sample(256, learner.generators, "cpu"))
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        learner.update(data.sample(256, learner.generators, "cpu"))
        done += 1
    return done / (time.perf_counter() - start)


def contention(ws: Path, seconds: float) -> None:
    quiet = updates_per_s(ws, seconds)
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        busy = updates_per_s(ws, seconds)
    finally:
        hog.kill()
    ok = "met" if busy >= 0.8 * quiet else "MISSED"
    share = f"{busy / quiet:.0%} (target 80%: {ok})"
    print(f"1. updates/s alone {quiet:.1f}, beside a CPU-bound process {busy:.1f}: {share}")


def single_run(ws: Path) -> None:
    floor = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    floor = time.perf_counter() - floor
    took = rgvlm(ws, "experiment", "--methods", "sparse", "--seeds", "1", "--steps", "300", "-k", "3",
                 "--name", f"bench-single-{uuid.uuid4().hex[:6]}")  # fmt: skip
    ok = "met" if took <= 10 else "MISSED"
    print(f"2. one 300-step run, 3 tasks per length: {took:.1f} s from command to stored result "
          f"(target 10 s: {ok}); `import torch` alone: {floor:.1f} s ({took / floor:.1f}x)")  # fmt: skip


def grid(ws: Path, steps: int, k: int, *extra: str) -> float:
    name = f"bench-grid-{uuid.uuid4().hex[:6]}"
    return rgvlm(ws, "experiment", "--methods", METHODS, "--seeds", "5", "--steps", str(steps), "-k", str(k),
                 "--name", name, *extra)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workspace", nargs="?", type=Path, default=Path("/tmp/rgvlm-bench/ws"))
    parser.add_argument("--seconds", type=float, default=8.0, help="Length of each updates/s measurement.")
    parser.add_argument("--baseline-steps", type=int, default=300)
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("-k", type=int, default=20)
    parser.add_argument(
        "--full", action="store_true", help="Also run the paper-sized grid (about 20 minutes)."
    )
    args = parser.parse_args()
    ensure_workspace(args.workspace)
    load = os.getloadavg()[0]
    print(f"{os.cpu_count()} cores, load average {load:.2f} at start")
    contention(args.workspace, args.seconds)
    single_run(args.workspace)
    b = args.baseline_steps
    old = grid(args.workspace, b, 3, "--workers", "1", "--stack", "1")
    new = grid(args.workspace, b, 3)
    print(f"3. paper grid at {b} steps, 3 tasks per length: one run at a time {old:.0f} s, "
          f"default (one worker per core, stacked seeds) {new:.0f} s: {old / new:.2f}x faster")  # fmt: skip
    if args.full:
        full = grid(args.workspace, args.steps, args.k)
        ok = "met" if full <= 600 else "MISSED"
        print(f"   paper grid at {args.steps} steps, {args.k} tasks per length and condition: "
              f"{full / 60:.1f} min (target 10 min: {ok})")  # fmt: skip


if __name__ == "__main__":
    main()
