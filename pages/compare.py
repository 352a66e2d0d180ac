"""Compare: completion by number of subtasks per method (95% CI over seeds), each method's difference
from Sparse paired by seed, success, results by first-subtask kind, completion against training
steps, tables, downloads; of one phrasing (held-out instructions unless chosen otherwise).

What is compared (an experiment, or any evaluated runs) lives in the URL: `?experiment=NAME` or
`?runs=A,B,C`.
"""

import streamlit as st

from rgvlm_app import compare_fair_widgets as fw
from rgvlm_app import compare_widgets as cw
from rgvlm_app.nav import require_navigation
from rgvlm_app.state import store_reader

require_navigation()

st.title("Compare")
reader = store_reader()
if reader is None:
    st.stop()
cw.init_state()
catalog = cw.run_catalog(reader)
if not (catalog["evaluated"] > 0).any():
    st.info(cw.NO_RUNS)
    st.page_link("pages/training.py", label="Train and run experiments", icon=":material/model_training:")
    cw.pending_note(catalog)
    st.stop()

choice = cw.choose(reader, catalog)
cw.pending_note(catalog)
if not choice.run_ids:
    st.info("Choose at least one run to compare.")
    st.stop()
phrasing = cw.phrasing_choice(reader, choice.run_ids)
comparison = cw.comparison(reader, choice.run_ids, phrasing)
if comparison.episodes.empty:
    st.info("None of these runs has an evaluated episode yet: `rgvlm evaluate RUN`.")
    st.stop()
cw.overview(comparison)
cw.completion_section(comparison)
fw.paired_section(comparison)
st.subheader("By number of subtasks", divider="gray")
cw.table(comparison.summary, "compare.table", comparison.colours)
st.subheader("Full-task success", divider="gray")
cw.success_section(comparison)
fw.kinds_section(comparison)
cw.downloads(reader, comparison, choice)
fw.steps_section(comparison)
cw.curves_section(reader, comparison)
