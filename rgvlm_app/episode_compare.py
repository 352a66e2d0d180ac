"""Label runs side by side on the Episodes page: ONE table of both runs' scores, difference and
reasons per step, and each run's stage-one analysis of the current segment.

Rows are steps, so the runs line up by step whatever their segments. Reasons are model text: the
table renders Markdown, so every text cell is escaped and shows literally, in full, wrapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from rgvlm_app.episode_data import EpisodeView, segment_analysis
from rgvlm_app.episode_state import K
from rgvlm_app.text import md_escape
from rgvlm_app.timeline import run_label
from rgvlm_core.workspace import StoreReader

LETTERS = ("A", "B")
CURRENT = "▶"
DIFF = "B − A"
NOT_LABELLED = "(not labelled)"
HIGHLIGHT = ":orange-background"  # Streamlit Markdown: text on an orange background


def reason_text(label: dict[str, Any] | None) -> str:
    """What a run says about a step: its reason, a person's override, or why it failed."""
    if label is None:
        return NOT_LABELLED
    reason = label.get("reason") or ""
    if label["status"] == "overridden":
        own = f" (the run said {label.get('run_score')}: {reason})" if reason else ""
        return f"override: {label.get('override_reason') or ''}{own}"
    if label["status"] == "failed":
        return "failed" + (f": {reason}" if reason else ": no score")
    return reason


def compare_rows(
    ep: EpisodeView,
    labels: Sequence[Sequence[dict[str, Any]] | None],
    first: int,
    last: int,
    current: int | None = None,
) -> list[dict[str, Any]]:
    """One row per step from `first` to `last`: each run's score and own score, its progress answer (when
    the run asked the progress question), B − A, each reason.

    labels: per chosen run (A, then B), its effective labels of this episode.
    """
    by_step = [{r["t"]: r for r in (run or [])} for run in labels]
    # a run asked the progress question shows its answers (how far the subtask is done after the step)
    asked = [any(r.get("progress") is not None for r in steps.values()) for steps in by_step]
    rows = []
    for t in range(max(first, 0), min(last, ep.n_steps - 1) + 1):
        marker = CURRENT if t == current else ""
        row: dict[str, Any] = {" ": marker, "step": t, "action": ep.steps[t]["action"]}
        found = [steps.get(t) for steps in by_step]
        for letter, label in zip(LETTERS, found, strict=False):
            row[f"{letter} score"] = label["score"] if label else None
            row[f"{letter} run score"] = label["run_score"] if label else None
        for letter, label, shown in zip(LETTERS, found, asked, strict=False):
            if shown:
                row[f"{letter} progress"] = label.get("progress") if label else None
        if len(found) == 2:
            a, b = row["A score"], row["B score"]
            row[DIFF] = b - a if a is not None and b is not None else None
        for letter, label in zip(LETTERS, found, strict=False):
            row[f"{letter} reason"] = reason_text(label)
        rows.append(row)
    return rows


def _cell(column: str, value: Any) -> str:
    """A cell as st.table shows it: Markdown-escaped text, signed differences, blanks for None."""
    if value is None:
        return ""
    if column == DIFF:
        return f"{value:+d}" if value else "0"
    return md_escape(str(value)) if isinstance(value, str) else str(value)


def display_rows(rows: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The rows as st.table cells: every value plain text; the current step's cells highlighted.

    st.table renders Markdown, so text is escaped (model reasons show literally) and the current
    row is marked with Streamlit's background directive around the escaped text.
    """
    out = []
    for row in rows:
        cells = {column: _cell(column, value) for column, value in row.items()}
        if row[" "] == CURRENT:
            cells = {c: f"{HIGHLIGHT}[{v}]" if v else v for c, v in cells.items()}
        out.append(cells)
    return out


def span_of(ep: EpisodeView, step: int, whole: bool) -> tuple[int, int]:
    """The steps the table shows: the current subtask's (or all of them)."""
    sub = None if whole else ep.subtask_of(step)
    if sub is None:
        return 0, ep.n_steps - 1
    return int(sub["first_step"]), int(sub["last_step"])


def side_by_side(
    reader: StoreReader,
    ep: EpisodeView,
    step: int,
    runs: Sequence[dict[str, Any]],
    labels: Sequence[Sequence[dict[str, Any]] | None],
) -> None:
    """Each run's stage-one analysis of the current segment, then the one table of both runs."""
    if not runs:
        return
    cols = st.columns(len(runs))
    for col, letter, run, run_labels in zip(cols, LETTERS, runs, labels, strict=False):
        with col:
            _analysis(reader, ep, step, letter, run, run_labels)
    whole = st.toggle("All steps of the episode", key=K.WHOLE_EPISODE, help="Else the current subtask's.")
    first, last = span_of(ep, step, whole)
    named = zip(LETTERS, runs, strict=False)
    legend = " · ".join(f"{letter} = {md_escape(run_label(run))}" for letter, run in named)
    st.caption(f"Stage two, steps {first}–{last} · {legend} · run score = the run's own, before any override")
    st.table(display_rows(compare_rows(ep, labels, first, last, step)), hide_index=True)


def _analysis(
    reader: StoreReader,
    ep: EpisodeView,
    step: int,
    letter: str,
    run: dict[str, Any],
    labels: Sequence[dict[str, Any]] | None,
) -> None:
    """One run's stage-one analysis of the segment holding `step` (plain text)."""
    st.markdown(f"**{letter} · {md_escape(run['run_id'])}** · {md_escape(run['labeller'])}")
    if run["labeller"] == "reference":
        st.caption("Reference labeller: scores come from ground truth, not from a vision-language model.")
    seg = segment_analysis(reader, run["run_id"], ep.episode_id, step)
    if seg is None:
        what = "this episode" if not labels else "this step"
        st.caption(f"This run did not label {what}.")
        return
    st.caption(
        f"Stage one, {md_escape(seg['segment_id'])} (steps {seg['first_step']}–{seg['last_step']}), "
        f"{seg['status']}"
    )
    st.code(seg["analysis"] or "(no analysis text)", language="text", wrap_lines=True)
    if seg["status"] == "failed":
        st.caption("Why the segment failed")
        st.code(seg["error"] or "(no error recorded)", language="text", wrap_lines=True)
    elif (seg["error"] or "").startswith("progress:"):
        st.caption("Scores kept; the progress answer was unusable, so it is stored as missing")
        st.code(seg["error"], language="text", wrap_lines=True)
    if seg["raw"]:
        with st.expander("Stage-two answer as received"):
            st.code(seg["raw"], language="text", wrap_lines=True)
