"""Label runs end to end: through a real chat-completions server (a loopback fake), with faults,
the cache, resumption after SIGKILL, overrides, and the CLI."""

from __future__ import annotations

import collections
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.backends.base import BackendConfig
from rgvlm_core.labeling.backends.openai_http import OpenAIBackend
from rgvlm_core.labeling.lvlm import LvlmLabeller
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT
from rgvlm_core.labeling.reference import ReferenceLabeller
from rgvlm_core.labeling.runs import RunConfig, label_run
from rgvlm_core.labeling.store import add_override, effective_labels, label_runs
from rgvlm_core.workspace.files import PAUSE_ENV, PAUSE_MARKER_ENV
from tests.fake_openai import (
    FakeOpenAI,
    default_responder,
    lvlm_label_args,
    non_json_responder,
    out_of_range_responder,
    wants_scores,
    wrong_count_responder,
)

ROOT = Path(__file__).resolve().parents[1]
FEW = EpisodeFilter(limit=12)


def _lvlm(fake: FakeOpenAI, **config: object) -> LvlmLabeller:
    cfg = BackendConfig(
        base_urls=(fake.base_url,), model="fake-vlm", max_retries=2, backoff_s=0.01, timeout_s=2.0, **config
    )  # type: ignore[arg-type]
    return LvlmLabeller(OpenAIBackend(cfg), DEFAULT_PROMPT, backend_config=cfg)


def _run(ws, labeller, name: str, flt: EpisodeFilter = FEW, **kw: object):  # type: ignore[no-untyped-def]
    (last,) = collections.deque(label_run(ws, labeller, RunConfig(name=name, filters=flt, **kw)), maxlen=1)  # type: ignore[arg-type]
    return last


def _labels(ws, run: str) -> list[tuple[object, ...]]:  # type: ignore[no-untyped-def]
    reader = ws.reader()
    rows = reader.rows(
        "SELECT episode_id, t, score, status, reason FROM labels WHERE run_id = ? ORDER BY 1, 2", [run]
    )
    reader.close()
    return [tuple(r.values()) for r in rows]


