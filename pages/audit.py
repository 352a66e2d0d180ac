"""Audit: score distributions, agreement with the reference labeller, worst episodes, failures, comparison,
and the reward sanity check (does a reward keep the task's optimal policy?).

One dataset at a time (simulator and ALFRED episodes are never mixed): the dataset and the open tab
live in the URL.
"""

import streamlit as st

from rgvlm_app import audit_reward_check as rc
from rgvlm_app import audit_widgets as aw
from rgvlm_app.audit_worst import worst_episodes
from rgvlm_app.home_widgets import dataset_name
from rgvlm_app.nav import require_navigation
from rgvlm_app.state import store_reader
from rgvlm_app.text import md_escape
from rgvlm_core.charts_audit import run_colours

require_navigation()

st.title("Audit")
reader = store_reader()
if reader is None:
    st.stop()
aw.init_state()
run_ids: list[str] = aw.computed(reader, "run_ids")  # oldest first
if not run_ids:
    st.info(aw.NO_RUNS)
    st.stop()

coverage = aw.computed(reader, "run_datasets")
dataset = aw.dataset_scope(reader, coverage)
if dataset is None:
    st.info("This workspace holds no episodes yet: import a dataset (`rgvlm import PATH`).")
    st.stop()
here = aw.runs_on(dataset, run_ids, coverage)
if not here:
    st.info(aw.no_runs_on(dataset))
    st.stop()

shown, reference = aw.run_pickers(here, aw.computed(reader, "reference_run", dataset=dataset))
colours = run_colours(run_ids, reference)  # over all runs: a run keeps its colour on every dataset
if shown:
    aw.distributions(reader, shown, colours, "Score distribution per run", "audit.distributions", dataset)
if reference is None:
    anywhere = aw.computed(reader, "reference_run") is not None
    st.warning(aw.no_reference_on(dataset) if anywhere else aw.NO_REFERENCE)
others = [r for r in here if r != reference]
run = aw.run_select("Run audited", aw.RUN, here, (others or here)[-1])
yardstick = reference if reference != run else None  # the reference, unless it is the run audited
name = md_escape(dataset_name(dataset))

# Tabs run lazily: only the open one computes (first render stays fast on large workspaces).
agreement_tab, completion_tab, worst_tab, failures_tab, compare_tab, reward_tab = aw.lazy_tabs()
with agreement_tab:
    if agreement_tab.open and yardstick is not None:
        aw.agreement_section(reader, run, yardstick, dataset)
    elif agreement_tab.open:
        st.info(f"Agreement needs a reference run that labelled {name} and another run to audit against it.")
with completion_tab:
    if completion_tab.open:
        st.caption("“Completed a subtask” is ground truth: the step's sparse reward is positive.")
        aw.confusion_section(reader, run, dataset)
with worst_tab:
    if worst_tab.open and yardstick is not None:
        worst_episodes(reader, run, yardstick, dataset)
    elif worst_tab.open:
        st.info(f"Ranking by disagreement needs a reference run that labelled {name} and another run.")
with failures_tab:
    if failures_tab.open:
        aw.failures_section(reader, run, dataset)
with compare_tab:
    if compare_tab.open and len(here) >= 2:
        left, right = st.columns(2)
        with left:
            run_a = aw.run_select("Run A", aw.COMPARE_A, here, here[-2])
        with right:
            run_b = aw.run_select("Run B", aw.COMPARE_B, here, here[-1])
        aw.comparison_section(reader, run_a, run_b, colours, dataset)
    elif compare_tab.open:
        st.info(f"Comparing needs two label runs that labelled {name}.")
with reward_tab:
    if reward_tab.open:
        rc.reward_check_section(reader)
