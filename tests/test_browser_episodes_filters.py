"""The Episodes page in a real browser: picking a filter keeps the Filters panel open and shows a
listed episode; the two runs side by side in one table, the current step highlighted.

Drives `streamlit run app.py` with headless Debian Chromium (tests/browser_support.py) on a copy of
the bundled sample with its two reference label runs; screenshots go to
tests/artifacts/episodes-filters-*.png.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

import pytest

from rgvlm_core.sample import label_sample
from rgvlm_core.workspace import Workspace
from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app
from tests.test_browser_episodes import EPISODE, shown_step, wait_for_step

PANEL = "Filters and order"


@pytest.fixture()
def labelled(sample_ws: Workspace) -> tuple[Workspace, list[str]]:
    return sample_ws, label_sample(sample_ws)


def url_params(page: Any) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(urllib.parse.urlparse(page.url).query))


def filters_open(page: Any) -> bool:
    """Whether the Filters panel (a <details> element) is open."""
    panel = page.locator("[data-testid='stSidebar'] details").filter(has_text=PANEL)
    return bool(panel.evaluate("el => el.open"))


def pick(page: Any, label: str, option: str) -> None:
    """Choose `option` in the sidebar multiselect labelled `label`, as a person clicks it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.locator("[data-testid='stSidebar'] [data-testid='stMultiSelect']").filter(has_text=label)
    for attempt in range(3):  # a rerun that lands just after the click redraws the box closed: click again
        box.locator("input").click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=10_000)
            break
        except PlaywrightTimeout:
            if attempt == 2:
                raise
    page.keyboard.press("Escape")  # close the drop-down, not the panel


def test_a_filter_pick_keeps_the_panel_open_and_shows_a_listed_episode_beside_one_table_of_both_runs(
    labelled: tuple[Workspace, list[str]],
) -> None:
    ws, runs = labelled
    six = {r["episode_id"] for r in ws.reader().rows("SELECT episode_id FROM episodes WHERE n_subtasks = 6")}
    assert six and EPISODE not in six  # EPISODE has 5 subtasks: the filter must replace it
    with streamlit_app(ws.root) as url, chromium_page(height=1400) as page:
        try:
            query = urllib.parse.urlencode({"episode": EPISODE, "step": "7", "vs": runs[1]})
            page.goto(f"{url}/episodes?{query}")
            page.get_by_role("button", name=re.compile("Next")).wait_for(timeout=30_000)
            wait_for_step(page, 7)

            page.get_by_text(PANEL).click()
            page.locator("[data-testid='stSidebar'] [data-testid='stMultiSelect']").first.wait_for()
            pick(page, "Number of subtasks", "6")
            page.wait_for_function(
                f"new URLSearchParams(location.search).get('episode') !== {EPISODE!r}", timeout=15_000
            )
            wait_for_step(page, 0)
            assert filters_open(page), "the Filters panel closed after a pick"
            assert url_params(page)["episode"] in six  # the shown episode is one of the listed
            page.get_by_text("6 subtasks").first.wait_for()  # said outside the panel, and in the header
            page.screenshot(path=str(ARTIFACTS / "episodes-filters-picked.png"))

            pick(page, "Number of subtasks", "5")  # a second pick: still open
            assert filters_open(page)

            table = page.locator("[data-testid='stTable']")
            table.wait_for()
            headers = table.locator("th").all_inner_texts()
            for column in ("A score", "A run score", "B score", "B − A", "A reason", "B reason"):
                assert column in headers, f"no {column!r} column in {headers}"
            current = table.locator("tr").filter(has_text="▶")
            assert current.count() == 1
            assert current.locator("td").nth(1).inner_text().strip() == str(shown_step(page))
            table.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "episodes-filters-table.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "episodes-filters-failure.png"), full_page=True)
            raise
