"""Widgets of the Audit page: run pickers, agreement metrics, confusion, worst episodes, failures, comparison.

Every number comes from `rgvlm_core.audit` (cached per store snapshot, so a rerun costs nothing and
a new commit is seen at once); these functions only lay it out.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import pandas as pd
import pyarrow as pa
import streamlit as st

from rgvlm_core import audit, charts_audit
from rgvlm_core.labeling.store import effective_labels
from rgvlm_core.workspace import StoreReader

# -- session keys of the Audit page, all here with their defaults ----------------------------------
RUNS = "audit.runs"  # runs whose score distributions are shown
REFERENCE = "audit.reference"  # the yardstick run
RUN = "audit.run"  # the run audited against the reference
THRESHOLD = "audit.threshold"  # "scored high" means a score at least this
COMPARE_A, COMPARE_B = "audit.compare_a", "audit.compare_b"  # the two runs compared
TAB = "audit.tab"  # the open tab (only it is computed)
DEFAULTS: dict[str, Any] = {THRESHOLD: audit.HIGH_SCORE}

EPISODES_PAGE = "episodes"  # url_path of the Episodes page (it reads episode, run and step)
NO_REFERENCE = (
    "No reference run yet: the audit measures a run against the reference labeller (ground truth from the "
    "simulator's progress record or the ALFRED plan; not a vision-language model). Create one from a "
    "terminal with `rgvlm label --labeller reference`, or start one on the Prompts page (Relabel)."
)
NO_RUNS = (
    "This workspace has no label runs yet. Create the reference run (ground truth, the yardstick of every "
    "audit) with `rgvlm label --labeller reference`, then an LVLM run with "
    "`rgvlm label --labeller lvlm --model M --base-url URL`; or start them on the Prompts page (Relabel)."
)


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


# -- cached access to rgvlm_core.audit -------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def _audit(name: str, root: str, snapshot: int, args: tuple[Any, ...], _reader: StoreReader) -> Any:
    return getattr(audit, name)(_reader, *args)


def computed(reader: StoreReader, name: str, *args: Any) -> Any:
    """`audit.<name>(reader, *args)`, cached per workspace snapshot."""
    return _audit(name, str(reader.workspace.root), reader.workspace.snapshot().version, args, reader)


@st.cache_data(show_spinner=False, max_entries=4)
def _pairs(root: str, snapshot: int, run_a: str, run_b: str, _reader: StoreReader) -> pd.DataFrame:
    def scored(run: str, column: str) -> pd.DataFrame:
        table = effective_labels(_reader, run).select(["episode_id", "t", "score", "status"]).to_pandas()
        table = table[(table["status"] != "failed") & table["score"].notna()]
        return table[["episode_id", "t", "score"]].rename(columns={"score": column})

    pairs = scored(run_a, "a").merge(scored(run_b, "b"), on=["episode_id", "t"])
    return pairs[["a", "b"]].astype("int8")  # what the scatter needs; small to keep in the cache


def step_pairs(reader: StoreReader, run_a: str, run_b: str) -> pd.DataFrame:
    """The effective scores (columns a, b) of every step both runs scored, one row per step."""
    return _pairs(str(reader.workspace.root), reader.workspace.snapshot().version, run_a, run_b, reader)


# -- pickers -----------------------------------------------------------------------------------------
def _keep_valid(key: str, options: list[str], default: str | None) -> None:
    if st.session_state.get(key) not in options:
        st.session_state[key] = default if default in options else (options[0] if options else None)


def run_pickers(run_ids: list[str], default_reference: str | None) -> tuple[list[str], str | None]:
    """Runs to show (multi) and the reference run; the reference defaults to `audit.reference_run`."""
    left, right = st.columns([3, 2])
    if RUNS not in st.session_state:
        st.session_state[RUNS] = run_ids[-6:]
    st.session_state[RUNS] = [r for r in st.session_state[RUNS] if r in run_ids]
    shown = left.multiselect("Label runs", run_ids, key=RUNS)
    options = ["", *run_ids]
    _keep_valid(REFERENCE, options, default_reference or "")
    reference = right.selectbox(
        "Reference run",
        options,
        key=REFERENCE,
        format_func=lambda r: r or "(none)",
        help="Defaults to the newest noise-free run of the reference labeller.",
    )
    return shown, reference or None


def run_select(label: str, key: str, run_ids: list[str], default: str) -> str:
    """One run among `run_ids` (not empty)."""
    _keep_valid(key, run_ids, default)
    return str(st.selectbox(label, run_ids, key=key))


TABS = ("Agreement", "Scored high vs completed", "Worst episodes", "Failures", "Compare two runs")


def lazy_tabs() -> Sequence[Any]:
    """The page's tabs; each has `.open`, and only the open one should compute."""
    return st.tabs(list(TABS), key=TAB, on_change="rerun")


# -- sections ----------------------------------------------------------------------------------------
def fmt(value: float | int | None, kind: str) -> str:
    """How a metric is written: counts with separators, shares in %, others with 3 decimals."""
    if value is None:
        return "–"
    if kind == "count":
        return f"{int(value):,}"
    if kind == "share":
        return f"{100 * value:.1f}%"
    return f"{value:.3f}"


