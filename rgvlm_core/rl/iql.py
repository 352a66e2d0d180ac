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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rgvlm_core.errors import UsageError
from rgvlm_core.rl.config import IQLConfig

log = logging.getLogger(__name__)

CHECKPOINT_VERSION = 1
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


# ----------------------------------------------------------------------------------------------- data


@dataclass
class Batch:
    """One minibatch of transitions, on the learner's device."""

    states: Tensor  # (B, S) float32
    instructions: Tensor  # (B, E) float32 embeddings
    actions: Tensor  # (B,) int64
    rewards: Tensor  # (B,) float32
    next_states: Tensor  # (B, S) float32
    next_instructions: Tensor  # (B, E) float32
    dones: Tensor  # (B,) float32, 1.0 where the episode ended (no bootstrap)
    masks: Tensor  # (B, A) bool, valid actions in `states`


@dataclass
class OfflineTensors:
    """A whole offline dataset as CPU tensors; instructions are rows of a shared embedding table."""

    states: Tensor  # (N, S) float32
    next_states: Tensor  # (N, S) float32
    instruction_ids: Tensor  # (N,) int64 rows of `instruction_table`
    next_instruction_ids: Tensor  # (N,) int64
    instruction_table: Tensor  # (M, E) float32
    actions: Tensor  # (N,) int64
    rewards: Tensor  # (N,) float32
    dones: Tensor  # (N,) float32
    masks: Tensor  # (N, A) bool

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def sample(self, batch_size: int, generator: torch.Generator, device: str | torch.device) -> Batch:
        """Uniformly sample `batch_size` transitions (with replacement) and move them to `device`."""
        if len(self) == 0:
            raise UsageError(
                "OfflineTensors is empty: there is nothing to sample; label or import data first"
            )
        idx = torch.randint(len(self), (batch_size,), generator=generator)
        table = self.instruction_table

        def put(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=True)

        return Batch(
            states=put(self.states[idx]),
            instructions=put(table[self.instruction_ids[idx]]),
            actions=put(self.actions[idx]),
            rewards=put(self.rewards[idx]),
            next_states=put(self.next_states[idx]),
            next_instructions=put(table[self.next_instruction_ids[idx]]),
            dones=put(self.dones[idx]),
            masks=put(self.masks[idx]),
        )


# --------------------------------------------------------------------------------------------- losses


