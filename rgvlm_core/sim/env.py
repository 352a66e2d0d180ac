"""The household simulator as a Gymnasium environment: `HouseholdEnv`, registered as rgvlm/Household-v0.

A thin wrapper around the pure world rules (`world`), tasks (`tasks`), scenes (`scenes`) and the
expert (`expert`): the env samples a task and its room with `self.np_random`, applies actions,
scores subtask completion in order, and encodes observations. Drawing lives in `render`.

Observations: "state" (the symbolic vector of `encode`), "instruction" (the instruction of the first
subtask not yet done; the last one once all are done) and, with `frames=True`, "frame" (the
300x300 RGB view, without caption). Reward: the number of subtasks completed by the step (0 or 1
in practice). Terminated when every subtask is done; truncated after twice the expert's plan length
from the initial state (at least one step), or, with `subtask_budget=B`, after B steps spent on one
subtask without completing it (the count restarts at each completion), so a task of any length gives
each of its subtasks the same chance. Invalid actions leave the state unchanged, cost a step
and say why in info["invalid"].

Episode end: stepping after termination or truncation (or before the first reset) raises
`gymnasium.error.ResetNeeded`; call `reset()`. Gymnasium leaves that case undefined, and a loud error
catches loops that forget to reset.

Progress: info["progress"] says whether the expert's remaining plan got shorter or a subtask was
completed. It needs a re-plan after every step (about 50 us), so it is computed only with
`track_progress=True`; otherwise it is None and the env stays at full speed.

Registration: importing this module registers "rgvlm/Household-v0" (one idempotent call at the
bottom, Gymnasium's own convention), so `gymnasium.make("rgvlm/Household-v0")` works after
`import rgvlm_core.sim.env`. Its entry point `make_household` takes `level`: "subgoal" (this env,
the default) or "low" (`rgvlm_core.sim.low.env.LowHouseholdEnv`).
"""

from __future__ import annotations

import functools
import re
import string
from typing import Any, Literal, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from rgvlm_core.sim.catalog import LOCATIONS, OBJECTS, ROOM_KINDS, words
from rgvlm_core.sim.encode import STATE_DIM, encode
from rgvlm_core.sim.expert import PlanningError, plan
from rgvlm_core.sim.language import SUBTASK_PHRASES
from rgvlm_core.sim.scenes import randomize, sample_task
from rgvlm_core.sim.tasks import MAX_SUBTASKS, TASK_TYPES, Task, progress
from rgvlm_core.sim.world import ACTION_TOKENS, N_ACTIONS, State, apply, valid_mask

ENV_ID = "rgvlm/Household-v0"
CONDITIONS: tuple[str, ...] = ("default", "randomized")
PHRASINGS: tuple[str, ...] = ("seen", "unseen")
LEVELS: tuple[str, ...] = ("subgoal", "low")  # action levels `make_household` builds
FRAME_SHAPE = (300, 300, 3)
RESET_OPTIONS = frozenset({"task", "state", "n_subtasks", "task_type", "room", "condition"})
Condition = Literal["default", "randomized"]


# -- the instruction text space -------------------------------------------------------------------
def _instruction_space() -> tuple[int, str]:
    """(max length, charset) of subtask instructions, derived from the phrase tables and catalogue."""
    placeholder = re.compile(r"\{\w+\}")
    longest = max(len(words(c)) for c in OBJECTS + LOCATIONS)
    # {o} is "sliced <object>" or "<movable> with the <object>"; {r} a receptacle, lamp or object
    o_len, r_len = max(len("sliced ") + longest, 2 * longest + len(" with the ")), longest
    templates = [t for phrases in SUBTASK_PHRASES.values() for t in phrases]
    max_length = max(
        len(placeholder.sub("", t)) + t.count("{o}") * o_len + t.count("{r}") * r_len for t in templates
    )
    punctuation = {c for t in templates for c in placeholder.sub("", t) if c in string.punctuation}
    charset = string.ascii_letters + string.digits + " " + "".join(sorted(punctuation))
    return max_length, charset


INSTRUCTION_MAX_LENGTH, INSTRUCTION_CHARSET = _instruction_space()


@functools.cache
def task_lengths(room: str | None = None, task_type: str | None = None) -> tuple[int, ...]:
    """The subtask counts (1..MAX_SUBTASKS) for which a task of this room and type exists."""
    out = []
    for n in range(1, MAX_SUBTASKS + 1):
        try:
            sample_task(np.random.default_rng(0), n, room=room, task_type=task_type)
        except ValueError:
            continue
        out.append(n)
    return tuple(out)