def test_an_lvlm_run_asks_two_stages_per_segment_and_labels_every_step(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI() as fake:
        last = _run(sample_ws, _lvlm(fake), "lvlm-a")
        assert last.failed == 0 and last.ok == last.total > 0
        assert len(fake.requests) == 2 * last.total == last.calls
        stage2 = [wants_scores(body) for body in fake.requests]
        assert sum(stage2) == last.total
        assert all(n > 0 for n, s2 in zip(fake.image_counts, stage2, strict=True) if not s2), (
            "stage one: frames"
        )
        assert all(n == 0 for n, s2 in zip(fake.image_counts, stage2, strict=True) if s2), (
            "stage two: text only"
        )
    reader = sample_ws.reader()
    steps = reader.scalar(
        "SELECT count(*) FROM steps s "
        "JOIN (SELECT trajectory_id FROM episodes ORDER BY episode_id LIMIT 12) e "
        "USING (trajectory_id)"
    )
    assert reader.scalar("SELECT count(*) FROM labels WHERE run_id = 'lvlm-a' AND status = 'ok'") == steps
    row = reader.rows("SELECT analysis, raw, prompt_tokens FROM analyses WHERE run_id = 'lvlm-a' LIMIT 1")[0]
    assert row["analysis"] and json.loads(row["raw"])["scores"] and row["prompt_tokens"] > 0
    reader.close()


def _first_stage_two(body: dict) -> bool:  # type: ignore[type-arg]
    return wants_scores(body) and len(body["messages"]) == 2


def _repair(body: dict) -> bool:  # type: ignore[type-arg]
    return wants_scores(body) and len(body["messages"]) == 4


def test_faults_end_every_step_ok_or_failed_with_a_reason_and_retries_stay_bounded(sample_ws) -> None:  # type: ignore[no-untyped-def]
    bad = {
        "wrong count": wrong_count_responder(1),
        "out of range": out_of_range_responder(11),
        "not JSON": non_json_responder(),
    }
    turns = itertools.cycle(bad)
    served: collections.Counter[str] = collections.Counter()

    def responder(body: dict) -> str:  # type: ignore[type-arg]
        if _first_stage_two(body):  # every first stage-two answer is unusable
            kind = next(turns)
            served[kind] += 1
            return bad[kind](body)
        return default_responder(body)

    script = ["429", "500", "timeout", "malformed", "500"] * 3
    with FakeOpenAI(responder=responder, script=script, hang_s=3) as fake:
        last = _run(sample_ws, _lvlm(fake, concurrency=4), "faulty")
        requests, faults = list(fake.requests), list(fake.faults)
    segments = last.total
    assert len(requests) <= segments * 3 * (1 + 2)
    assert collections.Counter(f for f in faults if f) == collections.Counter(script), (
        "every fault was served"
    )
    assert set(served) == set(bad), "every kind of unusable answer was served"

    # Each fault is retried with the same request, unless that query's attempts ran out; such a
    # query fails its segment, whose error says how many attempts it took.
    faulted = [i for i, f in enumerate(faults) if f]
    retried = {i for i in faulted if requests[i] in requests[i + 1 :]}
    reader = sample_ws.reader()
    errors = reader.query("SELECT error FROM analyses WHERE run_id = 'faulty'").column(0).to_pylist()
    reader.close()
    gave_up = [e for e in errors if e and re.search(r"\(after \d+ attempts\)", e)]
    assert retried and len(faulted) - len(retried) == len(gave_up)

    # Each unusable first answer that reached the labeller (not held past the client's timeout) gets
    # exactly one repair query, attempted again only after a fault.
    answered = sum(1 for b, f in zip(requests, faults, strict=True) if _first_stage_two(b) and f == "")
    repairs = [i for i, b in enumerate(requests) if _repair(b)]
    assert answered > 0 and len(repairs) - len(retried.intersection(repairs)) == answered

    labels = _labels(sample_ws, "faulty")
    assert {status for *_, status, _ in labels} <= {"ok", "failed"}
    assert all(reason for *_, status, reason in labels if status == "failed")
    assert all(score is None for _, _, score, status, _ in labels if status == "failed")
    assert last.ok > 0, "the repair retry rescues answers with the wrong number of scores"


def test_an_answer_still_wrong_after_the_repair_retry_fails_the_segment_with_the_reason(sample_ws) -> None:  # type: ignore[no-untyped-def]
    from tests.fake_openai import default_responder, wants_scores

    def responder(body: dict) -> str:  # type: ignore[type-arg]
        return out_of_range_responder(42)(body) if wants_scores(body) else default_responder(body)

    with FakeOpenAI(responder=responder) as fake:
        last = _run(sample_ws, _lvlm(fake), "hopeless", EpisodeFilter(limit=2))
        assert last.ok == 0 and last.failed == last.total
        assert len(fake.requests) == 3 * last.total  # stage one, stage two, one repair
    reader = sample_ws.reader()
    errors = (
        reader.query("SELECT DISTINCT error FROM analyses WHERE run_id = 'hopeless'").column(0).to_pylist()
    )
    reader.close()
    assert errors and all("outside 0..10" in e and "after 1 repair retry" in e for e in errors)


def test_an_unchanged_relabel_is_served_from_the_cache_without_model_calls(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI() as fake:
        _run(sample_ws, _lvlm(fake), "first")
        calls = len(fake.requests)
        again = _run(sample_ws, _lvlm(fake), "second")
        assert len(fake.requests) == calls and again.cached == again.total and again.calls == 0
        changed = _run(sample_ws, _lvlm(fake, extra={"top_p": 0.5}), "third")
        assert changed.calls > 0, "other parameters, other cache key"
    strip = [row[:4] for row in _labels(sample_ws, "first")]
    assert [row[:4] for row in _labels(sample_ws, "second")] == strip


def test_a_run_name_reused_with_other_settings_is_refused(sample_ws) -> None:  # type: ignore[no-untyped-def]
    _run(sample_ws, ReferenceLabeller(), "mine")
    from rgvlm_core.labeling.reference import NoiseConfig

    with pytest.raises(RGVLMError, match="exists with other settings"):
        _run(sample_ws, ReferenceLabeller(NoiseConfig(flip=0.5)), "mine")


def test_concurrency_bounds_the_queries_in_flight(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI(delay_s=0.05) as fake:
        _run(sample_ws, _lvlm(fake, concurrency=3), "gentle", concurrency=3)
        assert 1 < fake.max_in_flight <= 3


def _cli(ws: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "rgvlm_core.cli", "-w", str(ws), "label", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stored_segments(ws: Path) -> int:
    from rgvlm_core.workspace import Workspace

    reader = Workspace.open(ws, create=False).reader()
    try:
        return int(reader.scalar("SELECT count(*) FROM analyses") or 0)
    finally:
        reader.close()


def test_an_lvlm_run_killed_midway_then_rerun_equals_an_uninterrupted_run(sample_ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    clean_ws = tmp_path / "clean"
    shutil.copytree(sample_ws.root, clean_ws)
    with FakeOpenAI(delay_s=0.03) as fake:
        args = lvlm_label_args(
            fake.base_url, "long", "--limit", "40", "--concurrency", "4", "--flush-every", "5"
        )
        victim = _cli(sample_ws.root, *args)
        deadline = time.monotonic() + 60
        while _stored_segments(sample_ws.root) < 15:
            assert victim.poll() is None, victim.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        partial = _stored_segments(sample_ws.root)
        rerun = _cli(sample_ws.root, *args)
        out, err = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, err
        assert f"({partial} from an earlier attempt" in out
        uninterrupted = _cli(clean_ws, *args)
        assert uninterrupted.wait(timeout=120) == 0
    from rgvlm_core.workspace import Workspace

    killed = _labels(sample_ws, "long")
    assert killed == _labels(Workspace.open(clean_ws), "long")
    assert len({row[:2] for row in killed}) == len(killed), "no duplicate step labels"


def test_a_reference_run_killed_inside_a_commit_resumes_to_the_same_labels(sample_ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from rgvlm_core.workspace import Workspace

    clean_ws = tmp_path / "clean"
    shutil.copytree(sample_ws.root, clean_ws)
    args = ["--labeller", "reference", "--name", "ref", "--flush-every", "50"]
    marker = tmp_path / "paused"
    victim = _cli(
        sample_ws.root, *args, **{PAUSE_ENV: "commit-shards-written@4", PAUSE_MARKER_ENV: str(marker)}
    )
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert victim.poll() is None, victim.communicate()[1]
        assert time.monotonic() < deadline
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert 0 < _stored_segments(sample_ws.root) < 608
    assert _cli(sample_ws.root, *args).wait(timeout=120) == 0
    assert _cli(clean_ws, *args).wait(timeout=120) == 0
    assert _labels(sample_ws, "ref") == _labels(Workspace.open(clean_ws), "ref")


def test_overrides_win_when_rewards_are_read_and_the_run_keeps_its_own_score(sample_ws) -> None:  # type: ignore[no-untyped-def]
    _run(sample_ws, ReferenceLabeller(), "ref", EpisodeFilter(limit=3))
    episode, t, score, *_ = _labels(sample_ws, "ref")[0]
    add_override(sample_ws, "ref", str(episode), int(t), 1, "the agent went the wrong way")  # type: ignore[arg-type]
    add_override(sample_ws, "ref", str(episode), int(t), 2, "on second thought")  # type: ignore[arg-type]
    reader = sample_ws.reader()
    row = effective_labels(reader, "ref", [str(episode)]).to_pylist()[0]
    assert (row["score"], row["status"], row["run_score"], row["override_reason"]) == (
        2,
        "overridden",
        score,
        "on second thought",
    )
    assert row["reward"] == pytest.approx(0.2)
    assert label_runs(reader)[0]["ok_steps"] == len(_labels(sample_ws, "ref"))
    reader.close()
    with pytest.raises(RGVLMError, match="needs a reason"):
        add_override(sample_ws, "ref", str(episode), int(t), 5, " ")
    with pytest.raises(RGVLMError, match=r"0\.\.10"):
        add_override(sample_ws, "ref", str(episode), int(t), 12, "too good")


def test_without_an_lvlm_the_cli_labels_with_the_reference_labeller_and_says_so(sample_ws) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if k not in ("RGVLM_MODEL", "RGVLM_BASE_URL")}
    result = subprocess.run(
        [sys.executable, "-m", "rgvlm_core.cli", "-w", str(sample_ws.root), "label", "-n", "5"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "reference labeller, which reads ground truth and is not a vision-language model" in result.stderr
    runs = json.loads(
        subprocess.run(
            [sys.executable, "-m", "rgvlm_core.cli", "-w", str(sample_ws.root), "label-runs", "--json"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        ).stdout
    )
    assert [r["labeller"] for r in runs] == ["reference"] and runs[0]["failed_steps"] == 0


def test_a_tiny_random_transformers_model_ends_in_recorded_failures_not_crashes(
    sample_ws, tmp_path_factory
) -> None:  # type: ignore[no-untyped-def]
    from rgvlm_core.labeling.factory import LabelSpec, build_labeller
    from tests.tiny_models import build_tiny_llava

    folder = build_tiny_llava(tmp_path_factory.getbasetemp() / "tiny-llava")
    spec = LabelSpec(
        labeller="lvlm", backend="hf", model=str(folder), device="cpu", dtype="float32", batch_size=2
    )
    labeller, _ = build_labeller(sample_ws, spec)
    labeller.query = type(labeller.query)(
        stage1_max_tokens=16, tokens_per_step=4
    )  # keep the random model short
    last = _run(sample_ws, labeller, "tiny", EpisodeFilter(limit=2))
    assert last.done == last.total > 0 and last.calls >= 2 * last.total
    reader = sample_ws.reader()
    rows = reader.rows("SELECT status, error, analysis FROM analyses WHERE run_id = 'tiny'")
    reader.close()
    assert all(r["status"] == "failed" and r["error"].startswith("stage two:") for r in rows)
    assert all(r["analysis"] is not None for r in rows), "the stage-one text is kept even when scoring fails"


def test_tokens_and_cost_are_accounted_when_prices_are_configured(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI() as fake:
        last = _run(
            sample_ws,
            _lvlm(fake, price_prompt_per_1k=0.5, price_completion_per_1k=2.0),
            "priced",
            EpisodeFilter(limit=3),
        )
    reader = sample_ws.reader()
    row = reader.rows(
        "SELECT sum(prompt_tokens)::BIGINT p, sum(completion_tokens)::BIGINT c, sum(cost) AS cost "
        "FROM analyses WHERE run_id = 'priced'"
    )[0]
    summary = next(r for r in label_runs(reader) if r["run_id"] == "priced")
    reader.close()
    assert row["p"] > 0 and row["c"] > 0
    assert row["cost"] == pytest.approx(row["p"] / 1000 * 0.5 + row["c"] / 1000 * 2.0)
    assert summary["cost"] == pytest.approx(row["cost"]) and last.cost == pytest.approx(row["cost"])


def test_the_clip_labeller_scores_every_step_of_a_run_from_a_local_model(sample_ws, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    from rgvlm_core.labeling.factory import LabelSpec, build_labeller
    from tests.tiny_models import build_tiny_clip

    folder = build_tiny_clip(tmp_path_factory.getbasetemp() / "tiny-clip")
    labeller, prompt = build_labeller(sample_ws, LabelSpec(labeller="clip", model=str(folder), device="cpu"))
    last = _run(sample_ws, labeller, "clip", EpisodeFilter(limit=4))
    assert prompt is None and last.failed == 0 and last.ok == last.total > 0
    scores = [score for _, _, score, status, _ in _labels(sample_ws, "clip")]
    assert all(isinstance(s, int) and 0 <= s <= 10 for s in scores)
