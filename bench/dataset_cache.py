"""Dataset cache (issue 12): building a dataset vs opening the cached one, and _sim_observations.

On the paper-comparison workspace (1,500 generated episodes, 24,170 transitions; made with the first
steps of scripts/paper_comparison.sh when missing: generate, import, the two reference label runs):
  - build_dataset (what every training run did before the cache), per reward source
  - cached_dataset on a miss (build + write the folder) and on a hit from a fresh reader (what a
    later run pays), and load_cached(folder) (what a worker given the folder pays); the ratio
    build / hit is the figure of merit
  - OfflineArrays.to_tensors on the cached arrays (copy-on-write maps, no copy)
  - _sim_observations now vs the per-row version it replaced (tests/test_dataset_cache.py keeps it),
    on the same rows in the same process, best of --repeat
Figures are wall-clock seconds with the 1-minute load average beside them (the machine is shared).

usage: python bench/dataset_cache.py [--workspace /tmp/paper/ws] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rgvlm_core.rl import dataset as dataset_module
from rgvlm_core.rl.dataset import build_dataset, parse_reward_source
from rgvlm_core.rl.dataset_cache import cached_dataset, dataset_dir, load_cached
from rgvlm_core.rl.encoder import HashEncoder
from rgvlm_core.workspace import Workspace
from tests.test_dataset_cache import sim_observations_per_row, step_rows

SOURCES = ("sparse", "sparse+rgvlm:reference")


def ensure_workspace(ws: Path) -> None:
    """The data steps of scripts/paper_comparison.sh (not its experiment), where the workspace lacks them."""
    if (ws / "store" / "HEAD.json").exists():
        return
    data = Path(f"{ws}.data")
    env = {**os.environ, "RGVLM_NO_SAMPLE": "1"}
    mix = ["--mix", "expert=0.4,suboptimal=0.4,failed=0.2", "--randomized", "0.5", "--annotations", "2"]
    steps = [
        ["sim", "generate", "--episodes", "1500", "--seed", "11", "--out", str(data), "--no-frames", *mix],
        ["-w", str(ws), "import", str(data)],
        ["-w", str(ws), "label", "--labeller", "reference", "--name", "reference"],
    ]
    if data.exists():
        steps = steps[1:]
    for args in steps:
        subprocess.run(["rgvlm", *args], check=True, env=env)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def load() -> str:
    return f"load {os.getloadavg()[0]:.2f}"


def bench_cache(ws: Workspace, text: str) -> None:
    encoder = HashEncoder()  # the encoder's cost is the embedding cache's, not this one's
    reader = ws.reader()
    source = parse_reward_source(text, reader)
    (cold_s, built), (warm_s, _) = (timed(lambda: build_dataset(reader, source, encoder)) for _ in "ab")
    build_s = min(cold_s, warm_s)  # the first build of a process also pays imports and DuckDB's views
    first = cached_dataset(reader, source, encoder)
    folder = dataset_dir(first)
    assert folder is not None
    shutil.rmtree(folder)  # a cold miss: build and write
    miss_s, _ = timed(lambda: cached_dataset(reader, source, encoder))
    reader.close()
    fresh = ws.reader()
    hit_s, hit = timed(lambda: cached_dataset(fresh, parse_reward_source(text, fresh), encoder))
    fresh.close()
    open_s, _ = timed(lambda: load_cached(folder))
    tensors_s, _ = timed(hit.to_tensors)
    size = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    print(f"{text}: {len(built)} transitions, cache folder {size:.0f} MiB")
    print(f"  build_dataset          {build_s:7.3f} s   best of 2 ({cold_s:.3f} s first; {load()})")
    print(f"  cached_dataset miss    {miss_s:7.3f} s   (build + write)")
    print(f"  cached_dataset hit     {hit_s:7.3f} s   fresh reader: key + checks + maps")
    print(f"  load_cached(folder)    {open_s:7.3f} s   what a worker pays")
    print(f"  to_tensors (cached)    {tensors_s:7.3f} s")
    print(f"  build / hit            {build_s / hit_s:7.1f} x   build / load_cached {build_s / open_s:.0f} x")


def bench_observations(ws: Workspace, repeat: int) -> None:
    rows = step_rows(ws)
    old = min(timed(lambda: sim_observations_per_row(rows))[0] for _ in range(repeat))
    new = min(timed(lambda: dataset_module._sim_observations(rows))[0] for _ in range(repeat))
    print(f"_sim_observations on {len(rows)} rows, best of {repeat} ({load()})")
    print(f"  per-row (before)       {old:7.3f} s")
    print(f"  distinct states (now)  {new:7.3f} s")
    print(f"  speed-up               {old / new:7.2f} x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=Path("/tmp/paper/ws"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ensure_workspace(args.workspace)
    import torch  # noqa: F401  (imported before timing: to_tensors would otherwise pay torch's import)

    ws = Workspace.open(args.workspace, create=False)
    for text in SOURCES:
        bench_cache(ws, text)
    bench_observations(ws, args.repeat)


if __name__ == "__main__":
    main()