class HouseholdEnv(gymnasium.Env[dict[str, Any], np.int64]):
    """ALFRED-style household tasks of 1..6 subtasks at the high-level action layer."""

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4}  # noqa: RUF012 (Gymnasium)

    def __init__(
        self,
        render_mode: str | None = None,
        *,
        frames: bool = False,
        phrasing: Literal["seen", "unseen"] = "seen",
        max_subtasks: int = MAX_SUBTASKS,
        track_progress: bool = False,
        subtask_budget: int | None = None,
    ) -> None:
        if subtask_budget is not None and (not _is_int(subtask_budget) or subtask_budget < 1):
            raise ValueError(f"subtask_budget={subtask_budget!r}: use a positive integer or None")
        self.subtask_budget = None if subtask_budget is None else int(subtask_budget)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not supported; use None or 'rgb_array'")
        if phrasing not in PHRASINGS:
            raise ValueError(f"phrasing={phrasing!r}: use 'seen' (training) or 'unseen' (held-out)")
        if not _is_int(max_subtasks) or not 1 <= max_subtasks <= MAX_SUBTASKS:
            raise ValueError(f"max_subtasks={max_subtasks!r}: use an integer from 1 to {MAX_SUBTASKS}")
        self.render_mode = render_mode
        self.frames = bool(frames)
        self.phrasing: Literal["seen", "unseen"] = phrasing
        self.max_subtasks = int(max_subtasks)
        self.track_progress = bool(track_progress)
        self.action_space: spaces.Discrete = spaces.Discrete(N_ACTIONS)
        obs: dict[str, spaces.Space[Any]] = {
            "state": spaces.Box(0.0, 2.0, (STATE_DIM,), np.float32),
            "instruction": spaces.Text(INSTRUCTION_MAX_LENGTH, charset=INSTRUCTION_CHARSET),
        }
        if self.frames:
            obs["frame"] = spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self.observation_space: spaces.Dict = spaces.Dict(obs)
        self._task: Task | None = None
        self._state: State | None = None
        self._done = 0  # subtasks completed so far
        self._steps = 0
        self._subtask_steps = 0  # steps since the current subtask became current
        self._max_steps = 1
        self._expert_length = 0
        self._ended = True
        self._last_action: int | None = None
        self._plan: list[int] | None = None  # the expert's remaining plan from the current state
        self._encoded: np.ndarray | None = None  # caches for the current state
        self._mask: np.ndarray | None = None
        self._frame: np.ndarray | None = None

    # -- tools ----------------------------------------------------------------------------------
    @property
    def state(self) -> State:
        """The current world state (immutable)."""
        return self._require_reset()[1]

    @property
    def task(self) -> Task:
        """The current task."""
        return self._require_reset()[0]

    @property
    def max_steps(self) -> int:
        """The step limit of this episode without a subtask budget: twice the expert's plan length at
        reset, at least 1."""
        return self._max_steps

    @property
    def elapsed_steps(self) -> int:
        return self._steps

    def expert_plan(self) -> list[int]:
        """The expert's remaining actions from the current state (raises PlanningError if none)."""
        task, state = self._require_reset()
        if self._plan is None:
            self._plan = plan(state, task, self._done)
        return list(self._plan)

    # -- the Env API ----------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode. Options (all optional): "task" and "state" (together: start from them),
        else "n_subtasks" (1..max_subtasks, default uniform over those available), "task_type",
        "room"; and "condition": "default" or "randomized" (randomised agent start and placements).
        """
        super().reset(seed=seed)
        task, state = self._initial(dict(options or {}))
        done = progress(state, task, 0)
        if done == len(task):
            raise ValueError("the given state already completes every subtask of the given task")
        try:
            remaining = plan(state, task, done)
        except PlanningError as e:
            raise ValueError(f"the expert finds no plan for this task from this state: {e}") from e
        # a reset that raised above leaves the previous episode as it was
        self._task, self._state, self._done, self._plan = task, state, done, remaining
        self._encoded = self._mask = self._frame = None
        self._expert_length = len(remaining)
        self._max_steps = max(1, 2 * self._expert_length)
        self._steps, self._ended, self._last_action = 0, False, None
        self._subtask_steps = 0
        return self._observation(), self._info(
            invalid=None, made_progress=False if self.track_progress else None
        )

    def step(
        self, action: int | np.integer
    ) -> tuple[dict[str, Any], SupportsFloat, bool, bool, dict[str, Any]]:
        task, state = self._require_reset()
        if self._ended:
            raise ResetNeeded("the episode has ended (terminated or truncated): call reset() first")
        if not _is_int(action) or not 0 <= action < N_ACTIONS:
            raise ValueError(f"action={action!r} is not an action index in [0, {N_ACTIONS})")
        a = int(action)
        before = self._remaining_length() if self.track_progress else None
        new_state, invalid = apply(state, a)
        done_before = self._done
        if invalid is None:
            self._state = new_state
            self._plan = self._encoded = self._mask = self._frame = None
            self._done = progress(new_state, task, done_before)
        self._steps += 1
        self._last_action = a
        completed = self._done - done_before
        self._subtask_steps = 0 if completed else self._subtask_steps + 1
        made_progress: bool | None = None
        if self.track_progress:
            after = self._remaining_length()
            shorter = before is not None and after is not None and after < before
            made_progress = completed > 0 or shorter
        terminated = self._done == len(task)
        if self.subtask_budget is None:
            truncated = not terminated and self._steps >= self._max_steps
        else:
            truncated = not terminated and self._subtask_steps >= self.subtask_budget
        self._ended = terminated or truncated
        info = self._info(invalid=invalid, made_progress=made_progress)
        return self._observation(), float(completed), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The current frame captioned with the last action token ("rgb_array"), else None."""
        if self.render_mode != "rgb_array":
            return None
        from rgvlm_core.sim.render import render_frame

        caption = ACTION_TOKENS[self._last_action] if self._last_action is not None else None
        return render_frame(self.state, caption=caption)

    # -- helpers --------------------------------------------------------------------------------
    def _initial(self, options: dict[str, Any]) -> tuple[Task, State]:
        """The task and initial state that the reset options ask for, drawn with self.np_random."""
        unknown = set(options) - RESET_OPTIONS
        if unknown:
            raise ValueError(f"unknown reset options {sorted(unknown)}; known: {sorted(RESET_OPTIONS)}")
        condition = options.get("condition", "default")
        if condition not in CONDITIONS:
            raise ValueError(f"condition={condition!r}: use 'default' or 'randomized'")
        if "task" in options or "state" in options:
            task, state = _given(options)
        else:
            room, task_type = options.get("room"), options.get("task_type")
            if room is not None and room not in ROOM_KINDS:
                raise ValueError(f"room={room!r}: use one of {sorted(ROOM_KINDS)}")
            if task_type is not None and task_type not in TASK_TYPES:
                raise ValueError(f"task_type={task_type!r}: use one of {list(TASK_TYPES)}")
            n = options.get("n_subtasks")
            if n is None:
                lengths = [k for k in task_lengths(room, task_type) if k <= self.max_subtasks]
                if not lengths:
                    raise ValueError(f"no task of at most {self.max_subtasks} subtasks for {options}")
                n = lengths[int(self.np_random.integers(len(lengths)))]
            elif not _is_int(n) or not 1 <= n <= self.max_subtasks:
                raise ValueError(f"n_subtasks={n!r}: use an integer from 1 to {self.max_subtasks}")
            task, state = sample_task(
                self.np_random, int(n), phrasing=self.phrasing, room=room, task_type=task_type
            )
        if condition == "randomized":
            state = randomize(state, self.np_random)
        return task, state

    def _observation(self) -> dict[str, Any]:
        task, state = self._require_reset()
        if self._encoded is None:
            self._encoded = encode(state)
        obs: dict[str, Any] = {
            "state": self._encoded.copy(),
            "instruction": task.instructions[min(self._done, len(task) - 1)],
        }
        if self.frames:
            if self._frame is None:
                from rgvlm_core.sim.render import render_frame

                self._frame = render_frame(state)
            obs["frame"] = self._frame.copy()
        return obs

    def _info(self, *, invalid: str | None, made_progress: bool | None) -> dict[str, Any]:
        task, state = self._require_reset()
        if self._mask is None:
            self._mask = valid_mask(state).astype(np.int8)
        return {
            "action_mask": self._mask.copy(),
            "task_type": task.task_type,
            "goal": task.goal,
            "instructions": task.instructions,
            "subtask_index": self._done,
            "n_subtasks": len(task),
            "expert_length": self._expert_length,
            "invalid": invalid,
            "progress": made_progress,
        }

    def _remaining_length(self) -> int | None:
        """Length of the expert's remaining plan, or None where the expert finds none."""
        try:
            return len(self.expert_plan())
        except PlanningError:
            return None

    def _require_reset(self) -> tuple[Task, State]:
        if self._task is None or self._state is None:
            raise ResetNeeded("call reset() before using the environment")
        return self._task, self._state


