"""Labelling data in the workspace: segments to label, prompt versions, runs, labels and overrides.

Overrides by a person are stored apart from the run's labels and win when a score or reward is
read (`effective_labels`); the run's own label is never changed. An override changes a score only:
a step's progress answer is always the run's own.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import pyarrow as pa

from rgvlm_core.catalog import EpisodeFilter, episode_where
from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT, PromptVersion
from rgvlm_core.labeling.types import SCORE_MAX, SCORE_MIN, Segment, SegmentStep
from rgvlm_core.workspace import StoreReader, Workspace
from rgvlm_core.workspace.schema import OVERRIDES, PROMPTS

UNITS = ("subtask", "episode")
log = logging.getLogger(__name__)


def load_segments(
    reader: StoreReader, flt: EpisodeFilter = EpisodeFilter(), unit: str = "subtask", *, truth: bool = True
) -> list[Segment]:
    """The query units of the chosen episodes (task-only episodes and unreached subtasks have none).

    `truth`: fill each step's `plan_progress` (see `plan_progress`); about 2 ms per simulator
    trajectory, so label runs ask for it only for a labeller that reads it (the reference labeller)."""
    if unit not in UNITS:
        raise RGVLMError(f"unknown query unit {unit!r}; choose {' or '.join(UNITS)}")
    where, params = episode_where(replace(flt, include_task_only=False, limit=None))
    limit = f"LIMIT {int(flt.limit)}" if flt.limit else ""
    episodes = reader.rows(
        f"SELECT e.episode_id, e.trajectory_id, e.dataset, e.goal, t.source_dir, t.final_state "
        f"FROM (SELECT * FROM episodes {where}) e JOIN trajectories t USING (trajectory_id) "
        f"ORDER BY e.episode_id {limit}",
        params,
    )
    if not episodes:
        return []
    ids = [e["episode_id"] for e in episodes]
    trajectories = sorted({e["trajectory_id"] for e in episodes})
    steps_by_traj: dict[str, list[dict[str, Any]]] = {}
    for row in reader.query(
        "SELECT trajectory_id, t, action, frame, sparse_reward, valid, progress, "
        "CASE WHEN frame IS NULL THEN state END AS state FROM steps "  # a state stands in for no frame
        "WHERE trajectory_id IN (SELECT unnest(?)) ORDER BY trajectory_id, t",
        [trajectories],
    ).to_pylist():
        steps_by_traj.setdefault(row["trajectory_id"], []).append(row)
    subtasks: dict[str, list[dict[str, Any]]] = {}
    for row in reader.query(
        "SELECT episode_id, idx, kind, instruction, first_step, last_step FROM subtasks "
        "WHERE episode_id IN (SELECT unnest(?)) AND first_step >= 0 ORDER BY episode_id, idx",
        [ids],
    ).to_pylist():
        subtasks.setdefault(row["episode_id"], []).append(row)
    out: list[Segment] = []
    fractions: dict[str, dict[int, float]] = {}  # per trajectory: read and planned once
    for ep in episodes:
        rows = steps_by_traj.get(ep["trajectory_id"], [])
        if not rows:
            continue
        subs = subtasks.get(ep["episode_id"], [])
        if ep["trajectory_id"] not in fractions:
            known = plan_progress(ep["dataset"], ep["source_dir"], subs) if truth else {}
            fractions[ep["trajectory_id"]] = known
        done = fractions[ep["trajectory_id"]]
        steps = [_step(r, ep["source_dir"], done.get(r["t"])) for r in rows]
        end_frame = _final_frame(ep["source_dir"], len(steps))
        end_state = _rendered(ep["final_state"]) if end_frame is None else None
        if unit == "episode":
            out.append(
                Segment(
                    ep["episode_id"],
                    ep["dataset"],
                    unit,
                    0,
                    ep["goal"],
                    ep["goal"],
                    None,
                    tuple(steps),
                    end_frame,
                    end_state,
                )
            )
            continue
        for sub in subs:
            first, last = sub["first_step"], sub["last_step"]
            after = steps[last + 1].frame if last + 1 < len(steps) else end_frame
            after_state = steps[last + 1].state if last + 1 < len(steps) else end_state
            out.append(
                Segment(
                    ep["episode_id"],
                    ep["dataset"],
                    unit,
                    sub["idx"],
                    ep["goal"],
                    sub["instruction"],
                    sub["kind"],
                    tuple(steps[first : last + 1]),
                    after,
                    after_state,
                )
            )
    return out


def _step(row: dict[str, Any], source_dir: str, plan_progress: float | None) -> SegmentStep:
    frame = os.path.join(source_dir, row["frame"]) if row["frame"] else None
    return SegmentStep(
        row["t"],
        row["action"],
        frame,
        row["sparse_reward"],
        row["valid"],
        row["progress"],
        plan_progress,
        _rendered(row["state"]) if frame is None else None,
    )


def _rendered(state: str | None) -> str | None:
    """`state` when it is a replayed ALFRED state, from which a frame can be rendered; else None."""
    from rgvlm_core.alfred.render import is_rendered_state

    return state if is_rendered_state(state) else None


def plan_progress(dataset: str, source_dir: str, subtasks: list[dict[str, Any]]) -> dict[int, float]:
    """Step t -> the fraction of its subtask done after it: the ground truth of the progress question.

    ALFRED (expert demonstrations): step i (0-based) of a subtask of n steps has done (i + 1) / n.
    Simulator: the expert's plan for the subtask, from the recorded states (traj_data.json's
    `rgvlm_sim`): 1 - remaining after the step / remaining before the subtask's first step, clipped
    (sim.expert.plan_fraction), so a detour or undone work shows as lost progress. Steps whose truth
    cannot be read are left out (the reference labeller then records why, never guesses).
    """
    if dataset != "sim":
        return {
            t: (t - sub["first_step"] + 1) / (sub["last_step"] - sub["first_step"] + 1)
            for sub in subtasks
            for t in range(sub["first_step"], sub["last_step"] + 1)
        }
    from rgvlm_core.sim.expert import PlanningError

    try:
        return _sim_plan_progress(source_dir, subtasks)
    except (OSError, ValueError, KeyError, TypeError, IndexError, PlanningError) as exc:
        log.warning("no plan progress for %s: %s: %s", source_dir, type(exc).__name__, exc)
        return {}


def _sim_plan_progress(source_dir: str, subtasks: list[dict[str, Any]]) -> dict[int, float]:
    import orjson

    from rgvlm_core.sim.expert import plan_fraction
    from rgvlm_core.sim.tasks import SubtaskSpec

    with open(os.path.join(source_dir, "traj_data.json"), "rb") as f:
        sim = orjson.loads(f.read())["rgvlm_sim"]
    specs = [SubtaskSpec(**{**d, "flags": tuple(d.get("flags", ()))}) for d in sim["subtasks"]]
    states = sim["states"]  # before each step, then after the last
    remaining_of = _remaining_at_level(sim)
    out: dict[int, float] = {}
    for sub in subtasks:
        spec, first = specs[sub["idx"]], sub["first_step"]
        at_start = remaining_of(states[first], spec)
        for t in range(first, sub["last_step"] + 1):
            out[t] = plan_fraction(remaining_of(states[t + 1], spec), at_start)
    return out


def _remaining_at_level(sim: dict[str, Any]) -> Callable[[dict[str, Any], Any], int]:
    """(stored state dict, subtask) -> the expert's remaining plan length at the file's level.

    A low-level file (rgvlm_sim version 2, level "low") stores its floor plan once, as "plan", and its
    states without it; its remaining plan is the low-level expert's (navigation steps count), which
    the subgoal-level expert would read as no progress until the agent stands at the receptacle.
    """
    if sim.get("level") == "low":
        from rgvlm_core.sim.low.expert import subtask_remaining as low_remaining
        from rgvlm_core.sim.low.serialize import low_state_from_dict

        plan = str(sim["plan"])
        return lambda doc, spec: low_remaining(low_state_from_dict({**doc, "plan": plan}), spec)
    from rgvlm_core.sim.expert import subtask_remaining
    from rgvlm_core.sim.serialize import state_from_dict

    return lambda doc, spec: subtask_remaining(state_from_dict(doc), spec)


def _final_frame(source_dir: str, n_steps: int) -> str | None:
    """The frame after the last action, where the dataset has one (the simulator writes it)."""
    path = os.path.join(source_dir, "raw_images", f"{n_steps:09d}.jpg")
    return path if os.path.exists(path) else None


# -- prompts --------------------------------------------------------------------------------------
def list_prompts(reader: StoreReader) -> list[PromptVersion]:
    """The built-in default first, then the workspace's versions, oldest first."""
    stored = [PromptVersion.from_row(r) for r in reader.rows("SELECT * FROM prompts ORDER BY created_at")]
    return [DEFAULT_PROMPT, *(p for p in stored if p.prompt_id != DEFAULT_PROMPT.prompt_id)]


