"""Progress answers in label runs: the reference labeller's ground truth (simulator plans, ALFRED
positions), an LVLM's answers through a chat-completions server, failures recorded rather than
invented, storage, effective labels and the CLI option."""

from __future__ import annotations

import collections
import json
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.cli import app
from rgvlm_core.errors import UsageError
from rgvlm_core.labeling.backends.base import BackendConfig
from rgvlm_core.labeling.backends.openai_http import OpenAIBackend
from rgvlm_core.labeling.factory import LabelSpec, build_labeller
from rgvlm_core.labeling.lvlm import LvlmLabeller
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT, PromptVersion, with_progress
from rgvlm_core.labeling.reference import ReferenceLabeller
from rgvlm_core.labeling.runs import RunConfig, RunProgress, label_run
from rgvlm_core.labeling.store import add_override, effective_labels, get_prompt
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import PROMPTS
from tests.alfred_factory import run_import, write_trajectory
from tests.fake_openai import (
    FakeOpenAI,
    default_responder,
    lvlm_label_args,
    sequence_responder,
    step_numbers,
    wants_scores,
)

# A suboptimal simulator trajectory of the bundled sample: 4 subtasks (Pickup, Slice, Put, Pickup).
DETOURS = "sim:train/pick_and_place_simple-Apple-None-Fridge-6/trial_S0000_000031"
# Worked by hand from the expert's remaining plan length for the step's subtask (subtask_remaining):
# subtask 0 needs 3 actions before step 0, and after steps 0..9 needs 3 2 1 2 3 4 3 2 1 0;
# subtask 1 needs 2 before step 10, and after steps 10..18 needs 1 2 2 1 2 1 2 1 0;
# subtasks 2 and 3 need 1 before their one step and 0 after it.
# progress = round(10 * clip(1 - after / before, 0, 1)):
DETOURS_PROGRESS = [*[0, 3, 7, 3, 0, 0, 0, 3, 7, 10], *[5, 0, 0, 5, 0, 5, 0, 5, 10], 10, 10]


def _episode_of(ws: Workspace, trajectory_id: str) -> str:
    reader = ws.reader()
    try:
        return str(
            reader.scalar(
                "SELECT min(episode_id) FROM episodes WHERE trajectory_id = ? AND NOT task_only",
                [trajectory_id],
            )
        )
    finally:
        reader.close()


def _run(ws: Workspace, labeller: Any, name: str, flt: EpisodeFilter, **kw: Any) -> RunProgress:
    (last,) = collections.deque(label_run(ws, labeller, RunConfig(name=name, filters=flt, **kw)), maxlen=1)
    return last


