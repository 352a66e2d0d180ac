"""Label runs on the Episodes page: run pickers, which runs label the episode, the reward timeline,
and a person's override.

Model text (analyses, reasons) is untrusted: it is shown with st.code, or escaped where a widget
renders Markdown, never as Markdown or HTML.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import streamlit as st

from rgvlm_app.episode_data import EpisodeView, runs_labelling
from rgvlm_app.episode_state import (
    NO_RUN,
    URL_NO_RUN,
    K,
    copy_widget,
    flash,
    seed_widget,
    set_run,
    set_step,
    take_url_runs,
)
from rgvlm_app.text import md_escape
from rgvlm_core.charts_episode import clicked_step, reward_timeline
from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.store import add_override
from rgvlm_core.labeling.types import SCORE_MAX, SCORE_MIN
from rgvlm_core.workspace import StoreReader


# -- run pickers -----------------------------------------------------------------------------------
def _apply_url_runs(ids: Sequence[str]) -> None:
    """On arrival, the URL's run and second run win over the session's (unknown ones are named).

    Without a run in the URL or the session, the first run is chosen.
    """
    url = take_url_runs() or {}
    default = ids[0] if ids else None
    wanted, vs = url.get("run"), url.get("vs")
    for name in (wanted, vs):
        if name and name != URL_NO_RUN and name not in ids:
            st.warning(f"The link names label run {md_escape(name)}, which this workspace does not hold.")
    if wanted == URL_NO_RUN:
        st.session_state[K.RUN] = None
    elif wanted in ids:
        st.session_state[K.RUN] = wanted
    elif wanted or K.RUN not in st.session_state:
        st.session_state[K.RUN] = default
    if wanted or vs:
        st.session_state[K.RUN_B] = vs if vs in ids else None


def run_pickers(runs: Sequence[dict[str, Any]]) -> tuple[str | None, str | None]:
    """The label run and an optional second run (side by side); defaults to the first run."""
    ids = [r["run_id"] for r in runs]
    _apply_url_runs(ids)
    for key in (K.RUN, K.RUN_B):  # a run deleted meanwhile
        if st.session_state[key] is not None and st.session_state[key] not in ids:
            st.session_state[key] = None
    labels = {r["run_id"]: run_label(r) for r in runs}
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


def run_label(run: dict[str, Any]) -> str:
    """The run id, and its labeller and model where the id does not say them."""
    what = [] if run["run_id"].startswith(run["labeller"]) else [run["labeller"]]
    what += [run["model"]] if run.get("model") else []
    return run["run_id"] + (f" ({', '.join(what)})" if what else "")


def coverage_notice(reader: StoreReader, ep: EpisodeView, run_id: str) -> None:
    """The chosen run has no labels for this episode: say so, and offer the runs that label it."""
    others = {r: n for r, n in runs_labelling(reader, ep.episode_id).items() if r != run_id}
    message = f"Run {md_escape(run_id)} has no labels for this episode."
    if not others:
        st.info(message + " No label run labels it yet: label it with `rgvlm label --episode ID`.")
        return
    names = ", ".join(md_escape(r) for r in sorted(others))
    st.info(f"{message} Labelled by: {names}.", icon=":material/label_off:")
    cols = st.columns(min(len(others), 3))
    for i, run in enumerate(sorted(others)):
        cols[i % len(cols)].button(
            f"Show {md_escape(run)}",
            key=f"{K.SWITCH_RUN}:{run}",
            icon=":material/swap_horiz:",
            on_click=set_run,
            args=(run,),
            help=f"{md_escape(run)} labels {others[run]} steps of this episode",
        )


# -- the reward timeline ---------------------------------------------------------------------------
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
    key = f"{K.CHART}:{ep.episode_id}:{step}:{':'.join(names)}"

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


# -- overrides -------------------------------------------------------------------------------------
def override_form(
    reader: StoreReader, ep: EpisodeView, step: int, run_id: str, labels: Sequence[dict[str, Any]]
) -> None:
    """Set a person's score for the current step of the chosen run (a reason is required).

    The inputs keep what was typed until an override is saved: a refused one (no reason) shows
    why and leaves the score as typed. Keys name the run, episode, step and the number of overrides
    saved in this session, so moving to another step, or saving, starts afresh from the step's score.
    """
    row = next((r for r in labels if r["t"] == step), None)
    if row is None:
        st.caption(f"Run {md_escape(run_id)} has no label for step {step}; nothing to override.")
        return
    suffix = f"{run_id}:{ep.episode_id}:{step}:{st.session_state[K.OVERRIDE_SAVES]}"
    score_key, reason_key = f"{K.OVERRIDE_SCORE}:{suffix}", f"{K.OVERRIDE_REASON}:{suffix}"
    with st.form(K.OVERRIDE, clear_on_submit=False, border=True):
        st.markdown(f"**Override step {step}** of {md_escape(run_id)}")
        current = row["score"] if row["score"] is not None else SCORE_MIN
        left, right = st.columns([1, 3])
        left.number_input("Score", SCORE_MIN, SCORE_MAX, int(current), step=1, key=score_key)
        right.text_input("Reason (required)", placeholder="why this score is right", key=reason_key)
        if row["status"] == "overridden":
            why = md_escape(row["override_reason"] or "")
            st.caption(f"Overridden: the run said {row['run_score']}; reason: {why}")
        submitted = st.form_submit_button("Save override", icon=":material/edit:")
    if submitted:
        _save_override(
            reader, ep, step, run_id, int(st.session_state[score_key]), st.session_state[reason_key]
        )


def _save_override(
    reader: StoreReader, ep: EpisodeView, step: int, run_id: str, score: int, reason: str
) -> None:
    try:
        add_override(reader.workspace, run_id, ep.episode_id, step, score, reason)
    except RGVLMError as exc:
        st.error(md_escape(str(exc)))  # the inputs keep the typed score and reason
        return
    st.session_state[K.OVERRIDE_SAVES] += 1  # new inputs: from the new score, with no reason
    flash(f"Step {step} of {md_escape(run_id)} overridden to {score}.")
    st.rerun(scope="app")  # the list's means and every panel read the new label
