"""The bundled sample dataset, and seeding an empty workspace with it.

A new user opens the dashboard and sees real data at once: a workspace that has never had an
import is given the sample dataset (made by the simulator's generator, see its MANIFEST.json).
Set RGVLM_NO_SAMPLE=1 to keep new workspaces empty.
"""

from __future__ import annotations

import os
from pathlib import Path

from rgvlm_core.importer import ImportConfig, ImportSummary, import_alfred
from rgvlm_core.workspace import Workspace

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data" / "household"
NO_SAMPLE_ENV = "RGVLM_NO_SAMPLE"


def sample_available() -> bool:
    return (SAMPLE_DIR / "MANIFEST.json").is_file()


def seed_if_empty(workspace: Workspace) -> ImportSummary | None:
    """Import the sample dataset into a workspace that has never had an import; else do nothing."""
    if os.environ.get(NO_SAMPLE_ENV) or not sample_available():
        return None
    if workspace.snapshot().files("imports"):
        return None
    run = import_alfred(workspace, SAMPLE_DIR, ImportConfig())
    while True:
        try:
            next(run)
        except StopIteration as stop:
            return stop.value
