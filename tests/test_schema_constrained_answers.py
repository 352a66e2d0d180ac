"""The stage-two JSON schema admits exactly the answers the parser accepts.

A server that constrains its output (vLLM's guided decoding, llama.cpp / Ollama grammars, OpenAI
structured outputs) may answer with ANY instance of the schema it is sent, so the schema must not
admit an answer the parser refuses, and must admit every valid labelling. The loopback server's
`schema_responder` plays such a server: it answers random instances of the schema it receives.
"""

from __future__ import annotations

import collections
import json
import random
import string
from typing import Any

import jsonschema  # installed with streamlit (altair needs it); not a dependency of ours
import pytest

from rgvlm_core.labeling.backends.base import BackendConfig
from rgvlm_core.labeling.backends.openai_http import OpenAIBackend
from rgvlm_core.labeling.lvlm import LvlmLabeller
from rgvlm_core.labeling.messages import scores_schema
from rgvlm_core.labeling.parse import ScoreError, parse_scores
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT
from rgvlm_core.labeling.runs import RunConfig, label_run
from rgvlm_core.labeling.types import SCORE_MAX, SCORE_MIN, StepScore
from tests.fake_openai import FakeOpenAI, schema_responder
from tests.json_schema_instances import SchemaNotUnderstood, random_instance

STEP_LISTS = [[0], [3, 4], [10, 11, 12], [7, 9, 30, 31], list(range(40, 52)), [5, 100, 2000]]
DRAWS = 150


def array_schema_before_issue_11(steps: list[int]) -> dict[str, Any]:
    """The schema stage two sent before issue 11: each item's step an enum, the length fixed."""
    item = {
        "type": "object",
        "properties": {
            "step": {"type": "integer", "enum": steps},
            "score": {"type": "integer", "minimum": SCORE_MIN, "maximum": SCORE_MAX},
            "reason": {"type": "string"},
        },
        "required": ["step", "score", "reason"],
        "additionalProperties": False,
    }
    n = len(steps)
    return {
        "type": "object",
        "properties": {"scores": {"type": "array", "items": item, "minItems": n, "maxItems": n}},
        "required": ["scores"],
        "additionalProperties": False,
    }


def accepted(answer: Any, steps: list[int]) -> bool:
    try:
        parse_scores(json.dumps(answer), steps)
    except ScoreError:
        return False
    return True


def valid(answer: Any, schema: dict[str, Any]) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(answer)


# --- the generator is a faithful schema-following server --------------------------------------------

GENERATOR_SCHEMAS = [
    array_schema_before_issue_11([3, 4, 5]),
    scores_schema([3, 4, 5]),
    {
        "type": "object",
        "properties": {"a": {"type": "integer"}, "b": {"type": "string", "enum": ["x", "y"]}},
        "required": ["a"],
    },
    {"type": "array", "prefixItems": [{"const": 7}, {"type": "string"}], "items": False, "minItems": 1},
    {"type": "array", "items": {"type": "integer", "minimum": -3}, "minItems": 2, "maxItems": 5},
]


@pytest.mark.parametrize("schema", GENERATOR_SCHEMAS, ids=range(len(GENERATOR_SCHEMAS)))
def test_the_generator_draws_only_instances_the_schema_admits(schema: dict[str, Any]) -> None:
    rng = random.Random(11)
    drawn = [random_instance(schema, rng) for _ in range(DRAWS)]
    assert all(valid(value, schema) for value in drawn)
    assert len({json.dumps(v, sort_keys=True) for v in drawn}) > DRAWS // 3, "it explores the schema"


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "^a+$"},
        {"type": "string", "maxLength": 3},
        {"type": "number"},
        {"type": ["integer", "null"]},
        {"anyOf": [{"type": "integer"}]},
        {"$ref": "#/$defs/x"},
        {"type": "array", "items": {"type": "integer"}, "uniqueItems": True},
        {"type": "object", "additionalProperties": {"type": "integer"}},
        {
            "type": "object",
            "properties": {"a": {"type": "integer", "exclusiveMaximum": 3}},
            "required": ["a"],
        },
        {"type": "integer", "minimum": 5, "maximum": 4},
        {"type": "integer", "enum": [11, 12], "maximum": 10},
    ],
)
def test_the_generator_refuses_what_it_does_not_model_instead_of_ignoring_it(schema: Any) -> None:
    with pytest.raises(SchemaNotUnderstood):
        random_instance(schema, random.Random(0))


# --- the schema admits no answer the parser refuses ------------------------------------------------


