"""Opening a dashboard page in Streamlit's AppTest, as a person following a link would."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from markdown_it import MarkdownIt
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


# -- what a reader sees: Markdown rendered with a CommonMark parser, as the browser does ----------
_MARKDOWN = MarkdownIt("commonmark").enable(["strikethrough", "table"])


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def shown(markdown: str) -> str:
    """The text a reader sees of `markdown`: rendered, tags dropped, entities decoded."""
    parser = _Text()
    parser.feed(_MARKDOWN.render(markdown))
    return "".join(parser.parts)


def markdown_texts(at: AppTest) -> list[str]:
    """What every Markdown-rendering element of the page shows."""
    sources = [
        e.value
        for kind in ("markdown", "caption", "info", "warning", "error", "success")
        for e in at.get(kind)
    ]
    sources += [e.label for e in at.expander]
    return [shown(s).strip() for s in sources]


def first_match(ws: Any, text: str | None) -> tuple[str, list[str]]:
    """The first episode with steps whose goal matches `text`, and its subtasks' instructions."""
    from rgvlm_core.catalog import EpisodeFilter, list_episodes
    from rgvlm_core.labeling.store import load_segments

    reader = ws.reader()
    try:
        flt = EpisodeFilter(include_task_only=False, text=text)
        episode = next(e for e in list_episodes(reader, flt).to_pylist() if e["n_steps"])
        segments = load_segments(reader, EpisodeFilter(episode_ids=(episode["episode_id"],)))
    finally:
        reader.close()
    return episode["episode_id"], [s.instruction for s in segments]
