"""ALFRED's tasks as an environment: a policy acts in ALFRED's low-level actions (the ALFRED level) in the
household of an ALFRED trajectory, and is scored by ALFRED's subgoals reached in order (alfred.tasks).

The same interface as the simulator's environments, so `sim.evaluate` runs it like them: reset options
"n_subtasks" and "episode" pick the `episode`-th task of that length in the env's split ("condition",
when given, must be that split); info carries the action mask, the subtask index and the floor plan; a
subtask budget cuts an episode off after that many steps on one subtask (None: twice the recorded
trajectory's length); `expert_plan()` is the rest of ALFRED's recorded actions while the policy has
followed them, else empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from rgvlm_core.alfred.level import ACTION_TOKENS, ACTIONS, CAP, STATE_DIM, act, encode, valid_mask, view
from rgvlm_core.alfred.tasks import AlfredTask, Event, data_root, load_tasks, reached, start_world
from rgvlm_core.alfred.world import World
from rgvlm_core.sim.env import INSTRUCTION_CHARSET, INSTRUCTION_MAX_LENGTH

RESET_OPTIONS = frozenset({"n_subtasks", "episode", "condition"})


class AlfredTaskEnv(gymnasium.Env[dict[str, Any], np.int64]):
    """The tasks of one ALFRED split (valid_seen, valid_unseen, train) of the data folder `root`."""

    def __init__(
        self,
        split: str = "valid_seen",
        *,
        root: str | Path | None = None,
        subtask_budget: int | None = None,
        phrasing: Literal["seen", "unseen"] = "unseen",
    ) -> None:
        self.split = split
        self.root = str(data_root(root))
        self.tasks = load_tasks(self.root, split)
        self.subtask_budget = subtask_budget
        self.phrasing: Literal["seen", "unseen"] = phrasing  # ALFRED's annotators' words: never trained on
        self.floor_plans = None
        self.action_space: spaces.Discrete = spaces.Discrete(len(ACTION_TOKENS))
        self.observation_space = spaces.Dict(
            {
                "state": spaces.Box(-CAP, CAP, (STATE_DIM,), np.float32),
                "instruction": spaces.Text(INSTRUCTION_MAX_LENGTH, charset=INSTRUCTION_CHARSET),
            }
        )
        self._task: AlfredTask | None = None
        self._world: World | None = None
        self._done = self._steps = self._subtask_steps = 0
        self._followed = True
        self._ended = True

    def n_tasks(self, n_subtasks: int) -> int:
        return len(self.tasks.get(n_subtasks, ()))

    @property
    def task(self) -> AlfredTask:
        if self._task is None:
            raise ResetNeeded("call reset() first")
        return self._task

    @property
    def world(self) -> World:
        if self._world is None:
            raise ResetNeeded("call reset() first")
        return self._world

    def expert_plan(self) -> list[int]:
        """ALFRED's recorded actions from here, while every step so far followed them; else []."""
        return list(self.task.expert[self._steps :]) if self._followed else []

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - RESET_OPTIONS
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; known: {sorted(RESET_OPTIONS)}")
        if options.get("condition", self.split) != self.split:
            raise ValueError(
                f"condition={options['condition']!r}: this env holds ALFRED's {self.split} tasks"
            )
        n = options.get("n_subtasks")
        lengths = sorted(self.tasks)
        if n is None:
            n = lengths[int(self.np_random.integers(len(lengths)))]
        if n not in self.tasks:
            raise ValueError(f"n_subtasks={n!r}: ALFRED's {self.split} tasks here have {lengths} subtasks")
        tasks = self.tasks[n]
        episode = options.get("episode")
        index = int(self.np_random.integers(len(tasks))) if episode is None else int(episode)
        if not 0 <= index < len(tasks):
            raise ValueError(f"episode={episode!r}: {len(tasks)} tasks of {n} subtasks in {self.split}")
        self._task = tasks[index]
        self._world = start_world(self._task)
        self._done = self._steps = self._subtask_steps = 0
        self._followed, self._ended = True, False
        return self._outputs(None)

    def step(
        self, action: int | np.integer
    ) -> tuple[dict[str, Any], SupportsFloat, bool, bool, dict[str, Any]]:
        task, w = self.task, self.world
        if self._ended:
            raise ResetNeeded("the episode has ended (terminated or truncated): call reset() first")
        if not 0 <= int(action) < len(ACTION_TOKENS):
            raise ValueError(f"action={action!r} is not an action index in [0, {len(ACTION_TOKENS)})")
        a = int(action)
        self._followed = self._followed and task.expert[self._steps : self._steps + 1] == (a,)
        held_before = w.held
        invalid = act(w, a)
        event: Event | None = None
        if invalid is None and ACTIONS[a][1]:
            event = (ACTIONS[a][0], str(w.last_target), held_before)
        done_before = self._done
        while self._done < len(task) and reached(task.subtasks[self._done], w, event):
            self._done += 1
            event = None  # one action reaches one subtask
        self._steps += 1
        completed = self._done - done_before
        self._subtask_steps = 0 if completed else self._subtask_steps + 1
        terminated = self._done == len(task)
        if self.subtask_budget is None:
            truncated = not terminated and self._steps >= 2 * len(task.expert)
        else:
            truncated = not terminated and self._subtask_steps >= self.subtask_budget
        self._ended = terminated or truncated
        obs, info = self._outputs(invalid)
        return obs, float(completed), terminated, truncated, info

    def _outputs(self, invalid: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
        task, w = self.task, self.world
        v = view(w)  # one view of every object for both the state vector and the mask
        obs = {"state": encode(w, v), "instruction": task.instructions[min(self._done, len(task) - 1)]}
        info = {
            "action_mask": valid_mask(w, v),
            "task_type": task.task_type,
            "goal": task.goal,
            "instructions": task.instructions,
            "subtask_index": self._done,
            "n_subtasks": len(task),
            "expert_length": len(task.expert),
            "invalid": invalid,
            "floor_plan": task.floor_plan,
            "pose": w.pose,
            "source": task.source,
        }
        return obs, info
