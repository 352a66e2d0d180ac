"""The exact queries a model receives, and how its stage-two answers are read."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from rgvlm_core.labeling.backends.base import ImagePart, TextPart
from rgvlm_core.labeling.messages import (
    END_OF_SEGMENT,
    QueryConfig,
    choose_frames,
    encode_frame,
    repair_request,
    stage1_request,
    stage2_request,
)
from rgvlm_core.labeling.parse import ScoreError, parse_scores
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT
from rgvlm_core.labeling.types import Segment, SegmentStep, StepScore


def _segment(n: int, tmp_path: Path | None = None, size: int = 300) -> Segment:
    frames = []
    for t in range(n + 1):
        if tmp_path is None:
            frames.append(f"/frames/{t}.jpg")
        else:
            path = tmp_path / f"{t}.jpg"
            Image.new("RGB", (size, size), (t * 10 % 255, 80, 120)).save(path, format="JPEG")
            frames.append(str(path))
    steps = tuple(SegmentStep(10 + t, f"GotoLocation(L{t})", frames[t]) for t in range(n))
    return Segment(
        "ep#0", "sim", "subtask", 2, "Put a mug in the sink.", "Go to the sink.", "Put", steps, frames[n]
    )


def test_frames_are_subsampled_to_the_limit_keeping_the_first_and_the_last() -> None:
    chosen = choose_frames(_segment(30), 16)
    assert len(chosen) == 16
    assert chosen[0].t == 10 and chosen[-1].action == END_OF_SEGMENT and chosen[-1].t == 40
    assert [c.t for c in choose_frames(_segment(3), 16)] == [10, 11, 12, 13]


def test_stage_one_sends_the_prompt_then_each_frame_after_its_label(tmp_path: Path) -> None:
    seg = _segment(2, tmp_path)
    chosen = choose_frames(seg, 16)
    images = [encode_frame(c.path, 336) for c in chosen]
    request = stage1_request(DEFAULT_PROMPT, seg, list(zip(chosen, images, strict=True)), QueryConfig())
    system, user = request.messages
    assert system.role == "system" and user.role == "user"
    kinds = [type(p).__name__ for p in user.parts]
    assert kinds == ["TextPart", "TextPart", "ImagePart", "TextPart", "ImagePart", "TextPart", "ImagePart"]
    labels = [p.text for p in user.parts[1::2] if isinstance(p, TextPart)]
    assert labels == [
        "Frame 1: step 10, next action GotoLocation(L0)",
        "Frame 2: step 11, next action GotoLocation(L1)",
        f"Frame 3: step 12, next action {END_OF_SEGMENT}",
    ]
    first = user.parts[0]
    assert isinstance(first, TextPart)
    assert (
        "Current subtask (Put): Go to the sink." in first.text
        and "10. GotoLocation(L0)\n11. GotoLocation(L1)" in first.text
    )


def test_stage_two_is_text_only_and_asks_for_exactly_the_segment_steps() -> None:
    request = stage2_request(DEFAULT_PROMPT, _segment(2), "It goes to the sink.", 3, QueryConfig())
    assert all(isinstance(p, TextPart) for m in request.messages for p in m.parts)
    assert request.json_schema is not None
    by_step = request.json_schema["properties"]["scores"]
    assert list(by_step["properties"]) == by_step["required"] == ["10", "11"]
    assert by_step["additionalProperties"] is False
    assert "Analysis of the segment:\nIt goes to the sink." in request.messages[1].parts[0].text  # type: ignore[union-attr]
    repaired = repair_request(DEFAULT_PROMPT, _segment(2), request, '{"scores": [3]}', "expected 2 scores", 3)
    assert [m.role for m in repaired.messages] == ["system", "user", "assistant", "user"]
    assert "expected 2 scores" in repaired.messages[-1].parts[0].text  # type: ignore[union-attr]


def test_the_default_prompt_asks_for_the_form_the_schema_admits() -> None:
    """A constrained server must answer in the schema's form: a prompt describing another form would
    pull the model against its own grammar, and unconstrained answers would differ from constrained ones."""
    request = stage2_request(DEFAULT_PROMPT, _segment(2), "It goes to the sink.", 3, QueryConfig())
    asked = request.messages[1].parts[0].text  # type: ignore[union-attr]
    repair = repair_request(DEFAULT_PROMPT, _segment(2), request, "{}", "expected 2 scores", 3)
    for text in (asked, repair.messages[-1].parts[0].text):  # type: ignore[union-attr]
        assert '{"scores": {"<step number>": {"score": <integer' in text
        assert '"step":' not in text


def test_small_frames_are_sent_as_they_are_and_large_ones_downscaled(tmp_path: Path) -> None:
    small = _segment(1, tmp_path, size=300).steps[0].frame
    assert small is not None
    part = encode_frame(small, 336)
    assert part.data == Path(small).read_bytes() and part.mime == "image/jpeg"
    big = tmp_path / "big.png"
    Image.new("RGB", (1200, 900), "white").save(big)
    out = encode_frame(str(big), 336)
    assert isinstance(out, ImagePart) and max(Image.open(io.BytesIO(out.data)).size) == 336


def test_a_frame_that_is_a_fifo_or_dev_zero_is_an_os_error_at_once(tmp_path: Path) -> None:
    """The labeller turns OSError into "cannot read a frame"; before, a FIFO hung the run and
    /dev/zero was read until memory ran out."""
    fifo, zero = tmp_path / "fifo.jpg", tmp_path / "zero.jpg"
    os.mkfifo(fifo)
    zero.symlink_to("/dev/zero")
    for bad in (fifo, zero):
        with pytest.raises(OSError, match=str(bad)):
            encode_frame(str(bad), 336)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            '{"scores": [{"step": 10, "score": 3, "reason": "wrong way"}, '
            '{"step": 11, "score": 9, "reason": "ok"}]}',
            (StepScore(10, 3, "wrong way"), StepScore(11, 9, "ok")),
        ),
        ('```json\n{"scores": [4, 10]}\n```', (StepScore(10, 4), StepScore(11, 10))),
        (
            'Here you go: [{"step": 11, "score": 1}, {"step": 10, "score": 0}] done',
            (StepScore(10, 0), StepScore(11, 1)),
        ),
        ('{"scores": [4.0, 7]}', (StepScore(10, 4), StepScore(11, 7))),
        (
            '{"scores": {"11": {"reason": "ok", "score": 9}, "10": {"score": 3, "reason": "wrong way"}}}',
            (StepScore(10, 3, "wrong way"), StepScore(11, 9, "ok")),
        ),
    ],
)
def test_answers_in_every_accepted_shape_give_one_score_per_step(
    answer: str, expected: tuple[StepScore, ...]
) -> None:
    assert parse_scores(answer, [10, 11]) == expected


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ('{"scores": [4]}', "expected 2 scores"),
        ('{"scores": [4, 11]}', "outside 0..10"),
        ('{"scores": [4, 6.5]}', "not an integer"),
        ('{"scores": [4, "high"]}', "not an integer"),
        ('{"scores": [{"step": 10, "score": 1}, {"step": 12, "score": 1}]}', "step 12 is not one of"),
        ('{"scores": [{"step": 10, "score": 1}, {"step": 10, "score": 1}]}', "scored twice"),
        ("I would rate these highly.", "no JSON found"),
        ('{"score": 5}', 'expected a JSON object {"scores"'),
        ('{"scores": {"10": {"score": 1, "reason": ""}}}', "no score for step 11"),
        ('{"scores": {"10": {"score": 1, "reason": ""}, "11": 4}}', "the entry of step 11 is 4"),
        (
            '{"scores": {"10": {"score": 1, "reason": ""}, "11": {"score": 12, "reason": ""}}}',
            "outside 0..10",
        ),
        (
            '{"scores": {"10": {"score": 1, "reason": ""}, "12": {"score": 2, "reason": ""}}}',
            "not steps to score",
        ),
        (
            '{"scores": [{"step": 10, "score": 1, "score": 2}, {"step": 11, "score": 1}]}',
            'key "score" appears twice',
        ),
    ],
)
def test_unusable_answers_raise_a_message_the_repair_prompt_can_quote(answer: str, problem: str) -> None:
    with pytest.raises(ScoreError, match=problem.replace("(", r"\(").replace("{", r"\{")):
        parse_scores(answer, [10, 11])
