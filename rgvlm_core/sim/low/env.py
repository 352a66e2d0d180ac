"""The low-level household as a Gymnasium environment: `LowHouseholdEnv`, made by
`gymnasium.make("rgvlm/Household-v0", level="low")`.

A thin wrapper around the low level's pure parts: floor plans (`floorplan`), world rules (`world`),
tasks and scenes (`scenes`) and the expert (`expert`). The env draws a floor plan (one of
`floor_plans`, ALFRED's numbers, or a generated room when None), a task the plan poses and its initial
state with `self.np_random`, applies ALFRED's low-level actions, scores subtask completion in order,
and encodes observations. Drawing lives in `render`.

Observations: "state" (the vector of `low.encode`: the subgoal level's symbolic vector plus the pose
block), "instruction" (the instruction of the first subtask not yet done; the last one once all are
done; the same text space as the subgoal env) and, with `frames=True`, "frame" (the 300x300 RGB view,
without caption). Reward, termination, truncation (twice the expert's plan length at reset, or
`subtask_budget` steps on one subtask), invalid actions and episode end follow `HouseholdEnv` exactly.

Info: the subgoal env's keys (action_mask, task_type, goal, instructions, subtask_index, n_subtasks,
expert_length, invalid, progress) plus "floor_plan" (the plan's name) and "pose" (x, z, heading,
horizon). info["action_mask"] is exactly `low.world.valid_mask`.

Speed: a navigation step that leaves the same receptacle in front keeps the same symbolic world object,
so the world's part of the vector and of the mask is reused; the pose part comes from the plan's pose
table and the navigator's movement table. Each step then copies two small arrays (the observation and
the mask must be new arrays: callers keep them) instead of building them. Progress
(`track_progress=True`) re-plans after every step and is off by default.
"""

from __future__ import annotations

from typing import Any, Literal, SupportsFloat

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.error import ResetNeeded

from rgvlm_core.sim.encode import STATE_DIM as WORLD_DIM
from rgvlm_core.sim.encode import encode as world_encode
from rgvlm_core.sim.env import (
    CONDITIONS,
    FRAME_SHAPE,
    INSTRUCTION_CHARSET,
    INSTRUCTION_MAX_LENGTH,
    PHRASINGS,
    task_lengths,
)
from rgvlm_core.sim.expert import PlanningError
from rgvlm_core.sim.low.encode import HIGH, LOW, STATE_DIM, pose_table
from rgvlm_core.sim.low.expert import plan
from rgvlm_core.sim.low.floorplan import FloorPlan, load_floor_plan, room_of
from rgvlm_core.sim.low.nav import N_NAV, Navigator, navigator
from rgvlm_core.sim.low.scenes import lengths, plan_bindings, randomize_low, sample_low_task
from rgvlm_core.sim.low.world import ACTION_TOKENS, N_ACTIONS, LowState, apply, progress, valid_mask
from rgvlm_core.sim.tasks import MAX_SUBTASKS, TASK_TYPES, Task, chain_lengths
from rgvlm_core.sim.world import State

RESET_OPTIONS = frozenset({"task", "state", "n_subtasks", "task_type", "condition", "floor_plan"})


