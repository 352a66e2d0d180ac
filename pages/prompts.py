"""Prompts: versions and their diffs, a new version, the exact messages on an episode, test, relabel."""

import streamlit as st

from rgvlm_app import prompt_jobs as pj
from rgvlm_app import prompt_preview as pp
from rgvlm_app import prompt_widgets as pw
from rgvlm_app.jobs_panel import jobs_panel
from rgvlm_app.nav import require_navigation
from rgvlm_app.state import store_reader, workspace_path
from rgvlm_core.labeling.messages import QueryConfig
from rgvlm_core.labeling.store import list_prompts

require_navigation()

st.title("Prompts")
st.caption(
    "Versions of the two RG-VLM prompts (Jinja2 templates, rendered in a sandbox). A version is named by "
    "the hash of its templates; every label run records the version it used."
)
reader = store_reader()
if reader is None:
    st.stop()
pw.init_state()
pw.flash()

versions = list_prompts(reader)
prompt = pw.version_select(versions, "Prompt version", pw.SELECTED)
versions_tab, new_tab, preview_tab, relabel_tab = st.tabs(
    ["Versions", "New version", "Preview and test", "Relabel"]
)

with versions_tab:
    pw.version_table(versions)
    with st.expander(f"Templates of {prompt.prompt_id}", expanded=True):
        pw.templates_view(prompt)
    st.subheader("Compare two versions")
    left, right = st.columns(2)
    with left:
        old = pw.version_select(versions, "From", pw.DIFF_A)
    with right:
        new = pw.version_select(versions, "To", pw.DIFF_B)
    pw.diff_view(old, new)

with new_tab:
    pw.new_version_form(reader.workspace, prompt)

with preview_tab:
    picked = pp.segment_picker(reader)
    if picked is not None:
        episode, segments, segment = picked
        frames_col, side_col = st.columns(2)
        config = QueryConfig(
            max_frames=int(frames_col.number_input("Frames per query", 1, 64, QueryConfig().max_frames)),
            max_side=int(side_col.number_input("Longest side (px)", 32, 2048, QueryConfig().max_side)),
        )
        st.caption("What the model receives, exactly, with this version of the prompt:")
        pp.messages_preview(reader, prompt, segment, config)
        st.subheader("Test on this episode")
        reference_col, lvlm_col = st.columns(2)
        with reference_col:
            st.markdown("**Reference labeller** (in this process, instant)")
            pp.reference_test(segments)
        with lvlm_col:
            st.markdown(f"**LVLM** with prompt {prompt.prompt_id} (a label job on this episode only)")
            pj.lvlm_test(reader.workspace, prompt, episode["episode_id"])

with relabel_tab:
    st.caption("Label the workspace, or a filtered part of it, as a background job (`rgvlm label`).")
    pj.relabel_form(reader, prompt)

st.subheader("Jobs")
st.caption(
    "The workspace's newest jobs, wherever they were started; they keep running if you close the page."
)
jobs_panel(workspace_path(), limit=5)
