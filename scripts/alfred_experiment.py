"""Issue 15's experiment: IQL trained on ALFRED's own trajectories (replayed), evaluated on ALFRED's own
validation tasks, seen and unseen scenes apart. One script, fixed protocol.

Protocol (fixed on 2026-12-02 before any result of it was seen):
- Data: the ALFRED files of ../shared/alfred (a sample: 280 train, 56 valid_seen, 56 valid_unseen
  trajectories, 8 per task type in valid), imported with `rgvlm import --replay` (ALFRED's human
  instructions, one episode per annotation); training uses the train split only (`--data-split train`).
- Labels: the reference labeller (ground truth, NOT an LVLM). On ALFRED's expert demonstrations it scores
  every step 7 and each subtask's last step 10, so Sparse+RG-VLM (cost mapping, the default) adds a
  constant -0.3 per step and nothing that tells steps apart: this tests the plumbing and the effect of a
  step cost, not an LVLM's judgement.
- Methods: Sparse, behaviour cloning, Sparse+RG-VLM (reference labels, cost); seeds 0-2; 3,000 updates
  each (paper.md's IQL defaults, unchanged); the MiniLM instruction encoder.
- Evaluation: ALFRED's valid_seen and valid_unseen tasks (chains of 1-6 consecutive subtasks of each
  trajectory, started where ALFRED's agent started them; alfred/tasks.py), up to 50 per length and
  split, 70 steps per subtask (rl.config.LOW_SUBTASK_BUDGET), the annotators' instructions.
- Why smaller than the fair comparison's 5 seeds x 10,000 updates: at this level an update takes ~55 ms
  on the 2-core machine (825-value states, 132 actions), so 9 runs of 3,000 updates fit in about half an
  hour; a larger protocol is a matter of time, not of code.

usage: python scripts/alfred_experiment.py ROOT [--docs docs/alfred-experiment]
Writes ROOT/ws, then DOCS/results.md (tables), DOCS/results.csv, DOCS/completion.png and DOCS/timing.json.
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
SHARED = ROOT.parent / "shared" / "alfred"
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fair_comparison import _length_tables, _paired_table, _success_table, write_png  # noqa: E402

NAME = "alfred"
METHODS = ("sparse", "bc", "sparse+reference")
SEEDS, STEPS = 3, 3000
SPLITS = ("valid_seen", "valid_unseen")


def rgvlm(ws: Path, *args: str) -> None:
    command = ["rgvlm", "-w", str(ws), *args]
    print("+", " ".join(command), flush=True)
    env = {**os.environ, "RGVLM_NO_SAMPLE": "1", "RGVLM_ALFRED_LAYOUTS": str(SHARED / "layouts")}
    subprocess.run(command, env=env, check=True)


def run(ws: Path) -> dict[str, float]:
    timing = {}
    start = time.perf_counter()
    rgvlm(ws, "import", str(SHARED / "json_2.1.0"), "--replay", "--layouts", str(SHARED / "layouts"))
    rgvlm(ws, "label", "--labeller", "reference", "--name", "reference")
    timing["import and labels"] = time.perf_counter() - start
    start = time.perf_counter()
    tasks = ",".join(f"alfred:{s}" for s in SPLITS)
    rgvlm(ws, "experiment", "--name", NAME, "--methods", ",".join(METHODS), "--seeds", str(SEEDS),
          "--steps", str(STEPS), "--data-split", "train", "--eval-tasks", tasks,
          "--episodes-per-length", "50", "--log-every", "250")  # fmt: skip
    timing["experiment"] = time.perf_counter() - start
    return timing


def write(ws: Path, docs: Path, timing: dict[str, float]) -> None:
    import pandas as pd

    from rgvlm_core import compare
    from rgvlm_core.report import build_comparison
    from rgvlm_core.rl.experiment import experiment_run_ids
    from rgvlm_core.workspace import Workspace

    reader = Workspace.open(ws, create=False).reader()
    try:
        run_ids = experiment_run_ids(reader, NAME)
        c = build_comparison(reader, run_ids, phrasing="unseen")
        order = [m for m in compare.methods_in_order(reader) if m in set(c.summary["method"])]
        info = json.loads(
            reader.rows("SELECT dataset FROM train_runs WHERE run_id = ?", [run_ids[0]])[0]["dataset"]
        )
        steps = reader.scalar(
            "SELECT count(*) FROM steps s JOIN trajectories t USING (trajectory_id) WHERE t.split = 'train'"
        )
        episodes = reader.scalar("SELECT count(*) FROM episodes WHERE split = 'train'")
    finally:
        reader.close()
    tasks = c.episodes[c.episodes["run_id"] == run_ids[0]].groupby(["condition", "length"]).size()
    lines = [
        "# ALFRED's own tasks: results", "",
        "Written by `python scripts/alfred_experiment.py ROOT` (its docstring holds the protocol, fixed "
        "before any result); every number is computed from the stored evaluations.", "",
        f"Training data: {info['trajectories']} replayed ALFRED train trajectories, {episodes} episodes (one "
        f"per annotation), {steps:,} steps, on {len(info['floor_plans'])} floor plans. This is a sample of "
        "ALFRED (train has 6,574 trajectories): small data, read the numbers as such.", "",
        "Evaluation tasks per split and length: "
        + "; ".join(f"{cond} {n}: {k}" for (cond, n), k in tasks.items()) + ".", "",
        "Time taken: " + "; ".join(f"{k} {v / 60:.1f} min" for k, v in timing.items()), "",
    ]  # fmt: skip
    lines += _baselines(info["alfred_root"])
    lines += _length_tables(c, order, "annotators'", SPLITS)
    lines += _paired_table(c, "annotators'", SPLITS) + _success_table(c, order, SPLITS)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "results.md").write_text(
        "\n".join(lines).replace("annotators' phrasings", "ALFRED's instructions")
    )
    pd.DataFrame(c.seeds).to_csv(docs / "results.csv", index=False)
    (docs / "timing.json").write_text(json.dumps(timing, indent=1))
    _figure(c, docs / "completion.png")


def _baselines(root: str) -> list[str]:
    """ALFRED's recorded actions (the expert) and a uniformly random valid action, on the same tasks with the
    same budget (rgvlm_core.sim.evaluate, as `rgvlm sim evaluate --eval-tasks` runs them)."""
    from rgvlm_core.rl.config import LOW_SUBTASK_BUDGET
    from rgvlm_core.sim.evaluate import EvalConfig, evaluate, summarize

    lengths = " | ".join(f"{n} subtask{'s' if n > 1 else ''}" for n in range(1, 7))
    out = ["**Reference policies on the same tasks** (proportion of subtasks completed; not trained)", "",
           f"| policy | split | {lengths} |", "| --- " * 8 + "|"]  # fmt: skip
    for policy in ("expert", "random"):
        for split in SPLITS:
            config = EvalConfig(episodes_per_length=50, condition=split, level="alfred", alfred_root=root,
                                subtask_budget=LOW_SUBTASK_BUDGET)  # fmt: skip
            rows = summarize(evaluate(policy, config))
            cells = [f"{r['mean_completed']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]" for r in rows]
            name = "ALFRED's recorded actions" if policy == "expert" else "random valid action"
            out.append(f"| {name} | {split} | " + " | ".join(cells) + " |")
    return [*out, ""]


def _figure(c: object, out: Path) -> None:
    from rgvlm_core.charts_compare import completion_figure

    fig = completion_figure(c.summary, c.seeds, conditions=SPLITS, colours=c.colours)  # type: ignore[attr-defined]
    write_png(fig, out, 1100, 480)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--docs", type=Path, default=ROOT / "docs" / "alfred-experiment")
    parser.add_argument("--tables-only", action="store_true", help="Write the tables of what is stored now.")
    args = parser.parse_args()
    ws = args.root / "ws"
    timing_path = args.root / "timing.json"
    if args.tables_only:
        timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}
    else:
        timing = run(ws)
        timing_path.write_text(json.dumps(timing))
    write(ws, args.docs, timing)
    print(f"wrote {args.docs}/results.md")


if __name__ == "__main__":
    main()
