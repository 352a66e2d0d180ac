"""Audit -> Worst episodes in a real browser: one click opens the episode in place, beside the reference.

Drives `streamlit run app.py` with headless Debian Chromium (tests/browser_support.py) on a copy of the
bundled sample with its two reference label runs (the noise-free one is the reference, the noisy one
is audited). Screenshots: tests/artifacts/audit-worst*.png.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest

from rgvlm_core import audit
from rgvlm_core.sample import label_sample
from rgvlm_core.workspace import Workspace
from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app

ROW_HEIGHT = 35  # st.dataframe's default row (and header) height in pixels
GOAL_X = 260  # from the table's left edge: inside the goal column, right of the pinned ranking


def _query(page: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page.url).query))


def _click_row(page: Any, row: int) -> None:
    """Click the goal cell of `row` (0 = the first row under the header), as a person would."""
    grid = page.locator("[data-testid='stDataFrame']").first
    grid.wait_for(timeout=30_000)
    box = _settled_box(page, grid)
    page.mouse.click(box["x"] + GOAL_X, box["y"] + ROW_HEIGHT * (row + 1) + ROW_HEIGHT / 2)


def _settled_box(page: Any, element: Any) -> dict[str, float]:
    """The element's box once the page stops moving: a chart above it that finishes drawing late
    (a loaded machine) shifts the table down, and a click measured before that lands on another
    widget (a picker above the table) instead of the row."""
    page.locator(".main-svg").first.wait_for(timeout=30_000)  # the score distributions above
    previous = None
    for _ in range(60):
        page.wait_for_timeout(250)  # the grid also draws on a canvas after the element appears
        box = element.bounding_box()
        if box is not None and box == previous:
            return box
        previous = box
    raise AssertionError(f"the table kept moving: last box {previous}")


def _open_worst_tab(page: Any) -> None:
    page.get_by_role("tab", name="Worst episodes").click()
    page.get_by_text("Click a row to open the episode here").wait_for(timeout=30_000)


def _assert_on_episode(page: Any, expected: dict[str, str], runs: tuple[str, str]) -> None:
    """The Episodes page, in this tab, shows the clicked episode at its worst step with both runs."""
    page.wait_for_url(re.compile(r"/episodes\?"), timeout=30_000)
    page.locator("h4").filter(has_text=f"Step {expected['step']} ·").first.wait_for(timeout=30_000)
    page.wait_for_function(
        "([e, s]) => { const q = new URLSearchParams(location.search);"
        " return q.get('episode') === e && q.get('step') === s; }",
        arg=[expected["episode"], expected["step"]],
        timeout=30_000,
    )
    assert _query(page) == expected
    text = page.locator("[data-testid='stMain']").inner_text()
    assert all(run in text for run in runs), "both runs should be shown side by side"
    assert page.locator("[data-testid='stException']").count() == 0


def _assert_reference_chosen(page: Any, reference: str) -> None:
    """The page chose the noise-free reference run by itself (the ranking needs it)."""
    picker = page.get_by_role("combobox", name="Reference run")
    page.wait_for_function(
        "([el, want]) => el.value === want", arg=[picker.element_handle(timeout=30_000), reference]
    )


@pytest.fixture()
def labelled(sample_ws: Workspace) -> tuple[Workspace, str, str, list[dict[str, Any]]]:
    reference, noisy = label_sample(sample_ws)
    reader = sample_ws.reader()
    ranking = audit.disagreement_ranking(reader, noisy, reference).to_pylist()
    reader.close()
    return sample_ws, reference, noisy, ranking


def test_one_click_on_a_worst_episode_opens_it_in_place_beside_the_reference_at_its_worst_step(
    labelled: tuple[Workspace, str, str, list[dict[str, Any]]],
) -> None:
    ws, reference, noisy, ranking = labelled
    top = ranking[0]
    expected = {"episode": top["episode_id"], "step": str(top["worst_step"]), "run": noisy, "vs": reference}
    with streamlit_app(ws.root) as url, chromium_page() as page:
        try:
            page.goto(f"{url}/audit")
            _open_worst_tab(page)
            assert _query(page).get("tab") == "Worst episodes"  # the open tab is in the URL
            page.screenshot(path=str(ARTIFACTS / "audit-worst.png"), full_page=True)
            _assert_reference_chosen(page, reference)
            _click_row(page, 0)
            _assert_on_episode(page, expected, (noisy, reference))
            assert len(page.context.pages) == 1  # the same tab: no new window
            page.locator("[data-testid='stImage'] img").first.wait_for(timeout=30_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "audit-worst-open.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "audit-worst-failure.png"), full_page=True)
            raise


def test_the_link_wins_over_an_episode_already_open_in_the_session(
    labelled: tuple[Workspace, str, str, list[dict[str, Any]]],
) -> None:
    """Episodes first (another episode, one run), then Audit: the click still lands on its episode."""
    ws, reference, noisy, ranking = labelled
    row = ranking[1]
    expected = {"episode": row["episode_id"], "step": str(row["worst_step"]), "run": noisy, "vs": reference}
    with streamlit_app(ws.root) as url, chromium_page() as page:
        try:
            other = ranking[-1]["episode_id"]
            page.goto(f"{url}/episodes?{urllib.parse.urlencode({'episode': other, 'run': reference})}")
            page.locator("h4").filter(has_text="Step 0 ·").first.wait_for(timeout=30_000)
            page.locator("[data-testid='stSidebarNav']").get_by_text("Audit").click()
            _open_worst_tab(page)
            _assert_reference_chosen(page, reference)
            _click_row(page, 1)
            _assert_on_episode(page, expected, (noisy, reference))
            page.screenshot(path=str(ARTIFACTS / "audit-worst-open-again.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "audit-worst-again-failure.png"), full_page=True)
            raise
