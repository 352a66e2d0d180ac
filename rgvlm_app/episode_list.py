"""The Episodes page's sidebar: search, the Filters panel, the episode list, and which episode to show.

The shown episode follows the list: after the filters, the search or the order change, it is one of
the listed episodes (the first, unless it is still listed). Only an episode the URL asked for stays
shown while the filters hide it, until the person changes the filters or picks a row.

The list's scores need one aggregation over every label (seconds on a cold server at ALFRED-train
size), so it is computed once per run and store state for all episodes and filtered in memory, and
it is drawn after the episode when the episode does not depend on it (`EpisodeList`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from rgvlm_app.episode_data import EpisodeView, facets, load_episode, scored_episodes, stamp
from rgvlm_app.episode_state import K, set_episode
from rgvlm_app.text import md_escape
from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.errors import RGVLMError
from rgvlm_core.workspace import StoreReader

# Rows the list sends to the browser: a selectable st.dataframe is sent whole (21k rows are ~4 MB
# and keep the browser busy for seconds); filters, search and sorting reach the rest.
LIST_LIMIT = 1000
# The list's orders: label -> (column, descending).
ORDERS: dict[str, tuple[str, bool]] = {
    "episode": ("episode_id", False),
    "lowest mean score": ("mean_score", False),
    "highest mean score": ("mean_score", True),
    "most failed steps": ("failed_steps", True),
    "most disagreement with the reference": ("disagreement", True),
}
FILTERS_LABEL = "Filters and order"  # stable: a label that changes would redraw the panel closed
_LIST_COLUMNS = {  # the dataset (only where datasets mix) before the goal, so a narrow sidebar shows it
    "mean_score": "mean",
    "failed_steps": "failed",
    "disagreement": "Δ ref",
    "dataset": "dataset",
    "goal": "goal",
    "n_subtasks": "subtasks",
    "episode_id": "episode",
}


def filter_episodes(table: pa.Table, flt: EpisodeFilter) -> pa.Table:
    """Rows matching the filter's datasets, splits, task types and numbers of subtasks, then its text
    (a case-insensitive part of the goal or the episode id)."""
    for column, values in (
        ("dataset", flt.datasets),
        ("split", flt.splits),
        ("task_type", flt.task_types),
        ("n_subtasks", flt.n_subtasks),
    ):
        if values:
            table = table.filter(
                pc.is_in(table[column], value_set=pa.array(values, table.schema.field(column).type))
            )
    return search_episodes(table, flt.text)


def search_episodes(table: pa.Table, text: str | None) -> pa.Table:
    """Rows whose goal or episode id contains `text` (case-insensitive); all rows without text."""
    if not text:
        return table
    hit = pc.or_(
        pc.match_substring(table["goal"], text, ignore_case=True),
        pc.match_substring(table["episode_id"], text, ignore_case=True),
    )
    return table.filter(pc.fill_null(hit, False))


def sort_episodes(table: pa.Table, order: str) -> pa.Table:
    """The list in one of ORDERS (ties and missing values last, then by episode id)."""
    column, descending = ORDERS[order]
    keys = [(column, "descending" if descending else "ascending")]
    if column != "episode_id":
        keys.append(("episode_id", "ascending"))
    return table.sort_by(keys)  # missing values sort last in either order


def active_filters(flt: EpisodeFilter, order: str, datasets: Sequence[str]) -> str:
    """One line saying what the list shows: the dataset(s) first, then the other filters and order."""
    if len(datasets) > 1:
        chosen = flt.datasets or tuple(datasets)
        which = ", ".join(chosen) if flt.datasets else f"all ({', '.join(chosen)})"
        parts = [f"Dataset: {which}"]
    else:
        parts = []
    if flt.splits:
        parts.append(f"split {', '.join(flt.splits)}")
    if flt.task_types:
        parts.append(f"task {', '.join(flt.task_types)}")
    if flt.n_subtasks:
        parts.append(f"{', '.join(map(str, flt.n_subtasks))} subtasks")
    parts.append(f"sorted by {order}")
    return " · ".join(parts)


def episode_filter(reader: StoreReader) -> tuple[EpisodeFilter, str]:
    """Goal search, then filters and order (in a panel whose label never changes) of the list."""
    values = facets(reader)
    text = st.text_input(
        "Search goals and ids", key=K.TEXT, placeholder="Search goals and ids", label_visibility="collapsed"
    )
    with st.expander(FILTERS_LABEL, icon=":material/filter_list:", key=K.FILTERS, on_change="rerun"):
        datasets = st.multiselect(
            "Dataset",
            list(values["dataset"]),
            key=K.DATASETS,
            format_func=lambda v: f"{v} ({values['dataset'][v]:,})",
            help="Simulator and ALFRED episodes in one workspace: pick one to list only its episodes.",
        )
        splits = st.multiselect("Split", list(values["split"]), key=K.SPLITS)
        task_types = st.multiselect("Task type", list(values["task_type"]), key=K.TASK_TYPES)
        n_subtasks = st.multiselect("Number of subtasks", list(values["n_subtasks"]), key=K.N_SUBTASKS)
        order = st.selectbox("Sort by", list(ORDERS), key=K.ORDER) or next(iter(ORDERS))
    flt = EpisodeFilter(
        splits=tuple(splits),
        task_types=tuple(task_types),
        n_subtasks=tuple(n_subtasks),
        datasets=tuple(datasets),
        text=text.strip() or None,
        include_task_only=False,
    )
    st.caption(md_escape(active_filters(flt, order, list(values["dataset"]))))
    return flt, order


@st.cache_resource(max_entries=32, show_spinner=False)
def _list_view(
    _table: pa.Table, key: Any, flt: EpisodeFilter, order: str, with_dataset: bool
) -> tuple[list[str], pa.Table, int]:
    table = sort_episodes(filter_episodes(_table, flt), order)
    n = table.num_rows
    table = table.slice(0, LIST_LIMIT)
    columns = {k: v for k, v in _LIST_COLUMNS.items() if with_dataset or k != "dataset"}
    view = table.select(list(columns)).rename_columns(list(columns.values()))
    return table.column("episode_id").to_pylist(), view, n


def episode_list(reader: StoreReader, flt: EpisodeFilter, order: str, run: str | None) -> list[str]:
    """The filtered, searched, sorted list with the run's columns; a clicked row opens that episode.

    Returns the ids listed (at most LIST_LIMIT).
    """
    table = scored_episodes(reader, run)
    mixed = len(facets(reader)["dataset"]) > 1 and len(flt.datasets) != 1
    key = (stamp(reader, "episodes", "labels", "overrides", "label_runs"), run)
    ids, view, n = _list_view(table, key, flt, order, mixed)
    shown = f"{n:,} episodes" if n <= LIST_LIMIT else f"{n:,} episodes, the first {LIST_LIMIT:,} listed"
    st.caption(f"{shown} · scores of the chosen run · Δ ref = mean |score − reference|")
    current = st.session_state[K.EPISODE]
    row = ids.index(current) if current in ids else None
    list_key = f"{K.LIST}:{hash((key, flt, order))}"

    def picked() -> None:
        rows = st.session_state[list_key]["selection"]["rows"]
        if rows:
            set_episode(ids[rows[0]])

    st.dataframe(
        view,
        key=list_key,
        height=420,
        hide_index=True,
        on_select=picked,
        selection_mode="single-row",
        selection_default={"selection": {"rows": [row]}} if row is not None else None,
        column_config={
            "mean": st.column_config.NumberColumn(format="%.1f", width=44, help="mean score of the run"),
            "failed": st.column_config.NumberColumn(width=44, help="steps the run could not score"),
            "Δ ref": st.column_config.NumberColumn(format="%.1f", width=44, help="mean |score − reference|"),
            "goal": st.column_config.TextColumn(width=220),
            "subtasks": st.column_config.NumberColumn(width=60),
            "dataset": st.column_config.TextColumn(width=60),
            "episode": st.column_config.TextColumn(width="large"),
        },
    )
    return ids


class EpisodeList:
    """The sidebar list, drawn into its place when first needed: at once when the episode to show
    depends on it (none chosen yet, or the filters changed), else after the episode is drawn."""

    def __init__(
        self, slot: Any, reader: StoreReader, flt: EpisodeFilter, order: str, run: str | None
    ) -> None:
        self._slot, self._args = slot, (reader, flt, order, run)
        self._ids: list[str] | None = None

    def ids(self) -> list[str]:
        if self._ids is None:
            with self._slot:
                self._ids = episode_list(*self._args)
        return self._ids


def filters_changed(flt: EpisodeFilter, order: str) -> bool:
    """Whether the filters, search or order differ from the previous run's (never on arrival)."""
    signature = (flt, order)
    before = st.session_state.get(K.LIST_SIG)
    st.session_state[K.LIST_SIG] = signature
    return before is not None and before != signature


