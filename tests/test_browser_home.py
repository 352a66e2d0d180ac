"""A person opens the dashboard in a real browser and sees the workspace overview."""

from __future__ import annotations

from pathlib import Path

from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.workspace import Workspace
from tests.alfred_factory import write_test_trial, write_trajectory
from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app


def test_home_page_in_chromium_shows_counts_and_the_three_charts(tmp_path: Path) -> None:
    data = tmp_path / "alfred"
    for i in range(4):
        write_trajectory(data, "train", trial=f"trial_T20190101_000000_00000{i}")
    write_trajectory(data, "valid_seen", trial="trial_T20190101_000000_000008")
    write_test_trial(data, "tests_seen")
    ws = Workspace.open(tmp_path / "ws")
    for _ in import_alfred(ws, data, ImportConfig()):
        pass

    with streamlit_app(tmp_path / "ws") as url, chromium_page() as page:
        page.goto(url)
        page.get_by_text("Episodes by split").wait_for(timeout=30_000)
        page.get_by_text("Episodes by task type").wait_for(timeout=30_000)
        metrics = page.locator('[data-testid="stMetric"]')
        assert metrics.count() == 5
        assert "Episodes" in metrics.nth(0).inner_text() and "18" in metrics.nth(0).inner_text()
        assert page.locator(".js-plotly-plot").count() == 3
        assert page.locator('[data-testid="stException"]').count() == 0
        page.wait_for_timeout(500)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "home.png"), full_page=True)


def test_home_page_on_the_real_alfred_sample_lists_the_import(shared_alfred: Path, tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws")
    run = import_alfred(ws, shared_alfred / "json_2.1.0", ImportConfig())
    summary = None
    while summary is None:
        try:
            next(run)
        except StopIteration as stop:
            summary = stop.value

    with streamlit_app(tmp_path / "ws") as url, chromium_page() as page:
        page.goto(url)
        page.get_by_text("Episodes by task type").wait_for(timeout=30_000)
        page.get_by_text(f"{summary.episodes:,} episodes", exact=False).first.wait_for(timeout=30_000)
        assert page.locator(".js-plotly-plot").count() == 3
        assert page.locator('[data-testid="stException"]').count() == 0
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "home-alfred.png"), full_page=True)


def test_the_overview_shows_one_dataset_at_a_time_and_ids_as_written(
    sample_ws: Workspace, tmp_path: Path
) -> None:
    from tests.test_audit import RUN_WITH_MARKUP, mixed_workspace

    data = tmp_path / "data_*[x](y)<b>-1.0"
    mixed_workspace(sample_ws, data)
    with streamlit_app(sample_ws.root) as url, chromium_page(height=1900) as page:
        page.goto(url)
        main = page.locator("[data-testid='stMain']")
        main.get_by_text("household simulator: 192 of 201 episodes").wait_for(timeout=30_000)
        main.locator("[data-testid='stExpander']").nth(1).wait_for(timeout=30_000)  # the page is drawn
        text = main.inner_text()
        assert RUN_WITH_MARKUP in text  # the newest run, in a code span: no backslash, no link
        assert data.name in text  # the import's folder, in an expander label
        assert "\\" not in text
        page.locator("[data-testid='stButtonGroup']").get_by_text("ALFRED · 9 episodes").click()
        main.get_by_text("ALFRED: 9 of 201 episodes").wait_for(timeout=30_000)
        page.wait_for_function("new URLSearchParams(location.search).get('dataset') === 'alfred'")
        page.get_by_text("Episodes by task type · ALFRED").wait_for(timeout=30_000)
        assert page.locator('[data-testid="stException"]').count() == 0
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / "home-datasets.png"), full_page=True)
        page.reload()  # the choice is in the URL: a reload (or a shared link) shows the same dataset
        main.get_by_text("ALFRED: 9 of 201 episodes").wait_for(timeout=30_000)
