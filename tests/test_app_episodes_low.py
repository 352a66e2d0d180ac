"""The Episodes page plays low-level episodes (issue 14): ALFRED's low-level actions, frame by frame.

A low-level episode is long (a subtask is a GotoLocation walk of 10-20 turns, moves and looks, then its
manipulation), so these tests walk a whole one: each step's frame (the observation before the action),
its action token, the subtask it belongs to, and the reward timeline's bands, sparse rewards and the
reference run's scores. Data: `rgvlm sim generate --level low` in generated rooms (no ALFRED layouts
needed), imported and labelled by the reference labeller. The browser test at the end uses ALFRED's
floor plans and skips where their layouts or Chromium are absent.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
from streamlit.runtime.media_file_storage import MediaFileKind
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from rgvlm_core.labeling.reference import ReferenceLabeller
from rgvlm_core.labeling.runs import RunConfig, label_run
from rgvlm_core.labeling.store import effective_labels
from rgvlm_core.sim.generate import GenerateConfig, generate
from rgvlm_core.sim.low.floorplan import layouts_dir
from rgvlm_core.workspace import Workspace
from tests import app_support
from tests.alfred_factory import run_import
from tests.app_support import shown

RUN = "ref"
NAVIGATION = re.compile(r"(MoveAhead_25|RotateLeft_90|RotateRight_90|LookUp_15|LookDown_15)")
INTERACTION = re.compile(
    r"(PickupObject|PutObject|OpenObject|CloseObject|ToggleObjectOn|ToggleObjectOff|SliceObject)\(\w+\)"
)
LONG = 50  # the longest episode has at least this many steps (a low-level episode, not a subgoal one)


def low_workspace(root: Path, floor_plans: tuple[int, ...] | None = None) -> Workspace:
    """Low-level episodes (3-4 subtasks; expert, suboptimal and failed) imported and labelled `ref`."""
    data = root / "data"
    config = GenerateConfig(
        episodes=6,
        seed=2,
        level="low",
        floor_plans=floor_plans,
        min_subtasks=3,
        max_subtasks=4,
        annotations=1,
    )
    for _ in generate(data, config):
        pass
    ws = Workspace.open(root / "ws")
    run_import(ws, data)
    for _ in label_run(ws, ReferenceLabeller(), RunConfig(name=RUN)):
        pass
    return ws


@pytest.fixture(scope="module")
def low_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return low_workspace(tmp_path_factory.mktemp("episodes-low"))


def episode_of(ws: Workspace, behaviour: str) -> dict[str, Any]:
    """The longest episode of `behaviour` (its first annotation) with its trajectory's folder."""
    rows = ws.reader().rows(
        "SELECT e.episode_id, e.n_steps, t.source_dir, t.scene FROM episodes e JOIN trajectories t "
        "USING (trajectory_id) WHERE t.behaviour = ? ORDER BY e.n_steps DESC, e.episode_id LIMIT 1",
        [behaviour],
    )
    assert rows, f"no {behaviour} episode generated"
    return rows[0]


def stored_steps(ws: Workspace, episode_id: str) -> list[dict[str, Any]]:
    return ws.reader().rows(
        "SELECT s.t, s.action, s.frame, s.sparse_reward FROM steps s JOIN episodes e USING (trajectory_id) "
        "WHERE e.episode_id = ? ORDER BY s.t",
        [episode_id],
    )


def stored_subtasks(ws: Workspace, episode_id: str) -> list[dict[str, Any]]:
    return ws.reader().rows("SELECT * FROM subtasks WHERE episode_id = ? ORDER BY idx", [episode_id])


def frame_url(path: Path) -> str:
    """Where AppTest serves an image read from `path` (its media files are named by their content)."""
    storage = MemoryMediaFileStorage("/mock/media")
    return storage.get_url(storage.load_and_get_id(str(path), "image/jpeg", MediaFileKind.MEDIA))


def open_page(monkeypatch: pytest.MonkeyPatch, ws: Workspace, **params: str) -> AppTest:
    return app_support.open_page(monkeypatch, ws.root, "episodes", **params)


