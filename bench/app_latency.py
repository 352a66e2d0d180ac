"""Dashboard latency on a workspace of ALFRED-train size (issue 5 targets, 2-core machine).

Builds (once, cached) the ALFRED-format folder of bench/import_alfred.py (6,574 trajectories,
~315k steps, ~20k episodes), imports it, labels it with the reference labeller, then measures the
server side of the pages with Streamlit's AppTest (the script run a browser waits for):
  - the Episodes page's first render                                  target <= 3 s
  - one frame step (Next, the rerun it causes), p95 over 30 steps     target <= 150 ms
  - the Audit page's first render                                     target <= 3 s
Baseline in the same process: the Overview page's first render.

usage: python bench/app_latency.py [--trajectories 6574] [--keep]
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from import_alfred import build_folder

from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.labeling.reference import ReferenceLabeller
from rgvlm_core.labeling.runs import RunConfig, label_run
from rgvlm_core.workspace import Workspace


def build_workspace(folder: Path, trajectories: int) -> tuple[Path, float]:
    data = build_folder(Path(tempfile.gettempdir()) / "rgvlm-bench-alfred", trajectories)
    ws = Workspace.open(folder)
    collections.deque(import_alfred(ws, data, ImportConfig()), maxlen=0)
    start = time.perf_counter()
    collections.deque(label_run(ws, ReferenceLabeller(), RunConfig(name="reference")), maxlen=0)
    return folder, time.perf_counter() - start


def timed_run(at, timeout: float = 60) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    at.run(timeout=timeout)
    elapsed = time.perf_counter() - start
    if at.exception:
        raise RuntimeError(f"page raised: {at.exception}")
    return elapsed


def measure(workspace: Path) -> None:
    from streamlit.testing.v1 import AppTest

    os.environ["RGVLM_WORKSPACE"] = str(workspace)
    os.environ["RGVLM_NO_SAMPLE"] = "1"
    reader = Workspace.open(workspace, create=False).reader()
    counts = reader.rows("SELECT (SELECT count(*) FROM episodes) e, (SELECT count(*) FROM steps) s, "
                         "(SELECT count(*) FROM labels) l")[0]  # fmt: skip
    episode = reader.scalar("SELECT episode_id FROM episodes WHERE n_steps >= 40 ORDER BY episode_id LIMIT 1")
    reader.close()
    print(f"workspace: {counts['e']:,} episodes, {counts['s']:,} steps, {counts['l']:,} labels")

    home = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    print(f"baseline: Overview page first render          {timed_run(home) * 1000:8.0f} ms")

    episodes = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    episodes.query_params.update({"episode": episode, "step": "0", "run": "reference"})
    episodes.switch_page("pages/episodes.py")
    first = timed_run(episodes)
    print(f"Episodes page first render                    {first * 1000:8.0f} ms   target <= 3,000 ms")
    steps = []
    for _ in range(30):
        nxt = [b for b in episodes.button if b.label.lower().startswith("next")]
        if not nxt:
            raise RuntimeError("no Next button on the Episodes page")
        nxt[0].click()
        steps.append(timed_run(episodes))
    steps.sort()
    print(
        f"frame step (Next), server time: median {statistics.median(steps) * 1000:.0f} ms, "
        f"p95 {steps[int(0.95 * (len(steps) - 1))] * 1000:.0f} ms   target p95 <= 150 ms"
    )

    audit = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    audit.switch_page("pages/audit.py")
    print(
        f"Audit page first render                       {timed_run(audit) * 1000:8.0f} ms"
        "   target <= 3,000 ms"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trajectories", type=int, default=6574)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rgvlm-bench-app-"))
    try:
        workspace, label_s = build_workspace(tmp / "ws", args.trajectories)
        print(f"reference label run over the whole workspace: {label_s:.1f} s")
        measure(workspace)
    finally:
        if args.keep:
            print(f"workspace kept at {tmp / 'ws'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