def why_no_episode(flt: EpisodeFilter) -> str:
    """What to say when the list is empty."""
    if flt == EpisodeFilter(include_task_only=False):
        return "This workspace holds no episodes with steps yet: import a dataset (`rgvlm import PATH`)."
    return "No episode matches these filters."


def resolve_episode(reader: StoreReader, listed: EpisodeList, changed: bool) -> EpisodeView | None:
    """The episode to show: the current one, unless the filters just changed and no longer list it.

    The current episode comes from the URL, a row click, or an earlier run; without one, or when
    the filters dropped it, the first listed episode is shown. None when there is nothing to show.
    """
    wanted = st.session_state[K.EPISODE]
    if changed:
        st.session_state[K.PINNED] = False
        if wanted not in listed.ids():
            wanted = None
    if wanted:
        try:
            return load_episode(reader, wanted)
        except RGVLMError as exc:
            st.warning(f"{md_escape(str(exc))}. Showing the first listed episode instead.")  # names the id
    ids = listed.ids()
    if not ids:
        return None
    set_episode(ids[0])
    return load_episode(reader, ids[0])


def pinned_note(ep: EpisodeView, listed: Sequence[str]) -> None:
    """Say so when the episode the link opened is not among the listed ones."""
    if ep.info.get("task_only"):
        st.caption("Task-only episodes have nothing to play, so the list leaves them out.")
    elif st.session_state[K.PINNED] and ep.episode_id not in listed:
        st.caption("Opened by its link; not among the listed episodes (filters, search or list length).")
