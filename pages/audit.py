"""Audit: score distributions, agreement with the reference labeller, worst episodes, failures, comparison."""

import streamlit as st

from rgvlm_app import audit_widgets as aw
from rgvlm_app.nav import require_navigation
from rgvlm_app.state import store_reader
from rgvlm_core.audit import reference_run
from rgvlm_core.charts_audit import run_colours
from rgvlm_core.labeling.store import label_runs

require_navigation()

st.title("Audit")
reader = store_reader()
if reader is None:
    st.stop()
aw.init_state()
run_ids = [r["run_id"] for r in label_runs(reader)]  # oldest first
if not run_ids:
    st.info(aw.NO_RUNS)
    st.stop()

shown, reference = aw.run_pickers(run_ids, reference_run(reader))
colours = run_colours(run_ids, reference)
if shown:
    aw.distributions(reader, shown, colours, "Score distribution per run", "audit.distributions")
if reference is None:
    st.warning(aw.NO_REFERENCE)
others = [r for r in run_ids if r != reference]
run = aw.run_select("Run audited", aw.RUN, run_ids, (others or run_ids)[-1])
yardstick = reference if reference != run else None  # the reference, unless it is the run audited

# Tabs run lazily: only the open one computes (first render stays fast on large workspaces).
agreement_tab, completion_tab, worst_tab, failures_tab, compare_tab = aw.lazy_tabs()
with agreement_tab:
    if agreement_tab.open and yardstick is not None:
        aw.agreement_section(reader, run, yardstick)
    elif agreement_tab.open:
        st.info("Choose a reference run and another run to audit against it.")
with completion_tab:
    if completion_tab.open:
        st.caption("“Completed a subtask” is ground truth: the step's sparse reward is positive.")
        aw.confusion_section(reader, run)
with worst_tab:
    if worst_tab.open and yardstick is not None:
        st.caption(
            "Mean absolute score difference per episode; each link opens the Episodes page at the step "
            "where the two runs differ most."
        )
        aw.disagreement_section(reader, run, yardstick)
    elif worst_tab.open:
        st.info("Ranking by disagreement needs a reference run and another run.")
with failures_tab:
    if failures_tab.open:
        aw.failures_section(reader, run)
with compare_tab:
    if compare_tab.open and len(run_ids) >= 2:
        left, right = st.columns(2)
        with left:
            run_a = aw.run_select("Run A", aw.COMPARE_A, run_ids, run_ids[-2])
        with right:
            run_b = aw.run_select("Run B", aw.COMPARE_B, run_ids, run_ids[-1])
        aw.comparison_section(reader, run_a, run_b, colours)
    elif compare_tab.open:
        st.info("Comparing needs two label runs.")
