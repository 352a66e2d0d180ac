"""The Episodes page's session keys, its URL contract, and the small callbacks that move its state.

Every session key of the page is declared in `K` with its default in `DEFAULTS`. The shareable
state (episode, step, run, second run) lives in canonical keys and in the URL:

    /episodes?episode=ID&step=T&run=RUN&vs=RUN_B

Widgets have their own keys and are seeded from the canonical ones before they are drawn, so
buttons, slider, keyboard, chart clicks, list rows and links all move the same state.

Arrival: the URL wins over what the session remembers whenever the page is entered, by a deep
link in a fresh session, by `st.switch_page(..., query_params=...)` or a page link from another
page, or by the browser's back button. The page knows it was just entered because Streamlit
drops the state of widgets that the previous run did not draw: the search box (`K.TEXT`) is drawn
on every run of this page, so its key is missing exactly when the previous run was another page
(or none). Within the page, the URL only echoes the state (`write_url`), and a stale echo (a key
press sent while an earlier step was still being drawn) must not move the state back.
"""

from __future__ import annotations

from typing import Any

import streamlit as st


class K:
    """Session-state keys of the Episodes page (canonical state first, then widget keys)."""

    EPISODE = "episodes.episode"  # str | None
    STEP = "episodes.step"  # int: t of the current step
    RUN = "episodes.run"  # str | None: the chosen label run; unset until runs are known
    RUN_B = "episodes.run_b"  # str | None: a second run, side by side
    PLAYING = "episodes.playing"  # bool
    PLAY_AT = "episodes.play_at"  # float: monotonic time of the last automatic step
    SPEED = "episodes.speed"  # str: the playback speed, a key of player.SPEEDS
    FLASH = "episodes.flash"  # str | None: a message for the next run (after a rerun)
    URL = "episodes.url"  # dict | None: the URL's view on arrival, until the run pickers apply it
    PINNED = "episodes.pinned"  # bool: the URL asked for this episode (filters do not replace it)
    LIST_SIG = "episodes.list_sig"  # the filters and order of the last run (to see them change)
    OVERRIDE_SAVES = "episodes.override_saves"  # int: overrides saved (names the form's inputs)
    # widgets
    SLIDER = "episodes.w.slider"
    PREV = "episodes.w.prev"
    NEXT = "episodes.w.next"
    PLAY = "episodes.w.play"
    SPEED_PICK = "episodes.w.speed"
    RUN_PICK = "episodes.w.run"
    RUN_B_PICK = "episodes.w.run_b"
    LIST = "episodes.w.list"
    FILTERS = "episodes.w.filters"  # the Filters panel (expander)
    SPLITS = "episodes.w.splits"
    TASK_TYPES = "episodes.w.task_types"
    N_SUBTASKS = "episodes.w.n_subtasks"
    DATASETS = "episodes.w.datasets"
    TEXT = "episodes.w.text"
    ORDER = "episodes.w.order"
    CHART = "episodes.w.timeline"
    OVERRIDE = "episodes.w.override"
    OVERRIDE_SCORE = "episodes.w.override_score"
    OVERRIDE_REASON = "episodes.w.override_reason"
    WHOLE_EPISODE = "episodes.w.whole_episode"
    SWITCH_RUN = "episodes.w.switch_run"


DEFAULTS: dict[str, Any] = {
    K.EPISODE: None,
    K.STEP: 0,
    K.RUN_B: None,
    K.PLAYING: False,
    K.PLAY_AT: 0.0,
    K.SPEED: "1x",
    K.FLASH: None,
    K.URL: None,
    K.PINNED: False,
    K.LIST_SIG: None,
    K.OVERRIDE_SAVES: 0,
}
NO_RUN = "(none)"
URL_NO_RUN = "none"
URL_KEYS = ("episode", "step", "run", "vs")


def arrived() -> bool:
    """Whether this run enters the page (see the module docstring); call before drawing widgets."""
    return K.TEXT not in st.session_state


def init_state() -> None:
    """Declare the page's keys; when the page is entered, let the URL's view win over the session's."""
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, value)
    if arrived():
        url = {k: st.query_params.get(k) for k in URL_KEYS}
        apply_url(url)


def apply_url(url: dict[str, str | None]) -> None:
    """Take the episode and step of a URL now; keep its runs for `run_pickers` (they need the list).

    A URL without an episode keeps the session's episode (the sidebar's link to the page has none).
    """
    st.session_state[K.URL] = url
    st.session_state[K.LIST_SIG] = None  # arriving is not a change of filters
    episode, step = url.get("episode"), url.get("step")
    if episode:
        st.session_state[K.EPISODE] = episode
        st.session_state[K.PINNED] = True
        st.session_state[K.STEP] = 0
        st.session_state[K.PLAYING] = False
    if step and step.isdigit():
        st.session_state[K.STEP] = int(step)


def take_url_runs() -> dict[str, str | None] | None:
    """The arrival URL's runs, once (None when the page was not just entered)."""
    url = st.session_state.get(K.URL)
    st.session_state[K.URL] = None
    return url


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
    """Open another episode at its first step (a list row, or the first listed one)."""
    st.session_state[K.PINNED] = False
    if episode_id != st.session_state[K.EPISODE]:
        st.session_state[K.EPISODE] = episode_id
        st.session_state[K.STEP] = 0
        st.session_state[K.PLAYING] = False


def set_run(run_id: str) -> None:
    """Choose the label run (a button naming a run that labels this episode)."""
    st.session_state[K.RUN] = run_id
    if st.session_state[K.RUN_B] == run_id:
        st.session_state[K.RUN_B] = None


def flash(message: str) -> None:
    """Show a message on the next run (one that follows an st.rerun).

    `message` is Markdown (a toast renders it): escape the data in it (rgvlm_app.text).
    """
    st.session_state[K.FLASH] = message


def show_flash() -> None:
    message = st.session_state.get(K.FLASH)
    if message:
        st.toast(message, icon=":material/check_circle:")
        st.session_state[K.FLASH] = None


def seed_widget(widget_key: str, value: Any) -> None:
    """Make a keyed widget show `value` (only before it is drawn in this run)."""
    if st.session_state.get(widget_key) != value:
        st.session_state[widget_key] = value


def copy_widget(widget_key: str, state_key: str) -> None:
    """on_change of a keyed widget: copy its value to the canonical key ("(none)" becomes None)."""
    value = st.session_state[widget_key]
    st.session_state[state_key] = None if value == NO_RUN else value
