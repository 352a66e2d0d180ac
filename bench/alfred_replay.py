"""Replaying real ALFRED trajectories: fidelity, how often a trajectory with one thing wrong is caught, and
speed.

Figures (printed):
  - fidelity (subgoals reached / subgoals) on ../shared/alfred train + valid, per task type (target >= 95%);
  - mutation catch rates: the same trajectories with one thing changed (the last turn or look of a
    GotoLocation dropped; the first OpenObject dropped; a heat task's switches dropped; a pickup's object
    swapped for another object of the scene at least 3 m away), the share the replay refuses. A replay
    that accepts everything would score 100% fidelity and 0% here;
  - trajectories replayed per second, quiet and beside a CPU-bound process (`--busy`), and the time for
    ALFRED train's size (6,574 trajectories) by extrapolation from the rate;
  - the ALFRED task env's steps per second (ALFRED's recorded actions on every valid_seen task).

usage: python bench/alfred_replay.py [--busy] [--repeat 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "alfred"
sys.path.insert(0, str(ROOT))

from rgvlm_core.alfred.replay import replay, summarize, trajectory_files
from tests.alfred_mutations import MUTATIONS

TRAIN_SIZE = 6574


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", action="store_true", help="measure beside a CPU-bound process")
    ap.add_argument("--repeat", type=int, default=5, help="passes over the files for the speed figure")
    args = ap.parse_args()
    if not (SHARED / "json_2.1.0").is_dir():
        sys.exit(f"real ALFRED files not found at {SHARED}")
    paths = [
        p
        for s in ("train", "valid_seen", "valid_unseen")
        for p in trajectory_files(SHARED / "json_2.1.0" / s)
    ]
    trajs = [(str(p), json.loads(p.read_text())) for p in paths]
    layouts = SHARED / "layouts"

    report = summarize(replay(t, p, layouts=layouts) for p, t in trajs)
    print(
        f"fidelity: {report['reached']}/{report['subgoals']} subgoals = {100 * report['fidelity']:.2f}% "
        f"({report['trajectories']} trajectories, {len(report['failures'])} failed)"
    )
    for name, row in report["by_task_type"].items():
        print(f"  {name:36s} {row['reached']:4d}/{row['subgoals']:4d} = {100 * row['fidelity']:.1f}%")
    print(
        f"points of recorded paths not in the layouts (taken as floor): {report['points_added_to_layouts']}"
    )

    for name, mutate in MUTATIONS.items():
        mutated = caught = 0
        for p, t in trajs:
            t2 = copy.deepcopy(t)
            if mutate(t2):
                mutated += 1
                caught += replay(t2, p, layouts=layouts).failure is not None
        print(f"caught, {name}: {caught}/{mutated} = {100 * caught / max(mutated, 1):.1f}%")

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        start = time.perf_counter()
        for _ in range(args.repeat):
            for p, t in trajs:
                replay(t, p, layouts=layouts)
        rate = args.repeat * len(trajs) / (time.perf_counter() - start)
    finally:
        if busy is not None:
            busy.kill()
    label = "beside a CPU-bound process" if args.busy else "quiet"
    print(
        f"replay speed ({label}): {rate:,.0f} trajectories/s; ALFRED train ({TRAIN_SIZE:,}): "
        f"{TRAIN_SIZE / rate:.1f} s (parsed JSON in memory; reading the files is extra)"
    )
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        steps, seconds = _env_rate()
    finally:
        if busy is not None:
            busy.kill()
    print(
        f"ALFRED task env ({label}): {steps / seconds:,.0f} steps/s, ALFRED's recorded actions on every "
        f"valid_seen task of 1-6 subtasks ({steps:,} steps; state vector and mask at every step)"
    )


def _env_rate() -> tuple[int, float]:
    from rgvlm_core.alfred.env import AlfredTaskEnv

    env = AlfredTaskEnv("valid_seen", root=SHARED / "json_2.1.0")
    steps, start = 0, time.perf_counter()
    for n, tasks in env.tasks.items():
        for e in range(len(tasks)):
            env.reset(options={"n_subtasks": n, "episode": e})
            for a in env.task.expert:
                _, _, terminated, truncated, _ = env.step(a)
                steps += 1
                if terminated or truncated:
                    break
    return steps, time.perf_counter() - start


if __name__ == "__main__":
    main()
