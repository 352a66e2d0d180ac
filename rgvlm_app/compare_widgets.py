"""Widgets of the Compare page: what is compared (kept in the URL), the paper's figure, the tables, downloads.

Every number comes from `rgvlm_core.report.build_comparison`, the code behind the CLI's HTML report,
so the page and the report agree. It is cached per chosen runs, phrasing and version of the tables
it reads (the shards of train_runs, eval_results, eval_curves and the experiment tables), so a rerun
costs nothing, a new run or evaluation shows at once, and commits elsewhere (labels, training
metrics of a running job) keep the cache warm.

Evaluations come in two phrasings (instructions seen in training, or held out); the page shows one
at a time, held-out by default, and every table, chart and download follows that choice.

The choice lives in the URL, `?experiment=NAME` or `?runs=A,B,C`, so a link reopens the same
comparison. The URL is applied when it differs from what this page last wrote (a first visit, a
pasted link, the Overview page's link) but never on a rerun caused by this page's own widgets: such
a rerun can carry the URL of an older run still on its way to the browser.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from rgvlm_app.text import md_code, md_escape
from rgvlm_core import compare
from rgvlm_core.charts_compare import completion_figure, curves_figure, method_colour, success_figure
from rgvlm_core.report import Comparison, build_comparison, render_report
from rgvlm_core.rl.experiment import experiment_run_ids, list_experiments
from rgvlm_core.workspace import StoreReader

# -- session keys of the Compare page, all here with their defaults --------------------------------
MODE = "compare.mode"  # what is compared: EXPERIMENT_MODE or RUNS_MODE
EXPERIMENT = "compare.experiment"  # the experiment compared
RUNS = "compare.runs"  # the runs compared (RUNS_MODE)
SEED_POINTS = "compare.seed_points"  # draw each seed as a point on its bar
CURVES = "compare.curves"  # the learning-curves expander (computed only while open)
CURVE_METRIC = "compare.curve_metric"
PHRASING = "compare.phrasing"  # seen or unseen: what every table, chart and download shows
URL_WRITTEN = "compare.url_written"  # the query parameters this page last wrote
URL_WARNING = "compare.url_warning"  # why a link's choice was not applied (shown until the choice changes)
TOUCHED = "compare.touched"  # this run was caused by a widget of this page
CSV, HTML = "compare.csv", "compare.html"  # the download buttons
DEFAULTS: dict[str, Any] = {SEED_POINTS: False, URL_WARNING: None, TOUCHED: False}

EXPERIMENT_MODE, RUNS_MODE = "experiment", "runs"
MODE_LABELS = {EXPERIMENT_MODE: "An experiment", RUNS_MODE: "Chosen runs"}
READ_TABLES = ("train_runs", "eval_results", "eval_curves", "experiments", "experiment_runs")
PHRASING_LABELS = {"unseen": "Unseen (held-out) phrasings", "seen": "Seen (training) phrasings"}
NO_RUNS = (
    "No evaluated training run in this workspace yet. Train and evaluate a grid of methods x seeds on "
    "the Training page, or from a terminal: `rgvlm experiment --methods sparse,reference,sparse+reference,bc "
    "--seeds 3` (add `--report report.html` for the same comparison as a file). A single run: "
    "`rgvlm train`, then `rgvlm evaluate RUN --condition default` and `--condition randomized`."
)


def init_state() -> None:
    """Declare the page's keys (see above)."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)


def _touched() -> None:
    """on_change of every widget here: the run it causes takes the widgets' values, not the URL's."""
    st.session_state[TOUCHED] = True
    st.session_state[URL_WARNING] = None


# -- cached reads ------------------------------------------------------------------------------------
def _stamp(reader: StoreReader) -> tuple[str, ...]:
    """Changes whenever a table the comparison reads changes (read from HEAD.json, not the shared reader)."""
    snap = reader.workspace.snapshot()
    return (str(reader.workspace.root), *(f for table in READ_TABLES for f in snap.files(table)))


@st.cache_data(show_spinner=False, max_entries=8)
def _catalog(stamp: tuple[str, ...], _reader: StoreReader) -> pd.DataFrame:
    runs = compare.runs_table(_reader)
    counts = _reader.query("SELECT run_id, count(*) AS evaluated FROM eval_results GROUP BY 1").to_pandas()
    runs = runs.merge(counts, on="run_id", how="left")
    runs["evaluated"] = runs["evaluated"].fillna(0).astype(int)
    return runs


def run_catalog(reader: StoreReader) -> pd.DataFrame:
    """Every finished training run (`compare.runs_table`) with its number of evaluated episodes."""
    return _catalog(_stamp(reader), reader)