def get_prompt(reader: StoreReader, prompt_id: str | None) -> PromptVersion:
    """A version by id (or unique id prefix); None or "default" is the built-in default."""
    if prompt_id in (None, "default", DEFAULT_PROMPT.prompt_id):
        return DEFAULT_PROMPT
    assert prompt_id is not None
    matches = [p for p in list_prompts(reader) if p.prompt_id.startswith(prompt_id)]
    if len(matches) != 1:
        known = ", ".join(p.prompt_id for p in list_prompts(reader))
        what = "no" if not matches else "more than one"
        raise RGVLMError(f"{what} prompt version matches {prompt_id!r}; known: {known}")
    return matches[0]


def save_prompt(workspace: Workspace, version: PromptVersion) -> PromptVersion:
    """Store a version once (its id is its content); returns it."""
    with workspace.lock("prompts"):
        reader = workspace.reader()
        try:
            exists = reader.scalar("SELECT count(*) FROM prompts WHERE prompt_id = ?", [version.prompt_id])
        finally:
            reader.close()
        if not exists:
            workspace.commit({PROMPTS.name: pa.Table.from_pylist([version.to_row()], schema=PROMPTS.schema)})
    return version


# -- runs, labels, overrides ----------------------------------------------------------------------
def label_runs(reader: StoreReader) -> list[dict[str, Any]]:
    """Every run with its counts of ok and failed steps and segments, tokens, latency and cost."""
    return reader.rows(
        """
        WITH l AS (SELECT run_id, count(*) FILTER (WHERE status = 'ok') AS ok_steps,
                          count(*) FILTER (WHERE status = 'failed') AS failed_steps,
                          avg(score) FILTER (WHERE status = 'ok') AS mean_score
                   FROM labels GROUP BY run_id),
             a AS (SELECT run_id, count(*) AS segments,
                          count(*) FILTER (WHERE status = 'failed') AS failed_segments,
                          sum(prompt_tokens)::BIGINT AS prompt_tokens,
                          sum(completion_tokens)::BIGINT AS completion_tokens,
                          sum(calls)::BIGINT AS calls, sum(cost) AS cost,
                          avg(latency_s) FILTER (WHERE calls > 0) AS latency_s,
                          count(*) FILTER (WHERE cached) AS cached_segments
                   FROM analyses GROUP BY run_id)
        SELECT r.run_id, r.labeller, r.backend, r.model, r.prompt_id, r.unit, r.created_at,
               coalesce(l.ok_steps, 0) AS ok_steps, coalesce(l.failed_steps, 0) AS failed_steps, l.mean_score,
               coalesce(a.segments, 0) AS segments, coalesce(a.failed_segments, 0) AS failed_segments,
               coalesce(a.cached_segments, 0) AS cached_segments, coalesce(a.calls, 0) AS calls,
               a.prompt_tokens, a.completion_tokens, a.latency_s, a.cost
        FROM label_runs r LEFT JOIN l USING (run_id) LEFT JOIN a USING (run_id)
        ORDER BY r.created_at
        """
    )


