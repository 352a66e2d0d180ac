"""Episode ids, run ids and links are data: the Episodes page shows them exactly as written.

Rendered with a CommonMark parser as the browser would (`shown`, from tests/app_support.py): the
caption under the goal, the warning about a linked episode the workspace lacks, the buttons that
offer the runs labelling an episode (label and tooltip), and the toast confirming an override.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app.episode_state import K
from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.workspace import Workspace
from tests.alfred_factory import write_trajectory
from tests.app_support import markdown_texts, open_page, shown
from tests.test_audit import mixed_workspace

TRIAL = "trial_`x`_T20190101_000000_000001"  # a backtick in the folder name, so in the episode id
UNKNOWN = "alfred:_x_ *y* [a](b) <b>#0"


@pytest.fixture()
def backtick_ws(tmp_path: Path) -> Workspace:
    """One ALFRED trajectory (3 episodes) whose trial folder holds a backtick and underscores."""
    write_trajectory(tmp_path / "data", "train", trial=TRIAL)
    ws = Workspace.open(tmp_path / "ws", create=True)
    for _ in import_alfred(ws, tmp_path / "data", ImportConfig()):
        pass
    return ws


def _episode_ids(ws: Workspace) -> list[str]:
    reader = ws.reader()
    try:
        return [r["episode_id"] for r in reader.rows("SELECT episode_id FROM episodes ORDER BY 1")]
    finally:
        reader.close()


def test_an_episode_id_holding_a_backtick_shows_whole_under_the_goal(
    backtick_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    episode = _episode_ids(backtick_ws)[0]
    assert TRIAL in episode
    at = open_page(monkeypatch, backtick_ws.root, "episodes", episode=episode)
    assert any(t.endswith(episode) for t in markdown_texts(at)), markdown_texts(at)


def test_a_linked_episode_the_workspace_lacks_is_named_literally_in_the_warning(
    backtick_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, backtick_ws.root, "episodes", episode=UNKNOWN)
    [warning] = [shown(w.value).strip() for w in at.warning]
    assert f"no episode {UNKNOWN!r}" in warning, warning
    assert warning.endswith("Showing the first listed episode instead.")


@pytest.fixture()
def mixed(sample_ws: Workspace, tmp_path: Path) -> tuple[Workspace, str, str, str]:
    """The labelled sample, 9 ALFRED episodes, and a run with Markdown in its id labelling both."""
    return mixed_workspace(sample_ws, tmp_path / "alfred")


def _alfred_episode(ws: Workspace) -> str:
    return next(e for e in _episode_ids(ws) if e.startswith("alfred:"))


def test_the_buttons_offering_the_runs_that_label_an_episode_name_them_literally(
    mixed: tuple[Workspace, str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference, _, marked = mixed  # the reference run labelled only the simulator's episodes
    at = open_page(monkeypatch, ws.root, "episodes", episode=_alfred_episode(ws), run=reference)
    [button] = [b for b in at.button if b.key == f"{K.SWITCH_RUN}:{marked}"]
    assert shown(button.label).strip() == f"Show {marked}"
    assert shown(button.help).strip().startswith(f"{marked} labels ")


def test_an_override_of_a_run_named_with_markup_is_confirmed_literally(
    mixed: tuple[Workspace, str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _, _, marked = mixed
    at = open_page(monkeypatch, ws.root, "episodes", episode=_alfred_episode(ws), run=marked, step="0")
    next(t for t in at.text_input if t.label == "Reason (required)").input("checked by hand")
    next(b for b in at.button if b.label == "Save override").click().run()
    assert not at.exception, at.exception
    toasts = [shown(t.value).strip() for t in at.toast]
    assert any(f"of {marked} overridden to" in t for t in toasts), toasts


def test_the_page_renders_no_backslash_of_an_escape(
    mixed: tuple[Workspace, str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference, _, _ = mixed
    at: AppTest = open_page(monkeypatch, ws.root, "episodes", episode=_alfred_episode(ws), run=reference)
    texts = markdown_texts(at) + [shown(b.label) for b in at.button]
    assert not any("\\" in t for t in texts), texts
