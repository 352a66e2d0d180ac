"""Choosing and playing an episode: the Episodes page's session keys, URL state, list and player.

Every session key of the page is declared in `K` with its default in `DEFAULTS`. The page's
shareable state (episode, step, run, second run) lives in canonical keys and in the URL
(`?episode=...&step=...&run=...&vs=...`); widgets have their own keys and are seeded from the
canonical ones before they are drawn, so buttons, slider, keyboard, chart clicks and links all move
the same step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import streamlit as st

from rgvlm_app.text import md_escape
from rgvlm_core.audit import episode_table, reference_run, step_frame_path
from rgvlm_core.catalog import EpisodeFilter, episode_steps, episode_subtasks, get_episode
from rgvlm_core.errors import RGVLMError
from rgvlm_core.workspace import StoreReader


class K:
    """Session-state keys of the Episodes page (canonical state first, then widget keys)."""

    EPISODE = "episodes.episode"  # str | None
    STEP = "episodes.step"  # int: t of the current step
    RUN = "episodes.run"  # str | None: the chosen label run; unset until runs are known
    RUN_B = "episodes.run_b"  # str | None: a second run, side by side
    PLAYING = "episodes.playing"  # bool
    PLAY_AT = "episodes.play_at"  # float: monotonic time of the last automatic step
    FLASH = "episodes.flash"  # str | None: a message for the next run (after a rerun)
    URL = "episodes.url"  # dict: the query parameters read when the session opened the page
    # widgets
    SLIDER = "episodes.w.slider"
    PREV = "episodes.w.prev"
    NEXT = "episodes.w.next"
    PLAY = "episodes.w.play"
    RUN_PICK = "episodes.w.run"
    RUN_B_PICK = "episodes.w.run_b"
    LIST = "episodes.w.list"
    SPLITS = "episodes.w.splits"
    TASK_TYPES = "episodes.w.task_types"
    N_SUBTASKS = "episodes.w.n_subtasks"
    DATASETS = "episodes.w.datasets"
    TEXT = "episodes.w.text"
    ORDER = "episodes.w.order"
    CHART = "episodes.w.timeline"
    OVERRIDE = "episodes.w.override"


DEFAULTS: dict[str, Any] = {
    K.EPISODE: None,
    K.STEP: 0,
    K.RUN_B: None,
    K.PLAYING: False,
    K.PLAY_AT: 0.0,
    K.FLASH: None,
}
NO_RUN = "(none)"
URL_NO_RUN = "none"
PLAY_INTERVAL_S = 0.8
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


# -- state and URL ---------------------------------------------------------------------------------
def init_state() -> None:
    """Declare the page's keys; on the session's first visit, read the URL once."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    if K.URL not in st.session_state:
        url = {k: st.query_params.get(k) for k in ("episode", "step", "run", "vs")}
        st.session_state[K.URL] = url
        if url["episode"]:
            st.session_state[K.EPISODE] = url["episode"]
        if url["step"] and url["step"].isdigit():
            st.session_state[K.STEP] = int(url["step"])


def write_url(episode_id: str, step: int, run: str | None, run_b: str | None) -> None:
    """Put the view in the URL, so a link reopens it.

    Written on every run, not only on change: a run started by a key press carries the URL the
    browser had then, which an earlier, still running step may rewrite after it.
    """
    wanted = {"episode": episode_id, "step": str(step), "run": run or URL_NO_RUN}
    if run_b:
        wanted["vs"] = run_b
    st.query_params.from_dict(wanted)


def set_step(step: int) -> None:
    st.session_state[K.STEP] = int(step)


def set_episode(episode_id: str) -> None:
    if episode_id != st.session_state[K.EPISODE]:
        st.session_state[K.EPISODE] = episode_id
        st.session_state[K.STEP] = 0
        st.session_state[K.PLAYING] = False


def flash(message: str) -> None:
    """Show a message on the next run (one that follows an st.rerun)."""
    st.session_state[K.FLASH] = message


def show_flash() -> None:
    message = st.session_state.get(K.FLASH)
    if message:
        st.toast(message, icon=":material/check_circle:")
        st.session_state[K.FLASH] = None


