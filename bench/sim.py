"""Speed of the embedded simulator, against the targets of issues 3 and 14 (2-core machine).

  - env steps/s without frames (random valid actions, resets included)      target >= 5,000
  - frames rendered per second (states from expert rollouts)                  target >= 200
  - generating 2,000 episodes with frames (rgvlm sim generate, 2 workers)     target <= 120 s
  - evaluating 100 episodes per length (600) with the expert                  target <= 20 s
Baselines in the same process: the bare world rules (apply + valid_mask) for the env, and PIL's
JPEG encoding of the same frames for the renderer.

The low level (`--level low`, issue 14), on ALFRED's floor plans from ../shared/alfred/layouts:
  - expert steps per subtask, by subtask kind, over tasks of every posed length   target >= 10 on average
  - the expert completes every task at every length on every floor plan given      target 100%
  - env steps/s without frames                                                     target >= 20,000
  - frames rendered per second                                                     target >= 1,000
  - generating 2,000 low-level episodes with frames (2 workers)                   target <= 120 s
With `--busy`, every figure is measured with a CPU-bound process running beside it.

usage: python bench/sim.py [--level subgoal|low] [--episodes 2000] [--keep] [--busy]
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from rgvlm_core.sim.behaviour import rollout
from rgvlm_core.sim.env import HouseholdEnv
from rgvlm_core.sim.evaluate import EvalConfig, evaluate
from rgvlm_core.sim.generate import GenerateConfig, generate
from rgvlm_core.sim.render import render_frame, render_image
from rgvlm_core.sim.scenes import sample_task
from rgvlm_core.sim.world import apply, valid_mask


def env_steps_per_s(n_steps: int = 50_000) -> tuple[float, float]:
    env = HouseholdEnv()
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=0)
    start = time.perf_counter()
    for i in range(n_steps):
        valid = np.flatnonzero(info["action_mask"])
        _, _, term, trunc, info = env.step(int(valid[int(rng.integers(len(valid)))]))
        if term or trunc:
            _, info = env.reset(seed=i)
    env_rate = n_steps / (time.perf_counter() - start)
    # baseline: the bare rules on the same kind of random walk
    _, s = sample_task(rng, 3)
    start = time.perf_counter()
    for _ in range(n_steps):
        valid = np.flatnonzero(valid_mask(s))
        s, _ = apply(s, int(valid[int(rng.integers(len(valid)))]))
    return env_rate, n_steps / (time.perf_counter() - start)


def frames_per_s(n_states: int = 2000) -> tuple[float, float]:
    rng = np.random.default_rng(1)
    states = []
    while len(states) < n_states:
        task, s = sample_task(rng, int(rng.integers(1, 7)))
        states += [step.state for step in rollout(task, s, "suboptimal", rng).steps]
    states = states[:n_states]
    start = time.perf_counter()
    for s in states:
        render_frame(s)
    render_rate = n_states / (time.perf_counter() - start)
    images = [render_image(s) for s in states[:300]]
    start = time.perf_counter()
    for img in images:
        img.save(io.BytesIO(), format="JPEG", quality=80)
    return render_rate, len(images) / (time.perf_counter() - start)


def generation_s(episodes: int, keep: bool) -> tuple[float, int]:
    out = Path(tempfile.mkdtemp(prefix="rgvlm-bench-sim-")) / "data"
    start = time.perf_counter()
    steps = sum(g.steps for g in generate(out, GenerateConfig(episodes=episodes, seed=0), workers=2))
    elapsed = time.perf_counter() - start
    if keep:
        print(f"dataset kept at {out}")
    else:
        shutil.rmtree(out.parent, ignore_errors=True)
    return elapsed, steps


def evaluation_s() -> float:
    start = time.perf_counter()
    rows = list(evaluate("expert", EvalConfig(episodes_per_length=100)))
    assert len(rows) == 600 and all(r.success for r in rows)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--level", choices=("subgoal", "low"), default="subgoal")
    ap.add_argument("--busy", action="store_true", help="measure beside a CPU-bound process")
    args = ap.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    try:
        if args.level == "low":
            from sim_low import main_low

            main_low(args.episodes, args.keep)
        else:
            _main_subgoal(args)
    finally:
        if busy is not None:
            busy.kill()


def _main_subgoal(args: argparse.Namespace) -> None:
    env_rate, rules_rate = env_steps_per_s()
    print(
        f"env steps/s (no frames)          {env_rate:9,.0f}   bare rules {rules_rate:,.0f}/s "
        f"(env = {env_rate / rules_rate:.2f}x rules)   target >= 5,000"
    )
    render_rate, jpeg_rate = frames_per_s()
    print(
        f"frames rendered/s                {render_rate:9,.0f}   JPEG encode alone {jpeg_rate:,.0f}/s   "
        "target >= 200"
    )
    gen_s, steps = generation_s(args.episodes, args.keep)
    print(
        f"generate {args.episodes} episodes with frames {gen_s:7.1f} s   ({steps:,} steps, "
        f"{(steps + args.episodes) / gen_s:,.0f} frames/s written)   target <= 120 s"
    )
    print(f"evaluate 600 episodes, expert    {evaluation_s():7.2f} s   target <= 20 s")


if __name__ == "__main__":
    main()
