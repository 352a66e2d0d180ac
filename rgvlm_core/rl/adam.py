"""Adam over a list of tensors with torch's multi-tensor (`_foreach`) kernels.

Why not `torch.optim.Adam`: constructing any `torch.optim` optimiser imports `torch._dynamo` (1.4-1.8 s
on this machine), once per process. A training process that lives ~10 s for a short run cannot
afford it. This is the same update as torch's Adam (amsgrad off, no weight decay, bias-corrected
moments, eps added after the square root) through the same fused kernel `torch.optim.Adam(fused=True)`
runs, one pass over all tensors; its state is two lists of tensors and a step count, so it slices per
seed as easily as the parameters do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class Adam:
    """Adam (Kingma & Ba) as torch implements it, on `params` (tensors with `.grad`)."""

    def __init__(
        self, params: list[Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8
    ):
        self.params, self.lr, self.betas, self.eps = list(params), lr, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0  # calls of step(): what learning-rate schedules count
        # per tensor, as torch keeps them: a tensor without a gradient in a step is skipped, step count too
        self.param_steps = [torch.zeros((), dtype=torch.float32, device=p.device) for p in self.params]

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, lr: float | None = None) -> None:
        """One update with learning rate `lr` (default: the constructor's) of the tensors with a gradient."""
        lr = self.lr if lr is None else lr
        beta1, beta2 = self.betas
        self.steps += 1
        live = [i for i, p in enumerate(self.params) if p.grad is not None]
        if not live:
            return
        params, steps = [self.params[i] for i in live], [self.param_steps[i] for i in live]
        grads: list[Tensor] = [p.grad for p in params]  # type: ignore[misc]
        torch._foreach_add_(steps, 1.0)
        # torch's fused Adam kernel (what torch.optim.Adam(fused=True) calls): one pass over the tensors
        torch._fused_adam_(
            params, grads, [self.exp_avg[i] for i in live], [self.exp_avg_sq[i] for i in live], [], steps,
            lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False,
        )  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "param_steps": [int(t) for t in self.param_steps],
            "exp_avg": list(self.exp_avg),
            "exp_avg_sq": list(self.exp_avg_sq),
        }

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        counts = state.get("param_steps", [self.steps] * len(self.params))
        for count, mine in zip(counts, self.param_steps, strict=True):
            mine.fill_(int(count))
        for mine, saved in zip(
            self.exp_avg + self.exp_avg_sq, state["exp_avg"] + state["exp_avg_sq"], strict=True
        ):
            mine.copy_(saved)


__all__ = ["Adam"]
