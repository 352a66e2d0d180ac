"""Episodes: browse and filter; play an episode frame by frame with its reward timeline, the label
runs' analyses and scores side by side in one table, and a person's override. The view lives in the
URL (`?episode=ID&step=T&run=RUN&vs=RUN_B`), which wins whenever the page is entered."""

from typing import Any

import streamlit as st

from rgvlm_app import episode_compare, episode_list, player, timeline
from rgvlm_app.episode_data import EpisodeView, run_labels, run_options
from rgvlm_app.episode_state import init_state, show_flash, write_url
from rgvlm_app.nav import require_navigation
from rgvlm_app.state import store_reader
from rgvlm_core.workspace import StoreReader

require_navigation()  # a deep link on a fresh server runs this file alone: go through app.py
reader = store_reader()
if reader is None:
    st.stop()
init_state()

runs = run_options(reader)
with st.sidebar:
    run_id, run_b = timeline.run_pickers(runs)
    st.divider()
    flt, order = episode_list.episode_filter(reader)
    listed = episode_list.EpisodeList(st.container(), reader, flt, order, run_id)

ep = episode_list.resolve_episode(reader, listed, episode_list.filters_changed(flt, order))
if ep is None:
    st.info(episode_list.why_no_episode(flt))
    st.stop()
show_flash()
player.episode_header(ep)
note = st.empty()
if not ep.steps:
    player.task_only_view(ep)
    with note.container():
        episode_list.pinned_note(ep, listed.ids())
    st.stop()
if not runs:
    st.caption(
        "No label runs yet: start one with `rgvlm label` (the reference labeller when no LVLM is set)."
    )
chosen = [r for rid in (run_id, run_b) for r in runs if r["run_id"] == rid]
if chosen and not run_labels(reader, run_id, ep.episode_id):
    timeline.coverage_notice(reader, ep, chosen[0]["run_id"])


def episode_view(
    reader: StoreReader, ep: EpisodeView, chosen: list[dict[str, Any]], run_id: str | None, run_b: str | None
) -> None:
    """Everything that follows the step: reruns alone when the step moves (a fragment)."""
    labels = [run_labels(reader, r["run_id"], ep.episode_id) or [] for r in chosen]  # cached
    frame_col, facts_col = st.columns([2, 3], gap="medium")
    with frame_col:
        step = player.player(ep)
    with facts_col:
        player.step_facts(ep, step)
        player.subtask_list(ep, step)
        if chosen and labels[0]:
            timeline.override_form(reader, ep, step, chosen[0]["run_id"], labels[0])
    timeline.timeline(ep, step, labels, [r["run_id"] for r in chosen])
    episode_compare.side_by_side(reader, ep, step, chosen, labels)
    write_url(ep.episode_id, step, run_id, run_b)


st.fragment(episode_view, run_every=player.play_interval())(reader, ep, chosen, run_id, run_b)
with note.container():  # the list last: the episode above does not wait for its scores
    episode_list.pinned_note(ep, listed.ids())
