"""Widgets of the Audit page: dataset and run pickers, agreement, confusion, failures, comparison.

Every number comes from `rgvlm_core.audit` (cached per store snapshot, so a rerun costs nothing and
a new commit is seen at once) for ONE dataset at a time; these functions only lay it out, and say
where a figure is impossible on that dataset. The worst-episodes table lives in `audit_worst`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import pyarrow as pa
import streamlit as st

from rgvlm_app import home_widgets
from rgvlm_app.home_widgets import dataset_name, dataset_picker
from rgvlm_app.text import md_code, md_escape
from rgvlm_core import audit, charts, charts_audit
from rgvlm_core.catalog import dataset_sizes
from rgvlm_core.workspace import StoreReader

# -- session keys of the Audit page, all here with their defaults ----------------------------------
RUNS = "audit.runs"  # runs whose score distributions are shown
REFERENCE = "audit.reference"  # the yardstick run
RUN = "audit.run"  # the run audited against the reference
THRESHOLD = "audit.threshold"  # "scored high" means a score at least this
COMPARE_A, COMPARE_B = "audit.compare_a", "audit.compare_b"  # the two runs compared
TAB = "tab"  # the open tab (only it is computed); also its query parameter
SCOPE = "audit.scope"  # the dataset the run choices above were made for
RUN_KEYS = (RUNS, REFERENCE, RUN, COMPARE_A, COMPARE_B)  # chosen again when the dataset changes
DEFAULTS: dict[str, Any] = {THRESHOLD: audit.HIGH_SCORE}
DATASET = home_widgets.DATASET  # the dataset shown (and its query parameter): the Overview's picker
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


def no_reference_on(dataset: str) -> str:
    """Why agreement cannot be measured on a dataset that no noise-free reference run labelled."""
    return (
        f"No reference run labelled {md_escape(dataset_name(dataset))}: agreement with the ground truth "
        "cannot be measured on it. Label it with the reference labeller: "
        f"{md_code(f'rgvlm label --labeller reference --dataset {dataset}')}."
    )


def no_runs_on(dataset: str) -> str:
    """What to say when no run labelled a step of the dataset shown."""
    return (
        f"No label run has labelled {md_escape(dataset_name(dataset))} yet: start one with "
        f"{md_code(f'rgvlm label --labeller reference --dataset {dataset}')}, or pick another dataset."
    )


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


# -- cached access to rgvlm_core.audit -------------------------------------------------------------
@st.cache_data(show_spinner=False, max_entries=256)
def _audit(
    name: str,
    root: str,
    snapshot: int,
    args: tuple[Any, ...],
    kwargs: tuple[tuple[str, Any], ...],
    _reader: StoreReader,
) -> Any:
    return getattr(audit, name)(_reader, *args, **dict(kwargs))


def computed(reader: StoreReader, name: str, *args: Any, **kwargs: Any) -> Any:
    """`audit.<name>(reader, *args, **kwargs)`, cached per workspace snapshot."""
    key = tuple(sorted(kwargs.items()))
    return _audit(name, str(reader.workspace.root), reader.workspace.snapshot().version, args, key, reader)


@st.cache_data(show_spinner=False, max_entries=4)
def _pairs(
    root: str, snapshot: int, run_a: str, run_b: str, dataset: str | None, _reader: StoreReader
) -> pd.DataFrame:
    return audit.step_pairs(_reader, run_a, run_b, dataset=dataset).to_pandas()  # int8: small in the cache


def step_pairs(reader: StoreReader, run_a: str, run_b: str, dataset: str | None) -> pd.DataFrame:
    """The effective scores (columns a, b) of every step of `dataset` both runs scored, one row per step."""
    return _pairs(
        str(reader.workspace.root), reader.workspace.snapshot().version, run_a, run_b, dataset, reader
    )


@st.cache_data(show_spinner=False, max_entries=16)
def _sizes(root: str, snapshot: int, _reader: StoreReader) -> dict[str, int]:
    return dataset_sizes(_reader)


# -- the dataset -------------------------------------------------------------------------------------
def dataset_scope(reader: StoreReader, coverage: Mapping[str, Mapping[str, int]]) -> str | None:
    """The dataset every figure of the page counts (a choice kept in the URL); None without episodes.

    Defaults to the dataset with the most labelled steps. When it changes, the runs are chosen again:
    the reference and the run audited default to ones that labelled the new dataset.
    """
    sizes = _sizes(str(reader.workspace.root), reader.workspace.snapshot().version, reader)
    labelled = {d: sum(c.get(d, 0) for c in coverage.values()) for d in sizes}
    default = max(sizes, key=lambda d: (labelled[d], sizes[d])) if sizes else ""
    dataset = dataset_picker(sizes, default)
    if st.session_state.get(SCOPE) != dataset:
        for key in RUN_KEYS:
            st.session_state.pop(key, None)
        st.session_state[SCOPE] = dataset
    return dataset


def runs_on(dataset: str, run_ids: list[str], coverage: Mapping[str, Mapping[str, int]]) -> list[str]:
    """The runs that labelled some step of `dataset` (oldest first); a caption names the others."""
    here = [r for r in run_ids if coverage.get(r, {}).get(dataset)]
    missing = [r for r in run_ids if r not in here]
    if missing:
        elsewhere = sorted({d for r in missing for d in coverage.get(r, {})})
        where = " and ".join(md_escape(dataset_name(d)) for d in elsewhere) or "nothing yet"
        st.caption(
            f"Not shown: {', '.join(md_code(r) for r in missing)} labelled no "
            f"{md_escape(dataset_name(dataset))} step (only {where})."
        )
    return here


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


TABS = (
    "Agreement",
    "Scored high vs completed",
    "Worst episodes",
    "Failures",
    "Compare two runs",
    "Reward check",
)


def lazy_tabs() -> Sequence[Any]:
    """The page's tabs, the open one kept in the URL; each has `.open`, and only the open one computes."""
    return st.tabs(list(TABS), key=TAB, on_change="rerun", bind="query-params")


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
    reader: StoreReader, runs: list[str], colours: dict[str, str], title: str, key: str, dataset: str
) -> None:
    table: pa.Table = computed(reader, "score_distribution", runs, dataset=dataset)
    if not table.num_rows:
        st.info("None of these runs has a scored step of this dataset yet.")
        return
    title = f"{title} · {charts.plotly_escape(dataset_name(dataset))}"
    figure = charts_audit.score_distribution(table.to_pylist(), colours, order=runs, title=title)
    st.plotly_chart(figure, key=key)


