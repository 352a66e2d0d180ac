"""A shared link to a page works even as the very first request to a fresh dashboard server."""

from __future__ import annotations

from pathlib import Path

from rgvlm_core.sample import label_sample
from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app


def test_a_deep_link_as_the_first_request_opens_the_page_inside_the_app(sample_ws) -> None:  # type: ignore[no-untyped-def]
    label_sample(sample_ws)
    with streamlit_app(Path(sample_ws.root)) as url, chromium_page() as page:
        page.goto(f"{url}/audit")
        page.get_by_text("Score distribution per run").wait_for(timeout=30_000)
        nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
        assert "Overview" in nav and "Audit" in nav and "prompts" not in nav, nav
        assert page.locator('[data-testid="stException"]').count() == 0
        page.screenshot(path=str(ARTIFACTS / "deep-link-audit.png"))
