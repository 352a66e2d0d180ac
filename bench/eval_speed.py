"""Evaluation speed: one batch-1 policy call per step (`evaluate`) against lockstep (`evaluate_members`).

Issue 12. The policy is a small torch MLP of the sizes IQL uses (inputs 870 state + 384 instruction,
hidden 256 x 2, 121 actions; random weights; masked argmax), one thread. Instruction vectors are random
and embedded once from `evaluation_instructions`, as a driver would ship them to workers. For
members=1 and 5 it prints episodes/s of:
  - evaluate: each member's policy evaluated one after another, one forward pass per step;
  - evaluate_members: all members' episodes in lockstep, one stacked forward pass per tick;
  - the env alone (evaluate with a "first valid action" policy, no torch): the ceiling.
Before timing, both ways must give the same results for every member (equal semantics).

usage: python bench/eval_speed.py [--episodes 20] [--members 1 5] [--window 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rgvlm_core.sim.encode import STATE_DIM
from rgvlm_core.sim.evaluate import EvalConfig, Policy, evaluate, evaluation_instructions
from rgvlm_core.sim.evaluate_batch import BatchPolicy, evaluate_members
from rgvlm_core.sim.world import N_ACTIONS

E, H = 384, 256
D = STATE_DIM + E


class StackedPolicy:
    """`members` random MLPs D -> H -> H -> N_ACTIONS held as stacked weights, masked argmax."""

    def __init__(self, members: int, embedded: dict[str, np.ndarray], seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        shapes = [(D, H), (H, H), (H, N_ACTIONS)]
        self.w = [torch.randn(members, i, o, generator=g) / i**0.5 for i, o in shapes]
        self.b = [torch.randn(members, o, generator=g) * 0.1 for _, o in shapes]
        self.embedded = {k: torch.as_tensor(v) for k, v in embedded.items()}

    def _inputs(self, observations: list[dict[str, Any]]) -> torch.Tensor:
        states = torch.as_tensor(np.stack([o["state"] for o in observations]))
        texts = torch.stack([self.embedded[o["instruction"]] for o in observations])
        return torch.cat([states, texts], dim=1)

    def _forward(self, m: int, x: torch.Tensor) -> torch.Tensor:
        for layer, (w, b) in enumerate(zip(self.w, self.b, strict=True)):
            x = torch.addmm(b[m], x, w[m])
            if layer < len(self.w) - 1:
                x = torch.relu(x)
        return x

    @torch.no_grad()
    def batch(self, observations: list[dict[str, Any]], masks: np.ndarray, members: np.ndarray) -> np.ndarray:
        x, mask = self._inputs(observations), torch.as_tensor(masks)
        out = torch.empty(len(observations), dtype=torch.int64)
        rows = torch.as_tensor(members)
        for m in torch.unique(rows).tolist():
            sel = torch.nonzero(rows == m).flatten()
            logits = self._forward(m, x[sel]).masked_fill(~mask[sel], float("-inf"))
            out[sel] = logits.argmax(dim=1)
        return out.numpy()

    def single(self, member: int) -> Policy:
        @torch.no_grad()
        def act(obs: dict[str, Any], mask: np.ndarray) -> int:
            logits = self._forward(member, self._inputs([obs]))[0]
            return int(logits.masked_fill(~torch.as_tensor(mask, dtype=torch.bool), float("-inf")).argmax())

        return act


def first_valid(obs: dict[str, Any], mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


def timed(run: Any) -> tuple[float, Any]:
    t = time.perf_counter()
    out = run()
    return time.perf_counter() - t, out


def compare(members: int, config: EvalConfig, embedded: dict[str, np.ndarray], window: int) -> None:
    stacked = StackedPolicy(members, embedded)
    batch: BatchPolicy = stacked.batch
    n = members * len(config.lengths) * config.episodes_per_length
    t_seq, seq = timed(lambda: [Counter(evaluate(stacked.single(m), config)) for m in range(members)])
    t_lock, pairs = timed(lambda: list(evaluate_members(batch, members, config, window=window)))
    t_env, _ = timed(lambda: [list(evaluate(first_valid, config)) for _ in range(members)])
    lock: list[Counter[Any]] = [Counter() for _ in range(members)]
    for m, r in pairs:
        lock[m][r] += 1
    steps = sum(r.steps for _, r in pairs)
    print(f"members={members}: {n} episodes, {steps} steps, same results: {lock == seq}")
    print(f"  evaluate (batch-1 calls)     {n / t_seq:8.1f} episodes/s  ({t_seq:6.2f} s)")
    print(f"  evaluate_members (lockstep)  {n / t_lock:8.1f} episodes/s  ({t_lock:6.2f} s)")
    print(f"  env alone (no torch)         {n / t_env:8.1f} episodes/s  ({t_env:6.2f} s)")
    print(f"  ratio lockstep / evaluate: {t_seq / t_lock:.1f}x; lockstep / env alone: {t_env / t_lock:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=20, help="episodes per task length (lengths 1..6)")
    parser.add_argument("--members", type=int, nargs="+", default=[1, 5], help="member counts to compare")
    parser.add_argument("--window", type=int, default=512, help="live environments in lockstep")
    parser.add_argument("--condition", default="default", choices=["default", "randomized"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = replace(EvalConfig(episodes_per_length=args.episodes), condition=args.condition)
    t, texts = timed(lambda: evaluation_instructions(config))
    rng = np.random.default_rng(0)
    embedded = {text: rng.standard_normal(E).astype(np.float32) for text in texts}
    print(f"{len(texts)} instructions listed in {t:.2f} s; torch threads 1; window {args.window}")
    for members in args.members:
        compare(members, config, embedded, args.window)


if __name__ == "__main__":
    main()
