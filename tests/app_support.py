"""Opening a dashboard page in Streamlit's AppTest, as a person following a link would."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]


def open_page(
    monkeypatch: pytest.MonkeyPatch, ws_root: Path, page: str, *, timeout: float = 30, **params: str
) -> AppTest:
    """The app on the workspace at `ws_root`, switched to `pages/<page>.py` with query `params`."""
    monkeypatch.setenv("RGVLM_WORKSPACE", str(ws_root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=timeout)
    at.query_params.update(params)
    at.run()
    at.switch_page(f"pages/{page}.py").run()
    assert not at.exception, at.exception
    return at
