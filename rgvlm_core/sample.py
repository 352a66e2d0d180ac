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
SAMPLE_NOISE_LEVELS = (0.0, 0.2)


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
            summary: ImportSummary = stop.value
            break
    label_sample(workspace)
    return summary


def label_sample(workspace: Workspace) -> list[str]:
    """Give the sample a reference label run and a noisy one, so audits have something to show.

    Named as `rgvlm label --labeller reference [--noise 0.2]` would name them, so those commands
    find them done. The reference labeller reads ground truth; the noisy run mimics an imperfect LVLM.
    """
    from rgvlm_core.catalog import EpisodeFilter
    from rgvlm_core.labeling.factory import default_run_name
    from rgvlm_core.labeling.reference import NoiseConfig, ReferenceLabeller
    from rgvlm_core.labeling.runs import RunConfig, label_run

    names = []
    for level in SAMPLE_NOISE_LEVELS:
        labeller = ReferenceLabeller(NoiseConfig.from_level(level))
        name = default_run_name(labeller, "subtask", EpisodeFilter())
        for _ in label_run(workspace, labeller, RunConfig(name=name, command="(sample seeding)")):
            pass
        names.append(name)
    return names
