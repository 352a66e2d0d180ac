"""Label runs: label every segment of the chosen episodes, store results as they arrive, resume, cache.

- Identity: a run has a name; rerunning the same command with the same name resumes it (segments
  already stored are skipped); the same name with other settings is refused.
- Safety: results are committed in batches (labels, analyses and cache entries of a segment in one
  atomic commit), so a run killed at any instant loses at most the batch in flight, and a rerun
  finishes it without duplicates. One process at a time holds a run (a lock dies with its process).
- Cache: keyed by the segment's content (goal, instruction, actions, and each frame's identity:
  path, size and modification time; for a frame rendered from a replayed ALFRED state, the renderer's
  name and the state's digest), the prompt version, and the labeller's settings (backend, model,
  parameters). A relabel that changes none of these makes no model call.
- Provenance: where a labeller that reads frames (the LVLM labeller) meets episodes without frame
  files whose steps carry replayed ALFRED states, it is shown frames rendered from those states; the
  run's settings then record it under "frames" (renderer and why), a key a rerun does not compare.
- Progress: `label_run` is a generator yielding after every segment, for a progress bar or a job.
- The progress question: each label row holds the step's progress answer (0..10) when the labeller
  asked and got a usable one, else NULL; an ok segment whose progress answers are missing says why
  in its analyses row's `error` ("progress: ...") and is not cached, so another run asks again.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.store import load_segments
from rgvlm_core.labeling.types import PROGRESS_ERROR, SCORE_MAX, Labeller, Segment, SegmentLabel, StepScore
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import ANALYSES, LABEL_CACHE, LABEL_RUNS, LABELS

CACHED_PROGRESS_EVERY = 256
FRAMES_KEY = "frames"  # the settings' record of frames rendered from replayed states (`frames_of`)


@dataclass(frozen=True)
class RunConfig:
    """What a label run covers and how it proceeds."""

    name: str
    unit: str = "subtask"  # query unit: one subtask of an episode (paper default) or a whole episode
    filters: EpisodeFilter = field(default_factory=EpisodeFilter)
    concurrency: int = 8  # segments labelled at once
    flush_every: int = 200  # segments per commit
    flush_s: float = 2.0  # or at least this often
    use_cache: bool = True
    command: str = ""


@dataclass(frozen=True)
class RunProgress:
    """After each segment: how far the run is, and its running totals."""

    run_id: str
    done: int
    total: int
    ok: int
    failed: int
    cached: int
    skipped: int  # already stored by an earlier, interrupted attempt
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost: float | None
    last_error: str | None = None
    no_progress: int = 0  # ok segments whose progress answers were asked for and are missing
    last_progress_error: str | None = None


def label_run(
    workspace: Workspace, labeller: Labeller, config: RunConfig, prompt_id: str | None = None
) -> Iterator[RunProgress]:
    """Run (or resume) a label run; yields progress after every segment."""
    loop = asyncio.new_event_loop()
    agen = _run(workspace, labeller, config, prompt_id)
    try:
        while True:
            try:
                yield loop.run_until_complete(agen.__anext__())
            except StopAsyncIteration:
                break
    finally:
        loop.run_until_complete(agen.aclose())
        loop.run_until_complete(labeller.aclose())
        loop.close()


def settings_of(
    labeller: Labeller, config: RunConfig, frames: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Everything that determines a run's labels (and nothing secret); `frames` (see `frames_of`)."""
    out: dict[str, Any] = {"labeller": labeller.describe(), "unit": config.unit}
    if frames:
        out[FRAMES_KEY] = frames
    return out


def frames_of(labeller: Labeller, segments: list[Segment]) -> dict[str, Any] | None:
    """How frames were made, where the labeller is shown frames rendered from replayed states (None where
    it is not: its frames are the dataset's files, or it reads none)."""
    if not getattr(labeller, "renders_frames", False):
        return None
    rendered = sum(s.rendered_frames for s in segments)
    if not rendered:
        return None
    from rgvlm_core.alfred.render import RENDERED_NOTE, RENDERER

    return {"rendered": True, "renderer": RENDERER, "why": RENDERED_NOTE, "segments_at_start": rendered}


def _comparable(settings: str) -> dict[str, Any]:
    """A run's settings without how its frames were made: that depends on the data a rerun finds."""
    doc = json.loads(settings)
    doc.pop(FRAMES_KEY, None)
    return doc


