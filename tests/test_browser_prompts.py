"""The Prompts page in a real browser: the previewed episode changes under the user's widgets, and
a workspace mixing simulator episodes with real ALFRED ones that have no frames.

Drives `streamlit run app.py` with headless Debian Chromium (tests/browser_support.py) on a copy of
the bundled sample; screenshots go to tests/artifacts/prompts-*.png.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.workspace import Workspace
from tests.app_support import first_match
from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app

FILTER = "sliced lettuce"  # matches only episodes after the sample's first one


def _wait_for_box(page: Any, label: str, text: str) -> None:
    """Wait until the selectbox labelled `label` shows `text` (its input holds the shown option)."""
    page.wait_for_function(
        """([label, text]) => [...document.querySelectorAll("input[role='combobox']")]
            .some(e => e.getAttribute('aria-label').startsWith(label) && e.value.includes(text))""",
        arg=[label, text],
        timeout=10_000,
    )


def _no_exception(page: Any) -> None:
    assert page.locator("[data-testid='stException']").count() == 0, page.locator(
        "[data-testid='stException']"
    ).first.inner_text()


def _enter(page: Any, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")


def test_a_goal_filter_that_changes_the_episode_then_other_widgets_never_crash_the_page(
    sample_ws: Workspace,
) -> None:
    episode, instructions = first_match(sample_ws, FILTER)
    with streamlit_app(sample_ws.root) as url, chromium_page(1400, 1400) as page:
        try:
            page.goto(f"{url}/prompts")
            page.get_by_role("combobox", name="Prompt version").wait_for(timeout=30_000)
            page.get_by_role("tab", name="Preview and test").click()
            page.get_by_text("Stage one", exact=False).first.wait_for(timeout=30_000)

            _enter(page, "Filter episodes by goal", FILTER)
            _wait_for_box(page, "Episode", episode)
            _wait_for_box(page, "Subtask", instructions[0])
            page.screenshot(path=str(ARTIFACTS / "prompts-filtered.png"), full_page=True)

            _enter(page, "Frames per query", "2")
            page.get_by_text("(at most 2)", exact=False).first.wait_for(timeout=10_000)
            _no_exception(page)
            _wait_for_box(page, "Subtask", instructions[0])
            _wait_for_box(page, "Episode", episode)

            page.get_by_role("button", name="Label this episode with the reference labeller").click()
            page.locator("[data-testid='stDataFrame']").last.wait_for(timeout=10_000)
            page.wait_for_timeout(500)
            _no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "prompts-reference-test.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "prompts-failure.png"), full_page=True)
            raise


def test_real_alfred_episodes_without_frames_are_warned_about_and_the_dataset_can_be_chosen(
    sample_ws: Workspace, shared_alfred: Path
) -> None:
    config = ImportConfig(splits=("valid_seen",), limit=2)
    for _ in import_alfred(sample_ws, shared_alfred / "json_2.1.0", config):
        pass
    with streamlit_app(sample_ws.root) as url, chromium_page(1400, 1400) as page:
        try:
            page.goto(f"{url}/prompts")
            page.get_by_role("combobox", name="Prompt version").wait_for(timeout=30_000)
            page.get_by_role("tab", name="Preview and test").click()
            warning = page.get_by_text("No frames:", exact=False).first
            warning.wait_for(timeout=30_000)  # the list opens on a real ALFRED episode
            assert "raw_images" in warning.inner_text()
            _wait_for_box(page, "Episode", "alfred:valid_seen/")
            page.get_by_text("You are shown 0 frames", exact=False).first.wait_for()
            _no_exception(page)
            page.screenshot(path=str(ARTIFACTS / "prompts-alfred-no-frames.png"), full_page=True)

            page.get_by_text("sim (simulator)", exact=True).first.click()
            _wait_for_box(page, "Episode", "sim:train/")
            page.get_by_text("Previewing from sim (simulator)", exact=False).first.wait_for()
            page.locator("[data-testid='stImage']").first.wait_for(timeout=10_000)
            assert page.get_by_text("No frames:", exact=False).count() == 0
            _no_exception(page)

            page.get_by_role("tab", name="Relabel").click()
            page.get_by_text("Scope: 198 episodes", exact=False).first.wait_for(timeout=10_000)
            page.get_by_text("LVLM (two-stage RG-VLM)", exact=True).click()
            page.get_by_text("have no frames", exact=False).first.wait_for(timeout=10_000)
            page.screenshot(path=str(ARTIFACTS / "prompts-relabel-scope.png"), full_page=True)
            _no_exception(page)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "prompts-failure.png"), full_page=True)
            raise
