"""Wall time of the demo experiment: 3 methods x 3 seeds on the bundled sample (issue 6 target: 15 min).

Builds a fresh workspace holding the sample dataset and its two reference label runs, then runs what
`rgvlm experiment --methods sparse,reference,sparse+reference --seeds 3` runs with the CLI's defaults
(5,000 steps per run, 20 evaluation episodes per length in both conditions, MiniLM instructions) and
prints the total and the time spent training and evaluating.

usage: python bench/experiment_demo.py [--steps 5000] [--episodes-per-length 20] [--seeds 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rgvlm_core.rl.config import IQLConfig
from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment
from rgvlm_core.sample import seed_if_empty
from rgvlm_core.workspace import Workspace

TARGET_S = 15 * 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5_000)
    parser.add_argument("--episodes-per-length", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.open(Path(tmp) / "ws", create=True)
        seed_if_empty(ws)
        spec = ExperimentSpec(
            methods=("sparse", "reference", "sparse+reference"),
            seeds=tuple(range(args.seeds)),
            episodes_per_length=args.episodes_per_length,
            name="demo",
        )
        config = IQLConfig(steps=args.steps, log_every=250)
        spent = {"train": 0.0, "evaluate": 0.0}
        start = last = time.perf_counter()
        for progress in run_experiment(ws, spec, config):
            now = time.perf_counter()
            if progress.phase in spent:
                spent[progress.phase] += now - last
            last = now
        total = time.perf_counter() - start
    runs = len(spec.methods) * args.seeds
    print(f"demo experiment: {len(spec.methods)} methods x {args.seeds} seeds, {args.steps} steps per run")
    print(f"  total      {total:7.1f} s  (target {TARGET_S} s: {'met' if total <= TARGET_S else 'MISSED'})")
    rate = args.steps * runs / max(spent["train"], 1e-9)
    print(f"  training   {spent['train']:7.1f} s  ({rate:.0f} steps/s)")
    print(f"  evaluation {spent['evaluate']:7.1f} s  ({runs * 2 * 6 * args.episodes_per_length} episodes)")


if __name__ == "__main__":
    main()
