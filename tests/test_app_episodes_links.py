"""The Episodes page's URL contract: `/episodes?episode=ID&step=T&run=RUN&vs=RUN_B`.

The Audit page opens an episode in place (st.switch_page or a page link carrying these parameters),
in a session that may already show another episode with other runs: whenever the page is entered,
the URL wins over what the session remembers. Within the page the URL only echoes the state.
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_core.workspace import Workspace
from tests.test_app_episodes import EPISODE, labelled, open_page, step_heading  # noqa: F401 (fixture)


def other_episode(ws: Workspace) -> str:
    """An episode of the sample that is not EPISODE."""
    return str(ws.reader().scalar("SELECT min(episode_id) FROM episodes WHERE episode_id <> ?", [EPISODE]))


def enter_by_link(at: AppTest, **params: str) -> AppTest:
    """Leave for the Audit page, then come back as `st.switch_page("pages/episodes.py", query_params=...)`
    does: a new run of the page whose query parameters are the link's."""
    at.switch_page("pages/audit.py").run()
    assert not at.exception, at.exception
    at.query_params.clear()
    at.query_params.update(params)
    at.switch_page("pages/episodes.py").run()
    assert not at.exception, at.exception
    return at


def shown_episode(at: AppTest) -> str:
    return next(c.value for c in at.caption if "`" in c.value).split("`")[1]


def test_a_deep_link_in_a_fresh_session_opens_its_episode_step_run_and_second_run(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, step="12", run=runs[1], vs=runs[0])
    assert step_heading(at) == "#### Step 12 · 13 of 25"
    assert (at.session_state["episodes.run"], at.session_state["episodes.run_b"]) == (runs[1], runs[0])
    assert dict(at.query_params) == {"episode": EPISODE, "step": "12", "run": runs[1], "vs": runs[0]}
    assert at.selectbox(key="episodes.w.run").value == runs[1]
    assert at.selectbox(key="episodes.w.run_b").value == runs[0]


def test_a_link_followed_within_a_session_wins_over_its_episode_step_and_runs(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, runs = labelled
    other = other_episode(ws)
    at = open_page(monkeypatch, ws, episode=other, run=runs[0])
    at.button(key="episodes.w.next").click().run()
    at.selectbox(key="episodes.w.run_b").set_value(runs[1]).run()
    assert at.session_state["episodes.episode"] == other
    assert at.session_state["episodes.step"] == 1

    enter_by_link(at, episode=EPISODE, step="12", run=runs[1], vs=runs[0])
    assert shown_episode(at) == EPISODE
    assert step_heading(at) == "#### Step 12 · 13 of 25"
    assert (at.session_state["episodes.run"], at.session_state["episodes.run_b"]) == (runs[1], runs[0])
    assert dict(at.query_params) == {"episode": EPISODE, "step": "12", "run": runs[1], "vs": runs[0]}


def test_a_link_naming_a_run_but_no_second_run_shows_that_run_alone(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, run=runs[0], vs=runs[1])
    enter_by_link(at, episode=EPISODE, step="3", run=runs[1])
    assert (at.session_state["episodes.run"], at.session_state["episodes.run_b"]) == (runs[1], None)
    assert "vs" not in at.query_params
    assert step_heading(at).startswith("#### Step 3 ·")


def test_the_page_entered_without_parameters_keeps_the_sessions_view(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, step="5", run=runs[1])
    enter_by_link(at)  # the sidebar's link to the page carries no parameters
    assert shown_episode(at) == EPISODE
    assert step_heading(at).startswith("#### Step 5 ·")
    assert at.session_state["episodes.run"] == runs[1]


def test_a_stale_url_sent_with_a_key_press_does_not_move_the_step_back(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, _ = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, step="3")
    at.query_params["step"] = "1"  # what the browser still showed when the key was pressed
    at.button(key="episodes.w.next").click().run()
    assert step_heading(at).startswith("#### Step 4 ·")
    assert at.query_params["step"] == "4"


def test_a_link_to_an_unknown_second_run_names_it_and_shows_the_first_alone(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, runs = labelled
    at = open_page(monkeypatch, ws, episode=EPISODE, run=runs[0], vs="gone-run")
    assert any("gone\\-run" in w.value for w in at.warning)
    assert (at.session_state["episodes.run"], at.session_state["episodes.run_b"]) == (runs[0], None)