def effective_labels_sql(by: str, *, source: str = "labels", extra: str = "") -> str:
    """The SQL of effective labels (a run's score, or the latest override of the step: it wins) for the
    label rows whose `by` (run_id or episode_id) equals a parameter given twice (for the overrides and
    for the labels); rows come keyed by the other of the two, then t. `source` is where label rows are
    read (the view, or a list of shards), `extra` more conditions on `l`. The one home of that rule:
    the dashboard's per-episode reads use it over the shards that can hold the episode."""
    if by not in ("run_id", "episode_id"):
        raise ValueError(f"effective labels by {by!r}: use run_id or episode_id")
    key = "episode_id" if by == "run_id" else "run_id"
    return f"""
        WITH o AS (SELECT {key}, t, arg_max(score, created_at) AS score,
                          arg_max(reason, created_at) AS reason
                   FROM overrides WHERE {by} = ? GROUP BY {key}, t)
        SELECT l.{key}, l.t, l.segment_id,
               coalesce(o.score, l.score)::TINYINT AS score, l.progress,
               (coalesce(o.score, l.score) / {SCORE_MAX})::FLOAT AS reward,
               CASE WHEN o.score IS NOT NULL THEN 'overridden' ELSE l.status END AS status,
               l.score AS run_score, l.reason, o.reason AS override_reason
        FROM {source} l LEFT JOIN o USING ({key}, t)
        WHERE l.{by} = ? {extra}
        ORDER BY l.{key}, l.t
        """


