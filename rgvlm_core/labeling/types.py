"""What a labeller reads (a segment of an episode) and what it returns (a score per step, or a failure).

The query unit of RG-VLM is a segment: by default one subtask of one episode, with its steps, their
frames and actions, the goal and the subtask's instruction. A labeller returns one score 0..10 per
step of the segment with a reason, or a failure with its reason: never a made-up score.

When the progress question is asked (PromptVersion.ask_progress, or the reference labeller's
`progress`), each score also carries a progress answer 0..10: how far the current subtask is done
after the step, the potential of reward shaping (labeling/rewards.py). A progress answer that cannot
be used is left out (None) and the segment's `error` says why, prefixed "progress:"; the scores stay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

Status = Literal["ok", "failed"]
SCORE_MIN, SCORE_MAX = 0, 10
PROGRESS_ERROR = "progress: "  # how an ok segment's error says its progress answers are missing


@dataclass(frozen=True)
class SegmentStep:
    t: int  # the step's index in its episode
    action: str  # action token, e.g. PickupObject(Apple)
    frame: str | None  # absolute path of the observation before the action, if the dataset has frames
    sparse_reward: float = 0.0
    valid: bool = True
    progress: bool | None = None  # simulator ground truth (None for ALFRED)
    # ground truth of the progress question: the fraction of the expert's plan for the step's subtask
    # done after the step (simulator), or its position in the subtask (ALFRED); None when unknown
    plan_progress: float | None = None
    # the replayed ALFRED state before the action (alfred.level_state JSON), kept only where the step has
    # no frame: labellers that read frames are then shown one rendered from it (alfred.render)
    state: str | None = None


@dataclass(frozen=True)
class Segment:
    """The steps one query covers; `unit` is `subtask` (paper default) or `episode`."""

    episode_id: str
    dataset: str
    unit: str
    index: int  # subtask index (or 0 for a whole episode)
    goal: str
    instruction: str
    kind: str | None  # subtask kind (Pickup, Put, ...) when unit is subtask
    steps: tuple[SegmentStep, ...]
    final_frame: str | None = None  # the observation after the last step, when the dataset has it
    final_state: str | None = None  # the replayed state after the last step, where there is no final frame

    @property
    def segment_id(self) -> str:
        return f"{self.unit}{self.index}"

    @property
    def rendered_frames(self) -> bool:
        """Whether its frames are rendered from replayed states: no step has a frame file, some a state."""
        return not any(s.frame for s in self.steps) and any(s.state for s in self.steps)


@dataclass(frozen=True)
class StepScore:
    t: int
    score: int
    reason: str = ""
    progress: int | None = None  # 0..10 when the progress question was asked and answered usably


@dataclass(frozen=True)
class SegmentLabel:
    """A labeller's answer for one segment. `scores` is empty exactly when status is failed; `error`
    says why it failed, or, on an ok segment, why its progress answers are missing ("progress: ...")."""

    status: Status
    scores: tuple[StepScore, ...] = ()
    error: str | None = None
    analysis: str | None = None  # stage-one text (or the reference labeller's explanation)
    raw: str | None = None  # stage-two raw answer, as received
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_s: float = 0.0
    calls: int = 0  # model calls made (0 for a cache hit or a labeller without a model)
    cost: float | None = None

    @classmethod
    def failed(cls, error: str, **kw: Any) -> SegmentLabel:
        return cls(status="failed", error=error, **kw)


@runtime_checkable
class Labeller(Protocol):
    """Scores the steps of segments. `describe()` goes into the run's provenance and cache keys."""

    name: str

    def describe(self) -> dict[str, Any]: ...

    async def label(self, segment: Segment) -> SegmentLabel: ...

    async def aclose(self) -> None: ...