def _given(options: dict[str, Any]) -> tuple[Task, State]:
    task, state = options.get("task"), options.get("state")
    if not isinstance(task, Task) or not isinstance(state, State):
        raise ValueError('reset options "task" and "state" go together: a Task and a State')
    if len(task) == 0:
        raise ValueError("the given task has no subtasks")
    if task.room != state.room:
        raise ValueError(f"the task is for a {task.room} but the state is a {state.room}")
    return task, state


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def make_household(level: str = "subgoal", **kwargs: Any) -> gymnasium.Env[dict[str, Any], np.int64]:
    """The household env of an action `level`: "subgoal" (`HouseholdEnv`, the default) or "low"
    (`rgvlm_core.sim.low.env.LowHouseholdEnv`, ALFRED's low-level actions on floor plans). The
    registered entry point, so `gymnasium.make(ENV_ID, level="low", ...)` passes the rest on."""
    if level == "subgoal":
        return HouseholdEnv(**kwargs)
    if level == "low":
        from rgvlm_core.sim.low.env import LowHouseholdEnv  # imported here: the low env imports this module

        return LowHouseholdEnv(**kwargs)
    raise ValueError(f"level={level!r}: use one of {list(LEVELS)}")


def register_envs() -> None:
    """Register rgvlm/Household-v0 with Gymnasium (once; later calls do nothing)."""
    if ENV_ID not in gymnasium.registry:
        gymnasium.register(id=ENV_ID, entry_point="rgvlm_core.sim.env:make_household")


# Gymnasium's convention: importing the module that defines an env registers it. The one side effect.
register_envs()
