"""Speed of one discrete IQL update, ours against a plain implementation (issue 6, 2-core CPU).

Sizes from issue 6: inputs 448 = 64 state + 384 instruction, 120 actions, hidden 256 x 2 with LayerNorm,
batch 256. Prints the machine's fp32 matmul throughput (torch.mm, best of a few), then for PLAIN (twin
Q, target Qs, V and actor as separate nn.Sequential MLPs, separate forward passes, CORL's update order
and Polyak loop) and OURS (rgvlm_core.rl.iql.IQL; optionally torch.compile): steps/s and the achieved
GFLOP/s of each implementation's linear layers (forward 2*B*in*out, a trained pass ~3x its forward).
Before timing, both start from the same weights and one update on the same batch must give the same
metrics (equal semantics).

usage: python bench/iql_speed.py [--seconds 9] [--rounds 3] [--compile] [--threads 0]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rgvlm_core.rl.iql import IQL, Batch, IQLConfig, StackedMLP, actor_loss, expectile_loss, q_loss

S, E, A, H, B = 64, 384, 120, 256, 256
D = S + E


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

    def update(self, b: Batch) -> dict[str, float]:
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


@torch.no_grad()
def copy_into_stack(stack: StackedMLP, nets: list[nn.Sequential]) -> None:
    for k, net in enumerate(nets):
        lin: list[nn.Linear] = [net[0], net[3]]  # type: ignore[list-item]
        norms: list[nn.LayerNorm] = [net[1], net[4]]  # type: ignore[list-item]
        stack.weights[0][:, k * H : (k + 1) * H].copy_(lin[0].weight.T)
        stack.weights[1][k].copy_(lin[1].weight.T)
        for i in range(2):
            stack.biases[i][k, 0].copy_(lin[i].bias)
            stack.norm_weights[i][k, 0].copy_(norms[i].weight)
            stack.norm_biases[i][k, 0].copy_(norms[i].bias)
        head: nn.Linear = net[6]  # type: ignore[assignment]
        stack.head_weight[k].copy_(head.weight)
        stack.head_bias[k].copy_(head.bias)


def make_batches(n: int, gen: torch.Generator) -> list[Batch]:
    out = []
    for _ in range(n):
        masks = torch.rand(B, A, generator=gen) < 0.5
        actions = torch.multinomial(masks.float(), 1, generator=gen)[:, 0]
        out.append(
            Batch(
                states=torch.randn(B, S, generator=gen),
                instructions=torch.randn(B, E, generator=gen),
                actions=actions,
                rewards=(torch.rand(B, generator=gen) < 0.1).float(),
                next_states=torch.randn(B, S, generator=gen),
                next_instructions=torch.randn(B, E, generator=gen),
                dones=(torch.rand(B, generator=gen) < 0.05).float(),
                masks=masks,
            )
        )
    return out


def check_equal_semantics(config: IQLConfig, batches: list[Batch]) -> float:
    torch.manual_seed(0)
    plain, ours = PlainIQL(config), IQL(S, E, A, config)
    copy_into_stack(ours.critic, [plain.q1, plain.q2])
    copy_into_stack(ours.critic_target, [plain.q1_t, plain.q2_t])
    copy_into_stack(ours.value, [plain.v])
    copy_into_stack(ours.actor, [plain.pi])
    worst = 0.0
    for b in batches[:3]:
        mp, mo = plain.update(b), ours.update(b)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=9.0, help="timing seconds per implementation")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timing rounds (best kept)")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads; 0 = the faster of 1 and 2 (2 cores)"
    )
    parser.add_argument("--compile", action="store_true", help="also time ours with torch.compile")
    args = parser.parse_args()
    torch.set_num_threads(pick_threads(args.threads))
    config = IQLConfig()
    batches = make_batches(16, torch.Generator().manual_seed(0))
    peak = matmul_gflops()
    print(f"threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"fp32 matmul (torch.mm, 1024-2048 squares, best): {peak:7.1f} GFLOP/s")
    worst = check_equal_semantics(config, batches)
    print(f"equal semantics: same weights, 3 updates, worst relative metric difference {worst:.1e}")
    torch.manual_seed(0)
    plain, ours = PlainIQL(config), IQL(S, E, A, config)
    # alternate short rounds and keep each one's best: the 2-core machine is often shared
    plain_rate = ours_rate = 0.0
    for _ in range(args.rounds):
        plain_rate = max(plain_rate, steps_per_s(plain.update, batches, args.seconds / args.rounds))
        ours_rate = max(ours_rate, steps_per_s(ours.update, batches, args.seconds / args.rounds))
    rows = [("plain", plain_rate, PLAIN_FLOPS), ("ours", ours_rate, OURS_FLOPS)]
    if args.compile:
        torch.manual_seed(0)
        t = time.perf_counter()
        compiled = IQL(S, E, A, IQLConfig(compile=True))
        compiled.update(batches[0])
        print(f"torch.compile warm-up: {time.perf_counter() - t:.1f} s")
        rate = max(
            steps_per_s(compiled.update, batches, args.seconds / args.rounds) for _ in range(args.rounds)
        )
        rows.append(("ours+compile", rate, OURS_FLOPS))
    print(
        f"{'update':14s} {'steps/s':>8s} {'GFLOP/step':>10s} {'GFLOP/s':>8s} {'% of mm':>7s} {'x plain':>7s}"
    )
    for name, rate, flops in rows:
        gf = rate * flops / 1e9
        share, speedup = 100 * gf / peak, rate / plain_rate
        print(f"{name:14s} {rate:8.1f} {flops / 1e9:10.3f} {gf:8.1f} {share:6.0f}% {speedup:7.2f}")


if __name__ == "__main__":
    main()
