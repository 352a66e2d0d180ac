"""Why do policies trained on low-level data complete so little? One trained run, replayed on the low-level
comparison's 1-subtask evaluation tasks, step by step: does it walk towards the receptacle it needs, does it
reach it, and what does it do there (docs/paper-comparison.md, the low level).

usage: python scripts/low_level_diagnosis.py WORKSPACE RUN_ID [RUN_ID ...] [--tasks 50]
Prints, per run: tasks completed; tasks where the agent ever stood facing the receptacle the expert's first
interaction needs; the share of tasks whose shortest distance to it (steps) shrank below half the start's;
the share of steps that were moves, turns, looks, valid and invalid interactions.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import torch

from rgvlm_core.rl.config import LOW_SUBTASK_BUDGET
from rgvlm_core.rl.dataset import dataset_floor_plans
from rgvlm_core.rl.encoder import encode_cached, make_encoder
from rgvlm_core.rl.iql import IQL
from rgvlm_core.sim.evaluate import episode_seed
from rgvlm_core.sim.low.env import LowHouseholdEnv
from rgvlm_core.sim.low.nav import N_NAV, navigator
from rgvlm_core.sim.low.world import ACTIONS
from rgvlm_core.workspace import Workspace


def diagnose(ws: Workspace, run_id: str, tasks: int) -> dict[str, float]:
    reader = ws.reader()
    try:
        row = reader.rows("SELECT checkpoint, encoder, dataset FROM train_runs WHERE run_id = ?", [run_id])[0]
    finally:
        reader.close()
    info = json.loads(row["dataset"])
    learner = IQL.load(ws.root / row["checkpoint"], device="cpu")
    encoder = make_encoder(row["encoder"])
    env = LowHouseholdEnv(
        phrasing="unseen", subtask_budget=LOW_SUBTASK_BUDGET, floor_plans=dataset_floor_plans(info)
    )
    kinds: Counter[str] = Counter()
    done = faced = closer = 0
    for e in range(tasks):
        obs, info_ = env.reset(seed=episode_seed(0, 1, e), options={"n_subtasks": 1, "condition": "default"})
        nav = navigator(env.state.plan)
        goal_pose = env.state.pose  # where the expert's walk ends: its first interaction's pose
        for a in env.expert_plan():
            if a >= N_NAV:
                break
            goal_pose = nav.move(goal_pose, a) or goal_pose
        goal = env.state.plan.front(goal_pose)
        start = nav.distance(env.state.pose, goal_pose)
        best, seen, ended = start, False, False
        text = str(obs["instruction"])
        vec = torch.as_tensor(encode_cached(encoder, [text], ws.root / "rl_cache")[0])[None]
        while not ended:
            with torch.no_grad():
                a = int(
                    learner.act(
                        torch.as_tensor(obs["state"])[None], vec, torch.as_tensor(info_["action_mask"])[None]
                    )[0]
                )
            verb = ACTIONS[a][0]
            kinds[verb if a < N_NAV else ("interaction" if info_["action_mask"][a] else "invalid")] += 1
            obs, _, term, trunc, info_ = env.step(a)
            ended = term or trunc
            best = min(best, nav.distance(env.state.pose, goal_pose))
            seen = seen or env.state.world.agent == goal
        done += int(info_["subtask_index"] >= 1)
        faced += int(seen)
        closer += int(best <= start / 2)
    total = sum(kinds.values())
    out = {
        "completed": done / tasks,
        "faced the receptacle": faced / tasks,
        "halved the distance": closer / tasks,
    }
    out.update({f"steps: {k}": v / total for k, v in sorted(kinds.items())})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workspace", type=Path)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--tasks", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ws = Workspace.open(args.workspace, create=False)
    for run in args.runs:
        figures = diagnose(ws, run, args.tasks)
        print(run, "  ".join(f"{k} {v:.2f}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