def agreement_section(reader: StoreReader, run: str, reference: str, dataset: str) -> None:
    metrics_row(computed(reader, "agreement", run, reference, dataset=dataset), AGREEMENT_METRICS)
    left, right = st.columns(2)
    for col, by, label in (
        (left, "task_type", "By task type"),
        (right, "n_subtasks", "By number of subtasks"),
    ):
        col.caption(label)
        col.dataframe(
            computed(reader, "agreement_by", run, reference, by, dataset=dataset),
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


def confusion_section(reader: StoreReader, run: str, dataset: str) -> int:
    """The threshold slider, the overall matrix, and the counts per task type and number of subtasks."""
    threshold = int(st.slider("“Scored high” means a score of at least", 0, 10, key=THRESHOLD))
    overall: pa.Table = computed(reader, "confusion", run, threshold, dataset=dataset)
    st.plotly_chart(charts_audit.confusion_matrix(overall.to_pylist(), threshold), key="audit.confusion")
    left, right = st.columns(2)
    for col, by, label in (
        (left, "task_type", "By task type"),
        (right, "n_subtasks", "By number of subtasks"),
    ):
        table: pa.Table = computed(reader, "confusion", run, threshold, by, dataset=dataset)
        rows: dict[Any, dict[str, Any]] = {}
        for row in table.to_pylist():
            line = rows.setdefault(
                row["grp"], {"group": row["grp"], **dict.fromkeys(CONFUSION_COLUMNS.values(), 0)}
            )
            line[CONFUSION_COLUMNS[(bool(row["completed"]), bool(row["high"]))]] += row["n"]
        col.caption(label)
        col.dataframe(list(rows.values()), hide_index=True, key=f"audit.confusion.{by}")
    return threshold


def failures_section(reader: StoreReader, run: str, dataset: str) -> None:
    table: pa.Table = computed(reader, "failures", run, dataset=dataset)
    if not table.num_rows:
        st.caption(f"{md_code(run)} has no failed segment on {md_escape(dataset_name(dataset))}.")
        return
    st.caption(f"{table.num_rows:,} failed segments shown (at most 200); reasons as recorded:")
    st.dataframe(
        table,
        hide_index=True,
        key="audit.failures",
        column_config={"error": st.column_config.TextColumn("reason", width="large")},
    )


def comparison_section(
    reader: StoreReader, run_a: str, run_b: str, colours: dict[str, str], dataset: str
) -> None:
    metrics_row(computed(reader, "compare_runs", run_a, run_b, dataset=dataset), COMPARE_METRICS)
    left, right = st.columns(2)
    with left:
        distributions(reader, [run_a, run_b], colours, "Both distributions", "audit.compare_dist", dataset)
    pairs = step_pairs(reader, run_a, run_b, dataset)
    right.plotly_chart(
        charts_audit.score_scatter(
            pairs["a"].to_numpy(), pairs["b"].to_numpy(), name_a=f"A: {run_a}", name_b=f"B: {run_b}"
        ),
        key="audit.scatter",
    )
