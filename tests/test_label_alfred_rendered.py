"""Labelling imageless ALFRED episodes through the real LVLM path: where an episode has no frame files but
its steps carry replayed states (`rgvlm import --replay`), stage one sends frames rendered from those
states, says that they are rendered schematics, and the run's settings record it. The loopback server
speaks the chat-completions protocol (tests/fake_openai.py); the real sample lives in ../shared/alfred."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rgvlm_core.alfred.render import RENDERER
from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.labeling.backends.base import ImagePart
from rgvlm_core.labeling.messages import (
    END_OF_SEGMENT,
    RENDERED_FRAMES_NOTE,
    RENDERED_TAG,
    QueryConfig,
    choose_frames,
    encode_choice,
    stage1_request,
)
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT
from rgvlm_core.labeling.store import load_segments
from rgvlm_core.labeling.types import Segment, SegmentStep
from rgvlm_core.workspace import Workspace
from tests.alfred_factory import run_import
from tests.cli_support import ROOT
from tests.fake_openai import FakeOpenAI, image_count, lvlm_label_args, wants_scores

SPLIT = "valid_seen"
TASKS = ("pick_cool_then_place_in_recep", "pick_and_place_simple")
MAX_FRAMES = 6


def copy_trajectories(shared_alfred: Path, out: Path) -> Path:
    """One trajectory of each of TASKS, copied into out/valid_seen (the import then reads the copies)."""
    for task in TASKS:
        source = sorted((shared_alfred / "json_2.1.0" / SPLIT).glob(f"{task}-*"))[0]
        shutil.copytree(source, out / SPLIT / source.name)
    return out


def label(ws: Workspace, base_url: str, name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rgvlm_core.cli", "-w", str(ws.root), "label",
         *lvlm_label_args(base_url, name, "--max-frames", str(MAX_FRAMES))],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"},
    )  # fmt: skip


def user_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    (user,) = [m for m in body["messages"] if m["role"] == "user"]
    return list(user["content"])


def images_of(body: dict[str, Any]) -> list[bytes]:
    urls = [p["image_url"]["url"] for p in user_parts(body) if p["type"] == "image_url"]
    assert all(u.startswith("data:image/png;base64,") for u in urls), [u[:30] for u in urls]
    return [base64.b64decode(u.split(",", 1)[1]) for u in urls]


@pytest.fixture()
def replayed(shared_alfred: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("RGVLM_ALFRED_LAYOUTS", str(shared_alfred / "layouts"))  # the CLI inherits it
    ws = Workspace.open(tmp_path / "ws")
    summary: Any = run_import(ws, copy_trajectories(shared_alfred, tmp_path / "alfred"), replay=True)
    assert summary.replayed == len(TASKS)
    return ws


def test_stage_one_sends_rendered_frames_says_so_and_the_run_records_it(replayed: Workspace) -> None:
    with FakeOpenAI() as fake:
        done = label(replayed, fake.base_url, "rendered")
        bodies = list(fake.requests)
        # the same run under another name: every segment from the cache, no model call
        again = label(replayed, fake.base_url, "again")
        calls_after = len(fake.requests)
    assert done.returncode == 0, done.stdout + done.stderr
    assert " 0 failed" in done.stdout, done.stdout
    first = [b for b in bodies if not wants_scores(b)]
    reader = replayed.reader()
    try:
        segments = load_segments(reader, EpisodeFilter())
        (settings,) = [
            r["settings"] for r in reader.rows("SELECT settings FROM label_runs WHERE run_id = 'rendered'")
        ]
        steps = reader.scalar("SELECT sum(n_steps) FROM episodes")
        labelled = reader.scalar("SELECT count(*) FROM labels WHERE run_id = 'rendered' AND status = 'ok'")
    finally:
        reader.close()
    assert len(first) == len(segments) > 0 and all(s.rendered_frames for s in segments)
    for body in first:
        parts = user_parts(body)
        texts = [p["text"] for p in parts if p["type"] == "text"]
        assert RENDERED_FRAMES_NOTE in texts, "stage one does not say the frames are rendered"
        labels = [parts[i - 1]["text"] for i, p in enumerate(parts) if p["type"] == "image_url"]
        assert labels and all(label.endswith(RENDERED_TAG) for label in labels)
        assert 2 <= image_count(body) <= MAX_FRAMES
    # the images are exactly the frames rendered from the stored states, final scene included
    config = QueryConfig(max_frames=MAX_FRAMES)
    by_request = {b["messages"][-1]["content"][0]["text"]: images_of(b) for b in first}
    for segment in segments:
        choices = choose_frames(segment, MAX_FRAMES)
        assert choices[-1].action == END_OF_SEGMENT and all(c.rendered for c in choices)
        expected = [encode_choice(c, config.max_side) for c in choices]
        request = stage1_request(DEFAULT_PROMPT, segment, list(zip(choices, expected, strict=True)), config)
        sent = by_request[getattr(request.messages[-1].parts[0], "text", "")]
        assert sent == [e.data for e in expected]
    frames = json.loads(settings)["frames"]
    assert frames["rendered"] is True and frames["renderer"] == RENDERER
    assert "ALFRED's JSON has no images" in frames["why"] and frames["segments_at_start"] == len(segments)
    assert labelled == steps  # every step scored
    assert again.returncode == 0 and calls_after == len(bodies), again.stdout + again.stderr
    assert f"{len(segments)} from the cache), {len(segments)} ok, 0 failed; 0 model calls" in again.stdout


def test_without_replayed_states_an_lvlm_run_fails_each_segment_and_names_the_fix(
    shared_alfred: Path, tmp_path: Path
) -> None:
    ws = Workspace.open(tmp_path / "ws")
    run_import(ws, copy_trajectories(shared_alfred, tmp_path / "alfred"))
    with FakeOpenAI() as fake:
        done = label(ws, fake.base_url, "plain")
        calls = len(fake.requests)
    assert done.returncode != 0 and calls == 0  # no step got a label, the model was never asked
    errors = ws.reader().rows("SELECT DISTINCT error FROM analyses WHERE run_id = 'plain'")
    assert [e["error"] for e in errors] == [
        "no frames: this dataset has no raw_images, which stage one needs, and no replayed states to "
        "render frames from (rgvlm import --replay)"
    ]
    (settings,) = ws.reader().rows("SELECT settings FROM label_runs WHERE run_id = 'plain'")
    assert "frames" not in json.loads(settings["settings"])


# -- choosing and announcing frames (no data needed) -------------------------------------------------
def segment(
    steps: list[SegmentStep], final_frame: str | None = None, final_state: str | None = None
) -> Segment:
    return Segment(
        "ep", "alfred", "subtask", 0, "goal", "do it", "Pickup", tuple(steps), final_frame, final_state
    )


def test_frame_files_win_and_states_stand_in_only_where_no_step_has_a_file() -> None:
    with_files = segment([SegmentStep(t, f"A{t}", f"/f/{t}.jpg", state="{}") for t in range(3)], "/f/3.jpg")
    assert [c.path for c in choose_frames(with_files, 16)] == ["/f/0.jpg", "/f/1.jpg", "/f/2.jpg", "/f/3.jpg"]
    assert not with_files.rendered_frames
    states = segment([SegmentStep(t, f"A{t}", None, state=f"s{t}") for t in range(20)], final_state="s20")
    chosen = choose_frames(states, 5)
    assert states.rendered_frames and all(c.rendered and c.path is None for c in chosen)
    assert [c.state for c in chosen] == ["s0", "s5", "s10", "s15", "s20"]  # evenly spaced, ends kept
    assert chosen[-1].action == END_OF_SEGMENT
    neither = segment([SegmentStep(t, f"A{t}", None) for t in range(3)])
    assert choose_frames(neither, 16) == [] and not neither.rendered_frames


def test_stage_one_announces_rendered_frames_only_when_it_sends_them() -> None:
    config = QueryConfig()
    image = ImagePart(b"\x89PNG", "image/png")
    rendered = segment([SegmentStep(0, "MoveAhead_25", None, state="s0")], final_state="s1")
    files = segment([SegmentStep(0, "MoveAhead_25", "/f/0.jpg")], "/f/1.jpg")
    for seg, announced in ((rendered, True), (files, False)):
        choices = choose_frames(seg, 16)
        request = stage1_request(DEFAULT_PROMPT, seg, [(c, image) for c in choices], config)
        texts = [getattr(p, "text", "") for p in request.messages[-1].parts]
        assert (RENDERED_FRAMES_NOTE in texts) is announced
        assert all(t.endswith(RENDERED_TAG) == announced for t in texts if t.startswith("Frame "))


def test_a_state_that_cannot_be_rendered_is_a_frame_that_cannot_be_read(tmp_path: Path) -> None:
    gone = str(tmp_path / "gone" / "traj_data.json")
    state = json.dumps({"alfred": 1, "source": gone, "pose": [0, 0, 0, 30]})
    (choice,) = choose_frames(segment([SegmentStep(4, "LookDown_15", None, state=state)]), 16)
    with pytest.raises(OSError, match=r"step 4: cannot render its replayed state: .*gone/traj_data.json"):
        encode_choice(choice, 336)