def expectile_loss(diff: Tensor, expectile: float) -> Tensor:
    """Asymmetric L2: mean of |expectile - 1(diff < 0)| * diff^2, with diff = target Q - V."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.square()).mean()


def q_loss(q1: Tensor, q2: Tensor, target: Tensor) -> Tensor:
    """TD loss of the twin critics at the dataset actions: the mean of their two MSEs (CORL)."""
    return 0.5 * (F.mse_loss(q1, target) + F.mse_loss(q2, target))


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
    return -(weights * chosen).sum() / valid.sum().clamp(min=1)


# ------------------------------------------------------------------------------------------- networks


class StackedMLP(nn.Module):
    """`members` independent MLPs with identical shapes, evaluated together (one bmm per layer).

    Each member is Linear -> [LayerNorm] -> ReLU, `layers` times, then a Linear head; initialised like
    `nn.Linear` / `nn.LayerNorm`, so a stack of 2 is exactly two separate MLPs, just computed at once.
    """

    def __init__(self, members: int, in_dim: int, out_dim: int, hidden: int, layers: int, layer_norm: bool):
        super().__init__()
        # layer 0 reads the shared input: its K weight matrices sit side by side, (D, K*H), one addmm
        self.weights = nn.ParameterList(
            [nn.Parameter(torch.empty(in_dim, members * hidden))]
            + [nn.Parameter(torch.empty(members, hidden, hidden)) for _ in range(layers - 1)]
        )
        self.biases = nn.ParameterList([nn.Parameter(torch.empty(members, 1, hidden)) for _ in range(layers)])
        self.norm_weights = nn.ParameterList(
            [nn.Parameter(torch.ones(members, 1, hidden)) for _ in range(layers if layer_norm else 0)]
        )
        self.norm_biases = nn.ParameterList(
            [nn.Parameter(torch.zeros(members, 1, hidden)) for _ in range(layers if layer_norm else 0)]
        )
        self.head_weight = nn.Parameter(torch.empty(members, out_dim, hidden))  # (K, A, H): rows gathered
        self.head_bias = nn.Parameter(torch.empty(members, out_dim))
        for w, b, fan_in in zip(self.weights, self.biases, [in_dim] + [hidden] * (layers - 1), strict=True):
            bound = 1.0 / math.sqrt(fan_in)
            nn.init.uniform_(w, -bound, bound)
            nn.init.uniform_(b, -bound, bound)
        bound = 1.0 / math.sqrt(hidden)
        nn.init.uniform_(self.head_weight, -bound, bound)
        nn.init.uniform_(self.head_bias, -bound, bound)
        self.members, self.hidden, self.layer_norm = members, hidden, layer_norm

    def trunk(self, x: Tensor) -> Tensor:
        """(B, D) shared input -> (K, B, H) last hidden activations of every member."""
        k, h = self.members, self.hidden
        # layer 0 in (B, K, H) layout: one matmul for all members (they share the input)
        z = torch.addmm(self.biases[0].view(1, k * h), x, self.weights[0]).view(-1, k, h)
        if self.layer_norm:
            z = torch.addcmul(
                self.norm_biases[0].view(k, h), F.layer_norm(z, (h,)), self.norm_weights[0].view(k, h)
            )
        z = torch.relu(z).transpose(0, 1)  # (K, B, H)
        for i in range(1, len(self.weights)):
            z = torch.baddbmm(self.biases[i], z, self.weights[i])
            if self.layer_norm:
                z = torch.addcmul(self.norm_biases[i], F.layer_norm(z, (h,)), self.norm_weights[i])
            z = torch.relu(z)
        return z

    def forward(self, x: Tensor) -> Tensor:
        """(B, D) -> (K, B, out_dim): every output of every member."""
        return torch.baddbmm(self.head_bias.unsqueeze(1), self.trunk(x), self.head_weight.transpose(1, 2))

    def at(self, x: Tensor, index: Tensor) -> Tensor:
        """(B, D), (B,) int -> (K, B): only output `index[b]` of row b (a gathered dot product)."""
        z = self.trunk(x)
        return (z * self.head_weight[:, index]).sum(-1) + self.head_bias[:, index]


# -------------------------------------------------------------------------------------------- learner


class IQL:
    """Twin critics with Polyak targets, an expectile value net and a masked categorical actor."""

    def __init__(self, state_dim: int, instruction_dim: int, n_actions: int, config: IQLConfig):
        config.validate()
        self.config, self.device = config, check_device(config.device)
        self.dims = {"state_dim": state_dim, "instruction_dim": instruction_dim, "n_actions": n_actions}
        d, c = state_dim + instruction_dim, config

        def mlp(members: int, out: int) -> StackedMLP:
            return StackedMLP(members, d, out, c.hidden, c.layers, c.layer_norm).to(self.device)

        self.critic, self.value, self.actor = mlp(2, n_actions), mlp(1, 1), mlp(1, n_actions)
        self.critic_target = mlp(2, n_actions).requires_grad_(False)
        self.critic_target.load_state_dict(self.critic.state_dict())
        # fused Adam: one kernel per optimizer on CPU and CUDA (same maths as the for-loop Adam)
        adam: dict[str, Any] = {"fused": True}
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=c.lr, **adam)
        self.value_opt = torch.optim.Adam(self.value.parameters(), lr=c.lr, **adam)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=c.lr, **adam)
        self.actor_sched: torch.optim.lr_scheduler.LRScheduler | None = (
            torch.optim.lr_scheduler.CosineAnnealingLR(self.actor_opt, c.steps)
            if c.actor_cosine_decay
            else None
        )
        # the update calls the networks through these (torch.compile-d when config.compile)
        self._critic_at: Callable[[Tensor, Tensor], Tensor] = self.critic.at
        self._critic_target_at: Callable[[Tensor, Tensor], Tensor] = self.critic_target.at
        self._value: Callable[[Tensor], Tensor] = self.value
        self._actor: Callable[[Tensor], Tensor] = self.actor
        if c.compile:
            self._critic_at = torch.compile(self.critic.at)
            self._critic_target_at = torch.compile(self.critic_target.at)
            self._value, self._actor = torch.compile(self.value), torch.compile(self.actor)

    def update(self, batch: Batch) -> dict[str, float]:
        """One gradient step of V, Q and the actor (in CORL's order), then the Polyak target update."""
        c = self.config
        x = torch.cat([batch.states, batch.instructions], dim=1)
        x_next = torch.cat([batch.next_states, batch.next_instructions], dim=1)
        with torch.no_grad():
            target_q = self._critic_target_at(x, batch.actions).min(0).values
        # V: expectile regression towards min of the twin target Qs
        v = self._value(x)[0, :, 0]
        adv = target_q - v
        v_loss = expectile_loss(adv, c.expectile)
        self._step((self.value_opt,), v_loss)
        # Q: TD towards r + gamma (1 - done) V(s'), with V just updated (as CORL and the IQL reference)
        with torch.no_grad():
            next_v = self._value(x_next)[0, :, 0]
            td_target = batch.rewards + c.gamma * (1.0 - batch.dones) * next_v
        qs = self._critic_at(x, batch.actions)
        loss_q = q_loss(qs[0], qs[1], td_target)
        # actor: advantage-weighted log-likelihood of the dataset action
        # DEVIATION: the advantage uses V before this step's V update (as CORL); the IQL reference (JAX)
        # re-evaluates the updated V. Saves a V forward; the two differ by one step of V's learning rate.
        lr_actor = self.actor_opt.param_groups[0]["lr"]
        loss_pi = actor_loss(self._actor(x)[0], batch.masks, batch.actions, adv, c.beta, c.max_weight)
        # Q and actor losses share no parameter: one backward of their sum gives each its own gradient
        self._step((self.critic_opt, self.actor_opt), loss_q + loss_pi)
        if self.actor_sched is not None:
            self.actor_sched.step()
        self._polyak()
        out = torch.stack([loss_q, v_loss, loss_pi, qs.mean(), v.mean(), adv.mean()]).detach().cpu().tolist()
        names = ("losses/q", "losses/v", "losses/actor", "values/q", "values/v", "values/adv")
        return {**dict(zip(names, out, strict=True)), "lr/actor": float(lr_actor)}

    @staticmethod
    def _step(opts: tuple[torch.optim.Optimizer, ...], loss: Tensor) -> None:
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in opts:
            opt.step()

    @torch.no_grad()
    def _polyak(self) -> None:
        target: list[Tensor] = list(self.critic_target.parameters())
        online: list[Tensor] = list(self.critic.parameters())
        torch._foreach_lerp_(target, online, self.config.tau)  # t += tau * (o - t)

    @torch.no_grad()
    def act(
        self,
        states: Tensor,
        instructions: Tensor,
        masks: Tensor,
        *,
        greedy: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """(B,) actions: the most likely valid action, or a sample of the masked categorical policy."""
        masks = masks.to(self.device, torch.bool)
        if not bool(masks.any(dim=-1).all()):
            raise UsageError(
                "act(): a state has no valid action in `masks`; every row needs at least one True"
            )
        x = torch.cat([states, instructions], dim=-1).to(self.device, torch.float32)
        logits = masked_logits(self.actor(x)[0], masks)
        if greedy:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    # ------------------------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Networks, target critics, optimisers and the actor schedule."""
        out = {
            name: getattr(self, name).state_dict()
            for name in ("critic", "critic_target", "value", "actor", "critic_opt", "value_opt", "actor_opt")
        }
        if self.actor_sched is not None:
            out["actor_sched"] = self.actor_sched.state_dict()
        return out

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for name, sd in d.items():
            getattr(self, name).load_state_dict(sd)

    def save(self, path: str | Path) -> None:
        """Write a checkpoint holding the config, the dimensions and the state."""
        payload = {"version": CHECKPOINT_VERSION, "config": asdict(self.config), "dims": self.dims}
        torch.save({**payload, "state": self.state_dict()}, Path(path))

    @classmethod
    def load(cls, path: str | Path, device: str | None = None) -> IQL:
        """Rebuild a learner from `save()`; `device` overrides the saved one (e.g. "cpu")."""
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
        if ckpt.get("version") != CHECKPOINT_VERSION:
            raise UsageError(
                f"{path}: IQL checkpoint version {ckpt.get('version')!r}, expected {CHECKPOINT_VERSION}; "
                "retrain with this version of rgvlm"
            )
        config = IQLConfig(**{**ckpt["config"], **({"device": device} if device else {})})
        learner = cls(**ckpt["dims"], config=config)
        learner.load_state_dict(ckpt["state"])
        return learner


# ----------------------------------------------------------------------------------------- training


def train(
    data: OfflineTensors, n_actions: int, config: IQLConfig
) -> Iterator[tuple[int, dict[str, float], IQL]]:
    """Train IQL for `config.steps` updates; yield `(step, metrics averaged since last yield, learner)`.

    Seeded: `torch.manual_seed(config.seed)` for the networks and a separate generator for sampling,
    so two runs with the same seed give the same metrics on CPU.
    """
    config.validate()
    torch.manual_seed(config.seed)
    learner = IQL(data.states.shape[1], data.instruction_table.shape[1], n_actions, config)
    generator = torch.Generator().manual_seed(config.seed)
    sums: dict[str, float] = {}
    count = 0
    for step in range(1, config.steps + 1):
        metrics = learner.update(data.sample(config.batch_size, generator, learner.device))
        for k, val in metrics.items():
            sums[k] = sums.get(k, 0.0) + val
        count += 1
        if step % config.log_every == 0 or step == config.steps:
            yield step, {k: s / count for k, s in sums.items()}, learner
            sums, count = {}, 0
