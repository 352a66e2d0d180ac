"""Label runs on the Episodes page: run pickers, reward timeline, stage-one analysis, stage-two scores,
override.

Model text (analyses, reasons) is untrusted: it is shown with st.code / st.dataframe, never as
Markdown or HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from rgvlm_app.player import (
    NO_RUN,
    URL_NO_RUN,
    EpisodeView,
    K,
    copy_widget,
    flash,
    seed_widget,
    set_step,
    stamp,
)
from rgvlm_app.text import md_escape
from rgvlm_core.charts_episode import clicked_step, reward_timeline
from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.store import add_override, effective_labels
from rgvlm_core.labeling.types import SCORE_MAX, SCORE_MIN
from rgvlm_core.workspace import StoreReader


# -- cached reads ----------------------------------------------------------------------------------
@st.cache_data(max_entries=16, show_spinner=False)
def _runs(_reader: StoreReader, key: Any) -> list[dict[str, Any]]:
    return _reader.rows("SELECT run_id, labeller, model, created_at FROM label_runs ORDER BY created_at")


def run_options(reader: StoreReader) -> list[dict[str, Any]]:
    """Label runs, oldest first: run_id, labeller, model."""
    return _runs(reader, stamp(reader, "label_runs"))


@st.cache_data(max_entries=128, show_spinner=False)
def _labels(_reader: StoreReader, key: Any, run_id: str, episode_id: str) -> list[dict[str, Any]]:
    return effective_labels(_reader, run_id, [episode_id]).to_pylist()


def run_labels(reader: StoreReader, run_id: str | None, episode_id: str) -> list[dict[str, Any]] | None:
    """A run's effective labels of one episode (overrides applied), or None without a run."""
    if run_id is None:
        return None
    return _labels(reader, stamp(reader, "labels", "overrides"), run_id, episode_id)


@st.cache_data(max_entries=128, show_spinner=False)
def _analyses(_reader: StoreReader, key: Any, run_id: str, episode_id: str) -> list[dict[str, Any]]:
    return _reader.rows(
        "SELECT segment_id, first_step, last_step, status, error, analysis, raw FROM analyses "
        "WHERE run_id = ? AND episode_id = ? ORDER BY first_step",
        [run_id, episode_id],
    )


def segment_analysis(reader: StoreReader, run_id: str, episode_id: str, step: int) -> dict[str, Any] | None:
    """The stage-one analysis of the run's segment that contains `step` (None when not labelled)."""
    rows = _analyses(reader, stamp(reader, "analyses"), run_id, episode_id)
    return next((r for r in rows if r["first_step"] <= step <= r["last_step"]), None)


# -- pure helpers ----------------------------------------------------------------------------------
def segment_rows(
    labels: Sequence[dict[str, Any]], ep: EpisodeView, first: int, last: int, current: int | None = None
) -> list[dict[str, Any]]:
    """The stage-two table of a segment: step, action, score, status, reason, the run's own score."""
    out = []
    for row in labels:
        t = row["t"]
        if first <= t <= last:
            overridden = row["status"] == "overridden"
            out.append(
                {
                    " ": "▶" if t == current else "",
                    "step": t,
                    "action": ep.steps[t]["action"] if t < ep.n_steps else "",
                    "score": row["score"],
                    "status": row["status"],
                    "reason": (f"override: {row['override_reason']}" if overridden else row["reason"]) or "",
                    "run score": row["run_score"],
                }
            )
    return out