@st.cache_data(show_spinner=False, max_entries=8)
def _experiments(stamp: tuple[str, ...], _reader: StoreReader) -> list[dict[str, Any]]:
    """Experiments with a finished run, newest first, with their `run_ids` (the CLI report's runs)."""
    found = [e for e in list_experiments(_reader) if e["finished"]]
    return [{**e, "run_ids": experiment_run_ids(_reader, e["experiment_id"])} for e in found]


@st.cache_data(show_spinner="Comparing runs (the expert replays the same tasks)…", max_entries=16)
def _comparison(
    stamp: tuple[str, ...], run_ids: tuple[str, ...], phrasing: str | None, _reader: StoreReader
) -> Comparison:
    return build_comparison(_reader, list(run_ids), phrasing=phrasing)


def comparison(reader: StoreReader, run_ids: list[str], phrasing: str | None = None) -> Comparison:
    """`report.build_comparison` of these runs and phrasing, cached (the runs' order does not matter)."""
    return _comparison(_stamp(reader), tuple(sorted(set(run_ids))), phrasing, reader)


@st.cache_data(show_spinner=False, max_entries=16)
def _phrasings(stamp: tuple[str, ...], run_ids: tuple[str, ...], _reader: StoreReader) -> list[str]:
    return compare.phrasings(_reader, list(run_ids))


# -- what is compared ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Choice:
    """The runs compared, and how the report names them."""

    run_ids: list[str]
    title: str
    about: dict[str, Any]


def _url_choice() -> dict[str, str]:
    runs = ",".join(v for v in st.query_params.get_all("runs") if v)
    if runs:
        return {"runs": runs}
    experiment = st.query_params.get("experiment")
    return {"experiment": experiment} if experiment else {}


def _apply_url(url: dict[str, str], catalog: pd.DataFrame, names: list[str]) -> None:
    """Put the link's choice in the widgets' state; warn, naming them, about what it names in vain."""
    if "experiment" in url:
        if url["experiment"] in names:
            st.session_state[MODE], st.session_state[EXPERIMENT] = EXPERIMENT_MODE, url["experiment"]
            return
        if names:
            st.session_state[MODE], st.session_state[EXPERIMENT] = EXPERIMENT_MODE, names[0]
        st.session_state[URL_WARNING] = (
            f"The link asks for experiment {md_code(url['experiment'])}, which this workspace does not have "
            "(or which has no finished run yet). Showing "
            f"{f'{md_code(names[0])}, the newest experiment,' if names else 'the evaluated runs'} instead."
        )
        return
    wanted = list(dict.fromkeys(r.strip() for r in url["runs"].split(",") if r.strip()))
    evaluated = set(catalog.loc[catalog["evaluated"] > 0, "run_id"])
    known = [r for r in wanted if r in evaluated]
    missing = [r for r in wanted if r not in set(catalog["run_id"])]
    pending = [r for r in wanted if r not in evaluated and r not in missing]
    named = {"not in this workspace": missing, "trained but not evaluated yet": pending}
    problems = [f"{why}: {', '.join(md_code(r) for r in ids)}" for why, ids in named.items() if ids]
    if problems:
        rest = "Showing the others." if known else "Showing the default choice instead."
        st.session_state[URL_WARNING] = f"The link names runs {'; '.join(problems)}. {rest}"
    if known:
        st.session_state[MODE], st.session_state[RUNS] = RUNS_MODE, known


def _sync_state(catalog: pd.DataFrame, names: list[str], evaluated: list[str]) -> None:
    """Apply the URL where it is news (see the module docstring), then keep every value valid."""
    st.session_state.setdefault(MODE, EXPERIMENT_MODE if names else RUNS_MODE)
    url = _url_choice()
    if url and url != st.session_state.get(URL_WRITTEN) and not st.session_state[TOUCHED]:
        _apply_url(url, catalog, names)
    st.session_state[TOUCHED] = False
    if not names:
        st.session_state[MODE] = RUNS_MODE
    if st.session_state.get(EXPERIMENT) not in names:
        st.session_state[EXPERIMENT] = names[0] if names else None
    st.session_state[RUNS] = [r for r in st.session_state.get(RUNS, evaluated) if r in evaluated]


