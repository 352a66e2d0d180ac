"""The learner's view of an offline dataset: whole-dataset tensors, and minibatches for K seeds at once.

Every minibatch has a leading seed axis K: seed k draws its own `batch_size` transitions with its own
generator, so a stack of K seeds sees exactly the data K separate runs would. States can travel as
their non-zeros (`SparseRows`): the simulator's symbolic states are ~99% zeros, and the first layer
then sums a dozen weight rows instead of multiplying 870 inputs (rl.networks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rgvlm_core.errors import UsageError
from rgvlm_core.rl.networks import States

SPARSE_BELOW = 0.125  # use the non-zero form when the densest state has at most this share of non-zeros


@dataclass
class SparseRows:
    """Each row's non-zero entries, padded to the densest row: (N, nnz) column indices and values."""

    index: Tensor  # (N, nnz) int64; padding points at column 0
    value: Tensor  # (N, nnz) float32; padding is 0.0

    @classmethod
    def of(cls, dense: Tensor) -> SparseRows | None:
        """The non-zero form of `dense` (N, S), or None where it would not save work."""
        if dense.ndim != 2 or dense.shape[0] == 0:
            return None
        # from the non-zeros' coordinates (row-major, so each row's in column order): memory and time
        # grow with the non-zeros, not with N x S as a per-row sort's would (1.2 s -> 0.14 s at 50k x 870)
        rows, cols = dense.nonzero(as_tuple=True)
        n = dense.shape[0]
        counts = torch.bincount(rows, minlength=n)
        width = max(1, int(counts.max()))
        if width > SPARSE_BELOW * dense.shape[1]:
            return None
        slot = torch.arange(len(rows), device=dense.device) - (torch.cumsum(counts, 0) - counts)[rows]
        index = torch.zeros(n, width, dtype=torch.int64, device=dense.device)
        value = torch.zeros(n, width, dtype=dense.dtype, device=dense.device)
        index[rows, slot], value[rows, slot] = cols, dense[rows, cols]
        return cls(index=index, value=value)


@dataclass
class Batch:
    """A minibatch for K seeds (leading axis K), on the learner's device."""

    states: States  # (K, B) states
    instructions: Tensor  # (K, B, E) float32 embeddings
    actions: Tensor  # (K, B) int64
    rewards: Tensor  # (K, B) float32
    next_states: States  # (K, B)
    next_instructions: Tensor  # (K, B, E) float32
    dones: Tensor  # (K, B) float32, 1.0 where the episode ended (no bootstrap)
    masks: Tensor  # (K, B, A) bool, valid actions in `states`


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
    sparse: tuple[SparseRows, SparseRows] | None = None  # states, next_states; see `with_sparse_states`

    def __len__(self) -> int:
        return int(self.states.shape[0])

    def with_sparse_states(self) -> OfflineTensors:
        """This dataset carrying its states' non-zero form too, when the states are sparse enough."""
        now, nxt = SparseRows.of(self.states), SparseRows.of(self.next_states)
        if now is None or nxt is None:
            return self
        width = max(now.index.shape[1], nxt.index.shape[1])
        self.sparse = (_pad(now, width), _pad(nxt, width))
        return self

    def sample(
        self,
        batch_size: int,
        generators: torch.Generator | Sequence[torch.Generator],
        device: str | torch.device,
    ) -> Batch:
        """`batch_size` transitions per generator (uniform, with replacement), moved to `device`."""
        if len(self) == 0:
            raise UsageError(
                "OfflineTensors is empty: there is nothing to sample; label or import data first"
            )
        gens = [generators] if isinstance(generators, torch.Generator) else list(generators)
        idx = torch.stack([torch.randint(len(self), (batch_size,), generator=g) for g in gens])  # (K, B)
        table = self.instruction_table

        def put(t: Tensor) -> Tensor:
            return t.to(device, non_blocking=True)

        if self.sparse is not None:
            now, nxt = self.sparse
            states = States(index=put(now.index[idx]), value=put(now.value[idx]))
            next_states = States(index=put(nxt.index[idx]), value=put(nxt.value[idx]))
        else:
            states, next_states = (
                States(dense=put(self.states[idx])),
                States(dense=put(self.next_states[idx])),
            )
        return Batch(
            states=states,
            instructions=put(table[self.instruction_ids[idx]]),
            actions=put(self.actions[idx]),
            rewards=put(self.rewards[idx]),
            next_states=next_states,
            next_instructions=put(table[self.next_instruction_ids[idx]]),
            dones=put(self.dones[idx]),
            masks=put(self.masks[idx]),
        )


def _pad(rows: SparseRows, width: int) -> SparseRows:
    extra = width - rows.index.shape[1]
    if extra == 0:
        return rows
    n = rows.index.shape[0]
    return SparseRows(
        torch.cat([rows.index, torch.zeros(n, extra, dtype=rows.index.dtype)], 1),
        torch.cat([rows.value, torch.zeros(n, extra, dtype=rows.value.dtype)], 1),
    )


__all__ = ["SPARSE_BELOW", "Batch", "OfflineTensors", "SparseRows"]