# -- cached reads (keyed by the shards of the tables read, so new data shows) ----------------------
def stamp(reader: StoreReader, *tables: str) -> tuple[str, tuple[tuple[str, ...], ...]]:
    """A cache key that changes whenever any of `tables` changes in the store.

    Read from the snapshot file, not through the shared reader, which other sessions' threads use.
    """
    snap = reader.workspace.snapshot()
    return str(reader.workspace.root), tuple(snap.files(t) for t in tables)


@dataclass(frozen=True)
class EpisodeView:
    """What the page shows of one episode: its row, trajectory facts, steps and subtasks."""

    info: dict[str, Any]
    steps: list[dict[str, Any]] = field(default_factory=list)
    subtasks: list[dict[str, Any]] = field(default_factory=list)

    @property
    def n_steps(self) -> int:
        return len(self.steps)

    def subtask_of(self, t: int) -> dict[str, Any] | None:
        for sub in self.subtasks:
            if sub["first_step"] is not None and sub["first_step"] <= t <= sub["last_step"]:
                return sub
        return None


_STEP_COLUMNS = ("t", "action", "frame", "sparse_reward", "subtask_idx", "valid", "progress")


@st.cache_data(max_entries=64, show_spinner=False)
def _episode(_reader: StoreReader, key: Any, episode_id: str) -> EpisodeView:
    info = get_episode(_reader, episode_id)
    traj = _reader.rows(
        "SELECT behaviour, condition, completed_subtasks FROM trajectories WHERE trajectory_id = ?",
        [info["trajectory_id"]],
    )
    info.update(traj[0] if traj else {})
    steps = episode_steps(_reader, episode_id).select(list(_STEP_COLUMNS)).to_pylist()
    for row in steps:
        row["frame_path"] = step_frame_path({"frame": row["frame"], "source_dir": info["source_dir"]})
    return EpisodeView(info, steps, episode_subtasks(_reader, episode_id).to_pylist())


def load_episode(reader: StoreReader, episode_id: str) -> EpisodeView:
    """An episode for the page (cached per store state); RGVLMError for an unknown id."""
    key = stamp(reader, "episodes", "trajectories", "steps", "subtasks")
    return _episode(reader, key, episode_id)


@st.cache_data(max_entries=16, show_spinner=False)
def _reference(_reader: StoreReader, key: Any) -> str | None:
    return reference_run(_reader)


@st.cache_data(max_entries=16, show_spinner=False)
def _facets(_reader: StoreReader, key: Any) -> dict[str, list[Any]]:
    out = {}
    for column in ("split", "task_type", "n_subtasks", "dataset"):
        rows = _reader.rows(
            f"SELECT DISTINCT {column} AS v FROM episodes "
            f"WHERE NOT task_only AND {column} IS NOT NULL ORDER BY 1"
        )
        out[column] = [r["v"] for r in rows]
    return out


@st.cache_data(max_entries=32, show_spinner="Scoring the episodes…")
def _table(_reader: StoreReader, key: Any, flt: EpisodeFilter, run: str | None, ref: str | None) -> pa.Table:
    return episode_table(_reader, flt, run, ref)


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


# -- sidebar widgets -------------------------------------------------------------------------------
def seed_widget(widget_key: str, value: Any) -> None:
    """Make a keyed widget show `value` (only before it is drawn in this run)."""
    if st.session_state.get(widget_key) != value:
        st.session_state[widget_key] = value


def copy_widget(widget_key: str, state_key: str) -> None:
    """on_change of a keyed widget: copy its value to the canonical key ("(none)" becomes None)."""
    value = st.session_state[widget_key]
    st.session_state[state_key] = None if value == NO_RUN else value


