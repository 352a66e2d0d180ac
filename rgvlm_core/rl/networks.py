"""The MLPs of IQL, stacked: K training seeds x m members per seed, computed together.

One `SeedStack` holds, for each of K seeds, `members` MLPs of identical shape that read the same input
(the twin critics: 2; the value net or the actor: 1). Every layer runs as one batched matmul over all
K x m MLPs, so training K seeds costs one set of kernel launches instead of K, and the twin critics
cost one matmul instead of two. Each seed's MLPs are initialised from that seed's own generator, so
seed k of a stack of K is exactly the network a stack of 1 builds for that seed.

Inputs are `concat(state, instruction)`. The first layer is split into its state and instruction
blocks: symbolic simulator states are ~99% zeros (10.6 non-zeros of 870 on average), so their block
runs as a sum of the weight rows of the non-zero entries (`embedding_bag`, exact, ~80x fewer
multiply-adds) when the batch carries them in that form; dense states (ALFRED features, rollouts) take
a plain batched matmul. Both give the same function; only float summation order differs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class States:
    """A (K, B) batch of states: dense rows, or the non-zeros of each row (index, value), padded.

    Padding entries have value 0 (and any valid index), so they add nothing to a sum.
    """

    dense: Tensor | None = None  # (K, B, S) float32
    index: Tensor | None = None  # (K, B, nnz) int64
    value: Tensor | None = None  # (K, B, nnz) float32

    @property
    def shape(self) -> tuple[int, int]:
        ref = self.dense if self.dense is not None else self.index
        assert ref is not None
        return int(ref.shape[0]), int(ref.shape[1])


class SeedStack(nn.Module):
    """K seeds x `members` MLPs: Linear -> [LayerNorm] -> ReLU, `layers` times, then a Linear head.

    Parameters (m = members, H = hidden): the first layer's state block (K, S, m*H), instruction block
    (K, E, m*H) and bias (K, 1, m*H); the hidden layers (K*m, H, H); the head (K*m, out, H). Initialised
    like `nn.Linear` / `nn.LayerNorm`, member by member, from each seed's generator.
    """

    def __init__(
        self,
        seeds: int,
        members: int,
        state_dim: int,
        instruction_dim: int,
        out_dim: int,
        hidden: int,
        layers: int,
        layer_norm: bool,
    ):
        super().__init__()
        k, m, h = seeds, members, hidden
        self.seeds, self.members, self.hidden, self.layer_norm = k, m, h, layer_norm
        self.state_dim, self.out_dim = state_dim, out_dim
        self.w_state = nn.Parameter(torch.empty(k, state_dim, m * h))
        self.w_instruction = nn.Parameter(torch.empty(k, instruction_dim, m * h))
        self.b_first = nn.Parameter(torch.empty(k, 1, m * h))
        self.weights = nn.ParameterList([nn.Parameter(torch.empty(k * m, h, h)) for _ in range(layers - 1)])
        self.biases = nn.ParameterList([nn.Parameter(torch.empty(k * m, 1, h)) for _ in range(layers - 1)])
        n_norms = layers if layer_norm else 0
        self.norm_weights = nn.ParameterList([nn.Parameter(torch.ones(k * m, 1, h)) for _ in range(n_norms)])
        self.norm_biases = nn.ParameterList([nn.Parameter(torch.zeros(k * m, 1, h)) for _ in range(n_norms)])
        self.head_weight = nn.Parameter(torch.empty(k * m, out_dim, h))  # (K*m, A, H): rows gathered
        self.head_bias = nn.Parameter(torch.empty(k * m, out_dim))

    @torch.no_grad()
    def init_seed(self, k: int, generator: torch.Generator) -> None:
        """Initialise seed k's members like nn.Linear (uniform +-1/sqrt(fan_in)), in a fixed order."""
        m, h, s = self.members, self.hidden, self.state_dim
        fan_in = s + self.w_instruction.shape[1]

        def uniform(shape: tuple[int, ...], fan: int) -> Tensor:
            bound = 1.0 / math.sqrt(fan)
            return torch.empty(shape).uniform_(-bound, bound, generator=generator)

        for j in range(m):
            cols = slice(j * h, (j + 1) * h)
            first = uniform((fan_in, h), fan_in)
            self.w_state[k, :, cols] = first[:s]
            self.w_instruction[k, :, cols] = first[s:]
            self.b_first[k, 0, cols] = uniform((h,), fan_in)
            for i in range(len(self.weights)):
                self.weights[i][k * m + j] = uniform((h, h), h)
                self.biases[i][k * m + j, 0] = uniform((h,), h)
            self.head_weight[k * m + j] = uniform((self.out_dim, h), h)
            self.head_bias[k * m + j] = uniform((self.out_dim,), h)
        for w, b in zip(self.norm_weights, self.norm_biases, strict=True):
            w[k * m : (k + 1) * m] = 1.0
            b[k * m : (k + 1) * m] = 0.0

    def trunk(self, states: States, instructions: Tensor) -> Tensor:
        """(K, B) states and (K, B, E) instructions -> (K*m, B, H) last hidden activations."""
        k, m, h = self.seeds, self.members, self.hidden
        n = instructions.shape[1]
        first = torch.baddbmm(self.b_first, instructions, self.w_instruction)  # (K, B, m*H)
        if states.dense is not None:
            first = torch.baddbmm(first, states.dense, self.w_state)
        else:
            assert states.index is not None and states.value is not None
            nnz = states.index.shape[-1]
            offset = (torch.arange(k, device=states.index.device) * self.state_dim).view(k, 1, 1)
            summed = F.embedding_bag(
                (states.index + offset).view(k * n, nnz),
                self.w_state.view(k * self.state_dim, m * h),
                per_sample_weights=states.value.reshape(k * n, nnz),
                mode="sum",
            )
            first = first + summed.view(k, n, m * h)
        z = first.view(k, n, m, h).transpose(1, 2).reshape(k * m, n, h)  # (K*m, B, H)
        for i in range(len(self.weights) + 1):
            if i > 0:
                z = torch.baddbmm(self.biases[i - 1], z, self.weights[i - 1])
            if self.layer_norm:
                z = torch.addcmul(self.norm_biases[i], F.layer_norm(z, (h,)), self.norm_weights[i])
            z = torch.relu(z)
        return z

    def forward(self, states: States, instructions: Tensor) -> Tensor:
        """-> (K, m, B, out): every output of every member."""
        z = torch.baddbmm(self.head_bias.unsqueeze(1), self.trunk(states, instructions), self.head_weight.mT)
        return z.view(self.seeds, self.members, *z.shape[1:])

    def at(self, states: States, instructions: Tensor, index: Tensor) -> Tensor:
        """(K, B) int `index` -> (K, m, B): only output `index[k, b]` of row b (a gathered dot product)."""
        k, m = self.seeds, self.members
        z = self.trunk(states, instructions).view(k, m, -1, self.hidden)
        rows = index.unsqueeze(1).expand(k, m, index.shape[1])  # (K, m, B)
        flat = rows.reshape(k * m, -1)
        w = torch.gather(self.head_weight, 1, flat.unsqueeze(-1).expand(-1, -1, self.hidden))
        b = torch.gather(self.head_bias, 1, flat)
        return (z * w.view(k, m, -1, self.hidden)).sum(-1) + b.view(k, m, -1)

    def seed_slices(self, k: int) -> dict[str, slice]:
        """Each parameter's rows that belong to seed k (first-layer tensors per seed, the rest per member)."""
        m = self.members
        return {
            name: slice(k, k + 1) if name in _PER_SEED else slice(k * m, (k + 1) * m)
            for name, _ in self.named_parameters()
        }


_PER_SEED = ("w_state", "w_instruction", "b_first")


__all__ = ["SeedStack", "States"]
