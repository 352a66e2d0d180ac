"""The Overview page's "at a glance" cards (data, labels, training, jobs) and the dataset picker.

Simulator and ALFRED episodes are never summed silently: where a workspace holds both, a page shows one
at a time through `dataset_picker`, which keeps the choice in the URL (`?dataset=alfred`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import streamlit as st

from rgvlm_app.jobs_panel import jobs_panel
from rgvlm_app.text import md_code, md_escape
from rgvlm_core.jobs import list_jobs
from rgvlm_core.workspace import StoreReader, Workspace

DATASET_NAMES = {"alfred": "ALFRED", "sim": "household simulator"}
DATASET = "dataset"  # session key of the dataset picker, and its query parameter
_LINKED = "dataset.linked"  # the dataset the URL named when last read or written


def dataset_name(dataset: str) -> str:
    """How a dataset is called on the pages (data: escape it for the medium)."""
    return DATASET_NAMES.get(dataset, dataset)


def dataset_picker(sizes: Mapping[str, int], default: str) -> str | None:
    """The dataset a page shows: a choice kept in the URL (`?dataset=alfred`) where there are two or more.

    `sizes` maps each dataset to its episodes. With one dataset there is nothing to choose; a caption
    names it, so the page always says which data it shows. None when the workspace holds no episode.
    """
    if not sizes:
        return None
    if len(sizes) == 1:
        only = next(iter(sizes))
        st.caption(f"Dataset: {md_escape(dataset_name(only))} (the only one in this workspace)")
        return only
    _follow_link(sizes, default)
    choice = str(
        st.segmented_control(
            "Dataset",
            list(sizes),
            key=DATASET,
            required=True,
            format_func=lambda d: f"{md_escape(dataset_name(d))} · {sizes[d]:,} episodes",
            help="Simulator and ALFRED episodes are shown apart, never summed.",
        )
    )
    st.query_params[DATASET] = st.session_state[_LINKED] = choice
    return choice


def _follow_link(sizes: Mapping[str, int], default: str) -> None:
    """Seed the picker: a dataset newly named in the URL wins, else the session's choice, else `default`.

    Only a URL value that differs from the one last read or written counts as new: the address bar
    still shows the previous choice on the run that a click starts, and must not undo the click. The
    value is always written before the widget is drawn: the picker of another page (same key, another
    widget) hands its choice over that way.
    """
    wanted = st.session_state.get(DATASET)
    linked = st.query_params.get(DATASET)
    if linked != st.session_state.get(_LINKED):
        st.session_state[_LINKED] = linked
        if linked in sizes:
            wanted = linked
    if wanted not in sizes:
        wanted = default if default in sizes else next(iter(sizes))
    st.session_state[DATASET] = wanted


def partial_runs_note(
    coverage: Mapping[str, Mapping[str, int]], run_ids: list[str], datasets: list[str]
) -> str:
    """Markdown naming the runs that did not label every dataset ("" when each one did, or one dataset)."""
    if len(datasets) < 2:
        return ""
    groups: dict[tuple[str, ...], list[str]] = {}
    for run in run_ids:
        labelled = tuple(d for d in datasets if coverage.get(run, {}).get(d))
        if len(labelled) < len(datasets):
            groups.setdefault(labelled, []).append(run)
    lines = []
    for labelled, runs in groups.items():
        what = (
            "labelled only " + " and ".join(md_escape(dataset_name(d)) for d in labelled)
            if labelled
            else "labelled no step yet"
        )
        lines.append(f"{', '.join(md_code(r) for r in runs)} {what}.")
    return " ".join(lines)


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
        _labels_card(reader, list(counts["by_dataset"]))
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
        st.caption(f"{md_escape(dataset_name(dataset))}: {n:,} episodes")
    st.page_link("pages/episodes.py", label="Browse episodes", icon=":material/movie:")


@st.cache_data(show_spinner=False, max_entries=8)
def _run_datasets(root: str, snapshot: int, _reader: StoreReader) -> dict[str, dict[str, int]]:
    from rgvlm_core.audit import run_datasets

    return run_datasets(_reader)


def _coverage(reader: StoreReader) -> dict[str, dict[str, int]]:
    """Steps each run labelled per dataset, cached per store snapshot (it reads every label)."""
    return _run_datasets(str(reader.workspace.root), reader.workspace.snapshot().version, reader)


def _labels_card(reader: StoreReader, datasets: list[str]) -> None:
    from rgvlm_core.labeling.store import label_runs

    st.markdown("**Labels**")
    runs = label_runs(reader)
    st.markdown(f"{len(runs)} label runs")
    if runs:
        newest = runs[-1]
        who = md_escape(LABELLER_NAMES.get(newest["labeller"], newest["labeller"]))
        model = f", model {md_code(newest['model'])}" if newest.get("model") else ""
        st.caption(
            f"Newest: {md_code(newest['run_id'])} · {who}{model} · "
            f"{newest['ok_steps']:,} steps scored, {newest['failed_steps']:,} failed"
        )
        if len(datasets) > 1:
            note = partial_runs_note(_coverage(reader), [r["run_id"] for r in runs], datasets)
            if note:
                st.caption(note)
    configured = os.environ.get("RGVLM_MODEL")
    if configured:
        st.caption(f"LVLM configured: {md_code(configured)} (RGVLM_MODEL)")
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
        name = md_code(exp["experiment_id"])
        st.caption(f"Newest experiment {name}: {exp['finished']} of {planned} runs finished")
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
        st.caption(f"Last: {md_code(last.command)} · {md_escape(last.status)}")
    if not jobs:
        st.caption("None yet: relabelling and training run as jobs you can follow here.")
    return running