def episode_filter(reader: StoreReader) -> tuple[EpisodeFilter, str]:
    """Goal search, then filters and order (in an expander) of the episode list."""
    facets = _facets(reader, stamp(reader, "episodes"))
    text = st.text_input(
        "Search goals and ids", key=K.TEXT, placeholder="Search goals and ids", label_visibility="collapsed"
    )
    active = sum(bool(st.session_state.get(k)) for k in (K.SPLITS, K.TASK_TYPES, K.N_SUBTASKS, K.DATASETS))
    order = st.session_state.get(K.ORDER, next(iter(ORDERS)))
    with st.expander(f"Filters ({active} active) · sorted by {order}", icon=":material/filter_list:"):
        splits = st.multiselect("Split", facets["split"], key=K.SPLITS)
        task_types = st.multiselect("Task type", facets["task_type"], key=K.TASK_TYPES)
        n_subtasks = st.multiselect("Number of subtasks", facets["n_subtasks"], key=K.N_SUBTASKS)
        datasets = st.multiselect("Dataset", facets["dataset"], key=K.DATASETS)
        order = st.selectbox("Sort by", list(ORDERS), key=K.ORDER) or next(iter(ORDERS))
    flt = EpisodeFilter(
        splits=tuple(splits),
        task_types=tuple(task_types),
        n_subtasks=tuple(n_subtasks),
        datasets=tuple(datasets),
        text=text.strip() or None,
        include_task_only=False,
    )
    return flt, order


_LIST_COLUMNS = {
    "mean_score": "mean",
    "failed_steps": "failed",
    "disagreement": "Δ ref",
    "goal": "goal",
    "n_subtasks": "subtasks",
    "episode_id": "episode",
}


def episode_list(reader: StoreReader, flt: EpisodeFilter, order: str, run: str | None) -> list[str]:
    """The filtered, searched, sorted list with the run's columns; a clicked row opens that episode.

    Returns the ids listed (at most LIST_LIMIT).
    """
    ref = _reference(reader, stamp(reader, "label_runs"))
    key = stamp(reader, "episodes", "labels", "overrides")
    table = _table(reader, key, replace(flt, text=None), run, ref)  # searching needs no query
    table = sort_episodes(search_episodes(table, flt.text), order)
    n = table.num_rows
    table = table.slice(0, LIST_LIMIT)
    ids = table.column("episode_id").to_pylist()
    shown = f"{n:,} episodes" if n <= LIST_LIMIT else f"{n:,} episodes, the first {LIST_LIMIT:,} listed"
    st.caption(
        f"{shown} · scores of the chosen run · Δ ref = mean |score − reference|"
        + ("" if ref else " (no reference run yet)")
    )
    current = st.session_state[K.EPISODE]
    row = ids.index(current) if current in ids else None
    view = table.select(list(_LIST_COLUMNS)).rename_columns(list(_LIST_COLUMNS.values()))
    list_key = f"{K.LIST}:{hash((flt, order, run, key))}"

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
            "episode": st.column_config.TextColumn(width="large"),
        },
    )
    return ids


def why_no_episode(flt: EpisodeFilter) -> str:
    """What to say when the list is empty."""
    if flt == EpisodeFilter(include_task_only=False):
        return "This workspace holds no episodes with steps yet: import a dataset (`rgvlm import PATH`)."
    return "No episode matches these filters."


def resolve_episode(reader: StoreReader, listed: Sequence[str]) -> EpisodeView | None:
    """The current episode (from the URL, a click, or the first listed); None when nothing to show."""
    wanted = st.session_state[K.EPISODE]
    if wanted:
        try:
            return load_episode(reader, wanted)
        except RGVLMError as exc:
            st.warning(f"{exc}. Showing the first listed episode instead.")
    if not listed:
        return None
    st.session_state[K.EPISODE] = listed[0]
    st.session_state[K.STEP] = 0
    return load_episode(reader, listed[0])


# -- main widgets ----------------------------------------------------------------------------------
def episode_header(ep: EpisodeView) -> None:
    """Goal, task type, split, dataset, behaviour (simulator data) and the episode id."""
    info = ep.info
    st.subheader(md_escape(info["goal"] or "(no goal text)"))
    facts = [md_escape(str(info[k])) for k in ("task_type", "split", "dataset") if info.get(k)]
    if info.get("behaviour"):
        facts.append(f"behaviour: {md_escape(info['behaviour'])}")
    if info.get("scene"):
        facts.append(md_escape(info["scene"]))
    facts.append(f"{ep.n_steps} steps, {len(ep.subtasks)} subtasks")
    st.caption(" · ".join(facts) + f"  \n`{info['episode_id']}`")


