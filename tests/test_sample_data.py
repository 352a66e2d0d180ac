"""The bundled sample dataset is what its manifest says, regenerates identically, and seeds new workspaces."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import PIL
import pytest
from PIL import Image

from rgvlm_core.sample import NO_SAMPLE_ENV, SAMPLE_DIR, seed_if_empty
from rgvlm_core.sim.behaviour import BehaviourConfig
from rgvlm_core.sim.generate import MANIFEST, GenerateConfig, generate
from rgvlm_core.workspace import Workspace

MANIFEST_DOC = json.loads((SAMPLE_DIR / MANIFEST).read_text())


def test_every_sample_file_matches_its_manifest_hash_and_nothing_else_is_there() -> None:
    on_disk = {
        str(p.relative_to(SAMPLE_DIR)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in SAMPLE_DIR.rglob("*")
        if p.is_file() and p.name != MANIFEST
    }
    assert on_disk == MANIFEST_DOC["files"]


def test_the_sample_is_small_and_covers_every_length_and_behaviour() -> None:
    size = sum(p.stat().st_size for p in SAMPLE_DIR.rglob("*") if p.is_file())
    assert size <= 15 * 2**20
    counts = MANIFEST_DOC["counts"]
    assert set(counts["by_n_subtasks"]) == {"1", "2", "3", "4", "5", "6"}
    assert set(counts["by_behaviour"]) == {"expert", "suboptimal", "failed"}


def test_regenerating_the_sample_from_its_manifest_gives_identical_files(tmp_path: Path) -> None:
    cfg = dict(MANIFEST_DOC["config"])
    cfg["behaviour"] = BehaviourConfig(
        **{**cfg["behaviour"], "early_stop": tuple(cfg["behaviour"]["early_stop"])}
    )
    list(generate(tmp_path / "again", GenerateConfig(**cfg), workers=2))
    again = json.loads((tmp_path / "again" / MANIFEST).read_text())["files"]
    assert again.keys() == MANIFEST_DOC["files"].keys()
    same_encoder = MANIFEST_DOC["versions"]["pillow"] == PIL.__version__
    for name, digest in MANIFEST_DOC["files"].items():
        if name.endswith(".json") or same_encoder:
            assert again[name] == digest, name
        else:  # another JPEG encoder may round differently: the pictures must still agree
            a = np.asarray(Image.open(SAMPLE_DIR / name), dtype=np.int16)
            b = np.asarray(Image.open(tmp_path / "again" / name), dtype=np.int16)
            assert np.abs(a - b).mean() < 1.0, name


def test_a_new_workspace_is_seeded_once_and_can_opt_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(NO_SAMPLE_ENV)
    ws = Workspace.open(tmp_path / "ws")
    summary = seed_if_empty(ws)
    assert summary is not None and summary.episodes == 2 * MANIFEST_DOC["counts"]["episodes"]
    assert summary.refused == 0
    assert seed_if_empty(ws) is None, "seeding happens once"
    monkeypatch.setenv(NO_SAMPLE_ENV, "1")
    assert seed_if_empty(Workspace.open(tmp_path / "other")) is None