# -- widgets ---------------------------------------------------------------------------------------
def run_pickers(runs: Sequence[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The label run and an optional second run (side by side); defaults to the first run."""
    ids = [r["run_id"] for r in runs]
    url = st.session_state[K.URL]
    if K.RUN not in st.session_state:  # first visit: the URL's run, else the first run
        wanted = url.get("run")
        if wanted and wanted != URL_NO_RUN and wanted not in ids:
            st.warning(f"The link names label run {md_escape(wanted)}, which this workspace does not hold.")
        st.session_state[K.RUN] = (
            None if wanted == URL_NO_RUN else (wanted if wanted in ids else (ids or [None])[0])
        )
        st.session_state[K.RUN_B] = url.get("vs") if url.get("vs") in ids else None
    for key in (K.RUN, K.RUN_B):  # a run deleted meanwhile
        if st.session_state[key] is not None and st.session_state[key] not in ids:
            st.session_state[key] = None
    labels = {r["run_id"]: _run_label(r) for r in runs}
    options = [NO_RUN, *ids]
    seed_widget(K.RUN_PICK, st.session_state[K.RUN] or NO_RUN)
    st.selectbox(
        "Label run",
        options,
        key=K.RUN_PICK,
        format_func=lambda v: labels.get(v, v),
        on_change=copy_widget,
        args=(K.RUN_PICK, K.RUN),
        help="Whose scores the timeline, analysis and overrides show. Reference runs read ground truth "
        "(the simulator's record or the ALFRED plan): they are not vision-language models.",
    )
    seed_widget(K.RUN_B_PICK, st.session_state[K.RUN_B] or NO_RUN)
    st.selectbox(
        "Compare with",
        options,
        key=K.RUN_B_PICK,
        format_func=lambda v: labels.get(v, v),
        on_change=copy_widget,
        args=(K.RUN_B_PICK, K.RUN_B),
        help="A second run shown beside the first.",
    )
    run_b = st.session_state[K.RUN_B]
    return st.session_state[K.RUN], (run_b if run_b != st.session_state[K.RUN] else None)


def _run_label(run: dict[str, Any]) -> str:
    """The run id, and its labeller and model where the id does not say them."""
    what = [] if run["run_id"].startswith(run["labeller"]) else [run["labeller"]]
    what += [run["model"]] if run.get("model") else []
    return run["run_id"] + (f" ({', '.join(what)})" if what else "")


def timeline(
    ep: EpisodeView,
    step: int,
    labels: Sequence[Sequence[dict[str, Any]] | None],
    names: Sequence[str],
) -> None:
    """The reward timeline; clicking a point moves the player to that step."""
    fig = reward_timeline(
        ep.steps,
        labels[0] if labels else None,
        labels[1] if len(labels) > 1 else None,
        subtasks=ep.subtasks,
        cursor=step,
        run_names=names,
    )
    # A fresh key per cursor position: the chart starts without a selection after every move.
    key = f"{K.CHART}:{ep.info['episode_id']}:{step}:{':'.join(names)}"

    def clicked() -> None:
        target = clicked_step(st.session_state[key]["selection"]["points"], ep.n_steps)
        if target is not None:
            set_step(target)

    st.plotly_chart(
        fig,
        key=key,
        on_select=clicked,
        selection_mode="points",
        config={"displayModeBar": False},
    )


def labels_panel(
    reader: StoreReader,
    ep: EpisodeView,
    step: int,
    run: dict[str, Any],
    labels: Sequence[dict[str, Any]],
) -> None:
    """One run's stage-one analysis of the current segment (plain text) and its stage-two scores."""
    st.markdown(f"**{md_escape(run['run_id'])}** · {md_escape(run['labeller'])}")
    seg = segment_analysis(reader, run["run_id"], ep.info["episode_id"], step)
    if seg is None:
        st.info("This run did not label this step.")
        return
    if run["labeller"] == "reference":
        st.caption("Reference labeller: scores come from ground truth, not from a vision-language model.")
    st.caption(
        f"Stage one, {seg['segment_id']} (steps {seg['first_step']}–{seg['last_step']}), {seg['status']}"
    )
    st.code(seg["analysis"] or "(no analysis text)", language="text", wrap_lines=True)
    if seg["status"] == "failed":
        st.caption("Why the segment failed")
        st.code(seg["error"] or "(no error recorded)", language="text", wrap_lines=True)
    if seg["raw"]:
        with st.expander("Stage-two answer as received"):
            st.code(seg["raw"], language="text", wrap_lines=True)
    rows = segment_rows(labels, ep, seg["first_step"], seg["last_step"], step)
    st.dataframe(
        rows,
        hide_index=True,
        column_config={
            " ": st.column_config.TextColumn(width=24, help="the current step"),
            "step": st.column_config.NumberColumn(width=45),
            "action": st.column_config.TextColumn(width=165),
            "score": st.column_config.NumberColumn(width=50),
            "status": st.column_config.TextColumn(width=85),
            "reason": st.column_config.TextColumn(width=220),
            "run score": st.column_config.NumberColumn(width=75, help="the run's own score"),
        },
    )


def override_form(
    reader: StoreReader, ep: EpisodeView, step: int, run_id: str, labels: Sequence[dict]
) -> None:
    """Set a person's score for the current step of the chosen run (a reason is required)."""
    row = next((r for r in labels if r["t"] == step), None)
    if row is None:
        st.caption(f"Run {md_escape(run_id)} has no label for step {step}; nothing to override.")
        return
    with st.form(K.OVERRIDE, clear_on_submit=True, border=True):
        st.markdown(f"**Override step {step}** of {md_escape(run_id)}")
        current = row["score"] if row["score"] is not None else SCORE_MIN
        left, right = st.columns([1, 3])
        score = left.number_input("Score", SCORE_MIN, SCORE_MAX, int(current), step=1)
        reason = right.text_input("Reason (required)", placeholder="why this score is right")
        if row["status"] == "overridden":
            why = md_escape(row["override_reason"] or "")
            st.caption(f"Overridden: the run said {row['run_score']}; reason: {why}")
        if st.form_submit_button("Save override", icon=":material/edit:"):
            try:
                add_override(reader.workspace, run_id, ep.info["episode_id"], step, int(score), reason)
            except RGVLMError as exc:
                st.error(str(exc))
                return
            flash(f"Step {step} of {run_id} overridden to {int(score)}.")
            st.rerun()  # the list's means and every panel read the new label