def texts(at: AppTest) -> list[str]:
    """What the Markdown of the main area shows (rendered, as the browser shows it)."""
    return [shown(m.value).strip() for m in at.main.markdown]


def step_heading(at: AppTest) -> str:
    return next(t for t in texts(at) if t.startswith("Step "))


def subtask_lines(at: AppTest) -> list[str]:
    """The subtask list's items, with '**' kept to tell which one is bold (the current one)."""
    block = next(m.value for m in at.main.markdown if m.value.startswith("- "))
    return block.split("\n")


def shown_frame(at: AppTest) -> tuple[str, str]:
    """The player's image: its URL and caption."""
    (image,) = [e for e in at.main if type(e).__name__ == "Image"]
    (img,) = image.proto.imgs
    return img.url, img.caption


def timeline(at: AppTest) -> dict[str, Any]:
    (chart,) = at.get("plotly_chart")
    return json.loads(chart.proto.spec)


def trace(fig: dict[str, Any], run: int | None, signal: str) -> dict[int, Any]:
    (found,) = [t for t in fig["data"] if t.get("meta") == {"run": run, "signal": signal}]
    return dict(zip(found["x"], found["y"], strict=True))


# -- the data the page is given ---------------------------------------------------------------------
def test_the_generated_data_is_low_level_long_and_each_subtask_walks_then_manipulates(
    low_ws: Workspace,
) -> None:
    ep = episode_of(low_ws, "expert")
    steps = stored_steps(low_ws, ep["episode_id"])
    assert ep["n_steps"] == len(steps) >= LONG
    for sub in stored_subtasks(low_ws, ep["episode_id"]):
        actions = [s["action"] for s in steps[sub["first_step"] : sub["last_step"] + 1]]
        assert INTERACTION.fullmatch(actions[-1]), actions  # the subtask ends with its manipulation
        assert all(NAVIGATION.fullmatch(a) or INTERACTION.fullmatch(a) for a in actions), actions
    walks = [s["action"] for s in steps if NAVIGATION.fullmatch(s["action"])]
    assert len(walks) > len(steps) / 2  # most steps walk, turn or look


