"""Shared set-up for labelling tests: a workspace holding the bundled sample, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.sample import SAMPLE_DIR
from rgvlm_core.workspace import Workspace

_TEMPLATE: list[Path] = []


def sample_workspace(tmp_path: Path, template_root: Path) -> Workspace:
    """A fresh copy of a workspace with the sample imported (imported once per session)."""
    if not _TEMPLATE:
        template = template_root / "sample-ws"
        ws = Workspace.open(template)
        for _ in import_alfred(ws, SAMPLE_DIR, ImportConfig()):
            pass
        _TEMPLATE.append(template)
    target = tmp_path / "ws"
    shutil.copytree(_TEMPLATE[0], target)
    return Workspace.open(target)
