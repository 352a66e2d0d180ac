"""The Prompts page: versions, a new version, diffs, an episode's exact messages, a relabel job (AppTest)."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app import prompt_widgets as pw
from rgvlm_core.catalog import EpisodeFilter, list_episodes
from rgvlm_core.jobs import get_job
from rgvlm_core.labeling.messages import QueryConfig, choose_frames
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT, new_version
from rgvlm_core.labeling.store import label_runs, list_prompts, load_segments, save_prompt
from rgvlm_core.workspace import Workspace
from tests.app_support import open_page

ROOT = Path(__file__).resolve().parents[1]


def _prompts_page(monkeypatch: pytest.MonkeyPatch, ws: Workspace) -> AppTest:
    return open_page(monkeypatch, ws.root, "prompts")


def _table(at: AppTest, column: str) -> pd.DataFrame:
    """The first table shown that has this column."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def _stored_prompt_ids(ws: Workspace) -> list[str]:
    reader = ws.reader()
    try:
        return [p.prompt_id for p in list_prompts(reader)]
    finally:
        reader.close()


def test_the_page_lists_the_built_in_default_and_shows_its_templates(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _prompts_page(monkeypatch, sample_ws)
    assert at.selectbox(key=pw.SELECTED).value == DEFAULT_PROMPT.prompt_id
    versions = _table(at, "version")
    assert list(versions["version"]) == [DEFAULT_PROMPT.prompt_id]
    shown = [c.value for c in at.code]
    assert DEFAULT_PROMPT.stage1_user in shown and DEFAULT_PROMPT.repair in shown


def test_a_new_version_with_a_note_is_stored_listed_and_selected(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _prompts_page(monkeypatch, sample_ws)
    system = "You judge household robot demonstrations, strictly and briefly."
    at.text_area(key=pw.edit_key(DEFAULT_PROMPT.prompt_id, "stage1_system")).input(system)
    at.text_input(key=pw.NOTE).input("a stricter evaluator")
    at.button(key="prompts.save").click().run()
    assert not at.exception, at.exception

    expected = replace(DEFAULT_PROMPT, stage1_system=system).prompt_id
    assert _stored_prompt_ids(sample_ws) == [DEFAULT_PROMPT.prompt_id, expected]
    assert at.selectbox(key=pw.SELECTED).value == expected
    versions = _table(at, "version")
    row = versions[versions["version"] == expected].iloc[0]
    assert row["parent"] == DEFAULT_PROMPT.prompt_id and row["note"] == "a stricter evaluator"
    assert any(expected in s.value for s in at.success)
    assert system in [c.value for c in at.code]  # its templates are the ones shown now


def test_a_version_without_a_note_is_refused(sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    at = _prompts_page(monkeypatch, sample_ws)
    at.text_area(key=pw.edit_key(DEFAULT_PROMPT.prompt_id, "stage2_system")).input("JSON only.")
    at.button(key="prompts.save").click().run()
    assert any("note" in e.value for e in at.error)
    assert _stored_prompt_ids(sample_ws) == [DEFAULT_PROMPT.prompt_id]


def test_a_sandbox_violating_edit_shows_an_error_and_stores_nothing(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _prompts_page(monkeypatch, sample_ws)
    field = pw.edit_key(DEFAULT_PROMPT.prompt_id, "stage1_user")
    at.text_area(key=field).input(DEFAULT_PROMPT.stage1_user + "\n{{ goal.__class__ }}")
    at.text_input(key=pw.NOTE).input("peek at internals")
    at.button(key="prompts.save").click().run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert any("sandbox" in e and "nothing was saved" in e for e in errors), errors
    assert _stored_prompt_ids(sample_ws) == [DEFAULT_PROMPT.prompt_id]
    assert at.selectbox(key=pw.SELECTED).value == DEFAULT_PROMPT.prompt_id


def test_the_diff_of_two_versions_shows_the_changed_line(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    strict = save_prompt(
        sample_ws, new_version(DEFAULT_PROMPT, {"stage2_system": "Score strictly."}, "strict")
    )
    at = _prompts_page(monkeypatch, sample_ws)
    at.selectbox(key=pw.DIFF_A).select(DEFAULT_PROMPT.prompt_id)
    at.selectbox(key=pw.DIFF_B).select(strict.prompt_id).run()
    diffs = [c.value for c in at.code if c.language == "diff"]
    assert len(diffs) == 1  # only stage2_system changed
    assert f"-{DEFAULT_PROMPT.stage2_system}" in diffs[0].splitlines()
    assert "+Score strictly." in diffs[0].splitlines()


def test_the_preview_shows_the_rendered_messages_of_the_chosen_episode(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = sample_ws.reader()
    episodes = list_episodes(reader, EpisodeFilter(include_task_only=False, n_subtasks=(3,))).to_pylist()
    episode = episodes[0]
    segments = load_segments(reader, EpisodeFilter(episode_ids=(episode["episode_id"],)))
    reader.close()

    at = _prompts_page(monkeypatch, sample_ws)
    at.selectbox(key=pw.EPISODE).select(episode["episode_id"]).run()
    at.selectbox(key=pw.segment_key(episode["episode_id"])).select(1).run()
    assert not at.exception, at.exception
    rendered = [c.value for c in at.code if "{{" not in c.value]  # not the templates themselves
    stage1 = [c for c in rendered if c.startswith("Task goal:") and "Do not give scores" in c]
    assert len(stage1) == 1
    assert f"Task goal: {episode['goal']}" in stage1[0]
    assert segments[1].instruction in stage1[0]
    frames = choose_frames(segments[1], QueryConfig().max_frames)
    assert len(at.get("image")) == len(frames)
    labels = [t.value for t in at.text]
    assert f"Frame 1: step {frames[0].t}, next action {frames[0].action}" in labels
    assert any(pw.ANALYSIS_PLACEHOLDER in c.value for c in at.code)  # stage two, with the placeholder


def test_the_reference_test_labels_the_episode_in_process(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _prompts_page(monkeypatch, sample_ws)
    at.button(key="prompts.test_reference").click().run()
    scores = _table(at, "score")
    assert len(scores) > 0 and scores["score"].between(0, 10).all()
    assert any("not a vision-language model" in c.value for c in at.caption)


def test_the_api_key_is_reported_as_set_but_never_shown(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RGVLM_API_KEY", "sk-very-secret-value")
    at = _prompts_page(monkeypatch, sample_ws)
    at.radio(key=pw.setting_key("relabel", "labeller")).set_value("lvlm").run()
    texts = [c.value for c in at.caption] + [c.value for c in at.code] + [m.value for m in at.markdown]
    assert any("`RGVLM_API_KEY` is set" in t for t in texts)
    assert not any("sk-very-secret-value" in t for t in texts)
    at.button(key="prompts.relabel_start").click().run()  # no model named: refused before any job
    assert any("Name the model" in e.value for e in at.error)
    assert at.session_state[pw.JOBS] == []


def test_starting_a_noisy_reference_relabel_runs_a_real_job_that_adds_a_run(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _prompts_page(monkeypatch, sample_ws)
    assert any("not a vision-language model" in i.value for i in at.info)
    at.slider(key=pw.setting_key("relabel", "noise")).set_value(0.2).run()
    at.button(key="prompts.relabel_start").click().run()
    assert not at.exception, at.exception
    [job_id] = at.session_state[pw.JOBS]

    deadline = time.monotonic() + 60
    while (job := get_job(sample_ws, job_id)).status == "running" and time.monotonic() < deadline:
        time.sleep(0.25)
    assert job.status == "done", (job.status, job.error)
    assert "--noise" in job.args and "0.2" in job.args
    reader = sample_ws.reader()
    runs = label_runs(reader)
    reader.close()
    assert [r["run_id"].startswith("reference-noise0.2-") for r in runs] == [True]
    assert runs[0]["ok_steps"] > 0