AGREEMENT_METRICS = (
    ("n", "Steps scored by both", "count"),
    ("pearson", "Pearson", "number"),
    ("spearman", "Spearman", "number"),
    ("mae", "Mean absolute error", "number"),
    ("exact", "Exact matches", "share"),
)
COMPARE_METRICS = (
    ("n", "Steps scored by both", "count"),
    ("pearson", "Pearson", "number"),
    ("mae", "Mean absolute difference", "number"),
    ("exact", "Exact matches", "share"),
    ("mean_a", "Mean score A", "number"),
    ("mean_b", "Mean score B", "number"),
)


def metrics_row(values: dict[str, Any], spec: tuple[tuple[str, str, str], ...]) -> None:
    for col, (key, label, kind) in zip(st.columns(len(spec)), spec, strict=True):
        col.metric(label, fmt(values[key], kind))


def distributions(
    reader: StoreReader, runs: list[str], colours: dict[str, str], title: str, key: str
) -> None:
    table: pa.Table = computed(reader, "score_distribution", runs)
    if not table.num_rows:
        st.info("None of these runs has a scored step yet.")
        return
    figure = charts_audit.score_distribution(table.to_pylist(), colours, order=runs, title=title)
    st.plotly_chart(figure, key=key)


def agreement_section(reader: StoreReader, run: str, reference: str) -> None:
    metrics_row(computed(reader, "agreement", run, reference), AGREEMENT_METRICS)
    left, right = st.columns(2)
    for col, by, label in (
        (left, "task_type", "By task type"),
        (right, "n_subtasks", "By number of subtasks"),
    ):
        col.caption(label)
        col.dataframe(
            computed(reader, "agreement_by", run, reference, by),
            hide_index=True,
            key=f"audit.agreement_by.{by}",
            column_config={
                "pearson": st.column_config.NumberColumn(format="%.3f"),
                "mae": st.column_config.NumberColumn(format="%.3f"),
            },
        )


CONFUSION_COLUMNS = {
    (True, True): "completed · high",
    (True, False): "completed · low",
    (False, True): "not completed · high",
    (False, False): "not completed · low",
}


def confusion_section(reader: StoreReader, run: str) -> int:
    """The threshold slider, the overall matrix, and the counts per task type and number of subtasks."""
    threshold = int(st.slider("“Scored high” means a score of at least", 0, 10, key=THRESHOLD))
    overall: pa.Table = computed(reader, "confusion", run, threshold)
    st.plotly_chart(charts_audit.confusion_matrix(overall.to_pylist(), threshold), key="audit.confusion")
    left, right = st.columns(2)
    for col, by, label in (
        (left, "task_type", "By task type"),
        (right, "n_subtasks", "By number of subtasks"),
    ):
        table: pa.Table = computed(reader, "confusion", run, threshold, by)
        rows: dict[Any, dict[str, Any]] = {}
        for row in table.to_pylist():
            line = rows.setdefault(
                row["grp"], {"group": row["grp"], **dict.fromkeys(CONFUSION_COLUMNS.values(), 0)}
            )
            line[CONFUSION_COLUMNS[(bool(row["completed"]), bool(row["high"]))]] += row["n"]
        col.caption(label)
        col.dataframe(list(rows.values()), hide_index=True, key=f"audit.confusion.{by}")
    return threshold


def episode_link(episode_id: str, run: str, step: int) -> str:
    """The Episodes page at this episode, run and step (relative to the app's address)."""
    return f"{EPISODES_PAGE}?{urlencode({'episode': episode_id, 'run': run, 'step': step})}"


def disagreement_section(reader: StoreReader, run: str, reference: str) -> None:
    table: pa.Table = computed(reader, "disagreement_ranking", run, reference)
    if not table.num_rows:
        st.info("The two runs share no scored step.")
        return
    rows = [{"open": episode_link(r["episode_id"], run, r["worst_step"]), **r} for r in table.to_pylist()]
    st.dataframe(
        rows,
        hide_index=True,
        key="audit.disagreement",
        column_config={
            "open": st.column_config.LinkColumn("Episode", display_text="Open in Episodes"),
            "mae": st.column_config.NumberColumn("mean |diff|", format="%.2f"),
            "max_abs_diff": st.column_config.NumberColumn("max |diff|"),
            "worst_step": st.column_config.NumberColumn("step of max |diff|"),
        },
    )


def failures_section(reader: StoreReader, run: str) -> None:
    table: pa.Table = computed(reader, "failures", run)
    if not table.num_rows:
        st.caption(f"{run} has no failed segment.")
        return
    st.caption(f"{table.num_rows:,} failed segments shown (at most 200); reasons as recorded:")
    st.dataframe(
        table,
        hide_index=True,
        key="audit.failures",
        column_config={"error": st.column_config.TextColumn("reason", width="large")},
    )


def comparison_section(reader: StoreReader, run_a: str, run_b: str, colours: dict[str, str]) -> None:
    metrics_row(computed(reader, "compare_runs", run_a, run_b), COMPARE_METRICS)
    left, right = st.columns(2)
    with left:
        distributions(reader, [run_a, run_b], colours, "Both distributions", "audit.compare_dist")
    pairs = step_pairs(reader, run_a, run_b)
    right.plotly_chart(
        charts_audit.score_scatter(
            pairs["a"].to_numpy(), pairs["b"].to_numpy(), name_a=f"A: {run_a}", name_b=f"B: {run_b}"
        ),
        key="audit.scatter",
    )
