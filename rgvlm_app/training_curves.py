"""The Training page's learning curves: the runs of its jobs while they train, and finished runs chosen.

Redrawn by a timed fragment only while a job runs; coloured per method as on every chart of the app.
"""

from __future__ import annotations

import itertools
from typing import Any

import pandas as pd
import streamlit as st

from rgvlm_app.training_widgets import CURVE_RUNS, METRIC, key, refresh_every
from rgvlm_core import compare
from rgvlm_core.charts_compare import curves_figure, method_colours
from rgvlm_core.jobs import Job, get_job
from rgvlm_core.rl.config import IQLConfig
from rgvlm_core.rl.experiment import live_runs
from rgvlm_core.workspace import StoreReader


def _options(args: tuple[str, ...]) -> tuple[dict[str, str], dict[str, str]]:
    """A job's `--option value` pairs, and its `--iql NAME=VALUE` settings."""
    pairs = list(itertools.pairwise(args))
    iql = dict(v.split("=", 1) for a, v in pairs if a == "--iql" and "=" in v)
    return {a: v for a, v in pairs if a.startswith("-")}, iql


def job_runs(reader: StoreReader, jobs: list[Job]) -> pd.DataFrame:
    """Runs of these jobs that have logged metrics, finished or not (run_id, method, seed).

    A `train` job's run is its --name; an experiment's runs are found by `rl.experiment.live_runs`.
    """
    rows: list[dict[str, Any]] = []
    for job in jobs:
        opts, iql = _options(job.args)
        name = opts.get("--name")
        if not name:
            continue
        if job.args[0] == "train":
            config = {"beta": float(iql.get("beta", IQLConfig().beta))}
            method = compare.method_of(
                opts.get("--reward", "sparse"), float(opts.get("--lambda", 1.0)), config
            )
            rows.append({"run_id": name, "method": method, "seed": int(opts.get("--seed", 0))})
            continue
        rows.extend(live_runs(reader, name))
    return pd.DataFrame(rows, columns=["run_id", "method", "seed"])


def metric_select(reader: StoreReader) -> str:
    names = compare.metric_names(reader) or ["losses/q"]
    if st.session_state.get(METRIC) not in names:
        st.session_state[METRIC] = "losses/q" if "losses/q" in names else names[0]
    return str(st.selectbox("Metric", names, key=METRIC))


def curve_run_picker(runs: pd.DataFrame) -> list[str]:
    """Finished runs to plot as well; at first the newest experiment's (or the newest six)."""
    ids = list(runs["run_id"])
    if CURVE_RUNS not in st.session_state:
        newest = runs["experiment"].dropna().iloc[-1] if runs["experiment"].notna().any() else None
        st.session_state[CURVE_RUNS] = (
            list(runs[runs["experiment"] == newest]["run_id"]) if newest else ids[-6:]
        )
    st.session_state[CURVE_RUNS] = [r for r in st.session_state[CURVE_RUNS] if r in ids]
    return list(st.multiselect("Finished runs", ids, key=CURVE_RUNS))


def curves_section(
    reader: StoreReader, jobs: list[Job], runs: pd.DataFrame, picked: list[str], metric: str
) -> None:
    """The learning curves of the jobs' runs and the picked runs; redrawn every REFRESH_S while a job runs."""
    every = refresh_every(jobs)
    ids = tuple(j.job_id for j in jobs)
    chosen = runs[runs["run_id"].isin(picked)][["run_id", "method", "seed"]]
    st.fragment(run_every=every)(_curves)(reader, ids, chosen, metric, every is not None)


def _curves(
    reader: StoreReader, job_ids: tuple[str, ...], chosen: pd.DataFrame, metric: str, live: bool
) -> None:
    jobs = [get_job(reader.workspace, j) for j in job_ids]
    shown = pd.concat([job_runs(reader, jobs), chosen]).drop_duplicates("run_id", keep="last")
    curves = compare.learning_curves(reader, shown, metric)
    if curves.empty:
        st.caption("No curves yet: runs store their metrics every “Log every” steps while they train.")
    else:
        colours = method_colours(compare.methods_in_order(reader))
        figure = curves_figure(curves, metric, colours).update_layout(margin={"t": 30})  # no top gap
        st.plotly_chart(figure, key=key("curves"))
    if live and refresh_every(jobs) is None:
        st.rerun()  # the last job ended: redraw the page (its runs, no more timer)
