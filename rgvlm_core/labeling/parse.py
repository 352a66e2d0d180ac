"""Reading stage-two answers: tolerant of wrapping (code fences, prose), strict about the scores.

Accepted shapes: {"scores": [{"step", "score", "reason"}, ...]}, {"scores": [int, ...]} in step order,
or a bare list of either. Exactly one score per step, integers in 0..10; anything else raises
ScoreError with a message that the repair prompt passes back to the model.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rgvlm_core.labeling.types import SCORE_MAX, SCORE_MIN, StepScore

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class ScoreError(ValueError):
    """The answer cannot be turned into one valid score per step; the message says why."""


def parse_scores(text: str, steps: list[int]) -> tuple[StepScore, ...]:
    """One StepScore per step (in step order), or ScoreError."""
    doc = _extract_json(text)
    entries = doc.get("scores") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise ScoreError('expected a JSON object {"scores": [...]}')
    if len(entries) != len(steps):
        raise ScoreError(f"expected {len(steps)} scores (steps {_fmt(steps)}), got {len(entries)}")
    if all(isinstance(e, dict) for e in entries):
        return _from_objects(entries, steps)
    return tuple(StepScore(t, _score(v, t), "") for t, v in zip(steps, entries, strict=True))


def _from_objects(entries: list[dict[str, Any]], steps: list[int]) -> tuple[StepScore, ...]:
    by_step: dict[int, StepScore] = {}
    for i, entry in enumerate(entries):
        t = entry.get("step")
        if isinstance(t, bool) or not isinstance(t, int):
            raise ScoreError(f'entry {i} has no integer "step"')
        if t not in steps:
            raise ScoreError(f"step {t} is not one of the steps to score ({_fmt(steps)})")
        if t in by_step:
            raise ScoreError(f"step {t} is scored twice")
        reason = entry.get("reason", "")
        by_step[t] = StepScore(
            t, _score(entry.get("score"), t), reason if isinstance(reason, str) else str(reason)
        )
    return tuple(by_step[t] for t in steps)


def _score(value: Any, t: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScoreError(f"the score of step {t} is {value!r}, not an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ScoreError(f"the score of step {t} is {value}, not an integer")
        value = int(value)
    if not SCORE_MIN <= value <= SCORE_MAX:
        raise ScoreError(f"the score of step {t} is {value}, outside {SCORE_MIN}..{SCORE_MAX}")
    return int(value)


def _extract_json(text: str) -> Any:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        candidate = candidate.strip()
        starts = sorted(i for i in (candidate.find("{"), candidate.find("[")) if i >= 0)
        for start in starts:  # the outermost value first
            try:
                value, _ = json.JSONDecoder().raw_decode(candidate[start:])
                return value
            except json.JSONDecodeError:
                continue
    snippet = " ".join(text.split())[:80]
    raise ScoreError(f"no JSON found in the answer ({snippet!r})")


def _fmt(steps: list[int]) -> str:
    return ", ".join(map(str, steps))
