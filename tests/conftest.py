"""Shared fixtures: where the real ALFRED files are, and fresh workspaces."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no test may reach a model hub
if "huggingface_hub.constants" in sys.modules:  # the hub client reads the flag once, at its import
    sys.modules["huggingface_hub.constants"].HF_HUB_OFFLINE = True

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def shared_alfred_dir() -> Path:
    """`../shared/alfred` beside the checkout, or RGVLM_SHARED_ALFRED when set."""
    override = os.environ.get("RGVLM_SHARED_ALFRED")
    return Path(override) if override else PROJECT_ROOT.parent / "shared" / "alfred"


@pytest.fixture(scope="session")
def shared_alfred() -> Path:
    """The real ALFRED sample (read-only); tests using it skip where it is absent."""
    root = shared_alfred_dir()
    if not (root / "json_2.1.0").is_dir():
        pytest.skip(
            f"real ALFRED files not found at {root} (they live in ../shared/alfred beside the checkout)"
        )
    return root


@pytest.fixture()
def workspace_dir(tmp_path: Path) -> Path:
    return tmp_path / "workspace"


@pytest.fixture(autouse=True)
def _no_sample_seeding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start from empty workspaces unless they ask for the sample (monkeypatch.delenv)."""
    monkeypatch.setenv("RGVLM_NO_SAMPLE", "1")


@pytest.fixture()
def sample_ws(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A workspace holding the bundled sample dataset (no label runs)."""
    from tests.labeling_support import sample_workspace

    return sample_workspace(tmp_path, tmp_path_factory.getbasetemp())