async def _run(
    workspace: Workspace, labeller: Labeller, config: RunConfig, prompt_id: str | None
) -> AsyncGenerator[RunProgress, None]:
    with workspace.lock(f"label-run-{_slug(config.name)}", timeout_s=0.5):
        reader = workspace.reader()
        try:
            truth = bool(getattr(labeller, "reads_plan_progress", False))
            segments = load_segments(reader, config.filters, config.unit, truth=truth)
            _register(workspace, reader, labeller, config, prompt_id, frames_of(labeller, segments))
            stored = {
                (r["episode_id"], r["segment_id"])
                for r in reader.rows(
                    "SELECT episode_id, segment_id FROM analyses WHERE run_id = ?", [config.name]
                )
            }
            todo = [s for s in segments if (s.episode_id, s.segment_id) not in stored]
            settings = json.dumps(labeller.describe(), sort_keys=True, default=str)
            keys = {id(s): cache_key(settings, s) for s in todo} if _cacheable(labeller, config) else {}
            hits = _cache_lookup(reader, list(keys.values())) if keys else {}
        finally:
            reader.close()
        writer = _Writer(workspace, config)
        progress = _Totals(total=len(segments), skipped=len(segments) - len(todo))
        progress.done = progress.skipped
        yield progress.snapshot(config.name)  # totals before any work (all may be done already)
        misses: list[Segment] = []
        for n, seg in enumerate(todo):
            hit = hits.get(keys.get(id(seg), ""))
            if hit is None:
                misses.append(seg)
                continue
            writer.add(seg, hit, keys[id(seg)], cached=True)
            progress.count(hit, cached=True)
            if n % CACHED_PROGRESS_EVERY == 0:  # cache hits are cheap: report them in strides
                yield progress.snapshot(config.name)
        if progress.cached:
            writer.flush()  # cache hits are committed together: a rerun would find them again anyway
            yield progress.snapshot(config.name)
        try:
            async with contextlib.aclosing(_label_all(labeller, misses, config.concurrency)) as results:
                async for seg, result in results:
                    writer.add(seg, result, keys.get(id(seg)), cached=False)
                    progress.count(result, cached=False)
                    yield progress.snapshot(config.name)
                    writer.maybe_flush()
        finally:  # also when stopped (cancelled job, Ctrl-C): keep what is finished; a rerun does the rest
            writer.flush()


async def _label_all(
    labeller: Labeller, segments: list[Segment], concurrency: int
) -> AsyncGenerator[tuple[Segment, SegmentLabel], None]:
    """Label segments with at most `concurrency` in flight, yielding each as it finishes."""
    queue: asyncio.Queue[tuple[Segment, SegmentLabel]] = asyncio.Queue()
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(seg: Segment) -> None:
        async with gate:
            try:
                result = await labeller.label(seg)
            except Exception as exc:  # a labeller bug must not lose the run: record it, keep its type
                result = SegmentLabel.failed(f"labeller error: {type(exc).__name__}: {exc}")
            await queue.put((seg, result))

    tasks = [asyncio.ensure_future(one(seg)) for seg in segments]
    try:
        for _ in range(len(tasks)):
            yield await queue.get()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def cache_key(settings: str, segment: Segment) -> str:
    """A digest of everything that determines a segment's label; `settings` is the labeller's, as JSON."""
    if segment.rendered_frames:  # a rendered frame is named by its picture's maker and its state
        states = [s.state for s in segment.steps] + [segment.final_state]
        frames: list[Any] = [_rendered_identity(x) for x in states]
    else:
        frames = [_frame_identity(f) for f in [s.frame for s in segment.steps] + [segment.final_frame]]
    doc = {
        "labeller": settings,
        "unit": segment.unit,
        "goal": segment.goal,
        "instruction": segment.instruction,
        "kind": segment.kind,
        "steps": [[s.t, s.action] for s in segment.steps],
        "frames": frames,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


# DEVIATION: frames are identified by path, size and mtime, not a content hash (docs/deviations.md)
def _frame_identity(path: str | None) -> list[Any] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, st.st_size, st.st_mtime_ns]


def _rendered_identity(state: str | None) -> list[Any] | None:
    if state is None:
        return None
    from rgvlm_core.alfred.render import RENDERER

    return ["rendered", RENDERER, hashlib.sha256(state.encode()).hexdigest()]


def _cacheable(labeller: Labeller, config: RunConfig) -> bool:
    return config.use_cache and bool(getattr(labeller, "cacheable", False))


def _cache_lookup(reader: Any, keys: list[str]) -> dict[str, SegmentLabel]:
    rows = reader.query(
        "SELECT cache_key, any_value(label) AS label FROM label_cache WHERE cache_key IN (SELECT unnest(?)) "
        "GROUP BY cache_key",
        [keys],
    ).to_pylist()
    return {r["cache_key"]: _label_from_json(r["label"]) for r in rows}


def _label_to_json(label: SegmentLabel) -> str:
    doc = asdict(label)
    doc["scores"] = [[s.t, s.score, s.reason, s.progress] for s in label.scores]
    return json.dumps(doc)


def _label_from_json(text: str) -> SegmentLabel:
    doc = json.loads(text)
    scores = tuple(StepScore(*entry) for entry in doc.pop("scores"))  # [t, score, reason(, progress)]
    return SegmentLabel(scores=scores, **{**doc, "calls": 0, "cost": None, "latency_s": 0.0})