def test_the_schema_before_issue_11_admitted_answers_the_parser_refuses() -> None:
    """Why a schema-following server failed about a third of the segments: duplicated steps."""
    rng = random.Random(5)
    refused = collections.Counter()
    for steps in STEP_LISTS:
        schema = array_schema_before_issue_11(steps)
        refused[len(steps)] = sum(not accepted(random_instance(schema, rng), steps) for _ in range(DRAWS))
    assert refused[1] == 0 and all(refused[n] > DRAWS // 4 for n in refused if n > 1), refused


@pytest.mark.parametrize("steps", STEP_LISTS, ids=[len(s) for s in STEP_LISTS])
def test_every_instance_of_the_scores_schema_parses_to_one_score_per_step(steps: list[int]) -> None:
    schema = scores_schema(steps)
    rng = random.Random(len(steps))
    for _ in range(DRAWS):
        answer = random_instance(schema, rng)
        parsed = parse_scores(json.dumps(answer), steps)
        assert [s.t for s in parsed] == steps
        by_step = answer["scores"]
        assert [(s.score, s.reason) for s in parsed] == [
            (by_step[str(t)]["score"], by_step[str(t)]["reason"]) for t in steps
        ]


# --- the schema admits every valid answer, and the parser nothing more in the schema's form ------------


def canonical(scores: list[StepScore]) -> dict[str, Any]:
    """A labelling written in the schema's form."""
    return {"scores": {str(s.t): {"score": s.score, "reason": s.reason} for s in scores}}


@pytest.mark.parametrize("steps", STEP_LISTS, ids=[len(s) for s in STEP_LISTS])
def test_every_valid_labelling_in_the_schema_form_validates_and_parses_back(steps: list[int]) -> None:
    schema = scores_schema(steps)
    rng = random.Random(sum(steps))
    texts = ["", "é ☃ 中文", 'a "quoted" \\ reason\nover lines', string.printable]
    for draw in range(DRAWS):
        scores = [StepScore(t, rng.randint(SCORE_MIN, SCORE_MAX), rng.choice(texts)) for t in steps]
        if draw < 2:  # both ends of the range for every step
            scores = [StepScore(t, (SCORE_MIN, SCORE_MAX)[draw], "") for t in steps]
        answer = canonical(scores)
        assert valid(answer, schema), answer
        assert parse_scores(json.dumps(answer), steps) == tuple(scores)


def _mutations(steps: list[int]) -> dict[str, Any]:
    good = canonical([StepScore(t, 5, "ok") for t in steps])

    def edit(change: Any) -> dict[str, Any]:
        doc = json.loads(json.dumps(good))
        change(doc)
        return doc

    first = str(steps[0])
    return {
        "as written": good,
        "a float that is an integer": edit(lambda d: d["scores"][first].update(score=5.0)),
        "a step missing": edit(lambda d: d["scores"].pop(first)),
        "a step that is not in the segment": edit(
            lambda d: d["scores"].update({"999": {"score": 1, "reason": ""}})
        ),
        "a key that is no step number": edit(
            lambda d: d["scores"].update({"step": {"score": 1, "reason": ""}})
        ),
        "a score above the range": edit(lambda d: d["scores"][first].update(score=SCORE_MAX + 1)),
        "a score below the range": edit(lambda d: d["scores"][first].update(score=SCORE_MIN - 1)),
        "a fractional score": edit(lambda d: d["scores"][first].update(score=6.5)),
        "a score as text": edit(lambda d: d["scores"][first].update(score="7")),
        "a boolean score": edit(lambda d: d["scores"][first].update(score=True)),
        "no score": edit(lambda d: d["scores"][first].pop("score")),
        "no reason": edit(lambda d: d["scores"][first].pop("reason")),
        "a reason that is no text": edit(lambda d: d["scores"][first].update(reason=3)),
        "an extra field in an entry": edit(lambda d: d["scores"][first].update(confidence=1)),
        "an entry that is a bare score": edit(lambda d: d["scores"].update({first: 5})),
        "an extra top-level key": edit(lambda d: d.update(note="x")),
        "no scores": {"note": "x"},
    }


@pytest.mark.parametrize("case", list(_mutations([3, 4])))
def test_the_parser_accepts_an_answer_in_the_schema_form_exactly_when_it_validates(case: str) -> None:
    steps = [3, 4]
    answer = _mutations(steps)[case]
    assert accepted(answer, steps) == valid(answer, scores_schema(steps))


def test_a_duplicated_step_key_is_refused_even_though_json_would_keep_the_last() -> None:
    answer = '{"scores": {"3": {"score": 1, "reason": "a"}, "3": {"score": 9, "reason": "b"}}}'
    with pytest.raises(ScoreError, match="step 3 is scored twice"):
        parse_scores(answer, [3])


# --- end to end: a server that follows the schema to the letter ---------------------------------------


def test_a_label_run_against_a_schema_following_server_fails_no_segment(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI(responder=schema_responder(seed=11)) as fake:
        cfg = BackendConfig(base_urls=(fake.base_url,), model="fake-vlm", max_retries=0, concurrency=4)
        labeller = LvlmLabeller(OpenAIBackend(cfg), DEFAULT_PROMPT, backend_config=cfg)
        config = RunConfig(name="constrained", concurrency=4)  # the whole sample: 608 segments
        *_, last = label_run(sample_ws, labeller, config)
        constrained = [body for body in fake.requests if "response_format" in body]
        assert not fake.responder_errors
    assert last.total > 100 and last.failed == 0 and last.ok == last.total
    assert len(constrained) == last.total, "every stage-two query was answered by the schema, none repaired"
