"""Speed of discrete IQL updates: ours against a plain implementation, and K stacked seeds (issue 12).

Sizes of the simulator's data (issue 12): states 870 wide with ~11 non-zeros (at most 21, values 1 or
2), instruction embeddings 384, 121 actions; hidden 256 x 2 with LayerNorm, batch 256 per seed.

1. The machine's fp32 matmul throughput (torch.mm, best of a few).
2. PLAIN (twin Q, target Qs, V and actor as separate nn.Sequential MLPs, separate forward passes,
   torch.optim.Adam, CORL's update order and Polyak loop) against OURS (rgvlm_core.rl.iql.IQL, one
   seed, dense states; optionally torch.compile): steps/s and the achieved GFLOP/s of each one's linear
   layers (forward 2*B*in*out, a trained pass ~3x its forward). Before timing, PLAIN and OURS (dense and
   sparse states) start from the same weights and 3 updates on the same batches must give the same
   metrics (equal semantics).
3. OURS with K = 1, 2, 3, 5 stacked seeds, dense and sparse states: updates/s per seed (K x stacked
   steps/s) and the ratio to the K=1 dense figure.

Batches are sampled beforehand (OfflineTensors.sample), so the figures are of the update alone.

On the shared 2-core dev machine (1 thread, torch 2.13 CPU, --seconds 3, best of 3): plain 19.1
steps/s, ours 24.1 (1.26x), ours on sparse states 31.6 (1.65x); per seed, K=1/2/3/5 dense 23.8 / 26.1
/ 25.2 / 26.9 updates/s (1.00 / 1.10 / 1.06 / 1.13x), sparse 34.8 / 33.3 / 36.6 / 36.7 (1.46-1.54x).

usage: python bench/iql_speed.py [--seconds 9] [--rounds 3] [--stacks 1,2,3,5] [--compile] [--threads 0]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rgvlm_core.rl.iql import (
    IQL,
    Batch,
    IQLConfig,
    OfflineTensors,
    SeedStack,
    actor_loss,
    expectile_loss,
    q_loss,
)

S, E, A, H, B = 870, 384, 121, 256, 256
D = S + E
NNZ_MEAN, NNZ_MAX, ROWS, INSTRUCTIONS = 11, 21, 20_000, 500


def matmul_gflops(repeats: int = 5) -> float:
    best = 0.0
    for n in (1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        torch.mm(a, b)
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(a, b)
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def pick_threads(requested: int) -> int:
    """`requested`, or (0) whichever of 1..cpu_count threads runs this update's matmul shape fastest."""
    if requested > 0:
        return requested
    a, w = torch.randn(B, D), torch.randn(D, H)
    best, best_t = 1, float("inf")
    for n in range(1, min(2, os.cpu_count() or 1) + 1):
        torch.set_num_threads(n)
        a @ w
        t = time.perf_counter()
        for _ in range(50):
            a @ w
        took = time.perf_counter() - t
        print(f"  {n} thread(s): {B}x{D}x{H} matmul {2 * B * D * H * 50 / took / 1e9:6.1f} GFLOP/s")
        if took < best_t:
            best, best_t = n, took
    return best


def mlp_flops(out: int, batch: int = B) -> int:
    """Forward FLOPs of one D -> H -> H -> out MLP's linear layers."""
    return 2 * batch * (D * H + H * H + H * out)


# plain: trained passes V(s), Q1(s), Q2(s), actor(s) at 3x; no-grad Q1t(s), Q2t(s), V(s') at 1x
PLAIN_FLOPS = 3 * (mlp_flops(1) + 2 * mlp_flops(A) + mlp_flops(A)) + 2 * mlp_flops(A) + mlp_flops(1)
# ours: the same passes, but the four Q heads evaluate only the dataset action (H instead of H * A)
OURS_FLOPS = PLAIN_FLOPS - (3 * 2 + 2) * 2 * B * H * (A - 1)
# ours on sparse states: the first layer's state block sums ~NNZ_MEAN weight rows instead of S
SPARSE_FLOPS = OURS_FLOPS - (3 * 4 + 3) * 2 * B * (S - NNZ_MEAN) * H


