"""Discrete, language-conditioned Implicit Q-Learning (Kostrikov et al., 2021), CORL style.

Reads top to bottom: the config, the data records, the losses (pure functions), the networks, the
learner's update step, and the training loop (a generator yielding `(step, metrics, learner)`).

Inputs are `concat(state, instruction embedding)`. Q has one output per action and the actor is a
categorical over actions; invalid actions (per-state boolean masks) are masked out of the actor.

Speed (bench/iql_speed.py): the update does the same maths as a plain implementation with less work.
The twin critics (and their targets) are one module with stacked weights, so each pair runs as one
matmul per layer; the Q heads only evaluate the dataset action (a gathered dot product instead of all
`n_actions` outputs, which is all the losses use); every network runs once per input it needs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import Tensor

from rgvlm_core.errors import UsageError
from rgvlm_core.rl.adam import Adam
from rgvlm_core.rl.config import IQLConfig
from rgvlm_core.rl.networks import SeedStack, States
from rgvlm_core.rl.tensors import Batch, OfflineTensors

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 2
NEG_LOGIT = (
    -1e9
)  # logit of an invalid action: exp() of it is exactly 0 in float32, unlike -inf it never makes NaN


def check_device(name: str) -> torch.device:
    """The torch device `name`, or a UsageError saying why this machine cannot use it.

    Without this, `--device cuda` on a CPU-only torch build fails deep inside `.to()` with an
    AssertionError ("Torch not compiled with CUDA enabled") and a traceback.
    """
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UsageError(f"device {name!r}: not a torch device; use cpu or cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "is a CPU-only build" if torch.version.cuda is None else "sees no GPU"
        raise UsageError(f"device {name!r}: this torch ({torch.__version__}) {why}; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise UsageError(f"device {name!r}: IQL runs on cpu or cuda")
    return device


# --------------------------------------------------------------------------------------------- losses
# Each loss is a mean over the batch (the last axis), one value per leading (seed) index; the update
# backpropagates their sum, whose gradient for seed k's parameters is that of seed k's own loss.


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """Asymmetric L2: mean of |expectile - 1(diff < 0)| * diff^2, with diff = target Q - V."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean(-1)


def q_loss(q1: Tensor, q2: Tensor, target: Tensor) -> Tensor:
    """TD loss of the twin critics at the dataset actions: the mean of their two MSEs (CORL)."""
    return 0.5 * ((q1 - target).square().mean(-1) + (q2 - target).square().mean(-1))


def masked_logits(logits: Tensor, masks: Tensor) -> Tensor:
    """Logits with invalid actions (`masks` False) set to a large negative, so their probability is 0."""
    return logits.masked_fill(~masks, NEG_LOGIT)


def actor_loss(
    logits: Tensor, masks: Tensor, actions: Tensor, advantages: Tensor, beta: float, max_weight: float
) -> Tensor:
    """Advantage-weighted regression: mean of -min(exp(beta * adv), max_weight) * log pi(a | s).

    A dataset action that is invalid in its state (a failed attempt) has probability 0 under the
    masked policy, so it cannot be imitated: such transitions carry no actor gradient and the mean is
    over the others (their Q and V losses still count). Without this, one failed attempt contributes
    a log-probability of -1e9 and swamps the loss.
    """
    weights = torch.exp(beta * advantages.detach()).clamp(max=max_weight)
    log_probs = torch.log_softmax(masked_logits(logits, masks), dim=-1)
    valid = masks.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    chosen = log_probs.gather(-1, actions.unsqueeze(-1)).squeeze(-1).masked_fill(~valid, 0.0)
    return -(weights * chosen).sum(-1) / valid.sum(-1).clamp(min=1)


def cosine_lr(lr: float, step: int, steps: int) -> float:
    """The learning rate of update `step` (0-based) of `steps` under cosine decay to 0 (no restarts)."""
    return lr * 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))


# -------------------------------------------------------------------------------------------- learner


