"""The reference labeller: ground truth, not a vision-language model.

Scores come from what the data records: the simulator's per-step progress and completion, or, for
ALFRED, the plan (every step of an expert demonstration serves its subtask; the last step of each
subtask completes it). It is the upper bound a labeller can reach and the yardstick audits use. An
optional seeded noise model (flips and jitter) mimics an imperfect LVLM.

Scores: 10 for a step that completes a subtask; 7 for a step that makes progress (simulator) or
any other expert step (ALFRED); 2 for a valid step that makes none (detour, undone work);
0 for a failed action.

The progress question (on by default: shaping needs it and ground truth costs nothing) is answered
from the same ground truth: the fraction of the expert's plan for the step's subtask done after the
step (SegmentStep.plan_progress, from labeling/store.plan_progress), on the 0..10 scale. Progress
answers get no noise: the noise model mimics an imperfect score, and shaping experiments that want a
noisy potential can ask an LVLM; a step whose ground truth cannot be read gets no progress, and the
segment's error says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from rgvlm_core.labeling.types import (
    PROGRESS_ERROR,
    SCORE_MAX,
    SCORE_MIN,
    Segment,
    SegmentLabel,
    SegmentStep,
    StepScore,
)

# DEVIATION: the reference labeller is ours, not the paper's; its scale is in docs/deviations.md
COMPLETES, PROGRESS, NO_PROGRESS, FAILED = 10, 7, 2, 0
ANALYSIS = (
    "Reference labeller: these scores come from ground truth ({source}), not from a vision-language "
    "model. Completing a subtask scores {c}, progress {p}, a step without progress {n}, a failed action {f}."
)


@dataclass(frozen=True)
class NoiseConfig:
    """A seeded imperfection model: with probability `flip` a score is replaced by a uniformly random
    one; every score then gets Gaussian jitter of standard deviation `jitter`, rounded and clipped."""

    flip: float = 0.0
    jitter: float = 0.0
    seed: int = 0

    @classmethod
    def from_level(cls, level: float, seed: int = 0) -> NoiseConfig:
        """`--noise P`: flip with probability P and jitter with standard deviation 5 * P."""
        return cls(flip=level, jitter=5.0 * level, seed=seed)

    @property
    def active(self) -> bool:
        return self.flip > 0 or self.jitter > 0


def truth(step: SegmentStep) -> tuple[int, str]:
    """The ground-truth score of a step and why."""
    if not step.valid:
        return FAILED, "failed action: nothing changed"
    if step.sparse_reward > 0:
        return COMPLETES, "completes the subtask"
    if step.progress is None:
        return PROGRESS, "expert step toward the subtask (from the plan)"
    return (
        (PROGRESS, "makes progress") if step.progress else (NO_PROGRESS, "no progress: detour or undone work")
    )


def noisy(score: int, noise: NoiseConfig, episode_id: str, t: int) -> int:
    """The score after noise; reproducible for a (seed, episode, step), whatever the order of labelling."""
    digest = hashlib.blake2b(f"{noise.seed}|{episode_id}|{t}".encode(), digest_size=8).digest()
    rng = np.random.default_rng(int.from_bytes(digest, "little"))
    if rng.random() < noise.flip:
        score = int(rng.integers(SCORE_MIN, SCORE_MAX + 1))
    if noise.jitter > 0:
        score = round(score + rng.normal(0.0, noise.jitter))
    return int(min(SCORE_MAX, max(SCORE_MIN, score)))


class ReferenceLabeller:
    """Ground-truth scores (optionally noisy) and progress answers. Always says what it is."""

    name = "reference"
    cacheable = False

    def __init__(self, noise: NoiseConfig = NoiseConfig(), progress: bool = True) -> None:
        self.noise = noise
        self.progress = progress

    @property
    def reads_plan_progress(self) -> bool:
        """Whether its segments need SegmentStep.plan_progress (label runs load it only then)."""
        return self.progress

    def describe(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"labeller": self.name, "noise": asdict(self.noise), "ground_truth": True}
        if self.progress:  # only when on: runs made before the question existed resume with it off
            doc["progress"] = True
        return doc

    async def label(self, segment: Segment) -> SegmentLabel:
        return self.label_now(segment)

    def label_now(self, segment: Segment) -> SegmentLabel:
        if not segment.steps:
            return SegmentLabel.failed("the segment has no steps")
        scores = []
        for step in segment.steps:
            score, reason = truth(step)
            if self.noise.active:
                perturbed = noisy(score, self.noise, segment.episode_id, step.t)
                if perturbed != score:
                    reason = f"{reason}; noise moved {score} to {perturbed}"
                score = perturbed
            answer = _progress_answer(step) if self.progress else None
            scores.append(StepScore(step.t, score, reason, answer))
        source = "the simulator's progress record" if segment.dataset == "sim" else "the ALFRED plan"
        text = ANALYSIS.format(source=source, c=COMPLETES, p=PROGRESS, n=NO_PROGRESS, f=FAILED)
        if self.progress:
            text += PROGRESS_TEXT.format(
                source="the expert's plan from the simulator's states"
                if segment.dataset == "sim"
                else "the step's place in its subtask of the demonstration"
            )
        if self.noise.active:
            text += (
                f" Noise was added on purpose (flip {self.noise.flip:g}, jitter {self.noise.jitter:g}, "
                f"seed {self.noise.seed}) to the scores, not the progress, to mimic an imperfect model."
            )
        missing = [s.t for s in scores if self.progress and s.progress is None]
        error = PROGRESS_ERROR + _no_truth(missing) if missing else None
        return SegmentLabel("ok", tuple(scores), error=error, analysis=text)

    async def aclose(self) -> None:
        return None


PROGRESS_TEXT = " Progress is the fraction of the subtask done after each step, from {source}."


def _progress_answer(step: SegmentStep) -> int | None:
    return None if step.plan_progress is None else progress_score(step.plan_progress)


def _no_truth(steps: list[int]) -> str:
    shown = ", ".join(map(str, steps[:10])) + (", ..." if len(steps) > 10 else "")
    return (
        f"no ground truth for step {shown}: the simulator's states or subtasks of the trajectory "
        "could not be read (its traj_data.json); the scores are unaffected"
    )


def progress_score(fraction: float) -> int:
    """The reference labeller's progress answer: the fraction of the expert's plan for the subtask done
    after the step (sim.expert.plan_fraction), on the 0..10 scale of the progress question."""
    return round(SCORE_MAX * min(1.0, max(0.0, fraction)))