def effective_labels(reader: StoreReader, run_id: str, episode_ids: Sequence[str] | None = None) -> pa.Table:
    """A run's labels with people's overrides applied: the latest override of a step wins.

    Columns: episode_id, t, segment_id, score (effective), progress (the run's answer to the progress
    question, 0..10, null when not asked or not usable; overrides never change it), reward (score /
    10), status (ok | failed | overridden), run_score (the run's own), reason, override_reason.
    """
    episode_filter = "AND l.episode_id IN (SELECT unnest(?))" if episode_ids is not None else ""
    params: list[Any] = [run_id, run_id] + ([list(episode_ids)] if episode_ids is not None else [])
    return reader.query(effective_labels_sql("run_id", extra=episode_filter), params)


def add_override(
    workspace: Workspace, run_id: str, episode_id: str, t: int, score: int, reason: str, author: str = ""
) -> None:
    """Record a person's score for a step of a run; it wins over the run's score when rewards are read."""
    if not SCORE_MIN <= score <= SCORE_MAX:
        raise RGVLMError(f"an override score must be {SCORE_MIN}..{SCORE_MAX}, got {score}")
    if not reason.strip():
        raise RGVLMError("an override needs a reason")
    reader = workspace.reader()
    try:
        found = reader.scalar(
            "SELECT count(*) FROM labels WHERE run_id = ? AND episode_id = ? AND t = ?",
            [run_id, episode_id, t],
        )
    finally:
        reader.close()
    if not found:
        raise RGVLMError(f"run {run_id!r} has no label for step {t} of {episode_id!r}")
    row = {
        "run_id": run_id,
        "episode_id": episode_id,
        "t": t,
        "score": score,
        "reason": reason.strip(),
        "author": author or os.environ.get("USER", ""),
        "created_at": dt.datetime.now(dt.timezone.utc),
    }
    workspace.commit({OVERRIDES.name: pa.Table.from_pylist([row], schema=OVERRIDES.schema)})
