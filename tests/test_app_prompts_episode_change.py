"""The Prompts page when the previewed episode changes under the user's widgets (AppTest).

Widget state that belongs to one episode (which of its subtasks is previewed) must not leak into
another: typing a goal filter that changes the episode, then touching any other widget, used to crash
the page with a TypeError until the browser was reloaded.

AppTest reads a widget's value back from the session after each run, but a browser keeps showing,
and sends again, the option label it last showed for that widget id. `_browser_keeps` makes the test
send what the browser sends, so the sequence fails here as it did in Chromium (see also
tests/test_browser_prompts.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from streamlit.proto.WidgetStates_pb2 import WidgetState
from streamlit.testing.v1 import AppTest

from rgvlm_app import prompt_widgets as pw
from rgvlm_core.workspace import Workspace
from tests.app_support import first_match, open_page

FILTER = "sliced lettuce"  # matches only episodes after the sample's first one


def _subtask_box(at: AppTest) -> Any:
    return next(s for s in at.selectbox if s.label == "Subtask")


def _browser_keeps(box: Any, label: str) -> None:
    """From now on this widget sends `label`, the option the browser still shows for its id."""

    class Shown(type(box)):  # type: ignore[misc]
        @property
        def _widget_state(self) -> WidgetState:
            return WidgetState(id=self.id, string_value=label)

    box.__class__ = Shown


def _filter_changes_the_episode(monkeypatch: pytest.MonkeyPatch, ws: Workspace) -> AppTest:
    """The page, then a goal filter typed that changes the previewed episode, as in a browser."""
    at = open_page(monkeypatch, ws.root, "prompts")
    first, _ = first_match(ws, None)
    assert at.selectbox(key=pw.EPISODE).value == first
    before = _subtask_box(at)
    shown = before.options[before.index]
    at.text_input(key=pw.EPISODE_TEXT).input(FILTER).run()
    assert not at.exception, at.exception
    after = _subtask_box(at)
    if after.id == before.id:  # the same widget: the browser still shows the old episode's subtask
        _browser_keeps(after, shown)
    return at


def _stage_one_text(at: AppTest) -> str:
    """The rendered stage-one question (the Versions tab also shows the template, with its braces)."""
    return next(c.value for c in at.code if c.value.startswith("Task goal:") and "{{" not in c.value)


def test_typing_a_filter_that_changes_the_episode_then_changing_frames_per_query_keeps_working(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _filter_changes_the_episode(monkeypatch, sample_ws)
    next(n for n in at.number_input if n.label == "Frames per query").set_value(2).run()
    assert not at.exception, at.exception
    episode, instructions = first_match(sample_ws, FILTER)
    assert at.selectbox(key=pw.EPISODE).value == episode
    box = _subtask_box(at)
    assert box.options[box.index].startswith("1. ") and instructions[0] in box.options[box.index]
    assert instructions[0] in _stage_one_text(at)
    assert len(at.get("image")) == 2


def test_typing_a_filter_then_the_reference_button_labels_the_new_episode(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _filter_changes_the_episode(monkeypatch, sample_ws)
    at.button(key="prompts.test_reference").click().run()
    assert not at.exception, at.exception
    scores = next(df.value for df in at.dataframe if "score" in df.value.columns)
    _, instructions = first_match(sample_ws, FILTER)
    assert sorted(set(scores["subtask"])) == list(range(1, len(instructions) + 1))
