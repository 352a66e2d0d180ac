"""The Episodes page in a real browser: keyboard stepping, clicking the reward timeline, an override.

Drives `streamlit run app.py` with headless Debian Chromium (tests/browser_support.py) on a copy of
the bundled sample with its two reference label runs; screenshots go to tests/artifacts/episodes-*.png.
"""

from __future__ import annotations

import re
import time
import urllib.parse
from typing import Any

import pytest

from rgvlm_core.labeling.store import effective_labels
from rgvlm_core.sample import label_sample
from rgvlm_core.workspace import Workspace
from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app

# A 25-step simulator episode of 5 subtasks (the sample's longest).
EPISODE = "sim:train/pick_clean_then_place_in_recep-Apple-None-CounterTop-1/trial_S0000_000019#1"
STEP_HEADING = re.compile(r"Step (\d+) · \d+ of (\d+)")


def shown_step(page: Any) -> int:
    """The step the player shows, read from the page text."""
    match = STEP_HEADING.search(page.locator("h4").filter(has_text="Step").first.inner_text())
    assert match, "no step heading on the page"
    return int(match.group(1))


def wait_for_step(page: Any, step: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if shown_step(page) == step:
                return
        except AssertionError:
            pass
        page.wait_for_timeout(50)  # (time.sleep would stop Playwright from processing events)
    raise AssertionError(f"the player shows step {shown_step(page)}, not {step} ({page.url})")


def wait_for_url_step(page: Any, step: int) -> None:
    """The URL (which Streamlit rewrites in place) names `step`."""
    page.wait_for_function(f"new URLSearchParams(location.search).get('step') === '{step}'", timeout=10_000)


def settle(page: Any) -> None:
    """Let two frames pass: Streamlit binds shortcuts in an effect after it draws the buttons."""
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")


def press(page: Any, key: str, then_step: int) -> None:
    """Press a key as a person would: after the page has finished the previous step's run."""
    page.keyboard.press(key)
    wait_for_step(page, then_step)
    wait_for_url_step(page, then_step)  # the page writes the URL last: its run is over
    settle(page)


def open_episode(page: Any, base_url: str, **params: str) -> None:
    """Open the page on EPISODE (a deep link) and wait until it is drawn and listens to the keyboard."""
    page.goto(f"{base_url}/episodes?{urllib.parse.urlencode({'episode': EPISODE, **params})}")
    page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for(timeout=30_000)
    page.get_by_role("button", name=re.compile("Next")).wait_for(timeout=30_000)
    wait_for_url_step(page, int(params.get("step", 0)))
    settle(page)


def click_timeline_point(page: Any, step: int, cursor: int) -> None:
    """Click the chosen run's marker of `step` on the reward timeline (the first scatter trace).

    The chart is drawn anew at every step: wait until the one on the page has its cursor at
    `cursor` (the step shown), so the click lands on a chart that is listening.
    """
    page.wait_for_function(
        """(cursor) => {
            const charts = document.querySelectorAll('.js-plotly-plot');
            if (charts.length !== 1 || !charts[0].layout) return false;
            return (charts[0].layout.shapes || []).some(s => s.type === 'line' && s.x0 === cursor);
        }""",
        arg=cursor,
        timeout=10_000,
    )
    settle(page)
    points = page.locator(".js-plotly-plot .scatterlayer .trace").first.locator(".point")
    box = points.nth(step).bounding_box()
    assert box, f"no marker for step {step}"
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def timeline_steps(page: Any, run: int, signal: str) -> list[int]:
    """The steps of one trace of the rendered timeline, found by its meta (read from Plotly's own data)."""
    return page.evaluate(
        """([run, signal]) => {
            const gd = document.querySelector('.js-plotly-plot');
            const trace = gd.data.find(t => t.meta && t.meta.run === run && t.meta.signal === signal);
            return trace ? Array.from(trace.x) : null;
        }""",
        [run, signal],
    )


@pytest.fixture()
def labelled(sample_ws: Workspace) -> tuple[Workspace, list[str]]:
    return sample_ws, label_sample(sample_ws)


def test_episodes_page_steps_by_keyboard_and_timeline_clicks_and_saves_an_override(
    labelled: tuple[Workspace, list[str]],
) -> None:
    ws, runs = labelled
    with streamlit_app(ws.root) as url, chromium_page() as page:
        try:
            exercise(page, url, runs)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "episodes-failure.png"))
            raise
    labels = effective_labels(ws.reader(), runs[0], [EPISODE]).to_pylist()
    row = next(r for r in labels if r["t"] == 12)
    assert (row["score"], row["status"], row["override_reason"]) == (
        3,
        "overridden",
        "the agent only walks here",
    )


def exercise(page: Any, url: str, runs: list[str]) -> None:
    """Open the episode with both runs; keys, a timeline click, an override; screenshots on the way."""
    open_episode(page, url, vs=runs[1])  # the first request of a fresh server
    assert shown_step(page) == 0
    nav = page.locator("[data-testid='stSidebarNav']")
    assert "Overview" in nav.inner_text()  # the app's navigation, not the bare page file
    page.screenshot(path=str(ARTIFACTS / "episodes-open.png"))

    press(page, "ArrowRight", then_step=1)
    press(page, "ArrowRight", then_step=2)
    press(page, "ArrowLeft", then_step=1)

    click_timeline_point(page, 12, cursor=1)
    wait_for_step(page, 12)
    wait_for_url_step(page, 12)
    page.screenshot(path=str(ARTIFACTS / "episodes-step12.png"))

    form = page.locator("[data-testid='stForm']")
    form.get_by_label("Reason (required)").fill("the agent only walks here")
    form.locator("input[type='number']").fill("3")
    form.get_by_role("button", name=re.compile("Save override")).click()
    page.get_by_text("overridden to 3").first.wait_for(timeout=10_000)
    page.locator("[data-testid='stDataFrame']").last.wait_for()
    page.screenshot(path=str(ARTIFACTS / "episodes-override.png"))
    assert shown_step(page) == 12
    page.get_by_text("Overridden: the run said").first.wait_for()
    form = page.locator("[data-testid='stForm']")  # saved: the inputs start again from the new score
    assert form.get_by_label("Reason (required)").input_value() == ""
    assert form.locator("input[type='number']").input_value() == "3"
    assert timeline_steps(page, run=0, signal="overridden") == [12]
    page.get_by_text("Stage one").first.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "episodes-analysis.png"))

    # a row of the episode list opens that episode at its first step
    grid = page.locator("[data-testid='stSidebar'] [data-testid='stDataFrame']").bounding_box()
    assert grid
    page.mouse.click(grid["x"] + 18, grid["y"] + 35 + 35 * 2 + 17)  # the third row's checkbox
    page.wait_for_function(
        f"new URLSearchParams(location.search).get('episode') !== {EPISODE!r}", timeout=10_000
    )
    wait_for_step(page, 0)
