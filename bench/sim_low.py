"""The low-level household's figures for bench/sim.py --level low (issue 14's targets).

Run through `python bench/sim.py --level low [--busy]`; see that script's docstring for the targets.
"""

from __future__ import annotations

import concurrent.futures
import io
import multiprocessing
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from rgvlm_core.sim.low.expert import plan
from rgvlm_core.sim.low.floorplan import FLOOR_PLAN_SETS, layouts_dir, load_floor_plan
from rgvlm_core.sim.low.scenes import lengths, randomize_low, sample_low_task
from rgvlm_core.sim.low.world import apply, progress, valid_mask

ALL_PLANS = tuple(n for numbers in FLOOR_PLAN_SETS.values() for n in numbers)
TASKS_PER_LENGTH = 4  # per floor plan: two default, two randomised


def expert_figures() -> None:
    """Expert steps per subtask by kind, and completion at every length on every floor plan."""
    per_kind: dict[str, list[int]] = defaultdict(list)
    completed = posed = 0
    unposed: dict[str, list[int]] = {}
    failures = []
    for n in ALL_PLANS:
        fp = load_floor_plan(n)
        missing = [k for k in range(1, 7) if k not in lengths(fp)]
        if missing:
            unposed[fp.name] = missing
        for length in lengths(fp):
            for rep in range(TASKS_PER_LENGTH):
                rng = np.random.default_rng([n, length, rep])
                task, s = sample_low_task(rng, length, fp)
                if rep % 2:
                    s = randomize_low(s, rng)
                posed += 1
                done, seg = 0, 0
                for a in plan(s, task):
                    s, err = apply(s, a)
                    if err is not None:
                        break
                    seg += 1
                    now = progress(s.world, task, done)
                    if now > done:
                        per_kind[task.subtasks[done].kind].append(seg)
                        seg, done = 0, now
                if done == len(task):
                    completed += 1
                else:
                    failures.append((fp.name, length, task.goal))
    every = [v for values in per_kind.values() for v in values]
    kinds = "  ".join(f"{k} {np.mean(v):.1f} (n={len(v)})" for k, v in sorted(per_kind.items()))
    print(f"expert steps per subtask          {np.mean(every):9.1f}   by kind: {kinds}   target >= 10")
    print(
        f"expert completes                  {completed}/{posed} tasks on {len(ALL_PLANS)} floor plans "
        f"({100 * completed / posed:.1f}%)   target 100%"
    )
    for name, length, goal in failures[:10]:
        print(f"  not completed: {name} length {length}: {goal}")
    by_missing: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for name, missing in unposed.items():
        by_missing[tuple(missing)].append(name)
    for missing, names in sorted(by_missing.items()):
        print(
            f"  lengths {','.join(map(str, missing))} not posed on {len(names)} floor plans "
            f"({names[0]}{', ...' if len(names) > 1 else ''}): "
            + (
                "no knife and sliceable food (ALFRED's 5-6 subtask tasks all slice)"
                if missing == (5, 6)
                else "also no movable receptacle and no object class with two starting places (pick two)"
            )
        )


def env_figures(n_steps: int = 50_000) -> None:
    """Env steps/s without frames, as a user meets them: a fresh process (no floor plan met by the
    sections before) makes the env over all 120 floor plans and takes random valid actions, resetting
    on termination or truncation. Printed: the first `n_steps` (each floor plan's tables built on its
    first visit), the next `n_steps` (the plans met), and the bare rules (apply + valid_mask)."""
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        first, then, rules = pool.submit(_env_rates, n_steps).result()
    print(
        f"env steps/s (no frames)          {first:9,.0f}   (fresh process; next {n_steps:,} steps "
        f"{then:,.0f}/s)   bare rules {rules:,.0f}/s (env = {first / rules:.2f}x rules)   target >= 20,000"
    )


def _env_rates(n_steps: int) -> tuple[float, float, float]:
    from rgvlm_core.sim.low.env import LowHouseholdEnv

    env = LowHouseholdEnv(floor_plans=ALL_PLANS)
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=0)
    rates = []
    for part in range(2):
        start = time.perf_counter()
        for i in range(part * n_steps, (part + 1) * n_steps):
            valid = np.flatnonzero(info["action_mask"])
            _, _, term, trunc, info = env.step(int(valid[int(rng.integers(len(valid)))]))
            if term or trunc:
                _, info = env.reset(seed=i)
        rates.append(n_steps / (time.perf_counter() - start))
    _, s = sample_low_task(rng, 3, load_floor_plan(1))
    start = time.perf_counter()
    for _ in range(n_steps):
        valid = np.flatnonzero(valid_mask(s))
        s, _ = apply(s, int(valid[int(rng.integers(len(valid)))]))
    return rates[0], rates[1], n_steps / (time.perf_counter() - start)


def frame_figures(n_states: int = 2000) -> None:
    from rgvlm_core.sim.low.render import render_low_frame, render_low_image

    rng = np.random.default_rng(1)
    states = []
    while len(states) < n_states:
        fp = load_floor_plan(int(rng.choice(ALL_PLANS)))
        task, s = sample_low_task(rng, int(rng.choice(lengths(fp))), fp)
        for a in plan(s, task):
            states.append(s)
            s, _ = apply(s, a)
    states = states[:n_states]
    for s in states[:50]:
        render_low_frame(s)  # a first frame per floor plan draws its background
    start = time.perf_counter()
    for s in states:
        render_low_frame(s)
    rate = n_states / (time.perf_counter() - start)
    images = [render_low_image(s) for s in states[:300]]
    start = time.perf_counter()
    for img in images:
        img.save(io.BytesIO(), format="JPEG", quality=80)
    jpeg = len(images) / (time.perf_counter() - start)
    print(f"frames rendered/s                {rate:9,.0f}   JPEG encode alone {jpeg:,.0f}/s", end="")
    print("   target >= 1,000")


def generation_figures(episodes: int, keep: bool) -> None:
    from rgvlm_core.sim.generate import GenerateConfig, generate

    out = Path(tempfile.mkdtemp(prefix="rgvlm-bench-sim-low-")) / "data"
    config = GenerateConfig(episodes=episodes, seed=0, level="low", floor_plans=ALL_PLANS)
    start = time.perf_counter()
    steps = sum(g.steps for g in generate(out, config, workers=2))
    elapsed = time.perf_counter() - start
    print(
        f"generate {episodes} low-level episodes with frames {elapsed:7.1f} s   ({steps:,} steps, "
        f"{(steps + episodes) / elapsed:,.0f} frames/s written)   target <= 120 s"
    )
    if keep:
        print(f"dataset kept at {out}")
    else:
        shutil.rmtree(out.parent, ignore_errors=True)


def main_low(episodes: int, keep: bool) -> None:
    if not (layouts_dir() / "FloorPlan1-layout.npy").is_file():
        raise SystemExit(f"ALFRED layouts not found at {layouts_dir()}; set RGVLM_ALFRED_LAYOUTS")
    expert_figures()
    env_figures()
    frame_figures()
    generation_figures(episodes, keep)
