"""Speed of the frames rendered from replayed ALFRED states (rgvlm_core/alfred/render.py), on the real sample.

Figures, each quiet and then beside a CPU-bound process (a 2-core machine shares its cores with the app,
a label run or a training job), each measured in a fresh process so that no cache is warm from the last:
  - replayed World -> frame (numpy array), every step of the trajectories in order; the first frame of
    each trajectory draws its floor plan's map
  - stored state (JSON, as `steps.state` holds it) -> frame: the world set up again from the trajectory
    file (`level_state.world_from_doc`), then drawn: what the player and a label run do
  - stored state -> PNG bytes (`state_png`): what the player shows and a labelling query sends
                                                                             target >= 200 frames/s
  - PNG encoding alone (`frame_png` of ~1,000 of those frames, drawn beforehand), for comparison
States: every step of the sample's train and valid trajectories whose replay reaches every subgoal
(../shared/alfred, or RGVLM_SHARED_ALFRED), the first `--trajectories` of them in path order.

usage: python bench/alfred_frames.py [--trajectories 120]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TARGET = 200.0


def shared_alfred() -> Path:
    return Path(os.environ.get("RGVLM_SHARED_ALFRED") or ROOT.parent / "shared" / "alfred")


def measure(n_trajectories: int) -> dict[str, float]:
    """One condition's figures (frames per second), in this process."""
    os.environ.setdefault("RGVLM_ALFRED_LAYOUTS", str(shared_alfred() / "layouts"))
    from rgvlm_core.alfred.level_state import replay_states
    from rgvlm_core.alfred.render import frame_png, render_state, render_world, state_png
    from rgvlm_core.alfred.replay import replay, trajectory_files

    worlds, docs = [], []
    for split in ("train", "valid_seen", "valid_unseen"):
        for path in trajectory_files(shared_alfred() / "json_2.1.0" / split):
            if len(docs) >= n_trajectories:
                break
            traj = json.loads(path.read_text())
            result = replay(traj, str(path), keep_states=True)
            stored = replay_states(traj, str(path)) if result.failure is None else "failed"
            if isinstance(stored, str):
                continue
            worlds.append(list(result.states))
            docs.append([*stored[0], stored[1]])
    n = sum(len(d) for d in docs)
    out: dict[str, float] = {"trajectories": len(docs), "frames": n}

    every = max(1, n // 1000)
    kept = []  # about 1,000 frames for the encoding figure
    start = time.perf_counter()
    for k, (t, w) in enumerate((t, w) for states in worlds for t, w in enumerate(states)):
        frame = render_world(w, f"step {t}")
        if k % every == 0:
            kept.append(frame)
    out["world_to_frame"] = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for texts in docs:
        for t, text in enumerate(texts):
            render_state(text, f"step {t}")
    out["state_to_frame"] = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for texts in docs:
        for t, text in enumerate(texts):
            state_png(text, f"step {t}")
    out["state_to_png"] = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for frame in kept:
        frame_png(frame)
    out["png_encode_alone"] = len(kept) / (time.perf_counter() - start)
    return out


def run_condition(n_trajectories: int, busy: bool) -> dict[str, float]:
    """`measure` in a fresh process, with a CPU-bound process beside it when `busy`."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--measure", "--trajectories", str(n_trajectories)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trajectories", type=int, default=120, help="replayable trajectories to draw")
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)  # one condition, as JSON
    args = ap.parse_args()
    if not (shared_alfred() / "json_2.1.0").is_dir():
        raise SystemExit(f"{shared_alfred()}/json_2.1.0 not found (set RGVLM_SHARED_ALFRED)")
    if args.measure:
        print(json.dumps(measure(args.trajectories)))
        return
    quiet = run_condition(args.trajectories, busy=False)
    busy = run_condition(args.trajectories, busy=True)
    print(
        f"{quiet['frames']:,.0f} states of {quiet['trajectories']:.0f} replayed ALFRED trajectories; "
        f"frames/s quiet | beside a CPU-bound process ({os.cpu_count()} cores)"
    )
    rows = (
        ("replayed World -> frame", "world_to_frame", ""),
        ("stored state -> frame", "state_to_frame", ""),
        ("stored state -> PNG", "state_to_png", f"target >= {TARGET:.0f}"),
        ("PNG encoding alone", "png_encode_alone", ""),
    )
    for label, key, note in rows:
        print(f"  {label:26} {quiet[key]:8,.0f} | {busy[key]:8,.0f}   {note}".rstrip())


if __name__ == "__main__":
    main()
