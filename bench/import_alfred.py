"""Import an ALFRED-format folder of train size and measure what users wait for.

Builds (once, cached) a folder of 6,574 trajectories by replicating the real shared ALFRED files
with new trial ids (or the synthetic test factory where ../shared is absent), then measures:
  - import wall time and peak memory of `rgvlm import` (a child process, as a user runs it),
    with the pure JSON parse of the same files in this process as the baseline ratio;
  - re-import time (idempotent: adds nothing);
  - reading one episode's steps through the store (p50/p95 over random episodes, warm reader);
  - `rgvlm info` wall time (a fresh process each run, start-up included).
Targets (issue 2, 2-core machine): import <= 60 s, peak <= 2 GB, episode read p95 <= 20 ms, info <= 1 s.
With --replay (issue 15): `rgvlm import --replay` of the same folder into a fresh workspace (every
trajectory replayed in the symbolic household, its states stored on every step): <= 180 s; and
`--busy` runs that import beside a CPU-bound process too.

usage: python bench/import_alfred.py [--trajectories 6574] [--data DIR] [--keep] [--replay [--busy]]
"""

from __future__ import annotations

import argparse
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "alfred" / "json_2.1.0"
sys.path.insert(0, str(ROOT))


def build_folder(out: Path, n: int) -> Path:
    """Replicate real train/valid trajectories into `out/train/` with fresh trial ids."""
    marker = out / f".built-{n}"
    if marker.exists():
        return out
    shutil.rmtree(out, ignore_errors=True)
    sources = sorted(p for p in SHARED.glob("*/*/*/traj_data.json")) if SHARED.is_dir() else []
    if not sources:
        sources = _synthetic_sources(out.parent / "bench-synthetic")
    for i in range(n):
        src = sources[i % len(sources)]
        trial, task_dir = src.parent.name, src.parent.parent.name
        new_trial = f"trial_T2099{i:06d}_000000_{i:06d}"
        dest = out / "train" / task_dir / new_trial / "traj_data.json"
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(src.read_bytes().replace(trial.encode(), new_trial.encode()))
    marker.touch()
    return out


def _synthetic_sources(folder: Path) -> list[Path]:
    from tests.alfred_factory import write_trajectory

    folder.mkdir(parents=True, exist_ok=True)
    return [
        write_trajectory(folder, "train", trial=f"trial_T20190101_000000_{i:06d}", steps_per_subgoal=7)
        for i in range(50)
    ]


def parse_baseline(folder: Path) -> tuple[float, int]:
    """Seconds to read and parse every traj_data.json with orjson (the floor for any reader)."""
    files = sorted(folder.glob("*/*/*/traj_data.json"))
    start = time.perf_counter()
    steps = 0
    for f in files:
        steps += len(orjson.loads(f.read_bytes())["plan"]["low_actions"])
    return time.perf_counter() - start, steps


