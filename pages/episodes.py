"""Episodes: browse and filter; play an episode frame by frame with its reward timeline, the label
runs' analyses and scores side by side, and a person's override. The view lives in the URL."""

from typing import Any

import streamlit as st

from rgvlm_app import player, timeline
from rgvlm_app.nav import require_navigation
from rgvlm_app.player import EpisodeView
from rgvlm_app.state import store_reader
from rgvlm_core.workspace import StoreReader

require_navigation()  # a deep link on a fresh server runs this file alone: go through app.py
reader = store_reader()
if reader is None:
    st.stop()
player.init_state()

runs = timeline.run_options(reader)
with st.sidebar:
    run_id, run_b = timeline.run_pickers(runs)
    st.divider()
    flt, order = player.episode_filter(reader)
    listed = player.episode_list(reader, flt, order, run_id)

ep = player.resolve_episode(reader, listed)
if ep is None:
    st.info(player.why_no_episode(flt))
    st.stop()
player.show_flash()
player.episode_header(ep)
if not ep.steps:
    st.info("A task-only episode (an ALFRED test split): a goal and instructions, no steps to play.")
    player.subtask_list(ep, None)
    st.stop()
if not runs:
    st.caption(
        "No label runs yet: start one with `rgvlm label` (the reference labeller when no LVLM is set)."
    )
chosen = [r for rid in (run_id, run_b) for r in runs if r["run_id"] == rid]


def episode_view(
    reader: StoreReader, ep: EpisodeView, chosen: list[dict[str, Any]], run_id: str | None, run_b: str | None
) -> None:
    """Everything that follows the step: reruns alone when the step moves (a fragment)."""
    labels = [timeline.run_labels(reader, r["run_id"], ep.info["episode_id"]) or [] for r in chosen]
    frame_col, facts_col = st.columns([2, 3], gap="medium")
    with frame_col:
        step = player.player(ep)
    with facts_col:
        player.step_facts(ep, step)
        sub = ep.subtask_of(step)
        player.subtask_list(ep, sub["idx"] if sub else None)
        if run_id is not None:
            timeline.override_form(reader, ep, step, run_id, labels[0])
    timeline.timeline(ep, step, labels, [r["run_id"] for r in chosen])
    if chosen:
        for col, run, run_labels in zip(st.columns(len(chosen)), chosen, labels, strict=True):
            with col:
                timeline.labels_panel(reader, ep, step, run, run_labels)
    player.write_url(ep.info["episode_id"], step, run_id, run_b)


st.fragment(episode_view, run_every=player.play_interval())(reader, ep, chosen, run_id, run_b)
