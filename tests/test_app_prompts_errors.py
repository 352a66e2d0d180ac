"""The Prompts page when a prompt cannot be rendered: one clear error line, no traceback, nothing lost.

Templates are the user's text: a refused or failing one is the user's to fix, so the page says why in
one line (st.error) and keeps what they typed. Render refusals are RGVLMErrors (the sandbox, and the
size bounds being added to rgvlm_core.labeling.prompts); `_refusing_render` stands in for a refusal
with a message over several lines.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app import prompt_widgets as pw
from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling import messages, prompts
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT
from rgvlm_core.labeling.store import list_prompts, save_prompt
from rgvlm_core.workspace import Workspace
from tests.app_support import open_page

MARKER = "{# refuse me #}"
REFUSAL = "stage1_user: the render passed 1,000,000 characters\n  at: {{ 'A' * 10**9 }}\nshorten the template"


def _refusing_render(real: Any) -> Any:
    """`render`, refusing (as a size bound would) any template holding MARKER."""

    def render(template: str, variables: dict[str, Any], *, name: str = "template") -> str:
        if MARKER in template:
            raise RGVLMError(REFUSAL)
        return str(real(template, variables, name=name))

    return render


def _stored_ids(ws: Workspace) -> list[str]:
    reader = ws.reader()
    try:
        return [p.prompt_id for p in list_prompts(reader)]
    finally:
        reader.close()


def _save(at: AppTest, field: str, text: str, note: str) -> None:
    at.text_area(key=pw.edit_key(DEFAULT_PROMPT.prompt_id, field)).input(text)
    at.text_input(key=pw.NOTE).input(note)
    at.button(key="prompts.save").click().run()


def _one_error_line(at: AppTest) -> str:
    assert not at.exception, at.exception
    [error] = [e.value for e in at.error]
    assert "\n" not in error, error
    return str(error)


def test_a_refused_new_version_shows_one_error_line_and_keeps_the_typed_templates(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(prompts, "render", _refusing_render(prompts.render))
    at = open_page(monkeypatch, sample_ws.root, "prompts")
    typed = DEFAULT_PROMPT.stage1_user + MARKER
    _save(at, "stage1_user", typed, "a huge prompt")
    error = _one_error_line(at)
    assert "passed 1,000,000 characters" in error and error.endswith("nothing was saved.")
    assert at.text_area(key=pw.edit_key(DEFAULT_PROMPT.prompt_id, "stage1_user")).value == typed
    assert at.text_input(key=pw.NOTE).value == "a huge prompt"
    assert _stored_ids(sample_ws) == [DEFAULT_PROMPT.prompt_id]


def test_a_template_dividing_by_zero_is_refused_on_save_without_a_traceback(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, sample_ws.root, "prompts")
    typed = DEFAULT_PROMPT.stage2_user + "\n{{ n_steps / 0 }}"
    _save(at, "stage2_user", typed, "divide")
    error = _one_error_line(at)
    assert "ZeroDivisionError" in error and "nothing was saved" in error
    assert at.text_area(key=pw.edit_key(DEFAULT_PROMPT.prompt_id, "stage2_user")).value == typed
    assert _stored_ids(sample_ws) == [DEFAULT_PROMPT.prompt_id]


def test_a_preview_render_refusal_is_one_error_line_and_the_page_carries_on(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    stored = save_prompt(sample_ws, replace(DEFAULT_PROMPT, stage1_user=MARKER, note="stored earlier"))
    monkeypatch.setattr(messages, "render", _refusing_render(messages.render))
    at = open_page(monkeypatch, sample_ws.root, "prompts")
    at.selectbox(key=pw.SELECTED).select(stored.prompt_id).run()
    error = _one_error_line(at)
    assert stored.prompt_id in error and "passed 1,000,000 characters" in error
    at.button(key="prompts.test_reference").click().run()  # the rest of the tab still works
    assert not at.exception, at.exception
    assert any("score" in df.value.columns for df in at.dataframe)


def test_a_stored_version_that_fails_on_a_real_episode_is_one_error_line_in_the_preview(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Valid on the example variables (a 32-character goal), dividing by zero on the previewed episode.
    goal = "First pick up the book."  # the sample's first episode, which the preview opens on
    template = f"{{{{ 10 // (goal|length - {len(goal)}) }}}} " + DEFAULT_PROMPT.stage2_user
    stored = save_prompt(sample_ws, replace(DEFAULT_PROMPT, stage2_user=template, note="fragile"))
    at = open_page(monkeypatch, sample_ws.root, "prompts")
    at.selectbox(key=pw.SELECTED).select(stored.prompt_id).run()
    assert at.selectbox(key=pw.EPISODE).format_func(at.selectbox(key=pw.EPISODE).value).endswith(goal)
    error = _one_error_line(at)
    assert "ZeroDivisionError" in error and stored.prompt_id in error