def plain_mlp(out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(D, H),
        nn.LayerNorm(H),
        nn.ReLU(),
        nn.Linear(H, H),
        nn.LayerNorm(H),
        nn.ReLU(),
        nn.Linear(H, out),
    )


class PlainIQL:
    """A straightforward discrete IQL update (CORL's algorithms/offline/iql.py, made discrete)."""

    def __init__(self, c: IQLConfig):
        self.c = c
        self.q1, self.q2, self.v, self.pi = plain_mlp(A), plain_mlp(A), plain_mlp(1), plain_mlp(A)
        self.q1_t, self.q2_t = copy.deepcopy(self.q1), copy.deepcopy(self.q2)
        self.q_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=c.lr)
        self.v_opt = torch.optim.Adam(self.v.parameters(), lr=c.lr)
        self.pi_opt = torch.optim.Adam(self.pi.parameters(), lr=c.lr)
        self.pi_sched = torch.optim.lr_scheduler.CosineAnnealingLR(self.pi_opt, c.steps)

    def update(self, stacked: Batch) -> dict[str, float]:
        b = seed_zero(stacked)
        c, a = self.c, b.actions[:, None]
        x = torch.cat([b.states, b.instructions], 1)
        x_next = torch.cat([b.next_states, b.next_instructions], 1)
        with torch.no_grad():
            target_q = torch.min(self.q1_t(x).gather(1, a), self.q2_t(x).gather(1, a))[:, 0]
        v = self.v(x)[:, 0]
        adv = target_q - v
        v_loss = expectile_loss(adv, c.expectile)
        self.v_opt.zero_grad()
        v_loss.backward()
        self.v_opt.step()
        with torch.no_grad():
            target = b.rewards + c.gamma * (1 - b.dones) * self.v(x_next)[:, 0]
        q1, q2 = self.q1(x).gather(1, a)[:, 0], self.q2(x).gather(1, a)[:, 0]
        loss_q = q_loss(q1, q2, target)
        self.q_opt.zero_grad()
        loss_q.backward()
        self.q_opt.step()
        lr = self.pi_opt.param_groups[0]["lr"]
        loss_pi = actor_loss(self.pi(x), b.masks, b.actions, adv, c.beta, c.max_weight)
        self.pi_opt.zero_grad()
        loss_pi.backward()
        self.pi_opt.step()
        self.pi_sched.step()
        with torch.no_grad():
            for net, tgt in ((self.q1, self.q1_t), (self.q2, self.q2_t)):
                for p, tp in zip(net.parameters(), tgt.parameters(), strict=True):
                    tp.data.copy_((1 - c.tau) * tp.data + c.tau * p.data)
        return {
            "losses/q": loss_q.item(), "losses/v": v_loss.item(), "losses/actor": loss_pi.item(),
            "values/q": 0.5 * (q1.mean() + q2.mean()).item(), "values/v": v.mean().item(),
            "values/adv": adv.mean().item(), "lr/actor": lr,
        }  # fmt: skip


@dataclass
class PlainBatch:
    states: Tensor
    instructions: Tensor
    actions: Tensor
    rewards: Tensor
    next_states: Tensor
    next_instructions: Tensor
    dones: Tensor
    masks: Tensor


def seed_zero(b: Batch) -> PlainBatch:
    """Seed 0's transitions of a (dense-state) stacked batch, without the seed axis."""
    assert b.states.dense is not None and b.next_states.dense is not None
    return PlainBatch(
        b.states.dense[0], b.instructions[0], b.actions[0], b.rewards[0],
        b.next_states.dense[0], b.next_instructions[0], b.dones[0], b.masks[0],
    )  # fmt: skip


