"""The domain model: episodes made of subtasks and steps, and per-dataset action vocabularies.

A trajectory is what an agent did (its steps); an episode is one natural-language telling of it
(ALFRED has up to six human annotations per trajectory), so steps belong to the trajectory and
subtask instructions to the episode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# Subtask kinds, as the offline-RL literature on ALFRED forms them (GotoLocation merged forward).
SUBTASK_KINDS: tuple[str, ...] = ("Pickup", "Put", "Heat", "Cool", "Clean", "Slice", "Toggle")

# ALFRED's seven task types (alfred-format.md).
ALFRED_TASK_TYPES: tuple[str, ...] = (
    "pick_and_place_simple",
    "pick_two_obj_and_place",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_and_place_with_movable_recep",
)

_TOKEN = re.compile(r"^(?P<name>[A-Za-z_0-9]+)(?:\((?P<arg>[^()]*)\))?$")


def action_token(name: str, arg: str | None = None) -> str:
    """The canonical token of an action: `MoveAhead_25` or `PickupObject(Apple)`."""
    return f"{name}({arg})" if arg else name


def parse_action_token(token: str) -> tuple[str, str | None]:
    """Split a token back into (name, argument); raises ValueError on anything else."""
    match = _TOKEN.match(token)
    if match is None:
        raise ValueError(f"not an action token: {token!r} (expected Name or Name(Arg))")
    return match["name"], match["arg"] or None


@dataclass(frozen=True)
class ActionVocabulary:
    """The action names a dataset allows; tokens add an object or receptacle class as argument."""

    dataset: str
    names: tuple[str, ...]
    takes_argument: frozenset[str] = field(default_factory=frozenset)

    def token(self, name: str, arg: str | None = None) -> str:
        """Build a token, refusing names outside the vocabulary and misplaced arguments."""
        if name not in self.names:
            raise ValueError(f"unknown {self.dataset} action {name!r}; known: {', '.join(self.names)}")
        if (arg is not None) != (name in self.takes_argument):
            need = "needs" if name in self.takes_argument else "takes no"
            raise ValueError(f"{self.dataset} action {name!r} {need} an argument (got {arg!r})")
        return action_token(name, arg)


# ALFRED's 12 low-level actions (alfred-format.md): 5 navigation, 7 interaction (with an object).
ALFRED_NAVIGATION: tuple[str, ...] = (
    "MoveAhead_25",
    "RotateLeft_90",
    "RotateRight_90",
    "LookUp_15",
    "LookDown_15",
)
ALFRED_INTERACTION: tuple[str, ...] = (
    "PickupObject",
    "PutObject",
    "OpenObject",
    "CloseObject",
    "ToggleObjectOn",
    "ToggleObjectOff",
    "SliceObject",
)
ALFRED_VOCABULARY = ActionVocabulary(
    dataset="alfred",
    names=ALFRED_NAVIGATION + ALFRED_INTERACTION,
    takes_argument=frozenset(ALFRED_INTERACTION),
)

# ALFRED's high-level (subgoal) actions; NoOp is the planner's terminal End.
ALFRED_HIGH_ACTIONS: tuple[str, ...] = (
    "GotoLocation",
    "PickupObject",
    "PutObject",
    "ToggleObject",
    "SliceObject",
    "HeatObject",
    "CoolObject",
    "CleanObject",
    "NoOp",
)

# The embedded simulator acts at ALFRED's subgoal level: every action names its target class.
SIM_ACTIONS: tuple[str, ...] = (
    "GotoLocation",
    "PickupObject",
    "PutObject",
    "OpenObject",
    "CloseObject",
    "ToggleObject",
    "SliceObject",
    "HeatObject",
    "CoolObject",
    "CleanObject",
)
SIM_VOCABULARY = ActionVocabulary(dataset="sim", names=SIM_ACTIONS, takes_argument=frozenset(SIM_ACTIONS))

VOCABULARIES: dict[str, ActionVocabulary] = {v.dataset: v for v in (ALFRED_VOCABULARY, SIM_VOCABULARY)}


@dataclass(frozen=True)
class Step:
    """One transition: the observation before `action` is frame `frame` (relative to the trajectory)."""

    t: int
    action: str
    high_idx: int
    subtask_index: int
    frame: str | None = None
    feature_row: int | None = None
    sparse_reward: float = 0.0
    done: bool = False
    valid: bool = True  # False: the action failed and changed nothing (simulator data)
    progress: bool | None = None  # ground truth from the simulator: the step moved the task forward
    state: str | None = None  # the simulator's symbolic state before the step, as JSON


@dataclass(frozen=True)
class Subtask:
    """One skill with its instruction, covering steps first_step..last_step (inclusive)."""

    index: int
    kind: str
    instruction: str
    first_step: int  # -1 when the trajectory never reached this subtask
    last_step: int
    high_idxs: tuple[int, ...] = ()
    completed: bool = True


@dataclass(frozen=True)
class Trajectory:
    """What the agent did, shared by every annotation of it.

    `task_only` trajectories (ALFRED test splits) carry a task but no plan, steps or subtasks.
    `features_layout` names which feat_conv.pt layout was found ("low_actions", "low_actions+1",
    "images+10"); `Step.feature_row` indexes that tensor.
    """

    id: str
    dataset: str
    split: str
    task_type: str | None
    task_id: str
    scene: str | None
    source_dir: str
    steps: tuple[Step, ...] = ()
    subtask_spans: tuple[tuple[str, int, int, tuple[int, ...]], ...] = ()
    has_frames: bool = False
    features_path: str | None = None
    features_layout: str | None = None
    task_only: bool = False
    completed_subtasks: int | None = None  # how many subtasks the trajectory completed, when known
    behaviour: str | None = None  # simulator data: expert, suboptimal or failed
    condition: str | None = None  # simulator data: default or randomized initial state
    final_state: str | None = None  # simulator data: the state after the last step, as JSON


@dataclass(frozen=True)
class Episode:
    """One annotated telling of a trajectory: a goal and one instruction per subtask."""

    id: str
    trajectory: Trajectory
    repeat_idx: int
    goal: str
    subtasks: tuple[Subtask, ...]
    instructions: tuple[str, ...] = ()

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.trajectory.steps

    @property
    def n_subtasks(self) -> int | None:
        return None if self.trajectory.task_only else len(self.subtasks)