def choose(reader: StoreReader, catalog: pd.DataFrame) -> Choice:
    """The chooser (experiment, newest first, or any evaluated runs), kept in the URL."""
    found = _experiments(_stamp(reader), reader)
    by_name = {e["experiment_id"]: e for e in found}
    runs = catalog[catalog["evaluated"] > 0].assign(label=lambda df: df["method"].map(compare.method_label))
    runs = runs.sort_values(["label", "seed", "run_id"])
    labels = {r.run_id: f"{r.label} · seed {r.seed} · {r.run_id}" for r in runs.itertuples()}
    _sync_state(catalog, list(by_name), list(labels))
    if found:  # with no experiment, runs are the only choice
        st.segmented_control(
            "Compare", list(MODE_LABELS), key=MODE, format_func=MODE_LABELS.__getitem__, required=True,
            on_change=_touched, persist_state="session",
        )  # fmt: skip
    mode = st.session_state[MODE]
    if st.session_state[URL_WARNING]:
        st.warning(st.session_state[URL_WARNING], icon=":material/link_off:")
    if mode == EXPERIMENT_MODE:
        name = st.selectbox(
            "Experiment (newest first)", list(by_name), key=EXPERIMENT, on_change=_touched,
            format_func=lambda n: f"{n} · {_count(by_name[n]['finished'], 'run')}", persist_state="session",
        )  # fmt: skip
        _write_url({"experiment": name})
        about = {k: json.loads(by_name[name][k]) for k in ("methods", "seeds", "config")}
        return Choice(by_name[name]["run_ids"], f"RG-VLM Studio: {name}", {"experiment": name, **about})
    chosen = st.multiselect(
        "Runs (method · training seed · run)", list(labels), key=RUNS, format_func=labels.__getitem__,
        on_change=_touched, persist_state="session", placeholder="Choose evaluated training runs",
    )  # fmt: skip
    _write_url({"runs": ",".join(chosen)})
    return Choice(list(chosen), f"RG-VLM Studio: {len(chosen)} runs", {"runs": list(chosen)})


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


def _write_url(params: dict[str, str]) -> None:
    """Every run, as the Episodes page: a link copied at any moment reopens what is shown."""
    st.query_params.from_dict(params)
    st.session_state[URL_WRITTEN] = params


def pending_note(catalog: pd.DataFrame) -> None:
    """Say which finished runs cannot be compared yet, and how to fix it."""
    pending = catalog.loc[catalog["evaluated"] == 0, "run_id"].tolist()
    if pending:
        st.caption(
            f"{len(pending)} trained run(s) not evaluated yet, so not listed: "
            f"{', '.join(md_code(r) for r in pending[:5])}"
            f"{' …' if len(pending) > 5 else ''}. Evaluate with `rgvlm evaluate RUN`."
        )


def phrasing_choice(reader: StoreReader, run_ids: list[str]) -> str:
    """Seen or unseen phrasings (held-out by default); with only one evaluated, it is said, not asked."""
    available = _phrasings(_stamp(reader), tuple(sorted(set(run_ids))), reader)
    if len(available) <= 1:
        only = available[0] if available else compare.default_phrasing(available)
        st.caption(f"{PHRASING_LABELS.get(only, only)}: the only phrasing these runs were evaluated with.")
        return only
    if st.session_state.get(PHRASING) not in available:
        st.session_state[PHRASING] = compare.default_phrasing(available)
    st.segmented_control(
        "Instructions", available, key=PHRASING, format_func=lambda p: PHRASING_LABELS.get(p, p),
        required=True, on_change=_touched, persist_state="session",
        help="Every table, chart and download shows evaluations of this phrasing only.",
    )  # fmt: skip
    return str(st.session_state[PHRASING])