@torch.no_grad()
def copy_into_stack(stack: SeedStack, nets: list[nn.Sequential]) -> None:
    """Seed 0's members of `stack` := the plain MLPs `nets`."""
    m = stack.members
    for j, net in enumerate(nets):
        lin: list[nn.Linear] = [net[0], net[3]]  # type: ignore[list-item]
        norms: list[nn.LayerNorm] = [net[1], net[4]]  # type: ignore[list-item]
        cols = slice(j * H, (j + 1) * H)
        stack.w_state[0, :, cols].copy_(lin[0].weight.T[:S])
        stack.w_instruction[0, :, cols].copy_(lin[0].weight.T[S:])
        stack.b_first[0, 0, cols].copy_(lin[0].bias)
        stack.weights[0][j].copy_(lin[1].weight.T)
        stack.biases[0][j, 0].copy_(lin[1].bias)
        for i in range(2):
            stack.norm_weights[i][j, 0].copy_(norms[i].weight)
            stack.norm_biases[i][j, 0].copy_(norms[i].bias)
        head: nn.Linear = net[6]  # type: ignore[assignment]
        stack.head_weight[j].copy_(head.weight)
        stack.head_bias[j].copy_(head.bias)
    assert len(nets) == m


def sim_states(n: int, gen: torch.Generator) -> Tensor:
    """(n, S) rows like the simulator's: NNZ_MEAN non-zeros on average (1 to NNZ_MAX), values 1 or 2."""
    counts = torch.clamp(torch.poisson(torch.full((n,), float(NNZ_MEAN)), generator=gen), 1, NNZ_MAX)
    keys = torch.rand(n, S, generator=gen)
    cols = torch.argsort(keys, dim=1)[:, :NNZ_MAX]
    keep = torch.arange(NNZ_MAX)[None] < counts[:, None]
    values = torch.randint(1, 3, (n, NNZ_MAX), generator=gen).float() * keep
    return torch.zeros(n, S).scatter_(1, cols, values)


def sim_dataset(gen: torch.Generator) -> OfflineTensors:
    masks = torch.rand(ROWS, A, generator=gen) < 0.5
    masks[:, 0] = True
    return OfflineTensors(
        states=sim_states(ROWS, gen),
        next_states=sim_states(ROWS, gen),
        instruction_ids=torch.randint(INSTRUCTIONS, (ROWS,), generator=gen),
        next_instruction_ids=torch.randint(INSTRUCTIONS, (ROWS,), generator=gen),
        instruction_table=torch.randn(INSTRUCTIONS, E, generator=gen),
        actions=torch.multinomial(masks.float(), 1, generator=gen)[:, 0],
        rewards=(torch.rand(ROWS, generator=gen) < 0.1).float(),
        dones=(torch.rand(ROWS, generator=gen) < 0.05).float(),
        masks=masks,
    )


def make_batches(data: OfflineTensors, n: int, seeds: int) -> list[Batch]:
    gens = [torch.Generator().manual_seed(1000 + k) for k in range(seeds)]
    return [data.sample(B, gens, "cpu") for _ in range(n)]


def check_equal_semantics(config: IQLConfig, dense: list[Batch], sparse: list[Batch]) -> float:
    """Worst relative metric difference of OURS (dense and sparse states) from PLAIN over 3 updates."""
    worst = 0.0
    for batches in (dense, sparse):
        torch.manual_seed(0)
        plain, ours = PlainIQL(config), IQL(S, E, A, config)
        copy_into_stack(ours.critic, [plain.q1, plain.q2])
        copy_into_stack(ours.critic_target, [plain.q1_t, plain.q2_t])
        copy_into_stack(ours.value, [plain.v])
        copy_into_stack(ours.actor, [plain.pi])
        for b_dense, b in zip(dense[:3], batches[:3], strict=True):
            mp, (mo,) = plain.update(b_dense), ours.update(b)
            worst = max(worst, *(abs(mp[k] - mo[k]) / max(1e-6, abs(mp[k])) for k in mp))
    if worst > 1e-3:
        raise SystemExit(f"ours and plain disagree after 3 updates: worst relative difference {worst:.2e}")
    return worst


def steps_per_s(update: Callable[[Batch], object], batches: list[Batch], seconds: float) -> float:
    for b in batches[:10]:  # warm-up (and torch.compile's first calls)
        update(b)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        update(batches[n % len(batches)])
        n += 1
    return n / (time.perf_counter() - t0)


