"""Sections of the Compare page for a fair comparison: each method's difference from Sparse paired
by seed, results by the kind of the first subtask, and completion against training steps.

Every number comes from the `Comparison` the page already built (`rgvlm_core.compare_fair` through
`report.build_comparison`), so the page and the HTML report say the same. Where a section has no
data it says why in one line instead of drawing an empty chart.
"""

from __future__ import annotations

import streamlit as st

from rgvlm_app.compare_widgets import chart_config, table
from rgvlm_app.text import md_escape
from rgvlm_core import compare_fair
from rgvlm_core.charts_compare import kinds_figure, paired_figure, steps_figure
from rgvlm_core.report import NO_CURVES, Comparison, kinds_note

PAIRED_TITLE = "Difference from Sparse (paired by seed)"
STEPS_TITLE = "Completion against training steps"
KINDS_TITLE = "By kind of first subtask"


def paired_section(c: Comparison) -> None:
    """Bars around 0 with paired 95% intervals, which intervals exclude 0 in words, and the table."""
    st.subheader(PAIRED_TITLE, divider="gray")
    gap = compare_fair.paired_gap(c.seeds, c.paired)
    if gap:
        st.info(md_escape(gap), icon=":material/compare_arrows:")
        return
    figure = paired_figure(c.paired, c.colours)
    figure.update_layout(height=420, margin={"t": 40})
    st.plotly_chart(figure, key="compare.paired", config=chart_config("rgvlm-difference-from-sparse"))
    st.markdown("\n".join(f"- {md_escape(line)}" for line in compare_fair.paired_findings(c.paired, c.seeds)))
    st.caption(
        "For each training seed shared with Sparse: the method's proportion of subtasks completed minus "
        "Sparse's (same seed, same evaluation tasks); bars: the mean of these differences; whiskers: "
        "paired 95% interval (Student t over the pairs). An interval that excludes 0 is a difference "
        "the seeds support; 'mean over lengths' pairs each seed's average over task lengths."
    )
    number = st.column_config.NumberColumn
    table(
        c.paired,
        "compare.paired_table",
        c.colours,
        {
            "length": st.column_config.TextColumn("Subtasks"),
            "mean": number("Difference", format="%+.3f"),
            "ci_low": number("95% CI low", format="%+.3f"),
            "ci_high": number("95% CI high", format="%+.3f"),
            "pairs": number("Seed pairs"),
            "excludes_zero": st.column_config.CheckboxColumn("CI excludes 0"),
        },
    )


def kinds_section(c: Comparison) -> None:
    """Proportion completed by the kind of the task's first subtask, per method (95% CI over seeds)."""
    st.subheader(KINDS_TITLE, divider="gray")
    if not c.kinds.empty:
        figure = kinds_figure(c.kinds, c.colours)
        figure.update_layout(height=380, margin={"t": 40})
        st.plotly_chart(figure, key="compare.kinds", config=chart_config("rgvlm-by-first-subtask"))
        table(c.kinds, "compare.kinds_table", c.colours)
    if c.kinds_missing or c.kinds.empty:
        st.caption(kinds_note(c.kinds_missing, c.kinds.empty))


def steps_section(c: Comparison) -> None:
    """Completion against training steps from the evaluations at checkpoints (mean over seeds, band)."""
    st.subheader(STEPS_TITLE, divider="gray")
    if c.curves.empty:
        st.caption(NO_CURVES)
        return
    figure = steps_figure(c.curves, c.colours)
    figure.update_layout(height=400, margin={"t": 40})
    st.plotly_chart(figure, key="compare.steps", config=chart_config("rgvlm-completion-by-step"))
    st.caption(
        "Each run's proportion of subtasks completed at a checkpoint (mean over task lengths), then the "
        "mean over seeds per method; band: 95% confidence interval over seeds. Every point meets the same "
        "tasks: the last is the final policy on the checkpoints' tasks (its full evaluation, on more "
        "tasks, is in the tables above). The training metrics are under Learning curves below."
    )
