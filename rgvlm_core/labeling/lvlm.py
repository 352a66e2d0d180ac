"""The RG-VLM labeller: two queries per segment through an LVLM backend.

Stage one sends the frames (tagged with step and action), the goal, the instruction and the numbered
actions, and gets a free-text analysis. Stage two sends that analysis with the actions, text only,
and asks for one integer score 0..10 per step as JSON. An unusable answer gets one repair retry
with the error stated; after that the segment is marked failed with its reason. A failure is never
turned into a score.

With the progress question (PromptVersion.ask_progress), an answer whose scores are usable but whose
progress answers are not gets the same repair retry; if progress is still unusable after it, the
segment keeps the last usable scores, its progress stays missing, and its error says why
("progress: ..."). Progress is never guessed.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from typing import Any

from rgvlm_core.labeling.backends.base import Backend, BackendConfig, BackendError, ChatResult, cost
from rgvlm_core.labeling.messages import (
    QueryConfig,
    choose_frames,
    encode_choice,
    repair_request,
    stage1_request,
    stage2_request,
)
from rgvlm_core.labeling.parse import ProgressError, ScoreError, parse_scores
from rgvlm_core.labeling.prompts import PromptVersion
from rgvlm_core.labeling.types import PROGRESS_ERROR, Segment, SegmentLabel, StepScore


@dataclass
class _Tally:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    calls: int = 0
    cost: float | None = None

    def add(self, result: ChatResult, config: BackendConfig) -> None:
        self.prompt_tokens += result.prompt_tokens or 0
        self.completion_tokens += result.completion_tokens or 0
        self.latency_s += result.latency_s
        self.calls += 1
        c = cost(config, result.prompt_tokens, result.completion_tokens)
        if c is not None:
            self.cost = (self.cost or 0.0) + c

    def fields(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
            "calls": self.calls,
            "cost": self.cost,
        }


@dataclass(frozen=True)
class _Kept:
    """Usable scores from an answer whose progress answers were not, with why."""

    scores: tuple[StepScore, ...]
    raw: str
    error: str

    def label(self, why: str, analysis: str, tally: _Tally) -> SegmentLabel:
        """An ok segment with these scores, no progress, and the reason recorded."""
        return SegmentLabel(
            "ok", self.scores, error=PROGRESS_ERROR + why, analysis=analysis, raw=self.raw, **tally.fields()
        )


class LvlmLabeller:
    """Two-stage RG-VLM labelling through any Backend."""

    name = "lvlm"
    cacheable = True
    renders_frames = True  # an episode without frame files but with replayed states is shown rendered ones

    def __init__(
        self,
        backend: Backend,
        prompt: PromptVersion,
        query: QueryConfig = QueryConfig(),
        backend_config: BackendConfig = BackendConfig(),
        repair_retries: int = 1,
    ) -> None:
        self.backend = backend
        self.prompt = prompt
        self.query = query
        self.backend_config = backend_config
        self.repair_retries = repair_retries

    def describe(self) -> dict[str, Any]:
        return {
            "labeller": self.name,
            **self.backend.describe(),
            "prompt": self.prompt.prompt_id,
            "query": asdict(self.query),
            "repair_retries": self.repair_retries,
        }

    async def label(self, segment: Segment) -> SegmentLabel:
        choices = choose_frames(segment, self.query.max_frames)
        if not choices:
            return SegmentLabel.failed(
                "no frames: this dataset has no raw_images, which stage one needs, and no replayed states "
                "to render frames from (rgvlm import --replay)"
            )
        try:
            images = await asyncio.to_thread(
                lambda: [encode_choice(c, self.query.max_side, self.query.jpeg_quality) for c in choices]
            )
        except OSError as exc:
            return SegmentLabel.failed(f"cannot read a frame: {exc}")
        tally = _Tally()
        first = stage1_request(self.prompt, segment, list(zip(choices, images, strict=True)), self.query)
        try:
            answer = await self.backend.chat(first)
        except BackendError as exc:
            return SegmentLabel.failed(f"stage one: {exc.reason}", **tally.fields())
        tally.add(answer, self.backend_config)
        analysis = answer.text.strip()
        if not analysis:
            return SegmentLabel.failed("stage one: the model returned no analysis", **tally.fields())
        return await self._score(segment, analysis, len(choices), tally)

    async def _score(self, segment: Segment, analysis: str, n_frames: int, tally: _Tally) -> SegmentLabel:
        steps = [s.t for s in segment.steps]
        request = stage2_request(self.prompt, segment, analysis, n_frames, self.query)
        first = request
        raw = ""
        kept: _Kept | None = None  # the last answer whose scores were usable but progress was not
        for attempt in range(1 + self.repair_retries):
            retries = f"after {attempt} repair {'retry' if attempt == 1 else 'retries'}"
            try:
                answer = await self.backend.chat(request)
            except BackendError as exc:
                if kept is not None:
                    return kept.label(f"{kept.error}; the repair query failed: {exc.reason}", analysis, tally)
                return SegmentLabel.failed(
                    f"stage two: {exc.reason}", analysis=analysis, raw=raw or None, **tally.fields()
                )
            tally.add(answer, self.backend_config)
            raw = answer.text
            try:
                scores = parse_scores(raw, steps, progress=self.prompt.ask_progress)
            except ProgressError as exc:
                kept = _Kept(exc.scores, raw, str(exc))
                if attempt == self.repair_retries:
                    return kept.label(f"{kept.error} ({retries})", analysis, tally)
                request = repair_request(self.prompt, segment, first, raw, str(exc), n_frames)
                continue
            except ScoreError as exc:
                if attempt == self.repair_retries:
                    if kept is not None:  # an earlier answer's scores were usable: keep them
                        why = f"{kept.error}; the repair answer was unusable: {exc}"
                        return kept.label(why, analysis, tally)
                    return SegmentLabel.failed(
                        f"stage two: {exc} ({retries})", analysis=analysis, raw=raw, **tally.fields()
                    )
                request = repair_request(self.prompt, segment, first, raw, str(exc), n_frames)
                continue
            return SegmentLabel("ok", scores, analysis=analysis, raw=raw, **tally.fields())
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        await self.backend.aclose()
