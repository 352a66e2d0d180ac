"""The progress question in stage two: asked by a prompt version's flag, parsed as strictly as scores,
and constrained by a schema that admits exactly the answers the parser accepts."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from typing import Any

import jsonschema  # installed with streamlit (altair needs it); not a dependency of ours
import pytest

from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.messages import QueryConfig, repair_request, scores_schema, stage2_request
from rgvlm_core.labeling.parse import ProgressError, ScoreError, parse_scores
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT, PromptVersion, example_variables, render, validate
from rgvlm_core.labeling.types import Segment, SegmentStep, StepScore
from tests.json_schema_instances import random_instance

STEPS = [10, 11]
ASKS = replace(DEFAULT_PROMPT, ask_progress=True)


def _keyed(*entries: dict[str, Any]) -> str:
    return json.dumps({"scores": {str(t): e for t, e in zip(STEPS, entries, strict=True)}})


def _parse(answer: str) -> tuple[StepScore, ...]:
    return parse_scores(answer, STEPS, progress=True)


# --- parsing -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        _keyed({"score": 3, "progress": 2, "reason": "a"}, {"progress": 10, "reason": "b", "score": 9}),
        '{"scores": [{"step": 11, "score": 9, "progress": 10, "reason": "b"}, '
        '{"step": 10, "score": 3, "progress": 2, "reason": "a"}]}',
        '```json\n{"scores": [3, 9], "progress": [2, 10.0]}\n```',
    ],
    ids=["keyed", "objects", "lists"],
)
def test_progress_is_read_next_to_each_score_in_every_accepted_shape(answer: str) -> None:
    parsed = _parse(answer)
    assert [(s.t, s.score, s.progress) for s in parsed] == [(10, 3, 2), (11, 9, 10)]


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (_keyed({"score": 3, "progress": 2, "reason": ""}, {"score": 9, "reason": ""}),
         "no progress for step 11"),
        (_keyed({"score": 3, "progress": 11, "reason": ""}, {"score": 9, "progress": 4, "reason": ""}),
         "the progress of step 10 is 11, outside 0..10"),
        (_keyed({"score": 3, "progress": -1, "reason": ""}, {"score": 9, "progress": 4, "reason": ""}),
         "the progress of step 10 is -1, outside 0..10"),
        (_keyed({"score": 3, "progress": 2.5, "reason": ""}, {"score": 9, "progress": 4, "reason": ""}),
         "the progress of step 10 is 2.5, not an integer"),
        (_keyed({"score": 3, "progress": "7", "reason": ""}, {"score": 9, "progress": True, "reason": ""}),
         "the progress of step 10 is '7', not an integer"),
        ('{"scores": [3, 9], "progress": [2]}', "expected 2 progress answers (steps 10, 11), got 1"),
        ('{"scores": [3, 9], "progress": [2, 4, 6]}', "expected 2 progress answers (steps 10, 11), got 3"),
        ('{"scores": [3, 9]}', "no progress answers"),
        ('{"scores": [{"step": 10, "score": 3, "progress": 1}, {"step": 11, "score": 9}]}',
         "no progress for step 11"),
    ],
)  # fmt: skip
def test_unusable_progress_keeps_the_scores_and_says_why(answer: str, problem: str) -> None:
    with pytest.raises(ProgressError) as caught:
        _parse(answer)
    assert problem in str(caught.value)
    assert [(s.t, s.score, s.progress) for s in caught.value.scores] == [(10, 3, None), (11, 9, None)]


def test_unusable_scores_are_a_score_error_whatever_the_progress() -> None:
    with pytest.raises(ScoreError) as caught:
        _parse(_keyed({"score": 12, "progress": 2, "reason": ""}, {"score": 9, "progress": 4, "reason": ""}))
    assert not isinstance(caught.value, ProgressError) and "outside 0..10" in str(caught.value)


def test_without_the_question_a_progress_key_in_the_schema_form_is_refused_as_before() -> None:
    answer = _keyed({"score": 3, "progress": 2, "reason": ""}, {"score": 9, "progress": 4, "reason": ""})
    with pytest.raises(ScoreError, match='keys other than "score" and "reason": progress'):
        parse_scores(answer, STEPS)
    assert [s.progress for s in parse_scores('{"scores": [3, 9], "progress": [1, 2]}', STEPS)] == [None, None]


# --- the schema admits exactly what the parser accepts ----------------------------------------------


def _accepted(answer: Any, steps: list[int]) -> bool:
    try:
        parse_scores(json.dumps(answer), steps, progress=True)
    except ScoreError:  # ProgressError included: the answer is not fully usable
        return False
    return True


def _valid(answer: Any, steps: list[int]) -> bool:
    return jsonschema.Draft202012Validator(scores_schema(steps, progress=True)).is_valid(answer)


@pytest.mark.parametrize("steps", [[0], [3, 4], [7, 9, 30, 31], list(range(40, 52))])
def test_every_instance_of_the_schema_with_progress_parses_with_its_progress(steps: list[int]) -> None:
    schema = scores_schema(steps, progress=True)
    rng = random.Random(len(steps))
    for _ in range(150):
        answer = random_instance(schema, rng)
        parsed = parse_scores(json.dumps(answer), steps, progress=True)
        by_step = answer["scores"]
        assert [(s.t, s.score, s.progress, s.reason) for s in parsed] == [
            (t, by_step[str(t)]["score"], by_step[str(t)]["progress"], by_step[str(t)]["reason"])
            for t in steps
        ]


def _mutations() -> dict[str, Any]:
    good = {
        "scores": {
            "3": {"score": 5, "progress": 4, "reason": "ok"},
            "4": {"score": 0, "progress": 10, "reason": ""},
        }
    }

    def edit(change: Any) -> dict[str, Any]:
        doc = json.loads(json.dumps(good))
        change(doc)
        return doc

    return {
        "as written": good,
        "both ends of the range": edit(lambda d: d["scores"]["3"].update(progress=0)),
        "a float progress that is an integer": edit(lambda d: d["scores"]["3"].update(progress=4.0)),
        "no progress": edit(lambda d: d["scores"]["3"].pop("progress")),
        "progress above the range": edit(lambda d: d["scores"]["3"].update(progress=11)),
        "progress below the range": edit(lambda d: d["scores"]["3"].update(progress=-1)),
        "a fractional progress": edit(lambda d: d["scores"]["3"].update(progress=4.5)),
        "progress as text": edit(lambda d: d["scores"]["3"].update(progress="4")),
        "a boolean progress": edit(lambda d: d["scores"]["3"].update(progress=False)),
        "a null progress": edit(lambda d: d["scores"]["3"].update(progress=None)),
        "no score": edit(lambda d: d["scores"]["3"].pop("score")),
        "an extra field": edit(lambda d: d["scores"]["3"].update(confidence=1)),
        "a top-level progress list": edit(lambda d: d.update(progress=[4, 10])),
        "a step missing": edit(lambda d: d["scores"].pop("4")),
    }  # fmt: skip


@pytest.mark.parametrize("case", list(_mutations()))
def test_the_parser_accepts_an_answer_with_progress_exactly_when_the_schema_admits_it(case: str) -> None:
    answer = _mutations()[case]
    assert _accepted(answer, [3, 4]) == _valid(answer, [3, 4])


def test_the_schema_asks_for_progress_only_when_the_question_is_asked() -> None:
    entry = scores_schema([3])["properties"]["scores"]["properties"]["3"]
    assert "progress" not in entry["properties"] and entry["required"] == ["score", "reason"]
    asked = scores_schema([3], progress=True)["properties"]["scores"]["properties"]["3"]
    assert asked["properties"]["progress"] == {"type": "integer", "minimum": 0, "maximum": 10}
    assert set(asked["required"]) == {"score", "progress", "reason"}


# --- the prompt version's flag -------------------------------------------------------------------------


def _segment() -> Segment:
    steps = tuple(SegmentStep(t, f"GotoLocation(L{t})", None) for t in STEPS)
    return Segment("ep", "sim", "subtask", 0, "Wash a mug.", "Go to the sink.", "Put", steps)


def test_the_flag_is_part_of_the_prompt_id_and_older_ids_are_unchanged() -> None:
    assert ASKS.prompt_id != DEFAULT_PROMPT.prompt_id
    templates_only = PromptVersion(**{f: getattr(DEFAULT_PROMPT, f) for f in DEFAULT_PROMPT.templates()})
    assert templates_only.prompt_id == DEFAULT_PROMPT.prompt_id
    row = DEFAULT_PROMPT.to_row()
    del row["ask_progress"]  # a row stored before the field existed
    assert PromptVersion.from_row(row).ask_progress is False
    assert PromptVersion.from_row(ASKS.to_row()) == ASKS


def test_stage_two_asks_for_progress_and_constrains_it_when_the_version_asks() -> None:
    plain = stage2_request(DEFAULT_PROMPT, _segment(), "It walks.", 2, QueryConfig())
    asked = stage2_request(ASKS, _segment(), "It walks.", 2, QueryConfig())
    plain_text, asked_text = (r.messages[1].parts[0].text for r in (plain, asked))  # type: ignore[union-attr]
    assert '"progress"' not in plain_text and plain.json_schema == scores_schema(STEPS)
    assert '{"score": <integer>, "progress": <integer 0..10>, "reason": "<a few words>"}' in asked_text
    assert asked.json_schema == scores_schema(STEPS, progress=True)
    assert asked.max_tokens > plain.max_tokens, "room for the progress answers"
    repair = repair_request(ASKS, _segment(), asked, "{}", "no progress for step 11", 2)
    assert '"progress": <integer 0..10>' in repair.messages[-1].parts[0].text  # type: ignore[union-attr]


def test_the_default_stage_two_text_is_unchanged_when_progress_is_not_asked() -> None:
    values = {**example_variables(), "ask_progress": False}
    text = render(DEFAULT_PROMPT.stage2_user, values)
    assert "progress" not in text
    assert text.endswith(
        '"reason": "<a few words>"}, ...}} with exactly one entry for each of the 2 steps: 4, 5.'
    )


def test_a_version_asking_progress_must_ask_it_in_its_stage_two_template() -> None:
    validate(ASKS)
    silent = replace(ASKS, stage2_user="Score steps {{ steps_list }} as JSON scores.")
    with pytest.raises(RGVLMError, match=r"ask_progress.*stage2_user"):
        validate(silent)
