"""The Prompts page on a workspace mixing simulator episodes with real, imageless ALFRED ones (AppTest).

Real ALFRED json_2.1.0 files (../shared/alfred, read in place) carry no raw_images: an LVLM would get
no frame of them. The page warns where such an episode is previewed, and lets the user choose the
dataset of the preview and of a relabel run, saying what is selected.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app import prompt_widgets as pw
from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.workspace import Workspace
from tests.app_support import open_page

ALFRED_TRAJECTORIES = 2  # real valid_seen trajectories imported beside the sample (3 episodes each)
RELABEL_DATASETS = pw.setting_key("relabel", "datasets")


@pytest.fixture()
def mixed_ws(sample_ws: Workspace, shared_alfred: Path) -> Workspace:
    """The bundled simulator sample plus a few real ALFRED trajectories without frames."""
    config = ImportConfig(splits=("valid_seen",), limit=ALFRED_TRAJECTORIES)
    for _ in import_alfred(sample_ws, shared_alfred / "json_2.1.0", config):
        pass
    return sample_ws


def _texts(at: AppTest) -> list[str]:
    return [e.value for e in [*at.caption, *at.warning, *at.info, *at.markdown]]


def _command(at: AppTest) -> str:
    return next(c.value for c in at.code if c.value.startswith("rgvlm label"))


def test_previewing_an_imageless_alfred_episode_warns_that_the_model_gets_no_frames(
    mixed_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, mixed_ws.root, "prompts")  # ids sort alfred: first, so it opens on one
    assert not at.exception, at.exception
    assert str(at.selectbox(key=pw.EPISODE).value).startswith("alfred:")
    assert not at.get("image")
    stage_one = [c.value for c in at.code if "You are shown 0 frames" in c.value]
    assert stage_one  # the prompt as rendered: the model is told it sees nothing
    [warning] = [w.value for w in at.warning if "No frames" in w.value]
    assert "raw\\_images" in warning  # why (Markdown-escaped: warnings render Markdown)
    assert "0 frames" in warning and "failed" in warning  # what the model, and a label run, would get
    assert not at.error
    at.button(key="prompts.test_reference").click().run()  # the reference labeller needs no frames
    assert not at.exception and not at.error, (at.exception, at.error)
    assert len(next(df.value for df in at.dataframe if "score" in df.value.columns)) > 0


def test_previewing_a_simulator_episode_shows_its_frames_without_a_warning(
    mixed_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, mixed_ws.root, "prompts")
    at.radio(key=pw.PREVIEW_DATASET).set_value("sim").run()
    assert str(at.selectbox(key=pw.EPISODE).value).startswith("sim:")
    assert all(o.startswith("sim:") for o in at.selectbox(key=pw.EPISODE).options)
    assert at.get("image")
    assert not [w for w in at.warning if "No frames" in w.value]
    assert any(t.startswith("Previewing from sim (simulator): 192 episodes") for t in _texts(at))


def test_the_preview_dataset_choice_lists_every_dataset_and_says_which_lacks_frames(
    mixed_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, mixed_ws.root, "prompts")
    radio = at.radio(key=pw.PREVIEW_DATASET)
    assert radio.options == ["all datasets", "alfred (ALFRED)", "sim (simulator)"]
    assert radio.value == pw.ALL_DATASETS
    episodes = at.selectbox(key=pw.EPISODE).options
    assert any(o.startswith("alfred:") for o in episodes) and any(o.startswith("sim:") for o in episodes)
    expected = "Previewing from alfred (ALFRED): 6 episodes, none with frames; sim (simulator): 192 episodes."
    assert expected in _texts(at)


def test_the_relabel_scope_names_its_datasets_and_the_command_passes_the_choice(
    mixed_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, mixed_ws.root, "prompts")
    assert "--dataset" not in _command(at)
    assert (
        "Scope: 198 episodes. alfred (ALFRED): 6 episodes, none with frames; sim (simulator): 192 episodes."
        in _texts(at)
    )
    at.multiselect(key=RELABEL_DATASETS).select("sim").run()
    assert "--dataset sim" in _command(at)
    assert "Scope: 192 episodes. sim (simulator): 192 episodes." in _texts(at)


def test_an_lvlm_relabel_over_imageless_episodes_is_warned_before_it_starts(
    mixed_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, mixed_ws.root, "prompts")
    at.radio(key=pw.setting_key("relabel", "labeller")).set_value("lvlm").run()
    [warning] = [w.value for w in at.warning if "have no frames" in w.value]
    assert warning.startswith("6 of these episodes have no frames (alfred, imported without raw_images)")
    at.multiselect(key=RELABEL_DATASETS).select("sim").run()
    assert not [w for w in at.warning if "have no frames" in w.value]


def test_a_single_dataset_workspace_shows_its_dataset_without_a_choice(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, sample_ws.root, "prompts")
    assert not [r for r in at.radio if r.key == pw.PREVIEW_DATASET]
    assert not [m for m in at.multiselect if m.key == RELABEL_DATASETS]
    assert "Dataset: sim (simulator): 192 episodes (the only one in this workspace)." in _texts(at)
