"""Browser tests skip only for what may legitimately be missing: Chromium, never Playwright (a dependency)."""

from __future__ import annotations

import sys

import pytest

from tests import browser_support


def test_a_broken_playwright_install_fails_the_browser_tests_instead_of_skipping_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(browser_support, "CHROMIUM", sys.executable)  # any existing file: not the skip
    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # `import` raises ImportError
    try:
        with browser_support.chromium_page():
            pytest.fail("a browser page opened without Playwright")
    except pytest.skip.Exception as skipped:  # (a skip would hide every browser test's result)
        pytest.fail(f"skipped instead of failing: {skipped}")
    except ImportError:
        return


def test_a_missing_chromium_skips_with_the_path_and_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(browser_support, "CHROMIUM", "/nowhere/chromium")
    monkeypatch.delenv(browser_support.REQUIRE_BROWSER_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"/nowhere/chromium.*Debian package `chromium`"):
        browser_support.chromium_page().__enter__()


def test_where_browsers_are_required_a_missing_chromium_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """.ci/run sets the variable: CI cannot pass with every browser test skipped."""
    monkeypatch.setattr(browser_support, "CHROMIUM", "/nowhere/chromium")
    monkeypatch.setenv(browser_support.REQUIRE_BROWSER_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=r"/nowhere/chromium.*may not skip"):
        browser_support.chromium_page().__enter__()