class IQL:
    """Twin critics with Polyak targets, an expectile value net and a masked categorical actor.

    Holds K independent learners (`seeds`, default the config's seed) computed as one: seed k has its
    own initialisation (from `torch.Generator().manual_seed(seed)`), data order (the same generator,
    continued) and optimiser state, and its losses never touch another seed's parameters, so seed k of a
    stack trains exactly as a stack of one with that seed would, up to float summation order.
    """

    def __init__(
        self,
        state_dim: int,
        instruction_dim: int,
        n_actions: int,
        config: IQLConfig,
        seeds: Sequence[int] | None = None,
    ):
        config.validate()
        self.config, self.device = config, check_device(config.device)
        self.seeds = tuple(seeds) if seeds is not None else (config.seed,)
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise UsageError(f"seeds={list(self.seeds)}: give distinct seeds")
        self.dims = {"state_dim": state_dim, "instruction_dim": instruction_dim, "n_actions": n_actions}
        k, c = len(self.seeds), config

        def stack(members: int, out: int) -> SeedStack:
            return SeedStack(k, members, state_dim, instruction_dim, out, c.hidden, c.layers, c.layer_norm)

        self.critic, self.value, self.actor = stack(2, n_actions), stack(1, 1), stack(1, n_actions)
        self.critic_target = stack(2, n_actions).requires_grad_(False)
        # one generator per seed: it initialises that seed's networks, then draws its minibatches
        self.generators = [torch.Generator().manual_seed(s) for s in self.seeds]
        for i, g in enumerate(self.generators):
            for net in (self.critic, self.value, self.actor):
                net.init_seed(i, g)
        self.critic_target.load_state_dict(self.critic.state_dict())
        for net in self.networks():
            net.to(self.device)
        self.critic_opt = Adam(list(self.critic.parameters()), lr=c.lr)
        self.value_opt = Adam(list(self.value.parameters()), lr=c.lr)
        self.actor_opt = Adam(list(self.actor.parameters()), lr=c.lr)
        # the update calls the networks through these (torch.compile-d when config.compile)
        self._critic_at: Callable[..., Tensor] = self.critic.at
        self._critic_target_at: Callable[..., Tensor] = self.critic_target.at
        self._value: Callable[..., Tensor] = self.value
        self._actor: Callable[..., Tensor] = self.actor
        if c.compile:
            self._critic_at = torch.compile(self.critic.at)
            self._critic_target_at = torch.compile(self.critic_target.at)
            self._value, self._actor = torch.compile(self.value), torch.compile(self.actor)

    def networks(self) -> tuple[SeedStack, SeedStack, SeedStack, SeedStack]:
        return self.critic, self.critic_target, self.value, self.actor

    def actor_lr(self) -> float:
        """The actor's learning rate for the next update (cosine-decayed when configured)."""
        c = self.config
        return cosine_lr(c.lr, self.actor_opt.steps, c.steps) if c.actor_cosine_decay else c.lr

    def update(self, batch: Batch) -> list[dict[str, float]]:
        """A gradient step of V, Q and the actor (CORL's order), then the Polyak update; metrics per seed.

        With beta = 0 (behaviour cloning) only the actor steps: see `_cloning_update`.
        """
        return self._cloning_update(batch) if self.config.beta == 0.0 else self._iql_update(batch)

    def _cloning_update(self, batch: Batch) -> list[dict[str, float]]:
        """The actor's step of an update with beta = 0, without the critics' and value net's steps.

        With beta = 0 every advantage weight is exp(0) = 1 (clipped at max_weight), whatever Q and V say,
        so they cannot change the actor: the actor takes exactly the step the full update gives it, and
        the ~80% of an update that trains Q and V is skipped (their networks stay at initialisation).
        """
        lr_actor = self.actor_lr()
        logits = self._actor(batch.states, batch.instructions)[:, 0]
        no_advantage = torch.zeros_like(batch.rewards)
        loss_pi = actor_loss(logits, batch.masks, batch.actions, no_advantage, 0.0, self.config.max_weight)
        self._step((self.actor_opt,), loss_pi.sum(), (lr_actor,))
        return [
            {"losses/actor": value, "lr/actor": float(lr_actor)} for value in loss_pi.detach().cpu().tolist()
        ]

    def _iql_update(self, batch: Batch) -> list[dict[str, float]]:
        c = self.config
        s, e, s_next, e_next = batch.states, batch.instructions, batch.next_states, batch.next_instructions
        with torch.no_grad():
            target_q = self._critic_target_at(s, e, batch.actions).min(1).values  # (K, B)
        # V: expectile regression towards min of the twin target Qs
        v = self._value(s, e)[:, 0, :, 0]
        adv = target_q - v
        v_loss = expectile_loss(adv, c.expectile)
        self._step((self.value_opt,), v_loss.sum())
        # Q: TD towards r + gamma (1 - done) V(s'), with V just updated (as CORL and the IQL reference)
        with torch.no_grad():
            next_v = self._value(s_next, e_next)[:, 0, :, 0]
            td_target = batch.rewards + c.gamma * (1.0 - batch.dones) * next_v
        qs = self._critic_at(s, e, batch.actions)  # (K, 2, B)
        loss_q = q_loss(qs[:, 0], qs[:, 1], td_target)
        # actor: advantage-weighted log-likelihood of the dataset action
        # DEVIATION: the advantage uses V before this step's V update (as CORL); the IQL reference (JAX)
        # re-evaluates the updated V. Saves a V forward; the two differ by one step of V's learning rate.
        lr_actor = self.actor_lr()
        logits = self._actor(s, e)[:, 0]
        loss_pi = actor_loss(logits, batch.masks, batch.actions, adv, c.beta, c.max_weight)
        # Q and actor losses share no parameter: one backward of their sum gives each its own gradient
        self._step((self.critic_opt, self.actor_opt), (loss_q + loss_pi).sum(), (None, lr_actor))
        self._polyak()
        stats = [loss_q, v_loss, loss_pi, qs.mean((1, 2)), v.mean(-1), adv.mean(-1)]
        per_seed = torch.stack(stats, 1).detach().cpu().tolist()
        names = ("losses/q", "losses/v", "losses/actor", "values/q", "values/v", "values/adv")
        return [{**dict(zip(names, row, strict=True)), "lr/actor": float(lr_actor)} for row in per_seed]

    @staticmethod
    def _step(opts: tuple[Adam, ...], loss: Tensor, lrs: tuple[float | None, ...] | None = None) -> None:
        for opt in opts:
            opt.zero_grad()
        loss.backward()
        for opt, lr in zip(opts, lrs or (None,) * len(opts), strict=True):
            opt.step(lr)

    @torch.no_grad()
    def _polyak(self) -> None:
        target: list[Tensor] = list(self.critic_target.parameters())
        online: list[Tensor] = list(self.critic.parameters())
        torch._foreach_lerp_(target, online, self.config.tau)  # t += tau * (o - t)

    @torch.no_grad()
    def logits(self, states: Tensor, instructions: Tensor, members: Tensor | None = None) -> Tensor:
        """(N, A) actor logits; row n from seed `members[n]` (default: seed 0 for every row)."""
        states = states.to(self.device, torch.float32)
        instructions = instructions.to(self.device, torch.float32)
        k, n = len(self.seeds), states.shape[0]
        if members is None:
            members = torch.zeros(n, dtype=torch.int64)
        members = members.to(self.device, torch.int64)
        if members.shape != (n,) or (n and not 0 <= int(members.min()) <= int(members.max()) < k):
            raise UsageError(
                f"members: one seed index per row, each from 0 to {k - 1} (seeds {list(self.seeds)}); "
                f"got {members.tolist()[:10]} for {n} rows"
            )
        if k == 1:
            out = self.actor(States(dense=states[None]), instructions[None])
            return out[0, 0]
        # rows grouped by seed into a (K, n_max) layout, padded, one forward pass for all seeds
        order = torch.argsort(members, stable=True)
        counts = torch.bincount(members, minlength=k)
        width = max(1, int(counts.max()))
        slot = torch.arange(n, device=self.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts
        )
        grid_states = states.new_zeros(k, width, states.shape[1])
        grid_instr = instructions.new_zeros(k, width, instructions.shape[1])
        grid_states[members[order], slot] = states[order]
        grid_instr[members[order], slot] = instructions[order]
        out = self.actor(States(dense=grid_states), grid_instr)[:, 0]  # (K, width, A)
        result = torch.empty(n, out.shape[-1], device=self.device)
        result[order] = out[members[order], slot]
        return result

    @torch.no_grad()
    def act(
        self,
        states: Tensor,
        instructions: Tensor,
        masks: Tensor,
        *,
        greedy: bool = True,
        generator: torch.Generator | None = None,
        members: Tensor | None = None,
    ) -> Tensor:
        """(N,) actions: the most likely valid action, or a sample of the masked categorical policy."""
        masks = masks.to(self.device, torch.bool)
        if not bool(masks.any(dim=-1).all()):
            raise UsageError(
                "act(): a state has no valid action in `masks`; every row needs at least one True"
            )
        logits = masked_logits(self.logits(states, instructions, members), masks)
        if greedy:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    # ------------------------------------------------------------------------------------ checkpoints

    def state_dict(self, seed_index: int | None = None) -> dict[str, Any]:
        """Networks, target critics and optimisers; of one seed (as a stack of one) when `seed_index`."""
        if seed_index is not None:
            self._check_seed_index(seed_index)
        out: dict[str, Any] = {}
        for name in ("critic", "critic_target", "value", "actor"):
            net: SeedStack = getattr(self, name)
            state = net.state_dict()
            if seed_index is not None:
                rows = net.seed_slices(seed_index)
                state = {key: value[rows[key]].clone() for key, value in state.items()}
            out[name] = state
        for name in ("critic_opt", "value_opt", "actor_opt"):
            opt: Adam = getattr(self, name)
            net = {"critic_opt": self.critic, "value_opt": self.value, "actor_opt": self.actor}[name]
            state = opt.state_dict()
            if seed_index is not None:
                parts = list(net.seed_slices(seed_index).values())  # in parameters() order, as Adam's
                state = {
                    **state,
                    "exp_avg": [t[r].clone() for t, r in zip(state["exp_avg"], parts, strict=True)],
                    "exp_avg_sq": [t[r].clone() for t, r in zip(state["exp_avg_sq"], parts, strict=True)],
                }
            out[name] = state
        return out

    def _check_seed_index(self, seed_index: int) -> None:
        """Reject an index outside the stack (a negative one would slice an empty, unloadable seed)."""
        if not 0 <= seed_index < len(self.seeds):
            raise UsageError(
                f"seed_index={seed_index}: this learner holds seeds {list(self.seeds)}, "
                f"so use 0 to {len(self.seeds) - 1}"
            )

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for name, sd in d.items():
            getattr(self, name).load_state_dict(sd)

    def save(self, path: str | Path | BinaryIO, seed_index: int | None = None) -> None:
        """Write a checkpoint of this learner, or of seed `seed_index` alone (a learner of one seed)."""
        if seed_index is None and len(self.seeds) > 1:
            raise UsageError("save(): a stack of several seeds is saved one seed at a time (seed_index)")
        index = seed_index or 0
        self._check_seed_index(index)
        config = replace(self.config, seed=self.seeds[index])
        payload = {"version": CHECKPOINT_VERSION, "config": asdict(config), "dims": self.dims}
        torch.save(
            {**payload, "state": self.state_dict(index)}, path if hasattr(path, "write") else Path(path)
        )

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> IQL:
        """Rebuild a learner from `save()`; `device` overrides the saved one (e.g. "cpu")."""
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        version = ckpt.get("version")
        if version not in (1, CHECKPOINT_VERSION):
            raise UsageError(
                f"{path}: IQL checkpoint version {version!r}, expected {CHECKPOINT_VERSION}; "
                "retrain with this version of rgvlm"
            )
        config = IQLConfig(**{**ckpt["config"], **({"device": device} if device else {})})
        learner = cls(**ckpt["dims"], config=config)
        if version == 1:
            learner.load_networks_v1(ckpt["state"])
        else:
            learner.load_state_dict(ckpt["state"])
        return learner

    def load_networks_v1(self, state: dict[str, Any]) -> None:
        """The networks of a version-1 checkpoint (one seed, a joint first-layer weight, torch.optim
        state): enough to act and evaluate; the optimiser state starts afresh."""
        s = self.dims["state_dim"]
        for name in ("critic", "critic_target", "value", "actor"):
            net: SeedStack = getattr(self, name)
            old = dict(state[name])
            first = old.pop("weights.0")  # (D, m*H)
            new = {
                "w_state": first[:s].unsqueeze(0),
                "w_instruction": first[s:].unsqueeze(0),
                "b_first": old.pop("biases.0").reshape(1, 1, -1),
            }
            for key, value in old.items():
                part, _, index = key.rpartition(".")
                if part in ("weights", "biases"):
                    new[f"{part}.{int(index) - 1}"] = value
                else:
                    new[key] = value
            net.load_state_dict(new)


