"""The Episodes page plays ALFRED episodes that have no images (ALFRED's public JSON carries none): where a
trajectory was imported with `--replay`, each step shows the frame rendered from its replayed state,
captioned as rendered, never as ALFRED's camera. Data: the real sample's valid_seen split (skipped where
../shared/alfred is absent), imported with and without replay and labelled by the reference labeller."""

from __future__ import annotations

import re
import shutil
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from streamlit.runtime.media_file_storage import MediaFileKind
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from rgvlm_core.alfred.render import RENDERED_NOTE, frame_caption, state_png
from rgvlm_core.labeling.reference import ReferenceLabeller
from rgvlm_core.labeling.runs import RunConfig, label_run
from rgvlm_core.workspace import Workspace
from tests import app_support
from tests.alfred_factory import run_import
from tests.app_support import shown

SPLIT = "valid_seen"
TASK = "pick_cool_then_place_in_recep"  # the fridge opens, the apple is held, put in and taken out


@pytest.fixture(scope="module")
def alfred_ws(shared_alfred: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    """valid_seen imported with replayed states (in place) and labelled `ref`; layouts in the env."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RGVLM_ALFRED_LAYOUTS", str(shared_alfred / "layouts"))
        ws = Workspace.open(tmp_path_factory.mktemp("alfred-rendered") / "ws")
        summary: Any = run_import(ws, shared_alfred / "json_2.1.0", splits=(SPLIT,), replay=True)
        assert summary.replayed > 0
        for _ in label_run(ws, ReferenceLabeller(), RunConfig(name="ref")):
            pass
        yield ws


def cool_episode(ws: Workspace) -> dict[str, Any]:
    rows = ws.reader().rows(
        "SELECT e.episode_id, e.n_steps, e.trajectory_id, t.has_frames FROM episodes e "
        "JOIN trajectories t USING (trajectory_id) WHERE e.task_type = ? AND t.final_state IS NOT NULL "
        "ORDER BY e.episode_id LIMIT 1",
        [TASK],
    )
    assert rows, f"no replayed {TASK} episode in {SPLIT}"
    return rows[0]


def stored_steps(ws: Workspace, trajectory_id: str) -> list[dict[str, Any]]:
    return ws.reader().rows(
        "SELECT t, action, frame, state FROM steps WHERE trajectory_id = ? ORDER BY t", [trajectory_id]
    )


def png_url(data: bytes) -> str:
    """Where AppTest serves an image given as PNG bytes (its media files are named by their content)."""
    storage = MemoryMediaFileStorage("/mock/media")
    return storage.get_url(storage.load_and_get_id(data, "image/png", MediaFileKind.MEDIA))


def shown_frame(at: AppTest) -> tuple[str, str]:
    (image,) = [e for e in at.main if type(e).__name__ == "Image"]
    (img,) = image.proto.imgs
    return img.url, img.caption


def expected(row: dict[str, Any]) -> tuple[str, str]:
    """The player's image of a step: the state's rendered PNG, and its caption."""
    png = state_png(row["state"], frame_caption(row["t"], row["action"]))
    return png_url(png), f"Observation before step {row['t']}, {RENDERED_NOTE}"


def test_an_imported_with_replay_episode_has_no_frame_files_but_a_state_on_every_step(
    alfred_ws: Workspace,
) -> None:
    ep = cool_episode(alfred_ws)
    steps = stored_steps(alfred_ws, ep["trajectory_id"])
    assert not ep["has_frames"] and len(steps) == ep["n_steps"] > 20
    assert all(s["frame"] is None and s["state"] for s in steps)


def test_a_link_to_a_step_shows_the_frame_rendered_from_its_state_captioned_as_rendered(
    alfred_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = cool_episode(alfred_ws)
    steps = stored_steps(alfred_ws, ep["trajectory_id"])
    t = next(s["t"] for s in steps if s["action"] == "PutObject(Fridge)")
    at = app_support.open_page(monkeypatch, alfred_ws.root, "episodes", episode=ep["episode_id"], step=str(t))
    assert shown_frame(at) == expected(steps[t])
    caption = shown_frame(at)[1]
    assert "rendered from the replayed state" in caption and "ALFRED's JSON has no images" in caption
    assert not any("No frame" in shown(i.value) for i in at.main.info)
    assert not at.exception


def test_next_walks_every_step_each_with_its_own_rendered_frame(
    alfred_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = cool_episode(alfred_ws)
    steps = stored_steps(alfred_ws, ep["trajectory_id"])
    at = app_support.open_page(monkeypatch, alfred_ws.root, "episodes", episode=ep["episode_id"])
    urls = []
    for row in steps:
        if row["t"]:
            at.button(key="episodes.w.next").click().run()
        assert shown_frame(at) == expected(row), row["t"]
        urls.append(shown_frame(at)[0])
    assert len(set(urls)) >= len(steps) - 2  # the picture moves with (nearly) every step
    assert at.button(key="episodes.w.next").disabled
    assert not at.exception


def test_without_replayed_states_the_player_still_says_there_is_no_frame(
    shared_alfred: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.open(tmp_path / "ws")
    run_import(ws, shared_alfred / "json_2.1.0", splits=(SPLIT,), limit=1)
    (episode,) = ws.reader().rows("SELECT episode_id FROM episodes WHERE n_steps > 0 LIMIT 1")
    at = app_support.open_page(monkeypatch, ws.root, "episodes", episode=episode["episode_id"])
    assert not [e for e in at.main if type(e).__name__ == "Image"]
    assert any("No frame in this dataset" in shown(i.value) for i in at.main.info)


def test_a_state_whose_trajectory_moved_away_is_a_warning_not_a_crash(
    shared_alfred: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RGVLM_ALFRED_LAYOUTS", str(shared_alfred / "layouts"))
    data = tmp_path / "alfred" / SPLIT
    source = next((shared_alfred / "json_2.1.0" / SPLIT).glob(f"{TASK}-*"))
    shutil.copytree(source, data / source.name)
    ws = Workspace.open(tmp_path / "ws")
    run_import(ws, tmp_path / "alfred", replay=True)
    shutil.rmtree(tmp_path / "alfred")  # the states name files that are gone now
    (episode,) = ws.reader().rows("SELECT episode_id FROM episodes WHERE n_steps > 0 LIMIT 1")
    at = app_support.open_page(monkeypatch, ws.root, "episodes", episode=episode["episode_id"], step="2")
    (warning,) = at.main.warning
    text = shown(warning.value)  # the path shown literally (underscores and all), not as Markdown
    assert "replayed state cannot be drawn" in text and str(tmp_path / "alfred" / SPLIT) in text
    assert not at.exception


# -- in a real browser -------------------------------------------------------------------------------
def test_in_a_browser_the_rendered_frame_is_shown_and_moves_with_the_keyboard(
    alfred_ws: Workspace, shared_alfred: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Open the cool episode where the apple goes into the open fridge, read the caption, step on with
    the arrow key (the picture changes), and keep a screenshot (tests/artifacts/episodes-alfred-rendered.png;
    the one in docs/screenshots is a copy)."""
    from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app
    from tests.test_browser_episodes import press, settle, wait_for_url_step

    monkeypatch.setenv("RGVLM_ALFRED_LAYOUTS", str(shared_alfred / "layouts"))  # the server inherits it
    ep = cool_episode(alfred_ws)
    steps = stored_steps(alfred_ws, ep["trajectory_id"])
    t = next(s["t"] for s in steps if s["action"] == "PutObject(Fridge)")
    query = urllib.parse.urlencode({"episode": ep["episode_id"], "step": t})
    with streamlit_app(alfred_ws.root) as url, chromium_page(height=1100) as page:
        try:
            page.goto(f"{url}/episodes?{query}")
            page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for(timeout=30_000)
            wait_for_url_step(page, t)
            settle(page)
            image = page.locator("[data-testid='stImage'] img").first
            image.wait_for(timeout=30_000)
            assert image.evaluate("img => img.naturalWidth") == 300
            caption = page.get_by_text(re.compile("rendered from the replayed state")).first
            assert f"Observation before step {t}" in caption.inner_text()
            assert "ALFRED's JSON has no images" in caption.inner_text()
            before = image.get_attribute("src")
            page.screenshot(path=str(ARTIFACTS / "episodes-alfred-rendered.png"))

            press(page, "ArrowRight", then_step=t + 1)
            after = page.locator("[data-testid='stImage'] img").first.get_attribute("src")
            assert before and after and before != after, "the rendered frame did not change with the step"
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "episodes-alfred-rendered-failure.png"))
            raise