class LowHouseholdEnv(gymnasium.Env[dict[str, Any], np.int64]):
    """ALFRED-style household tasks of 1..6 subtasks at ALFRED's low-level action layer."""

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
        floor_plans: tuple[int, ...] | None = None,
        layouts: str | None = None,
    ) -> None:
        if subtask_budget is not None and (not _is_int(subtask_budget) or subtask_budget < 1):
            raise ValueError(f"subtask_budget={subtask_budget!r}: use a positive integer or None")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode={render_mode!r} is not supported; use None or 'rgb_array'")
        if phrasing not in PHRASINGS:
            raise ValueError(f"phrasing={phrasing!r}: use 'seen' (training) or 'unseen' (held-out)")
        if not _is_int(max_subtasks) or not 1 <= max_subtasks <= MAX_SUBTASKS:
            raise ValueError(f"max_subtasks={max_subtasks!r}: use an integer from 1 to {MAX_SUBTASKS}")
        self.subtask_budget = None if subtask_budget is None else int(subtask_budget)
        self.render_mode = render_mode
        self.frames = bool(frames)
        self.phrasing: Literal["seen", "unseen"] = phrasing
        self.max_subtasks = int(max_subtasks)
        self.track_progress = bool(track_progress)
        self.layouts = None if layouts is None else str(layouts)
        self.floor_plans = _check_floor_plans(floor_plans)
        # loaded now, so a missing layouts folder is reported when the env is made
        self._plans = [load_floor_plan(n, self.layouts) for n in self.floor_plans or ()]
        self.action_space: spaces.Discrete = spaces.Discrete(N_ACTIONS)
        obs: dict[str, spaces.Space[Any]] = {
            "state": spaces.Box(LOW, HIGH, (STATE_DIM,), np.float32),
            "instruction": spaces.Text(INSTRUCTION_MAX_LENGTH, charset=INSTRUCTION_CHARSET),
        }
        if self.frames:
            obs["frame"] = spaces.Box(0, 255, FRAME_SHAPE, np.uint8)
        self.observation_space: spaces.Dict = spaces.Dict(obs)
        self._task: Task | None = None
        self._state: LowState | None = None
        self._nav: Navigator | None = None
        self._table: np.ndarray | None = None  # the plan's pose blocks, by pose index
        self._done = 0
        self._steps = 0
        self._subtask_steps = 0
        self._max_steps = 1
        self._expert_length = 0
        self._ended = True
        self._last_action: int | None = None
        self._plan: list[int] | None = None  # the expert's remaining plan from the current state
        self._world: State | None = None  # the symbolic world the two caches below belong to
        self._world_vec: np.ndarray | None = None  # a whole state vector: the world's, a pose block
        self._world_mask: np.ndarray | None = None
        self._n_subtasks = 0
        self._frame: np.ndarray | None = None

    # -- tools ----------------------------------------------------------------------------------
    @property
    def state(self) -> LowState:
        """The current low-level state (immutable)."""
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
        """The expert's remaining actions from the current state (raises PlanningError if none).

        While every step so far took the plan's next action, this is the rest of the plan made at the
        last re-plan (reset, or the last step off the plan); otherwise a fresh plan from here. The low
        expert planned afresh partway through a primitive sequence (the bread put in the open fridge)
        starts the sequence over, so re-planning after every step would never finish."""
        task, state = self._require_reset()
        if self._plan is None:
            self._plan = plan(state, task, self._done)
        return list(self._plan)

    # -- the Env API ----------------------------------------------------------------------------
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Start an episode. Options (all optional): "task" and "state" (together: start from a Task
        and a LowState), else "floor_plan" (a number from the env's `floor_plans`), "n_subtasks"
        (1..max_subtasks, default uniform over those the drawn plan poses), "task_type"; and
        "condition": "default" or "randomized" (random agent pose and object placements).
        """
        super().reset(seed=seed)
        task, state = self._initial(dict(options or {}))
        done = progress(state.world, task, 0)
        if done == len(task):
            raise ValueError("the given state already completes every subtask of the given task")
        try:
            remaining = plan(state, task, done)
        except PlanningError as e:
            raise ValueError(f"the expert finds no plan for this task from this state: {e}") from e
        # a reset that raised above leaves the previous episode as it was
        self._task, self._state, self._done, self._plan = task, state, done, remaining
        self._nav, self._table = navigator(state.plan), pose_table(state.plan)
        self._world = self._world_vec = self._world_mask = self._frame = None
        self._n_subtasks = len(task)
        self._expert_length = len(remaining)
        self._max_steps = max(1, 2 * self._expert_length)
        self._steps, self._ended, self._last_action = 0, False, None
        self._subtask_steps = 0
        made_progress = False if self.track_progress else None
        return self._outputs(invalid=None, made_progress=made_progress)

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
            # the expert's plan stays its plan while followed: a fresh plan from partway through a
            # heat / cool / clean sequence can restart the sequence (see `expert_plan`)
            on_plan = self._plan is not None and self._plan[:1] == [a]
            self._plan = self._plan[1:] if on_plan and self._plan is not None else None
            self._state, self._frame = new_state, None
            if new_state.world is not state.world:
                self._done = progress(new_state.world, task, done_before)
        self._steps += 1
        self._last_action = a
        completed = self._done - done_before
        self._subtask_steps = 0 if completed else self._subtask_steps + 1
        made_progress: bool | None = None
        if self.track_progress:
            after = self._remaining_length()
            made_progress = completed > 0 or (before is not None and after is not None and after < before)
        terminated = self._done == self._n_subtasks
        if self.subtask_budget is None:
            truncated = not terminated and self._steps >= self._max_steps
        else:
            truncated = not terminated and self._subtask_steps >= self.subtask_budget
        self._ended = terminated or truncated
        obs, info = self._outputs(invalid=invalid, made_progress=made_progress)
        return obs, float(completed), terminated, truncated, info

    def render(self) -> np.ndarray | None:
        """The current frame captioned with the last action token ("rgb_array"), else None."""
        if self.render_mode != "rgb_array":
            return None
        from rgvlm_core.sim.low.render import render_low_frame

        caption = ACTION_TOKENS[self._last_action] if self._last_action is not None else None
        return render_low_frame(self.state, caption=caption)

    # -- helpers --------------------------------------------------------------------------------
    def _initial(self, options: dict[str, Any]) -> tuple[Task, LowState]:
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
            task_type = options.get("task_type")
            if task_type is not None and task_type not in TASK_TYPES:
                raise ValueError(f"task_type={task_type!r}: use one of {list(TASK_TYPES)}")
            n = options.get("n_subtasks")
            if n is not None and (not _is_int(n) or not 1 <= n <= self.max_subtasks):
                raise ValueError(f"n_subtasks={n!r}: use an integer from 1 to {self.max_subtasks}")
            floor_plan = self._draw_plan(options.get("floor_plan"), n, task_type)
            if n is None:
                posed = self._posed(floor_plan, task_type)
                n = posed[int(self.np_random.integers(len(posed)))]
            task, state = sample_low_task(
                self.np_random, int(n), floor_plan, phrasing=self.phrasing, task_type=task_type
            )
        if condition == "randomized":
            state = randomize_low(state, self.np_random)
        return task, state

    def _draw_plan(self, number: object, n: int | None, task_type: str | None) -> FloorPlan | None:
        """The floor plan of the episode (None: a generated room): `number` when given, else drawn
        uniformly, then, when it poses no task of length `n`, drawn again among those that do."""
        if number is not None:
            if self.floor_plans is None or number not in self.floor_plans:
                raise ValueError(
                    f"floor_plan={number!r}: use one of this env's floor_plans {self.floor_plans}"
                )
            candidates: list[FloorPlan | None] = [self._plans[self.floor_plans.index(int(number))]]
        elif self.floor_plans is None:
            candidates = [None]
        else:
            candidates = list(self._plans)
        first = (
            candidates[int(self.np_random.integers(len(candidates)))]
            if len(candidates) > 1
            else candidates[0]
        )
        if self._poses(first, n, task_type):
            return first
        posing = [p for p in candidates if self._poses(p, n, task_type)]
        if not posing:
            names = "a generated room" if first is None else ", ".join(p.name for p in candidates if p)
            raise ValueError(
                f"no task of {n or 'any length up to ' + str(self.max_subtasks)} subtasks "
                f"(task_type={task_type!r}) on {names}: choose another length or other floor plans"
            )
        return posing[int(self.np_random.integers(len(posing)))]

    def _posed(self, floor_plan: FloorPlan | None, task_type: str | None) -> tuple[int, ...]:
        """The task lengths (at most max_subtasks) that a floor plan (None: generated rooms) poses."""
        if floor_plan is None:
            found = task_lengths(None, task_type)
        elif task_type is None:
            found = lengths(floor_plan)
        else:
            found = _type_lengths(floor_plan, task_type)
        return tuple(k for k in found if k <= self.max_subtasks)

    def _poses(self, floor_plan: FloorPlan | None, n: int | None, task_type: str | None) -> bool:
        posed = self._posed(floor_plan, task_type)
        return bool(posed) if n is None else n in posed

    def _outputs(
        self, *, invalid: str | None, made_progress: bool | None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The observation and info of the current state. The symbolic world's vector and action mask
        are recomputed only when the world object changed; the pose's come from the plan's tables."""
        task, state = self._require_reset()
        assert self._nav is not None and self._table is not None  # set by reset
        if state.world is not self._world or self._world_vec is None or self._world_mask is None:
            self._world = state.world
            self._world_vec = np.zeros(STATE_DIM, np.float32)
            self._world_vec[:WORLD_DIM] = world_encode(state.world)
            self._world_mask = valid_mask(state).astype(np.int8)
        p = self._nav.index(state.pose)
        mask = self._world_mask.copy()
        mask[:N_NAV] = self._nav.can_move[p]
        vec = self._world_vec.copy()
        vec[WORLD_DIM:] = self._table[p]
        obs: dict[str, Any] = {
            "state": vec,
            "instruction": task.instructions[min(self._done, self._n_subtasks - 1)],
        }
        if self.frames:
            if self._frame is None:
                from rgvlm_core.sim.low.render import render_low_frame

                self._frame = render_low_frame(state)
            obs["frame"] = self._frame.copy()
        info = {
            "action_mask": mask,
            "task_type": task.task_type,
            "goal": task.goal,
            "instructions": task.instructions,
            "subtask_index": self._done,
            "n_subtasks": self._n_subtasks,
            "expert_length": self._expert_length,
            "invalid": invalid,
            "progress": made_progress,
            "floor_plan": state.plan.name,
            "pose": state.pose,
        }
        return obs, info

    def _remaining_length(self) -> int | None:
        """Length of the expert's remaining plan, or None where the expert finds none."""
        try:
            return len(self.expert_plan())
        except PlanningError:
            return None

    def _require_reset(self) -> tuple[Task, LowState]:
        if self._task is None or self._state is None:
            raise ResetNeeded("call reset() before using the environment")
        return self._task, self._state


def _type_lengths(floor_plan: FloorPlan, task_type: str) -> tuple[int, ...]:
    """The subtask counts (1..6) for which the floor plan poses a task of `task_type`."""
    longest = max(
        (
            length
            for sliced, length in zip((False, True), chain_lengths(task_type), strict=False)
            if plan_bindings(floor_plan, task_type, sliced)
        ),
        default=0,
    )
    return tuple(range(1, min(longest, MAX_SUBTASKS) + 1))


def _check_floor_plans(floor_plans: object) -> tuple[int, ...] | None:
    if floor_plans is None:
        return None
    if isinstance(floor_plans, (str, bytes)) or not hasattr(floor_plans, "__iter__"):
        raise ValueError(
            f"floor_plans={floor_plans!r}: give ALFRED floor plan numbers, e.g. (1, 201), or None"
        )
    numbers = tuple(floor_plans)
    bad = [n for n in numbers if not _is_int(n) or room_of(int(n)) is None]
    if bad or not numbers:
        raise ValueError(
            f"floor_plans={floor_plans!r}: give ALFRED floor plan numbers (1-30, 201-230, 301-330, "
            f"401-430){f'; not floor plans: {bad}' if bad else ''}, or None for generated rooms"
        )
    return tuple(dict.fromkeys(int(n) for n in numbers))


def _given(options: dict[str, Any]) -> tuple[Task, LowState]:
    task, state = options.get("task"), options.get("state")
    if not isinstance(task, Task) or not isinstance(state, LowState):
        raise ValueError('reset options "task" and "state" go together: a Task and a LowState')
    if len(task) == 0:
        raise ValueError("the given task has no subtasks")
    if task.room != state.plan.room:
        raise ValueError(f"the task is for a {task.room} but the state's floor plan is a {state.plan.room}")
    return task, state


def _is_int(x: object) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)