# -- the page ---------------------------------------------------------------------------------------
def test_the_list_holds_the_low_level_episodes_and_a_link_opens_one_mid_walk(
    low_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = episode_of(low_ws, "expert")
    steps = stored_steps(low_ws, ep["episode_id"])
    subs = stored_subtasks(low_ws, ep["episode_id"])
    t = next(s["t"] for s in steps if s["t"] > subs[1]["first_step"] and NAVIGATION.fullmatch(s["action"]))
    at = open_page(monkeypatch, low_ws, episode=ep["episode_id"], step=str(t))

    (listed,) = at.sidebar.dataframe
    every = {r["episode_id"] for r in low_ws.reader().rows("SELECT episode_id FROM episodes")}
    assert set(listed.value["episode"]) == every
    header = " ".join(c.value for c in at.main.caption)
    assert ep["scene"].startswith("Generated-") and ep["scene"] in shown(header)
    assert f"{ep['n_steps']} steps, {len(subs)} subtasks" in header
    assert step_heading(at) == f"Step {t} · {t + 1} of {ep['n_steps']}"
    action = next(x for x in texts(at) if x.startswith("Action "))
    assert action.split(" · ")[0] == f"Action {steps[t]['action']}"
    url, caption = shown_frame(at)
    assert (url, caption) == (
        frame_url(Path(ep["source_dir"]) / steps[t]["frame"]),
        f"Observation before step {t}",
    )
    lines = subtask_lines(at)
    assert lines[0].startswith("- ✓ 1.") and lines[1].startswith("- **▶ 2.")
    assert at.query_params["step"] == str(t)
    assert not at.exception


def test_next_walks_the_whole_episode_frame_by_frame_through_every_subtask_boundary(
    low_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = episode_of(low_ws, "expert")
    steps = stored_steps(low_ws, ep["episode_id"])
    subs = stored_subtasks(low_ws, ep["episode_id"])
    folder = Path(ep["source_dir"])
    at = open_page(monkeypatch, low_ws, episode=ep["episode_id"])
    urls = []
    for t, row in enumerate(steps):
        if t:
            at.button(key="episodes.w.next").click().run()
        assert step_heading(at) == f"Step {t} · {t + 1} of {len(steps)}"
        shown_texts = texts(at)
        action = next(x for x in shown_texts if x.startswith("Action "))
        assert action.split(" · ")[0] == f"Action {row['action']}"
        if row["sparse_reward"]:
            assert f"sparse reward {row['sparse_reward']:g}" in action
        url, caption = shown_frame(at)
        assert (url, caption) == (frame_url(folder / row["frame"]), f"Observation before step {t}")
        urls.append(url)
        k = next(s["idx"] for s in subs if s["first_step"] <= t <= s["last_step"])
        assert any(x.startswith(f"Subtask {k + 1} of {len(subs)} · {subs[k]['kind']}:") for x in shown_texts)
        lines = subtask_lines(at)
        assert lines[k].startswith(f"- **▶ {k + 1}.")
        assert all(line.startswith(f"- ✓ {i + 1}.") for i, line in enumerate(lines[:k]))
        assert all(line.startswith(f"- ○ {i + 1 + k + 1}.") for i, line in enumerate(lines[k + 1 :]))
        if t == subs[k]["last_step"]:
            assert "done by this step's action" in lines[k]
            assert INTERACTION.fullmatch(row["action"])
    assert len(set(urls)) > len(steps) / 2  # the frames move with the agent, not one picture
    assert at.button(key="episodes.w.next").disabled
    assert at.slider(key="episodes.w.slider").value == len(steps) - 1
    assert not at.exception


def test_the_slider_reaches_any_step_of_a_long_episode(
    low_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = episode_of(low_ws, "expert")
    n = ep["n_steps"]
    at = open_page(monkeypatch, low_ws, episode=ep["episode_id"])
    slider = at.slider(key="episodes.w.slider")
    assert (slider.min, slider.max) == (0, n - 1)
    for t in (n - 1, n // 2, 1, 0):
        at.slider(key="episodes.w.slider").set_value(t).run()
        assert step_heading(at) == f"Step {t} · {t + 1} of {n}"
        assert at.query_params["step"] == str(t)
    assert at.button(key="episodes.w.prev").disabled


def test_the_timeline_shows_every_step_the_subtask_bands_sparse_rewards_and_reference_scores(
    low_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = episode_of(low_ws, "expert")
    steps = stored_steps(low_ws, ep["episode_id"])
    subs = stored_subtasks(low_ws, ep["episode_id"])
    t = subs[1]["last_step"]
    at = open_page(monkeypatch, low_ws, episode=ep["episode_id"], step=str(t))
    fig = timeline(at)
    labels = effective_labels(low_ws.reader(), RUN, [ep["episode_id"]]).to_pylist()
    assert len(labels) == len(steps)
    assert trace(fig, 0, "score") == {r["t"]: r["score"] for r in labels}
    assert trace(fig, None, "sparse") == {s["t"]: s["sparse_reward"] for s in steps}
    completions = [s["t"] for s in steps if s["sparse_reward"]]
    assert completions == [s["last_step"] for s in subs]  # one reward where each subtask completes
    bands = [(s["x0"], s["x1"]) for s in fig["layout"]["shapes"] if s["type"] == "rect"]
    assert bands == [(s["first_step"] - 0.5, s["last_step"] + 0.5) for s in subs]
    names = [re.sub(r"<[^>]+>■</span> ", "", a["text"]) for a in fig["layout"]["annotations"]]
    assert names == [f"{s['idx'] + 1} {s['kind']}" for s in subs]
    (cursor,) = [s for s in fig["layout"]["shapes"] if s["type"] == "line"]
    assert cursor["x0"] == t
    assert fig["layout"]["xaxis"]["range"] == [-0.6, len(steps) - 1 + 0.6]
    # the reference's reasons for the subtask's steps, one table row per step of the subtask
    (table,) = at.main.table
    rows = table.value.to_dict("records")
    assert len(rows) == subs[1]["last_step"] - subs[1]["first_step"] + 1
    marked = [r["step"].startswith(":orange-background[") for r in rows]
    assert marked == [r == len(rows) - 1 for r in range(len(rows))]  # the current step: the last one
    plain = [re.sub(r"^:orange-background\[(.*)\]$", r"\1", r["action"]) for r in rows]
    assert [shown(a).strip() for a in plain] == [
        s["action"] for s in steps[subs[1]["first_step"] : subs[1]["last_step"] + 1]
    ]


def test_a_failed_episode_shows_its_missed_and_unreached_subtasks(
    low_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep = episode_of(low_ws, "failed")
    subs = stored_subtasks(low_ws, ep["episode_id"])
    assert not all(s["completed"] for s in subs)
    last = ep["n_steps"] - 1
    at = open_page(monkeypatch, low_ws, episode=ep["episode_id"], step=str(last))
    assert step_heading(at) == f"Step {last} · {last + 1} of {ep['n_steps']}"
    lines = subtask_lines(at)
    for sub, line in zip(subs, lines, strict=True):
        if sub["completed"]:
            assert f"✓ {sub['idx'] + 1}." in line
        elif sub["first_step"] is None or sub["first_step"] < 0:
            assert f"– {sub['idx'] + 1}." in line and "not reached" in line
        else:  # the subtask the agent was on when the episode ended
            assert f"▶ {sub['idx'] + 1}." in line and sub["last_step"] == last
    names = [a["text"] for a in timeline(at)["layout"]["annotations"]]
    assert any("(not completed)" in n for n in names)
    assert at.button(key="episodes.w.next").disabled and at.button(key="episodes.w.play").disabled


# -- in a real browser, on ALFRED's floor plans -------------------------------------------------------
def test_in_a_browser_the_keyboard_steps_over_a_subtask_boundary_and_a_timeline_click_jumps(
    tmp_path: Path,
) -> None:
    """Open a floor-plan episode at its first subtask's last step (a manipulation), step over the boundary
    with the keyboard (the frame and the current subtask change), and click the timeline's last step."""
    from tests.browser_support import ARTIFACTS, chromium_page, streamlit_app
    from tests.test_browser_episodes import (
        click_timeline_point,
        press,
        settle,
        wait_for_step,
        wait_for_url_step,
    )

    if not (layouts_dir() / "FloorPlan1-layout.npy").is_file():
        pytest.skip(
            f"ALFRED layouts not found at {layouts_dir()} (../shared/alfred/layouts beside the checkout)"
        )
    ws = low_workspace(tmp_path, floor_plans=(1,))
    ep = episode_of(ws, "expert")
    subs = stored_subtasks(ws, ep["episode_id"])
    boundary, n = subs[0]["last_step"], ep["n_steps"]
    query = urllib.parse.urlencode({"episode": ep["episode_id"], "step": boundary})
    with streamlit_app(ws.root) as url, chromium_page(height=1280) as page:
        try:
            page.goto(f"{url}/episodes?{query}")
            page.locator(".js-plotly-plot .scatterlayer .point").first.wait_for(timeout=30_000)
            wait_for_url_step(page, boundary)
            settle(page)
            assert "FloorPlan1" in page.get_by_text(f"{n} steps, {len(subs)} subtasks").first.inner_text()
            current = page.locator("li strong").first
            assert (
                current.inner_text().startswith("▶ 1.")
                and "done by this step's action" in current.inner_text()
            )
            before = page.locator("[data-testid='stImage'] img").first.get_attribute("src")

            press(page, "ArrowRight", then_step=boundary + 1)
            assert page.locator("li strong").first.inner_text().startswith("▶ 2.")
            assert page.get_by_text(f"Subtask 2 of {len(subs)}").first.is_visible()
            after = page.locator("[data-testid='stImage'] img").first.get_attribute("src")
            assert before and after and before != after, "the frame did not change with the step"
            page.screenshot(path=str(ARTIFACTS / "episodes-low.png"))

            click_timeline_point(page, n - 1, cursor=boundary + 1)
            wait_for_step(page, n - 1)
            wait_for_url_step(page, n - 1)
            assert page.get_by_role("button", name=re.compile("Next")).is_disabled()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "episodes-low-failure.png"))
            raise