# ----------------------------------------------------------------------------------------- training


def train_seeds(
    data: OfflineTensors, n_actions: int, config: IQLConfig, seeds: Sequence[int]
) -> Iterator[tuple[int, list[dict[str, float]], IQL]]:
    """Train one IQL learner per seed, all at once; yield `(step, metrics of each seed, learner)`.

    Metrics are averaged since the last yield, every `config.log_every` updates and after the last.
    """
    config.validate()
    learner = IQL(data.states.shape[1], data.instruction_table.shape[1], n_actions, config, seeds)
    sums = [dict[str, float]() for _ in seeds]
    count = 0
    for step in range(1, config.steps + 1):
        for total, metrics in zip(
            sums,
            learner.update(data.sample(config.batch_size, learner.generators, learner.device)),
            strict=True,
        ):
            for name, value in metrics.items():
                total[name] = total.get(name, 0.0) + value
        count += 1
        if step % config.log_every == 0 or step == config.steps:
            yield step, [{k: v / count for k, v in total.items()} for total in sums], learner
            sums, count = [dict[str, float]() for _ in seeds], 0


def train(
    data: OfflineTensors, n_actions: int, config: IQLConfig
) -> Iterator[tuple[int, dict[str, float], IQL]]:
    """Train IQL for `config.steps` updates with `config.seed`; yield `(step, metrics, learner)`.

    Seeded: the seed's generator initialises the networks and draws the minibatches, so two runs with
    the same seed give the same metrics on CPU.
    """
    for step, metrics, learner in train_seeds(data, n_actions, config, (config.seed,)):
        yield step, metrics[0], learner


__all__ = [
    "CHECKPOINT_VERSION",
    "IQL",
    "Batch",
    "IQLConfig",
    "OfflineTensors",
    "SeedStack",
    "States",
    "actor_loss",
    "check_device",
    "cosine_lr",
    "expectile_loss",
    "masked_logits",
    "q_loss",
    "train",
    "train_seeds",
]