def best_rate(update: Callable[[Batch], object], batches: list[Batch], args: argparse.Namespace) -> float:
    """Best steps/s of `rounds` short rounds: the 2-core machine is often shared."""
    return max(steps_per_s(update, batches, args.seconds / args.rounds) for _ in range(args.rounds))


def plain_against_ours(args: argparse.Namespace, config: IQLConfig, data: OfflineTensors, peak: float):
    sparse_data = replace(data).with_sparse_states()
    assert sparse_data.sparse is not None, "the simulator-like states should be sparse enough"
    dense, sparse = make_batches(data, 16, 1), make_batches(sparse_data, 16, 1)
    worst = check_equal_semantics(config, dense, sparse)
    print(f"equal semantics: same weights, 3 updates, worst relative metric difference {worst:.1e}")
    torch.manual_seed(0)
    plain, ours = PlainIQL(config), IQL(S, E, A, config)
    # alternate short rounds and keep each one's best
    plain_rate = ours_rate = 0.0
    for _ in range(args.rounds):
        plain_rate = max(plain_rate, steps_per_s(plain.update, dense, args.seconds / args.rounds))
        ours_rate = max(ours_rate, steps_per_s(ours.update, dense, args.seconds / args.rounds))
    rows = [("plain", plain_rate, PLAIN_FLOPS), ("ours", ours_rate, OURS_FLOPS)]
    rows.append(("ours sparse", best_rate(IQL(S, E, A, config).update, sparse, args), SPARSE_FLOPS))
    if args.compile:
        t = time.perf_counter()
        compiled = IQL(S, E, A, replace(config, compile=True))
        compiled.update(dense[0])
        print(f"torch.compile warm-up: {time.perf_counter() - t:.1f} s")
        rows.append(("ours+compile", best_rate(compiled.update, dense, args), OURS_FLOPS))
    print(
        f"{'update':14s} {'steps/s':>8s} {'GFLOP/step':>10s} {'GFLOP/s':>8s} {'% of mm':>7s} {'x plain':>7s}"
    )
    for name, rate, flops in rows:
        gf = rate * flops / 1e9
        share, speedup = 100 * gf / peak, rate / plain_rate
        print(f"{name:14s} {rate:8.1f} {flops / 1e9:10.3f} {gf:8.1f} {share:6.0f}% {speedup:7.2f}")


def stacked_seeds(args: argparse.Namespace, config: IQLConfig, data: OfflineTensors) -> None:
    """Updates/s per seed for K stacked seeds, dense and sparse states, against K=1 dense."""
    sparse_data = replace(data).with_sparse_states()
    print(f"{'seeds':>5s} {'states':>6s} {'steps/s':>8s} {'updates/s/seed':>14s} {'x K=1 dense':>11s}")
    base = 0.0
    for k in args.stacks:
        for name, source in (("dense", data), ("sparse", sparse_data)):
            learner = IQL(S, E, A, config, seeds=range(k))
            rate = best_rate(learner.update, make_batches(source, 8, k), args)
            base = base or k * rate
            print(f"{k:5d} {name:>6s} {rate:8.1f} {k * rate:14.1f} {k * rate / base:11.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=9.0, help="timing seconds per implementation")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (best kept)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads; 0 = the faster of 1 and 2 (2 cores)"
    )
    parser.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    parser.add_argument(
        "--stacks", default="1,2,3,5", help="numbers of stacked seeds to time (comma-separated; 1 first)"
    )
    args = parser.parse_args()
    args.stacks = [int(k) for k in args.stacks.split(",")]
    torch.set_num_threads(pick_threads(args.threads))
    config = IQLConfig()
    data = sim_dataset(torch.Generator().manual_seed(0))
    peak = matmul_gflops()
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"fp32 matmul (torch.mm, 1024-2048 squares, best): {peak:7.1f} GFLOP/s")
    plain_against_ours(args, config, data, peak)
    stacked_seeds(args, config, data)


if __name__ == "__main__":
    main()
