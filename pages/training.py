"""Training: launch IQL experiments and runs as jobs, watch their learning curves, read a run's record."""

import streamlit as st

from rgvlm_app import training_curves as tc
from rgvlm_app import training_widgets as tw
from rgvlm_app.jobs_panel import jobs_panel
from rgvlm_app.nav import require_navigation
from rgvlm_app.state import store_reader, workspace_path
from rgvlm_core.compare import runs_table

require_navigation()

st.title("Training")
st.caption(
    "Language-conditioned IQL on the workspace's episodes, one reward source per method. Training runs as "
    "a background job (`rgvlm experiment` or `rgvlm train`); it keeps running if you close the page."
)
reader = store_reader()
if reader is None:
    st.stop()
tw.init_state()
tw.flash()
workspace = reader.workspace

with st.container(border=True):
    st.subheader("New experiment")
    st.caption("Every method is trained with every seed, then evaluated in the simulator by task length.")
    sources = tw.reward_sources(reader)
    form, problems = tw.training_form(sources, tw.data_splits(reader))
    tw.launch_buttons(workspace, form, problems, sources)

st.subheader("Jobs")
jobs = tw.training_jobs(workspace)
if jobs:
    jobs_panel(workspace_path(), [j.job_id for j in jobs])
else:
    st.caption("No training job yet.")

runs = runs_table(reader)
st.subheader("Learning curves")
metric_col, runs_col = st.columns([1, 3])
with metric_col:
    metric = tc.metric_select(reader)
with runs_col:
    picked = tc.curve_run_picker(runs)
st.caption("Runs of the jobs above (live while they train) and the finished runs chosen here.")
tc.curves_section(reader, jobs, runs, picked, metric)

st.subheader("Finished runs")
tw.finished_runs(reader, jobs)
