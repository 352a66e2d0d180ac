"""The Overview page's "at a glance" cards: data, labels, training and jobs, each with its links."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import streamlit as st

from rgvlm_app.jobs_panel import jobs_panel
from rgvlm_app.text import md_escape
from rgvlm_core.jobs import list_jobs
from rgvlm_core.workspace import StoreReader, Workspace

DATASET_NAMES = {"alfred": "ALFRED", "sim": "household simulator"}
LABELLER_NAMES = {
    "reference": "reference labeller (ground truth, not an LVLM)",
    "lvlm": "LVLM",
    "clip": "CLIP similarity",
}


def glance(reader: StoreReader, counts: dict[str, Any], workspace: Path) -> None:
    """Four cards side by side; every figure is read from the store or the jobs folder now."""
    data, labels, training, jobs = st.columns(4)
    with data.container(border=True):
        _data_card(counts)
    with labels.container(border=True):
        _labels_card(reader)
    with training.container(border=True):
        _training_card(reader)
    with jobs.container(border=True):
        running = _jobs_card(workspace)
    if running:
        st.subheader("Jobs in progress")
        jobs_panel(workspace, running)


def _data_card(counts: dict[str, Any]) -> None:
    st.markdown("**Data**")
    st.markdown(f"{counts['episodes']:,} episodes · {counts['steps']:,} steps")
    for dataset, n in counts["by_dataset"].items():
        st.caption(f"{DATASET_NAMES.get(dataset, dataset)}: {n:,} episodes")
    st.page_link("pages/episodes.py", label="Browse episodes", icon=":material/movie:")


def _labels_card(reader: StoreReader) -> None:
    from rgvlm_core.labeling.store import label_runs

    st.markdown("**Labels**")
    runs = label_runs(reader)
    st.markdown(f"{len(runs)} label runs")
    if runs:
        newest = runs[-1]
        who = LABELLER_NAMES.get(newest["labeller"], newest["labeller"])
        model = f", model `{md_escape(newest['model'])}`" if newest.get("model") else ""
        st.caption(
            f"Newest: `{md_escape(newest['run_id'])}` · {who}{model} · "
            f"{newest['ok_steps']:,} steps scored, {newest['failed_steps']:,} failed"
        )
    model = os.environ.get("RGVLM_MODEL")
    if model:
        st.caption(f"LVLM configured: `{md_escape(model)}` (RGVLM_MODEL)")
    else:
        st.caption(
            "No LVLM configured (set RGVLM_MODEL and RGVLM_BASE_URL): relabelling from the dashboard "
            "uses the reference labeller, which reads ground truth and is not an LVLM."
        )
    st.page_link("pages/prompts.py", label="Prompts and relabelling", icon=":material/edit_note:")
    st.page_link("pages/audit.py", label="Audit the rewards", icon=":material/fact_check:")


def _training_card(reader: StoreReader) -> None:
    st.markdown("**Training**")
    runs = reader.scalar("SELECT count(*) FROM train_runs") or 0
    evaluated = reader.scalar("SELECT count(DISTINCT run_id) FROM eval_results") or 0
    st.markdown(f"{runs} training runs · {evaluated} evaluated")
    newest = reader.rows(
        "SELECT e.experiment_id, e.methods, e.seeds, "
        "(SELECT count(*) FROM experiment_runs r WHERE r.experiment_id = e.experiment_id) AS finished "
        "FROM experiments e ORDER BY e.created_at DESC LIMIT 1"
    )
    st.page_link("pages/training.py", label="Train and run experiments", icon=":material/model_training:")
    if newest:
        exp = newest[0]
        planned = len(json.loads(exp["methods"])) * len(json.loads(exp["seeds"]))
        name = md_escape(exp["experiment_id"])
        st.caption(f"Newest experiment `{name}`: {exp['finished']} of {planned} runs finished")
        st.page_link(
            "pages/compare.py",
            label="Compare its methods",
            icon=":material/leaderboard:",
            query_params={"experiment": exp["experiment_id"]},
        )
    elif evaluated:
        st.page_link("pages/compare.py", label="Compare methods", icon=":material/leaderboard:")


def _jobs_card(workspace: Path) -> list[str]:
    st.markdown("**Jobs**")
    jobs = list_jobs(Workspace.open(workspace, create=False), limit=20)
    running = [j.job_id for j in jobs if j.status == "running"]
    st.markdown(f"{len(running)} running")
    if jobs and not running:
        last = jobs[0]
        st.caption(f"Last: `{md_escape(last.command)}` · {last.status}")
    if not jobs:
        st.caption("None yet: relabelling and training run as jobs you can follow here.")
    return running
