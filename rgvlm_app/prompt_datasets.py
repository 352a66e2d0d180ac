"""Which datasets the Prompts page previews and relabels, and which of their episodes have frames.

A workspace can hold simulator episodes (with frames) beside real ALFRED episodes imported without
raw_images; an LVLM cannot score the latter, unless they were imported with replayed states (`rgvlm
import --replay`), from which it is shown rendered frames. The preview and the relabel form let the user
pick the datasets whenever there is more than one, and always say what is selected and what lacks frames.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

import streamlit as st

from rgvlm_app import prompt_widgets as pw
from rgvlm_app.text import md_escape
from rgvlm_core.catalog import EpisodeFilter, episode_where
from rgvlm_core.workspace import StoreReader

DATASET_NAMES = {"sim": "simulator", "alfred": "ALFRED"}
NO_FRAMES_OUTCOME = (
    "an LVLM label run does not query the model for it: each of its subtasks is recorded as failed "
    "(“no frames”); the reference labeller still labels it, from the plan."
)


@dataclass(frozen=True)
class DatasetScope:
    """How many of a filter's episodes (with steps) one dataset holds, and how many have no frames."""

    dataset: str
    episodes: int
    without_frames: int  # neither frame files nor replayed states
    rendered: int = 0  # no frame files, but replayed states: frames are rendered from them

    def describe(self) -> str:
        """E.g. "alfred (ALFRED): 6 episodes, none with frames", as Markdown (for captions)."""
        plural = "" if self.episodes == 1 else "s"
        if self.without_frames == 0:
            frames = ""
        elif self.without_frames == self.episodes:
            frames = ", none with frames"
        else:
            frames = f", {self.without_frames:,} without frames"
        if self.rendered:
            which = "all" if self.rendered == self.episodes else f"{self.rendered:,}"
            frames += f", {which} with frames rendered from replayed states"
        return f"{dataset_label(self.dataset, md_escape)}: {self.episodes:,} episode{plural}{frames}"


def dataset_label(dataset: str, escape: Callable[[str], str] = str) -> str:
    """A dataset's name as options show it; stable across runs (the browser sends labels back).

    `escape` is applied to the dataset (data): `md_escape` where the label renders Markdown (radio
    options, captions); plain text (multiselect options) needs none.
    """
    if dataset == pw.ALL_DATASETS:
        return "all datasets"
    name = DATASET_NAMES.get(dataset)
    return f"{escape(dataset)} ({name})" if name else escape(dataset)


@st.cache_data(show_spinner=False, max_entries=64)
def _scopes(
    _reader: StoreReader, root: str, snapshot: int, flt_key: str, _flt: EpisodeFilter
) -> list[DatasetScope]:
    where, params = episode_where(replace(_flt, include_task_only=False, limit=None))
    limit = f"LIMIT {int(_flt.limit)}" if _flt.limit else ""
    rows = _reader.rows(
        "SELECT e.dataset, count(*) AS episodes, "
        "count(*) FILTER (WHERE NOT t.has_frames AND t.final_state IS NULL) AS without_frames, "
        "count(*) FILTER (WHERE NOT t.has_frames AND t.final_state IS NOT NULL) AS rendered "
        f"FROM (SELECT * FROM episodes {where} ORDER BY episode_id {limit}) e "
        "JOIN trajectories t USING (trajectory_id) WHERE e.n_steps > 0 GROUP BY 1 ORDER BY 1",
        params,
    )
    return [
        DatasetScope(r["dataset"], int(r["episodes"]), int(r["without_frames"]), int(r["rendered"]))
        for r in rows
    ]


def dataset_scopes(reader: StoreReader, flt: EpisodeFilter = EpisodeFilter()) -> list[DatasetScope]:
    """Per dataset, the episodes with steps that `flt` selects (its limit applied in id order, as a
    label run applies it) and how many of them have no frames; cached per workspace snapshot."""
    snapshot = reader.workspace.snapshot().version
    return _scopes(reader, str(reader.workspace.root), snapshot, repr(flt), flt)


def preview_dataset(scopes: list[DatasetScope]) -> tuple[str, ...]:
    """The preview's dataset choice (a radio when the workspace has several); says what is selected."""
    names = [s.dataset for s in scopes]
    if len(names) <= 1:
        if scopes:
            st.caption(f"Dataset: {scopes[0].describe()} (the only one in this workspace).")
        return ()
    options = [pw.ALL_DATASETS, *names]
    pw.keep_valid(pw.PREVIEW_DATASET, options, pw.ALL_DATASETS)
    chosen = str(
        st.radio(
            "Dataset",
            options,
            key=pw.PREVIEW_DATASET,
            horizontal=True,
            format_func=functools.partial(dataset_label, escape=md_escape),  # radio options are Markdown
        )
    )
    shown = [s for s in scopes if chosen in (pw.ALL_DATASETS, s.dataset)]
    st.caption("Previewing from " + "; ".join(s.describe() for s in shown) + ".")
    return () if chosen == pw.ALL_DATASETS else (chosen,)


def relabel_datasets(scopes: list[DatasetScope]) -> tuple[str, ...]:
    """The relabel scope's datasets (a multiselect when the workspace has several; empty: all)."""
    names = [s.dataset for s in scopes]
    if len(names) <= 1:
        return ()
    key = pw.setting_key("relabel", "datasets")
    pw.keep_valid_many(key, names)
    chosen = st.multiselect(
        "Datasets (empty: all)",
        names,
        key=key,
        format_func=dataset_label,
        help="The workspace holds several datasets; relabel all of them or only some.",
    )
    return tuple(str(d) for d in chosen)


def scope_summary(scopes: list[DatasetScope], lvlm: bool) -> None:
    """What a relabel run would cover, per dataset; a warning when an LVLM would meet frameless episodes."""
    if not scopes:
        st.warning("No episode with steps matches these filters; the run would label nothing.")
        return
    total = sum(s.episodes for s in scopes)
    st.caption(f"Scope: {total:,} episodes. " + "; ".join(s.describe() for s in scopes) + ".")
    frameless = [s for s in scopes if s.without_frames]
    if lvlm and frameless:
        n = sum(s.without_frames for s in frameless)
        names = ", ".join(md_escape(s.dataset) for s in frameless)
        st.warning(
            f"{n:,} of these episodes have no frames ({names}, imported without raw_images): the LVLM "
            "cannot see them, so their subtasks would be recorded as failed. Pick only datasets with "
            "frames, or use the reference labeller for them."
        )