def run_cli(*args: str) -> tuple[float, int]:
    """Wall seconds of one `rgvlm` process, and the peak RSS (KiB) of children so far."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rgvlm_core.cli", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def episode_read_latency(workspace: Path, samples: int) -> tuple[float, float, float, int]:
    from rgvlm_core.catalog import episode_steps
    from rgvlm_core.workspace import Workspace

    reader = Workspace.open(workspace, create=False).reader()
    ids = reader.query("SELECT episode_id FROM episodes WHERE NOT task_only").column(0).to_pylist()
    rng = random.Random(0)
    start = time.perf_counter()
    episode_steps(reader, ids[0])
    cold = time.perf_counter() - start
    times, rows = [], 0
    for eid in rng.sample(ids, min(samples, len(ids))):
        start = time.perf_counter()
        rows += episode_steps(reader, eid).num_rows
        times.append(time.perf_counter() - start)
    reader.close()
    times.sort()
    return cold, statistics.median(times), times[int(0.95 * (len(times) - 1))], rows // len(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trajectories", type=int, default=6574)
    ap.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "rgvlm-bench-alfred")
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--keep", action="store_true", help="keep the workspace")
    ap.add_argument("--replay", action="store_true", help="measure `rgvlm import --replay` only")
    ap.add_argument("--busy", action="store_true", help="with --replay: also beside a CPU-bound process")
    args = ap.parse_args()
    if args.replay:
        replay_figures(build_folder(args.data, args.trajectories), args.busy)
        return

    data = build_folder(args.data, args.trajectories)
    parse_s, n_steps = parse_baseline(data)
    print(f"data: {args.trajectories} trajectories, {n_steps} steps at {data}")
    print(f"baseline: orjson parse of all files in-process   {parse_s:7.2f} s")

    ws = Path(tempfile.mkdtemp(prefix="rgvlm-bench-ws-"))
    import_s, peak_kib = run_cli("-w", str(ws), "import", str(data))
    reimport_s, _ = run_cli("-w", str(ws), "import", str(data))
    cold, p50, p95, rows = episode_read_latency(ws, args.samples)
    info_runs = [run_cli("-w", str(ws), "info", "--json")[0] for _ in range(5)]

    print(
        f"import (rgvlm import, child process)            {import_s:7.2f} s   "
        f"= {import_s / parse_s:.1f}x parse   target <= 60 s"
    )
    print(f"peak memory of the import                       {peak_kib / 1024:7.0f} MiB target <= 2048 MiB")
    print(f"re-import of the same folder (adds nothing)     {reimport_s:7.2f} s")
    print(
        f"episode steps read, warm reader: p50 {p50 * 1e3:.1f} ms, p95 {p95 * 1e3:.1f} ms "
        f"({rows} rows avg; first read {cold * 1e3:.0f} ms)   target p95 <= 20 ms"
    )
    print(
        f"rgvlm info --json (fresh process): median {statistics.median(info_runs):.2f} s, "
        f"max {max(info_runs):.2f} s   target <= 1 s"
    )
    if not args.keep:
        shutil.rmtree(ws, ignore_errors=True)
    else:
        print(f"workspace kept at {ws}")


def replay_figures(data: Path, busy: bool) -> None:
    """`rgvlm import --replay` of `data` into a fresh workspace: quiet, and beside a CPU-bound process."""
    layouts = ROOT.parent / "shared" / "alfred" / "layouts"
    if not layouts.is_dir():
        sys.exit(f"ALFRED's layouts not found at {layouts}: the replay needs them")
    parse_s, n_steps = parse_baseline(data)
    n = len(list(data.glob("*/*/*/traj_data.json")))
    print(f"data: {n} trajectories, {n_steps} steps at {data}; orjson parse alone {parse_s:.2f} s")
    for label, hog in (("quiet", False), ("beside a CPU-bound process", True))[: 2 if busy else 1]:
        proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if hog else None
        ws = Path(tempfile.mkdtemp(prefix="rgvlm-bench-ws-"))
        try:
            seconds, peak_kib = run_cli(
                "-w", str(ws), "import", str(data), "--replay", "--layouts", str(layouts)
            )
        finally:
            if proc is not None:
                proc.kill()
        from rgvlm_core.workspace import Workspace

        reader = Workspace.open(ws, create=False).reader()
        with_states = reader.scalar("SELECT count(*) FROM trajectories WHERE final_state IS NOT NULL")
        reader.close()
        size = sum(f.stat().st_size for f in ws.rglob("*") if f.is_file())
        print(
            f"import --replay ({label}): {seconds:7.2f} s = {seconds / parse_s:.1f}x parse, "
            f"{with_states}/{n} trajectories with states, peak {peak_kib / 1024:.0f} MiB, "
            f"workspace {size / 2**20:.1f} MiB   target <= 180 s"
        )
        shutil.rmtree(ws, ignore_errors=True)


if __name__ == "__main__":
    main()