def _rows(ws: Workspace, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    reader = ws.reader()
    try:
        return reader.rows(sql, params)
    finally:
        reader.close()


def _labels(ws: Workspace, run: str) -> list[dict[str, Any]]:
    return _rows(
        ws,
        "SELECT l.episode_id, l.t, l.score, l.progress, l.status, s.sparse_reward FROM labels l "
        "JOIN episodes e USING (episode_id) JOIN steps s ON s.trajectory_id = e.trajectory_id AND s.t = l.t "
        "WHERE run_id = ? ORDER BY 1, 2",
        [run],
    )


# --- the reference labeller ------------------------------------------------------------------------------


def test_reference_progress_on_the_simulator_is_the_share_of_the_expert_plan_done(sample_ws) -> None:  # type: ignore[no-untyped-def]
    episode = _episode_of(sample_ws, DETOURS)
    last = _run(sample_ws, ReferenceLabeller(), "ref", EpisodeFilter(episode_ids=(episode,)))
    assert last.ok == 4 and last.no_progress == 0
    labels = _labels(sample_ws, "ref")
    assert [r["progress"] for r in labels] == DETOURS_PROGRESS
    errors = _rows(sample_ws, "SELECT error FROM analyses WHERE run_id = 'ref'", [])
    assert all(r["error"] is None for r in errors)


def test_reference_progress_is_10_on_every_step_that_completes_a_subtask(sample_ws) -> None:  # type: ignore[no-untyped-def]
    _run(sample_ws, ReferenceLabeller(), "ref", EpisodeFilter(limit=40))
    labels = _labels(sample_ws, "ref")
    completing = [r for r in labels if r["sparse_reward"] > 0]
    assert len(completing) > 40 and all(r["progress"] == 10 for r in completing)
    assert all(r["progress"] is not None and 0 <= r["progress"] <= 10 for r in labels)
    assert any(r["progress"] < 10 for r in labels if r["sparse_reward"] == 0)


def test_reference_progress_on_alfred_is_the_step_s_place_in_its_subtask(tmp_path: Path) -> None:
    data = tmp_path / "alfred"
    write_trajectory(data, n_annotations=1)  # two subtasks of 4 steps (3 GotoLocation + 1 manipulation)
    ws = Workspace.open(tmp_path / "ws", create=True)
    run_import(ws, data)
    _run(ws, ReferenceLabeller(), "ref", EpisodeFilter())
    # (i + 1) / 4 on the 0..10 scale: 2.5 -> 2 and 7.5 -> 8 (round half to even)
    assert [r["progress"] for r in _labels(ws, "ref")] == [2, 5, 8, 10, 2, 5, 8, 10]


def test_the_reference_labeller_without_the_question_stores_no_progress_and_keeps_older_settings(
    sample_ws,
) -> None:  # type: ignore[no-untyped-def]
    off = ReferenceLabeller(progress=False)
    assert off.describe() == {"labeller": "reference", "noise": off.describe()["noise"], "ground_truth": True}
    _run(sample_ws, off, "off", EpisodeFilter(limit=3))
    assert {r["progress"] for r in _labels(sample_ws, "off")} == {None}


def test_noise_moves_reference_scores_but_never_progress(sample_ws) -> None:  # type: ignore[no-untyped-def]
    from rgvlm_core.labeling.reference import NoiseConfig

    flt = EpisodeFilter(limit=10)
    _run(sample_ws, ReferenceLabeller(), "clean", flt)
    _run(sample_ws, ReferenceLabeller(NoiseConfig.from_level(0.5, seed=3)), "noisy", flt)
    clean, noisy = _labels(sample_ws, "clean"), _labels(sample_ws, "noisy")
    assert None not in {r["progress"] for r in clean}
    assert [r["progress"] for r in clean] == [r["progress"] for r in noisy]
    assert [r["score"] for r in clean] != [r["score"] for r in noisy]


# --- an LVLM through a chat-completions server -------------------------------------------------------------


def _answer(body: dict[str, Any], progress: Any = None, score: int = 5) -> str:
    """Keyed scores for the request's steps, with progress t % 11 (or `progress` when given)."""
    entries = {
        str(t): {"score": score, "progress": t % 11 if progress is None else progress, "reason": "r"}
        for t in step_numbers(body)
    }
    return json.dumps({"scores": entries})


def _responder(*stage_two: Any) -> Any:
    """Stage one answered as usual; stage-two answers from `stage_two` in turn (the last repeats)."""
    answers = sequence_responder(*stage_two)
    return lambda body: answers(body) if wants_scores(body) else default_responder(body)


def _lvlm(fake: FakeOpenAI, prompt: Any) -> LvlmLabeller:
    cfg = BackendConfig(base_urls=(fake.base_url,), model="fake-vlm", max_retries=0, timeout_s=5.0)
    return LvlmLabeller(OpenAIBackend(cfg), prompt, backend_config=cfg)


ASKS = with_progress(DEFAULT_PROMPT, True)
FEW = EpisodeFilter(limit=2)


def test_an_lvlm_run_asking_progress_stores_each_answer_and_constrains_it(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI(responder=_responder(_answer)) as fake:
        last = _run(sample_ws, _lvlm(fake, ASKS), "asks", FEW)
        schemas = [
            body["response_format"]["json_schema"]["schema"] for body in fake.requests if wants_scores(body)
        ]
    assert last.failed == 0 and last.no_progress == 0 and last.ok == last.total == len(schemas)
    entry = next(iter(schemas[0]["properties"]["scores"]["properties"].values()))
    assert "progress" in entry["required"]
    labels = _labels(sample_ws, "asks")
    assert labels and all(r["progress"] == r["t"] % 11 and r["score"] == 5 for r in labels)


def test_an_lvlm_run_without_the_question_stores_null_progress(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI() as fake:
        _run(sample_ws, _lvlm(fake, DEFAULT_PROMPT), "plain", FEW)
        assert not any("progress" in json.dumps(body) for body in fake.requests if wants_scores(body))
    assert {r["progress"] for r in _labels(sample_ws, "plain")} == {None}


def test_unusable_progress_after_the_repair_keeps_the_scores_and_records_why(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI(responder=_responder(lambda b: _answer(b, progress=11, score=6))) as fake:
        last = _run(sample_ws, _lvlm(fake, ASKS), "bad", FEW)
        stage_two = sum(wants_scores(body) for body in fake.requests)
    assert last.failed == 0 and last.ok == last.total and last.no_progress == last.total
    assert stage_two == 2 * last.total, "one repair retry per segment, no more"
    labels = _labels(sample_ws, "bad")
    assert labels and all(r["status"] == "ok" and r["score"] == 6 and r["progress"] is None for r in labels)
    analyses = _rows(sample_ws, "SELECT status, error, cache_key FROM analyses WHERE run_id = 'bad'", [])
    for row in analyses:
        assert row["status"] == "ok"
        assert row["error"].startswith("progress: the progress of step ")
        assert "outside 0..10 (after 1 repair retry)" in row["error"]
    keys = [r["cache_key"] for r in analyses]
    assert not _rows(sample_ws, "SELECT * FROM label_cache WHERE cache_key IN (SELECT unnest(?))", [keys]), (
        "a segment without its progress is not cached: another run asks again"
    )


def test_a_repair_that_fixes_the_progress_stores_it(sample_ws) -> None:  # type: ignore[no-untyped-def]
    def no_progress(body: dict[str, Any]) -> str:
        return json.dumps({"scores": {str(t): {"score": 2, "reason": ""} for t in step_numbers(body)}})

    turns = collections.defaultdict(int)

    def responder(body: dict[str, Any]) -> str:
        if not wants_scores(body):
            return default_responder(body)
        key = tuple(step_numbers(body))
        turns[key] += 1
        return no_progress(body) if turns[key] == 1 else _answer(body)

    with FakeOpenAI(responder=responder) as fake:
        last = _run(sample_ws, _lvlm(fake, ASKS), "fixed", EpisodeFilter(limit=1), concurrency=1)
    assert last.no_progress == 0 and last.failed == 0
    assert all(r["progress"] == r["t"] % 11 and r["score"] == 5 for r in _labels(sample_ws, "fixed"))


def test_scores_are_kept_when_only_the_repair_answer_is_unusable(sample_ws) -> None:  # type: ignore[no-untyped-def]
    def responder(body: dict[str, Any]) -> str:
        if not wants_scores(body):
            return default_responder(body)
        if len(body["messages"]) == 2:  # the first stage-two answer: scores without progress
            return json.dumps({"scores": {str(t): {"score": 4, "reason": ""} for t in step_numbers(body)}})
        return "Sorry, I cannot answer that."

    with FakeOpenAI(responder=responder) as fake:
        last = _run(sample_ws, _lvlm(fake, ASKS), "kept", EpisodeFilter(limit=1))
    assert last.failed == 0 and last.no_progress == last.total
    assert {(r["score"], r["progress"]) for r in _labels(sample_ws, "kept")} == {(4, None)}
    (error, *_) = {
        r["error"] for r in _rows(sample_ws, "SELECT error FROM analyses WHERE run_id = 'kept'", [])
    }
    assert (
        error.startswith("progress: no progress for step")
        and "the repair answer was unusable: no JSON" in error
    )


# --- reading labels --------------------------------------------------------------------------------------


def test_effective_labels_return_the_run_s_progress_whatever_the_overrides(sample_ws) -> None:  # type: ignore[no-untyped-def]
    episode = _episode_of(sample_ws, DETOURS)
    _run(sample_ws, ReferenceLabeller(), "ref", EpisodeFilter(episode_ids=(episode,)))
    add_override(sample_ws, "ref", episode, 1, 9, "a person disagrees")
    reader = sample_ws.reader()
    try:
        rows = effective_labels(reader, "ref").to_pylist()
    finally:
        reader.close()
    assert [r["progress"] for r in rows] == DETOURS_PROGRESS
    assert rows[1]["score"] == 9 and rows[1]["status"] == "overridden" and rows[1]["progress"] == 3


# --- settings: the factory, the CLI, the prompts table -------------------------------------------------


def test_the_cli_asks_the_reference_labeller_for_progress_unless_told_not_to(sample_ws) -> None:  # type: ignore[no-untyped-def]
    episode = _episode_of(sample_ws, DETOURS)
    base = ["-w", str(sample_ws.root), "label", "--labeller", "reference", "--episode", episode]
    for name, extra in (("on", []), ("off", ["--no-progress"])):
        result = CliRunner().invoke(app, [*base, "--name", name, *extra])
        assert result.exit_code == 0, result.output
    assert [r["progress"] for r in _labels(sample_ws, "on")] == DETOURS_PROGRESS
    assert {r["progress"] for r in _labels(sample_ws, "off")} == {None}


def test_the_cli_progress_option_derives_a_prompt_version_that_asks_it(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI(responder=_responder(_answer)) as fake:
        args = lvlm_label_args(fake.base_url, "cli-asks", "--progress", "--limit", "1")
        result = CliRunner().invoke(app, ["-w", str(sample_ws.root), "label", *args])
    assert result.exit_code == 0, result.output
    (run,) = _rows(sample_ws, "SELECT prompt_id FROM label_runs WHERE run_id = 'cli-asks'", [])
    reader = sample_ws.reader()
    try:
        used = get_prompt(reader, run["prompt_id"])
    finally:
        reader.close()
    assert used.ask_progress and used.parent == DEFAULT_PROMPT.prompt_id and used.prompt_id == ASKS.prompt_id
    assert all(r["progress"] == r["t"] % 11 for r in _labels(sample_ws, "cli-asks"))


def test_the_clip_labeller_refuses_the_progress_question(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UsageError, match="clip labeller cannot answer the progress question"):
        build_labeller(sample_ws, LabelSpec(labeller="clip", model="/nowhere", progress=True))


def test_prompt_versions_stored_before_the_flag_migrate_to_versions_that_do_not_ask(tmp_path: Path) -> None:
    ws = Workspace.open(tmp_path / "ws", create=True)
    old = DEFAULT_PROMPT.to_row()
    del old["ask_progress"]
    v1 = pa.schema([f for f in PROMPTS.schema if f.name != "ask_progress"])
    rel = Path("data") / "prompts" / "v1" / f"{time.time_ns()}-1-old.parquet"
    (ws.store_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([old], schema=v1)
    pq.write_table(
        table.replace_schema_metadata({b"rgvlm.table": b"prompts", b"rgvlm.schema_version": b"1"}),
        ws.store_dir / rel,
    )
    head = json.loads(ws.head_path.read_text())
    head["tables"]["prompts"] = {"schema_version": 1, "files": [str(rel)]}
    ws.head_path.write_text(json.dumps(head))
    assert ws.migrate() == {"prompts": (1, 2)}
    reader = ws.reader()
    try:
        (row,) = reader.rows("SELECT * FROM prompts")
        assert row["ask_progress"] is False
        assert PromptVersion.from_row(row) == DEFAULT_PROMPT and row["prompt_id"] == DEFAULT_PROMPT.prompt_id
    finally:
        reader.close()


def test_only_a_labeller_that_reads_plan_progress_makes_a_run_plan_it(
    sample_ws, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Planning costs ~2 ms per simulator trajectory: an LVLM run over a large dataset must not pay it."""
    from rgvlm_core.labeling import store

    planned: list[str] = []
    real = store.plan_progress

    def counting(dataset: str, source_dir: str, subtasks: list[dict[str, Any]]) -> dict[int, float]:
        planned.append(source_dir)
        return real(dataset, source_dir, subtasks)

    monkeypatch.setattr(store, "plan_progress", counting)
    with FakeOpenAI(responder=_responder(_answer)) as fake:
        _run(sample_ws, _lvlm(fake, ASKS), "lvlm", FEW)
    _run(sample_ws, ReferenceLabeller(progress=False), "ref-off", FEW)
    assert planned == []
    _run(sample_ws, ReferenceLabeller(), "ref-on", FEW)
    assert planned and len(planned) == len(set(planned)), "once per trajectory"


def test_prompts_add_takes_the_flag_from_the_json_that_prompts_show_prints(sample_ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner, ws = CliRunner(), ["-w", str(sample_ws.root)]
    shown = runner.invoke(app, [*ws, "prompts", "show", "--json"])
    assert shown.exit_code == 0 and json.loads(shown.output)["ask_progress"] is False
    doc = tmp_path / "asks.json"
    doc.write_text(json.dumps({**json.loads(shown.output), "ask_progress": True}))
    added = runner.invoke(app, [*ws, "prompts", "add", str(doc), "--note", "asks progress"])
    assert added.exit_code == 0, added.output
    assert f"added prompt {ASKS.prompt_id}" in added.output
    doc.write_text(json.dumps({"ask_progress": "yes"}))
    refused = runner.invoke(app, [*ws, "prompts", "add", str(doc), "--note", "typo"])
    assert "ask_progress must be true or false, got 'yes'" in str(refused.exception)


def test_the_fake_servers_default_answer_carries_progress_when_the_schema_asks_it(sample_ws) -> None:  # type: ignore[no-untyped-def]
    # the fake speaks the protocol a constraining server would: every field the schema requires
    with FakeOpenAI() as fake:
        args = lvlm_label_args(fake.base_url, "default-asks", "--progress", "--limit", "1")
        result = CliRunner().invoke(app, ["-w", str(sample_ws.root), "label", *args])
    assert result.exit_code == 0, result.output
    labels = _labels(sample_ws, "default-asks")
    assert labels and all(r["progress"] is not None and 1 <= r["progress"] <= 10 for r in labels)
