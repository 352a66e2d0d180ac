"""Showing untrusted text (paths, annotations, model output) in places that render Markdown."""

from __future__ import annotations

import re

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")


def md_escape(text: str) -> str:
    """Escape Markdown so text appears literally (labels and captions render Markdown)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)
