"""Part (a) of the reward sanity check: does a reward pay the data's detours more than its expert's path?

From `rl.dataset.reward_rows` (every step's reward computed by the code training uses), each completed
subtask segment (an episode's steps serving one subtask, up to the step that completes it) gets its
discounted return (`labeling.rewards.discounted_return`). Expert trajectories are compared with the
others (suboptimal, failed) over the subtask kinds both groups completed, so a reward is not judged
on kinds only one group holds. A reward that keeps the task's optimum pays the expert's short path
at least as much as a detour to the same completion; one that pays every step pays the detour more.

No torch, no streamlit: the dashboard's Audit page calls this.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rgvlm_core.labeling.rewards import discounted_return

if TYPE_CHECKING:  # pandas is imported where it is used: the CLI imports this module at start-up
    import pandas as pd

EXPERT = "expert"  # the behaviour of the simulator's planner in the trajectories table
SEGMENT = ["episode_id", "subtask_idx"]


@dataclass(frozen=True)
class Offender:
    """The non-expert segment that beats its kind's mean expert return by the most."""

    episode_id: str
    subtask_idx: int
    kind: str
    behaviour: str
    first_step: int  # the segment's first step in its episode (where to open the Episodes page)
    steps: int
    segment_return: float
    expert_mean: float  # the mean expert return of its kind

    def to_json(self) -> dict[str, Any]:
        return {
            "episode_id": self.episode_id,
            "subtask": self.subtask_idx,
            "kind": self.kind,
            "behaviour": self.behaviour,
            "step": self.first_step,
            "steps": self.steps,
            "return": self.segment_return,
            "expert_mean_of_kind": self.expert_mean,
        }


@dataclass(frozen=True)
class BehaviourReturns:
    """Mean discounted returns of completed segments, expert against the others, over shared kinds."""

    expert_return: float
    other_return: float
    expert_segments: int
    other_segments: int
    beats_expert_share: float  # of the other segments, those above their kind's mean expert return
    by_kind: tuple[dict[str, Any], ...]  # kind, expert_return, expert_segments, other_return, other_segments
    left_out_kinds: tuple[str, ...]  # kinds only one group completed
    worst: Offender | None  # None when no other segment beats its kind's expert mean
    missing_steps: int  # steps of these segments without a VLM reward (they got the sparse reward only)

    @property
    def pays_detours(self) -> bool:
        return self.other_return > self.expert_return

    def to_json(self) -> dict[str, Any]:
        return {
            "expert_return": self.expert_return,
            "other_return": self.other_return,
            "expert_segments": self.expert_segments,
            "other_segments": self.other_segments,
            "beats_expert_share": self.beats_expert_share,
            "by_kind": list(self.by_kind),
            "left_out_kinds": list(self.left_out_kinds),
            "worst_offender": None if self.worst is None else self.worst.to_json(),
            "missing_steps": self.missing_steps,
        }


class NoComparison(Exception):
    """The data cannot compare expert and other segments; the message says why."""


def segment_returns(steps: pd.DataFrame, gamma: float) -> pd.DataFrame:
    """One row per completed segment: episode_id, subtask_idx, kind, behaviour, first_step, steps,
    missing, return. `steps` are reward_rows (ordered by episode and step); a segment's steps after its
    completing step, if any, are not part of it."""
    import pandas as pd

    if steps.empty:
        return pd.DataFrame(
            columns=[*SEGMENT, "kind", "behaviour", "first_step", "steps", "missing", "return"]
        )
    groups = steps.groupby(SEGMENT, sort=False)
    done = steps["done"].astype(int)
    before = groups["done"].cumsum().astype(int) - done  # completions strictly before each step
    completed = groups["done"].transform("any").astype(bool)
    kept = steps[(before == 0) & completed]
    rows = kept.groupby(SEGMENT, sort=False).agg(
        kind=("kind", "first"),
        behaviour=("behaviour", "first"),
        first_step=("t", "min"),
        steps=("t", "size"),
        missing=("missing", "sum"),
    )
    rows["return"] = kept.groupby(SEGMENT, sort=False)["reward"].agg(
        lambda r: discounted_return(r.to_numpy(), gamma)
    )
    return rows.reset_index()


def behaviour_returns(steps: pd.DataFrame, gamma: float) -> BehaviourReturns:
    """Expert against other completed segments over the kinds both completed; NoComparison if none."""
    segments = segment_returns(steps, gamma)
    if segments.empty:
        raise NoComparison("no subtask segment of the simulator episodes completed")
    expert = segments["behaviour"] == EXPERT
    shared = sorted(set(segments.loc[expert, "kind"]) & set(segments.loc[~expert, "kind"]))
    if not shared:
        raise NoComparison(
            "no subtask kind was completed by both expert and non-expert trajectories; generate a mix "
            "(`rgvlm sim generate` writes expert, suboptimal and failed behaviour)"
        )
    left_out = tuple(sorted(set(segments["kind"]) - set(shared)))
    segments = segments[segments["kind"].isin(shared)]
    expert = segments["behaviour"] == EXPERT
    kind_mean = segments[expert].groupby("kind")["return"].mean()
    others = segments[~expert].assign(expert_mean=lambda f: f["kind"].map(kind_mean))
    excess = others["return"] - others["expert_mean"]
    return BehaviourReturns(
        expert_return=float(segments.loc[expert, "return"].mean()),
        other_return=float(others["return"].mean()),
        expert_segments=int(expert.sum()),
        other_segments=len(others),
        beats_expert_share=float((excess > 0).mean()),
        by_kind=_by_kind(segments, expert),
        left_out_kinds=left_out,
        worst=_worst(others, excess),
        missing_steps=int(segments["missing"].sum()),
    )


def _by_kind(segments: pd.DataFrame, expert: pd.Series) -> tuple[dict[str, Any], ...]:
    out = []
    for kind in sorted(segments["kind"].unique()):
        mine = segments["kind"] == kind
        ours, theirs = segments.loc[mine & expert, "return"], segments.loc[mine & ~expert, "return"]
        out.append(
            {
                "kind": kind,
                "expert_return": float(ours.mean()),
                "expert_segments": len(ours),
                "other_return": float(theirs.mean()),
                "other_segments": len(theirs),
            }
        )
    return tuple(out)


def _worst(others: pd.DataFrame, excess: pd.Series) -> Offender | None:
    if others.empty or not bool((excess > 0).any()):
        return None
    row = others.loc[excess.idxmax()]
    return Offender(
        episode_id=str(row["episode_id"]),
        subtask_idx=int(row["subtask_idx"]),
        kind=str(row["kind"]),
        behaviour=str(row["behaviour"]),
        first_step=int(row["first_step"]),
        steps=int(row["steps"]),
        segment_return=float(row["return"]),
        expert_mean=float(row["expert_mean"]),
    )