# -- sections --------------------------------------------------------------------------------------
def chart_config(filename: str) -> dict[str, Any]:
    """Plotly config: the modebar's camera button saves a PNG named `filename` at twice the size."""
    return {"displaylogo": False, "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2}}


def overview(c: Comparison) -> None:
    """One line: what is compared, and on how many evaluation episodes."""
    runs = c.runs
    seeds = runs.groupby("method")["seed"].nunique()
    trained = c.episodes[c.episodes["run_id"] != compare.EXPERT]
    tasks = trained[["condition", "length", "episode", "episode_seed"]].drop_duplicates()
    alfred = tasks["condition"].isin(compare.ALFRED_CONDITIONS)
    if alfred.all():
        expert = (
            "; on ALFRED's own tasks no expert is replayed: `rgvlm sim evaluate --eval-tasks` measures "
            "ALFRED's recorded actions"
        )
    elif alfred.any():
        expert = "; the expert is replayed on the generated tasks, not on ALFRED's own"
    else:
        expert = " (the expert is replayed on the same tasks)"
    st.caption(
        f"{_count(len(runs), 'run')} · {_count(len(seeds), 'method')} · seeds per method: "
        + ", ".join(f"{md_escape(compare.method_label(m))} {n}" for m, n in seeds.items())
        + f" · {len(trained):,} evaluated episodes on {len(tasks):,} distinct tasks{expert}"
    )


def completion_section(c: Comparison) -> None:
    """The paper's figure: completion by number of subtasks, both conditions side by side."""
    points = st.toggle(
        "Show each seed as a point", key=SEED_POINTS, on_change=_touched, persist_state="session"
    )
    figure = completion_figure(c.summary, c.seeds if points else None, colours=c.colours)
    figure.update_layout(height=460, margin={"t": 40})
    st.plotly_chart(figure, key="compare.completion", config=chart_config("rgvlm-completion-by-length"))
    st.caption(
        "Bars: mean over training seeds of each run's proportion of subtasks completed; whiskers: 95% "
        "confidence interval over seeds (Student t; none from a single seed). Dashed lines: the expert "
        "(replayed on the same tasks) and behaviour cloning. PNG: the camera button in the chart's "
        "toolbar saves the chart at twice its size."
    )


def success_section(c: Comparison) -> None:
    """Full-task success per method and condition (the paper's second measure): chart and numbers."""
    figure = success_figure(c.success, c.colours)
    figure.update_layout(height=340, margin={"t": 30}, legend={"orientation": "h", "y": -0.15})
    left, right = st.columns([2, 3], gap="medium")
    left.plotly_chart(figure, key="compare.success", config=chart_config("rgvlm-full-task-success"))
    with right:
        st.caption("Full-task success rate over all lengths: mean over seeds, 95% CI.")
        table(c.success, "compare.success_table", c.colours)


def table(
    frame: pd.DataFrame, key: str, colours: dict[str, str], columns: dict[str, Any] | None = None
) -> None:
    """A `compare` summary (mean, CI, seeds), each row marked in its method's colour; sortable by header.

    `columns` adds or replaces column configs (e.g. a difference shown with its sign)."""
    shown = frame.assign(colour="", method=frame["method"].map(compare.method_label))
    by_row = {i: method_colour(m, colours) for i, m in zip(shown.index, frame["method"], strict=True)}
    styled = shown[["colour", *frame.columns]].style.apply(
        lambda col: [f"background-color: {by_row[i]}" for i in col.index], subset="colour"
    )
    number = st.column_config.NumberColumn
    config: dict[str, Any] = {
        "colour": st.column_config.TextColumn("", width=8),
        "method": "Method",
        "condition": "Condition",
        "phrasing": "Phrasing",
        "length": number("Subtasks"),
        "first_kind": "First subtask",
        "step": number("Step"),
        "mean": number("Mean", format="%.3f"),
        "ci_low": number("95% CI low", format="%.3f"),
        "ci_high": number("95% CI high", format="%.3f"),
        "seeds": number("Seeds"),
    }
    st.dataframe(styled, hide_index=True, key=key, column_config={**config, **(columns or {})})


def downloads(reader: StoreReader, c: Comparison, choice: Choice) -> None:
    """CSV of every row at once; the HTML report is written only when asked for (it embeds Plotly)."""
    stem = choice.title.removeprefix("RG-VLM Studio: ").replace(" ", "-")
    left, right, _ = st.columns([1, 1, 3])
    left.download_button(
        "CSV of every row", c.csv(), file_name=f"rgvlm-compare-{stem}.csv", mime="text/csv", key=CSV,
        on_click="ignore", icon=":material/download:", help="Per seed and per method.",
    )  # fmt: skip
    right.download_button(
        "HTML report", lambda: render_report(reader, c, title=choice.title, about=choice.about),
        file_name=f"rgvlm-compare-{stem}.html", mime="text/html", key=HTML, on_click="ignore",
        icon=":material/description:", help="Self-contained (as `rgvlm report`): opens without a network.",
    )  # fmt: skip


def curves_section(reader: StoreReader, c: Comparison) -> None:
    """Learning curves, one line per run in its method's colour; computed only while the expander is open."""
    box = st.expander("Learning curves", key=CURVES, on_change=_touched)
    with box:
        if not box.open:
            return
        names = compare.metric_names(reader)
        if not names:
            st.caption("These runs stored no training metric.")
            return
        if st.session_state.get(CURVE_METRIC) not in names:
            st.session_state[CURVE_METRIC] = "losses/q" if "losses/q" in names else names[0]
        metric = str(st.selectbox("Metric", names, key=CURVE_METRIC, on_change=_touched))
        curves = compare.learning_curves(reader, c.runs, metric)  # one small query, only while open
        missing = sorted(set(c.runs["method"]) - set(curves["method"])) if "method" in curves else []
        if missing:  # e.g. behaviour cloning, which trains no critic: no Q or V metric
            st.caption(f"No {md_escape(metric)} for {md_escape(', '.join(missing))}: choose another metric.")
        st.plotly_chart(
            curves_figure(curves, metric, c.colours),
            key="compare.curves_chart",
            config=chart_config("rgvlm-learning-curves"),
        )
