"""The hyperparameters of language-conditioned IQL, apart from the learner: reading them needs no torch.

Each setting carries its help text (`IQL_HELP`): the CLI's `--iql NAME=VALUE` and the dashboard's
tooltips read them from here, so a setting is documented once.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

from rgvlm_core.errors import UsageError

# DEVIATION: evaluation gives each subtask its own step budget (docs/deviations.md): twice the longest
# expert plan of one subtask in the simulator (3 steps), whatever the task's length.
SUBTASK_BUDGET = 6
# The low level's (ALFRED's low-level actions on floor plans, docs/low-level.md): the expert's subtasks take
# 12 steps on average, 35 at the 99th percentile and 62 at most (kitchens and living rooms, bench/sim.py's
# tasks): twice the 99th percentile, so the expert always fits and a policy may wander about as much again.
# An experiment on low-level data evaluates with it when asked for the default budget (rl.work.EvalPlan).
LOW_SUBTASK_BUDGET = 70


def _setting(default: Any, help_text: str) -> Any:
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class IQLConfig:
    """Hyperparameters of language-conditioned IQL; defaults from docs/paper.md (IQL paper, ALFRED code)."""

    hidden: int = _setting(256, "Width of every hidden layer (IQL paper: 256).")
    layers: int = _setting(2, "Number of hidden layers per network (IQL paper: 2).")
    layer_norm: bool = _setting(True, "LayerNorm after each hidden linear layer (ALFRED offline-RL code).")
    expectile: float = _setting(
        0.8, "Expectile of the V regression; 0.5 = mean, towards 1 = max (ALFRED code: 0.8)."
    )
    beta: float = _setting(
        5.0,
        "Inverse temperature of the advantage weights exp(beta (Q - V)); 0 = behaviour cloning "
        "(ALFRED code: 5).",
    )
    gamma: float = _setting(0.97, "Discount factor (ALFRED offline-RL code: 0.97).")
    tau: float = _setting(0.005, "Polyak rate of the target critics (IQL paper: 0.005).")
    lr: float = _setting(3e-4, "Adam learning rate of all three networks (IQL paper: 3e-4).")
    batch_size: int = _setting(256, "Transitions per update (IQL paper: 256).")
    max_weight: float = _setting(100.0, "Clip of the advantage weights (IQL paper: 100).")
    actor_cosine_decay: bool = _setting(
        True, "Cosine decay of the actor learning rate to 0 over the steps (IQL paper)."
    )
    steps: int = _setting(100_000, "Number of gradient updates.")
    seed: int = _setting(0, "Seed of the network initialisation and of batch sampling.")
    device: str = _setting("cpu", "Torch device: cpu or cuda.")
    log_every: int = _setting(1_000, "Yield averaged metrics every this many updates (and after the last).")
    compile: bool = _setting(
        False, "Torch.compile the networks (helps on some machines; bench/iql_speed.py)."
    )

    def validate(self) -> None:
        """Raise `UsageError` naming the first setting that cannot work."""
        checks = [
            (self.hidden >= 1, "hidden", "at least 1"),
            (self.layers >= 1, "layers", "at least 1"),
            (0.0 < self.expectile < 1.0, "expectile", "strictly between 0 and 1"),
            (0.0 <= self.gamma <= 1.0, "gamma", "between 0 and 1"),
            (0.0 < self.tau <= 1.0, "tau", "in (0, 1]"),
            (self.lr > 0, "lr", "positive"),
            (self.batch_size >= 1, "batch_size", "at least 1"),
            (self.max_weight > 0, "max_weight", "positive"),
            (self.steps >= 1, "steps", "at least 1"),
            (self.log_every >= 1, "log_every", "at least 1"),
        ]
        for ok, name, rule in checks:
            if not ok:
                raise UsageError(f"IQLConfig.{name}={getattr(self, name)!r}: must be {rule}")


_KINDS = {int: "an integer", float: "a number", bool: "true or false", str: "text"}
IQL_HELP: dict[str, str] = {f.name: f.metadata["help"] for f in fields(IQLConfig)}


def with_overrides(config: IQLConfig, pairs: list[str]) -> IQLConfig:
    """`config` with `NAME=VALUE` settings applied (values parsed as the field's type), then validated."""
    types = {f.name: type(getattr(config, f.name)) for f in fields(IQLConfig)}
    changes: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in types:
            raise UsageError(f"--iql {pair!r}: use NAME=VALUE with NAME one of {', '.join(sorted(types))}")
        kind = types[name]
        try:
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                changes[name] = text.lower() in ("true", "1", "yes")
            else:
                changes[name] = kind(text)
        except ValueError:
            raise UsageError(f"--iql {pair!r}: {name} takes {_KINDS[kind]}, got {text!r}") from None
    out = replace(config, **changes)
    out.validate()
    return out


__all__ = ["IQL_HELP", "LOW_SUBTASK_BUDGET", "SUBTASK_BUDGET", "IQLConfig", "with_overrides"]