def subtask_list(ep: EpisodeView, current: int | None) -> None:
    """The subtasks with their instructions, steps and completed flags; the current one in bold."""
    lines = []
    for sub in ep.subtasks:
        reached = sub["first_step"] is not None and sub["first_step"] >= 0
        span = f"steps {sub['first_step']}–{sub['last_step']}" if reached else "not reached"
        flag = "✓" if sub.get("completed") else "✗"
        text = f"{flag} {sub['idx'] + 1}. {sub['kind']}: {md_escape(sub['instruction'] or '')} ({span})"
        lines.append(f"- **{text}**" if sub["idx"] == current else f"- {text}")
    st.markdown("\n".join(lines) or "No subtasks.")


def _clamp(ep: EpisodeView) -> int:
    step = max(0, min(ep.n_steps - 1, int(st.session_state[K.STEP])))
    st.session_state[K.STEP] = step
    return step


def _move(delta: int, n_steps: int) -> None:
    set_step(max(0, min(n_steps - 1, st.session_state[K.STEP] + delta)))


def _slid() -> None:
    set_step(st.session_state[K.SLIDER])


def play_interval() -> float | None:
    """Seconds between automatic steps while playing (for st.fragment(run_every=...)), else None."""
    return PLAY_INTERVAL_S if st.session_state[K.PLAYING] else None


def _advance_if_playing(ep: EpisodeView) -> None:
    if not st.session_state[K.PLAYING]:
        return
    now = time.monotonic()
    if now - st.session_state[K.PLAY_AT] >= 0.8 * PLAY_INTERVAL_S:
        st.session_state[K.PLAY_AT] = now
        if st.session_state[K.STEP] >= ep.n_steps - 1:
            st.session_state[K.PLAYING] = False
            st.rerun()  # a full run drops the fragment's timer
        _move(1, ep.n_steps)


def player(ep: EpisodeView) -> int:
    """The current step's frame and controls: Previous/Next (← →), a slider, Play/Stop. Returns the step."""
    _advance_if_playing(ep)
    step = _clamp(ep)
    row = ep.steps[step]
    path = row["frame_path"]
    if path:
        st.image(path, width=300, caption=f"Observation before step {step}")
    else:
        st.info("No frame in this dataset (imported without raw_images).")
    prev_col, next_col, play_col = st.columns(3)
    prev_col.button(
        "Prev",
        key=K.PREV,
        icon=":material/chevron_left:",
        shortcut="Left",
        on_click=_move,
        args=(-1, ep.n_steps),
        disabled=step == 0,
        width="stretch",
    )
    next_col.button(
        "Next",
        key=K.NEXT,
        icon=":material/chevron_right:",
        shortcut="Right",
        on_click=_move,
        args=(1, ep.n_steps),
        disabled=step >= ep.n_steps - 1,
        width="stretch",
    )
    playing = st.session_state[K.PLAYING]
    if play_col.button(
        "Stop" if playing else "Play",
        key=K.PLAY,
        icon=":material/stop:" if playing else ":material/play_arrow:",
        disabled=not playing and step >= ep.n_steps - 1,
        width="stretch",
    ):
        st.session_state[K.PLAYING] = not playing
        st.session_state[K.PLAY_AT] = time.monotonic()
        st.rerun()  # a full run gives the fragment its timer (or takes it away)
    if ep.n_steps > 1:
        seed_widget(K.SLIDER, step)
        st.slider("Step", 0, ep.n_steps - 1, key=K.SLIDER, on_change=_slid, label_visibility="collapsed")
    return step


def step_facts(ep: EpisodeView, step: int) -> None:
    """Step k of n, the action token, and the subtask it belongs to with its instruction."""
    row = ep.steps[step]
    st.markdown(f"#### Step {step} · {step + 1} of {ep.n_steps}")
    flags = []
    if row.get("valid") is False:
        flags.append("invalid action")
    if row.get("progress") is not None:
        flags.append("made progress" if row["progress"] else "no progress")
    if row.get("sparse_reward"):
        flags.append(f"sparse reward {row['sparse_reward']:g}")
    st.markdown(f"Action **{md_escape(row['action'])}**" + (f" · {', '.join(flags)}" if flags else ""))
    sub = ep.subtask_of(step)
    if sub is not None:
        instruction = md_escape(sub["instruction"] or "")
        st.markdown(f"Subtask {sub['idx'] + 1} of {len(ep.subtasks)} · {sub['kind']}: *{instruction}*")
