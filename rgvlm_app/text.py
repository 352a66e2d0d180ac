"""Showing text from data (ids, paths, models, goals, commands, model output) exactly as written.

Escape for the medium the text goes to, once, where it is put there:
- Markdown (st.markdown, st.caption, st.info/warning/error/success, st.toast, st.progress text,
  st.table cells, widget, button and page-link labels and help, expander labels, radio,
  segmented-control and pills options): `md_escape(text)` for running text, or `md_code(text)` for
  a monospace id, path or command. Never `md_escape` inside backticks: a code span shows every
  backslash, and never hand-written backticks around data: a backtick in it ends the span.
- Plain text (st.text, st.code, st.dataframe cells, selectbox and multiselect options, query
  parameters): the raw text, no escaping.
- Plotly (titles, labels, legend, hover): `rgvlm_core.charts.plotly_escape`, inside the chart builders.
"""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")
_BACKTICKS = re.compile(r"`+")


def md_escape(text: str) -> str:
    """Text that Markdown shows literally (labels and captions render Markdown)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


def md_code(text: str) -> str:
    """Text as a Markdown code span: monospace and literal, whatever backticks or markup it holds.

    The fence is one backtick longer than the longest run inside; a space pads text that starts or
    ends with a backtick or a space (CommonMark strips one such space from each side).
    """
    text = str(text)
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(text)), default=0) + 1)
    pad = " " if text[0] in "` " or text[-1] in "` " else ""
    return f"{fence}{pad}{text}{pad}{fence}"