def _register(
    workspace: Workspace,
    reader: Any,
    labeller: Labeller,
    config: RunConfig,
    prompt_id: str | None,
    frames: dict[str, Any] | None = None,
) -> None:
    """Record the run (first time) or check that a rerun uses the same settings."""
    settings = json.dumps(settings_of(labeller, config, frames), sort_keys=True, default=str)
    filters = json.dumps(asdict(config.filters), sort_keys=True, default=str)
    existing = reader.rows("SELECT settings, filters FROM label_runs WHERE run_id = ?", [config.name])
    if existing:
        same = _comparable(existing[0]["settings"]) == _comparable(settings)
        if not same or existing[0]["filters"] != filters:
            raise RGVLMError(
                f"run {config.name!r} exists with other settings or episode filters; rerun it unchanged to "
                "resume, or choose another --name"
            )
        return
    describe = labeller.describe()
    row = {
        "run_id": config.name,
        "labeller": describe.get("labeller", labeller.name),
        "backend": describe.get("backend"),
        "model": describe.get("model"),
        "prompt_id": prompt_id,
        "unit": config.unit,
        "settings": settings,
        "filters": filters,
        "command": config.command,
        "versions": json.dumps(_versions()),
        "created_at": dt.datetime.now(dt.timezone.utc),
    }
    workspace.commit({LABEL_RUNS.name: pa.Table.from_pylist([row], schema=LABEL_RUNS.schema)})


def _versions() -> dict[str, str]:
    import platform

    import rgvlm_core

    return {"rgvlm": rgvlm_core.__version__, "python": platform.python_version()}


def _slug(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:16]


@dataclass
class _Totals:
    total: int
    skipped: int
    done: int = 0
    ok: int = 0
    failed: int = 0
    cached: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    last_error: str | None = None
    no_progress: int = 0
    last_progress_error: str | None = None

    def count(self, label: SegmentLabel, *, cached: bool) -> None:
        self.done += 1
        self.cached += cached
        if label.status == "ok":
            self.ok += 1
            if label.error and label.error.startswith(PROGRESS_ERROR):
                self.no_progress += 1
                self.last_progress_error = label.error
        else:
            self.failed += 1
            self.last_error = label.error
        self.calls += label.calls
        self.prompt_tokens += label.prompt_tokens or 0
        self.completion_tokens += label.completion_tokens or 0
        if label.cost is not None:
            self.cost = (self.cost or 0.0) + label.cost

    def snapshot(self, run_id: str) -> RunProgress:
        return RunProgress(
            run_id,
            self.done,
            self.total,
            self.ok,
            self.failed,
            self.cached,
            self.skipped,
            self.calls,
            self.prompt_tokens,
            self.completion_tokens,
            self.cost,
            self.last_error,
            self.no_progress,
            self.last_progress_error,
        )


class _Writer:
    """Buffers segment results and commits labels, analyses and cache entries together."""

    def __init__(self, workspace: Workspace, config: RunConfig) -> None:
        self.workspace = workspace
        self.config = config
        self.labels: list[dict[str, Any]] = []
        self.analyses: list[dict[str, Any]] = []
        self.cache: list[dict[str, Any]] = []
        self.last_flush = time.monotonic()

    def add(self, seg: Segment, label: SegmentLabel, key: str | None, *, cached: bool) -> None:
        now = dt.datetime.now(dt.timezone.utc)
        scores = {s.t: s for s in label.scores}
        for step in seg.steps:
            s = scores.get(step.t)
            self.labels.append(
                {
                    "run_id": self.config.name,
                    "episode_id": seg.episode_id,
                    "t": step.t,
                    "segment_id": seg.segment_id,
                    "score": s.score if s else None,
                    "progress": s.progress if s else None,
                    "reward": s.score / SCORE_MAX if s else None,
                    "status": label.status,
                    "reason": s.reason if s else label.error,
                }
            )
        self.analyses.append(
            {
                "run_id": self.config.name,
                "episode_id": seg.episode_id,
                "segment_id": seg.segment_id,
                "first_step": seg.steps[0].t,
                "last_step": seg.steps[-1].t,
                "status": label.status,
                "error": label.error,
                "analysis": label.analysis,
                "raw": label.raw,
                "prompt_tokens": label.prompt_tokens,
                "completion_tokens": label.completion_tokens,
                "latency_s": label.latency_s,
                "calls": label.calls,
                "cost": label.cost,
                "cache_key": key,
                "cached": cached,
                "created_at": now,
            }
        )
        if key and not cached and label.status == "ok" and not label.error:  # progress missing: ask again
            self.cache.append({"cache_key": key, "label": _label_to_json(label), "created_at": now})

    def maybe_flush(self) -> None:
        if (
            len(self.analyses) >= self.config.flush_every
            or time.monotonic() - self.last_flush >= self.config.flush_s
        ):
            self.flush()

    def flush(self) -> None:
        if self.analyses:
            self.workspace.commit(
                {
                    LABELS.name: pa.Table.from_pylist(self.labels, schema=LABELS.schema),
                    ANALYSES.name: pa.Table.from_pylist(self.analyses, schema=ANALYSES.schema),
                    LABEL_CACHE.name: pa.Table.from_pylist(self.cache, schema=LABEL_CACHE.schema),
                },
                message=f"label run {self.config.name}",
            )
        self.labels, self.analyses, self.cache = [], [], []
        self.last_flush = time.monotonic()
