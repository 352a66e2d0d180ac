"""The Prompts page turns the progress question on in a new version, and says which versions ask it."""

from __future__ import annotations

from dataclasses import replace

import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app import prompt_widgets as pw
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT
from rgvlm_core.labeling.store import list_prompts
from rgvlm_core.workspace import Workspace
from tests.app_support import open_page


def _stored(ws: Workspace) -> list[tuple[str, bool]]:
    reader = ws.reader()
    try:
        return [(p.prompt_id, p.ask_progress) for p in list_prompts(reader)]
    finally:
        reader.close()


def _page(monkeypatch: pytest.MonkeyPatch, ws: Workspace) -> AppTest:
    return open_page(monkeypatch, ws.root, "prompts")


def test_a_new_version_can_ask_the_progress_question_without_changing_a_template(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(monkeypatch, sample_ws)
    box = at.checkbox(key=pw.ask_progress_key(DEFAULT_PROMPT.prompt_id))
    assert box.value is False, "it starts as the parent asks"
    box.check()
    at.text_input(key=pw.NOTE).input("progress for shaped rewards")
    at.button(key="prompts.save").click().run()
    assert not at.exception, at.exception

    asks = replace(DEFAULT_PROMPT, ask_progress=True).prompt_id
    assert _stored(sample_ws) == [(DEFAULT_PROMPT.prompt_id, False), (asks, True)]
    assert at.selectbox(key=pw.SELECTED).value == asks
    versions = next(df.value for df in at.dataframe if "version" in df.value.columns)
    assert dict(zip(versions["version"], versions["progress"], strict=True)) == {
        DEFAULT_PROMPT.prompt_id: "",
        asks: "asked",
    }


def test_a_version_identical_to_its_parent_is_still_refused(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _page(monkeypatch, sample_ws)
    at.text_input(key=pw.NOTE).input("nothing changed")
    at.button(key="prompts.save").click().run()
    assert any("differs from the parent" in e.value for e in at.error)
    assert _stored(sample_ws) == [(DEFAULT_PROMPT.prompt_id, False)]
