"""Where the dashboard finds its workspace, and cached access to it."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from rgvlm_app.text import md_escape
from rgvlm_core.errors import RGVLMError
from rgvlm_core.sample import seed_if_empty
from rgvlm_core.workspace import StoreReader, Workspace

WORKSPACE_ENV = "RGVLM_WORKSPACE"


def workspace_path() -> Path:
    """The workspace of this dashboard: RGVLM_WORKSPACE, else ./workspace (as the CLI)."""
    return Path(os.environ.get(WORKSPACE_ENV, "workspace")).resolve()


@st.cache_resource(show_spinner="Opening the workspace…")
def _reader(path: str) -> StoreReader:
    ws = Workspace.open(Path(path), create=True)
    seed_if_empty(ws)  # a new workspace starts with the bundled sample dataset
    return ws.reader()


def store_reader() -> StoreReader | None:
    """The shared reader, or None after showing why the workspace cannot be opened."""
    path = workspace_path()
    try:
        return _reader(str(path))
    except RGVLMError as exc:
        st.error(md_escape(str(exc)))  # the message names the path: data, not Markdown
        return None
