"""Why the policies trained on ALFRED's trajectories complete fewer subtasks than a random valid action.

For each run of the ALFRED experiment (scripts/alfred_experiment.py), on the first 20 valid_seen tasks of 1
subtask: how often the policy picks ALFRED's recorded action when it is shown the recorded states
(teacher-forced agreement), how many of the 20 it completes acting on its own, what share of its steps
return to a state it was in earlier in the same episode (a loop), and its most frequent actions; the random
valid action on the same tasks beside them.

usage: python scripts/alfred_diagnosis.py ROOT [--out docs/alfred-experiment/diagnosis.md]
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TASKS = 20
Policy = Callable[[dict[str, Any], np.ndarray], int]


def _key(w: Any) -> tuple[Any, ...]:
    return (w.pose, w.held, tuple(sorted(w.parent.items())), tuple(sorted(w.opened)), tuple(sorted(w.on)))


def measure(env: Any, policy: Policy, tokens: tuple[str, ...]) -> dict[str, Any]:
    agree = shown = done = revisits = steps = 0
    actions: collections.Counter[str] = collections.Counter()
    for e in range(TASKS):
        obs, info = env.reset(options={"n_subtasks": 1, "episode": e})
        for expert in env.task.expert:  # teacher-forced: the recorded states, one decision each
            agree += policy(obs, info["action_mask"]) == expert
            shown += 1
            obs, _, terminated, truncated, info = env.step(expert)
            if terminated or truncated:
                break
        obs, info = env.reset(options={"n_subtasks": 1, "episode": e})
        seen: set[tuple[Any, ...]] = set()
        ended = False
        while not ended:
            key = _key(env.world)
            revisits += key in seen
            seen.add(key)
            a = policy(obs, info["action_mask"])
            actions[tokens[a]] += 1
            steps += 1
            obs, _, terminated, truncated, info = env.step(a)
            ended = terminated or truncated
        done += info["subtask_index"]
    top = ", ".join(f"{t} {n / steps:.0%}" for t, n in actions.most_common(4))
    return {"agree": agree / shown, "completed": done, "revisits": revisits / steps, "top": top}


def main() -> None:
    import torch

    from rgvlm_core.alfred.env import AlfredTaskEnv
    from rgvlm_core.alfred.level import ACTION_TOKENS
    from rgvlm_core.rl.encoder import encode_cached, make_encoder
    from rgvlm_core.rl.iql import IQL
    from rgvlm_core.workspace import Workspace

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "alfred-experiment" / "diagnosis.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ws = Workspace.open(args.root / "ws", create=False)
    reader = ws.reader()
    try:
        runs = reader.rows(
            "SELECT r.run_id, r.method, r.seed, t.checkpoint, t.encoder FROM experiment_runs r "
            "JOIN train_runs t USING (run_id) WHERE r.experiment_id = 'alfred' ORDER BY r.method, r.seed"
        )
        root = reader.rows("SELECT source_dir FROM trajectories WHERE split = 'valid_seen' LIMIT 1")[0]
    finally:
        reader.close()
    env = AlfredTaskEnv("valid_seen", root=Path(root["source_dir"]).parents[2], subtask_budget=70)
    lines = [
        "# Why the trained policies do no better than a random action on ALFRED's tasks", "",
        "Written by `python scripts/alfred_diagnosis.py ROOT`: the first 20 valid_seen tasks of 1 subtask, "
        "70 steps each. Agreement: the share of ALFRED's recorded states in which the policy picks the "
        "recorded action. Revisits: the share of its own steps that return to a state of the same "
        "episode.", "",
        "| policy | seed | agreement with ALFRED | completed (of 20) | revisits | most frequent actions |",
        "| --- | --- | --- | --- | --- | --- |",
    ]  # fmt: skip
    for run in runs:
        learner = IQL.load(ws.root / run["checkpoint"], device="cpu")
        encoder, cache = make_encoder(run["encoder"]), {}

        def act(obs: dict[str, Any], mask: np.ndarray, learner: Any = learner, encoder: Any = encoder,
                cache: dict[str, Any] = cache) -> int:  # fmt: skip
            text = str(obs["instruction"])
            if text not in cache:
                cache[text] = encode_cached(encoder, [text], ws.root / "rl_cache")[0]
            with torch.no_grad():
                out = learner.act(torch.as_tensor(obs["state"])[None], torch.as_tensor(cache[text])[None],
                                  torch.as_tensor(mask, dtype=torch.bool)[None])  # fmt: skip
            return int(out[0])

        m = measure(env, act, ACTION_TOKENS)
        lines.append(f"| {run['method']} | {run['seed']} | {m['agree']:.2f} | {m['completed']} | "
                     f"{m['revisits']:.2f} | {m['top']} |")  # fmt: skip
    rng = np.random.default_rng(0)
    m = measure(env, lambda obs, mask: int(rng.choice(np.flatnonzero(mask))), ACTION_TOKENS)
    lines.append(f"| random valid action | - | {m['agree']:.2f} | {m['completed']} | {m['revisits']:.2f} | "
                 f"{m['top']} |")  # fmt: skip
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
