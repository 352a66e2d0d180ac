"""Reading stage-two answers: tolerant of wrapping (code fences, prose), strict about the scores.

Accepted shapes:
- the JSON schema's form (`messages.scores_schema`), what a constraining server returns:
  {"scores": {"<step>": {"score": <int>, "reason": "<text>"}, ...}} with every step once and
  nothing else. Answers in this form are accepted exactly when they validate against the schema,
  so a server that follows the schema can never produce an answer that is refused here.
- the prompt's own form, for servers that do not constrain: {"scores": [{"step", "score",
  "reason"}, ...]} (reason optional), {"scores": [int, ...]} in step order, or a bare list of either.
Exactly one score per step, integers in 0..10; a key written twice in one JSON object is refused
(JSON parsers keep the last one silently). Anything else raises ScoreError with a message that the
repair prompt passes back to the model.

With the progress question asked (`progress=True`), each step also needs a progress answer, read
with the same strictness: in the schema's form a `"progress"` next to each score (and then required
there, exactly as `scores_schema(steps, progress=True)` requires it); in the object list a
`"progress"` in each object; with a list of integer scores a top-level `"progress"` list in step
order. Usable scores with unusable progress raise ProgressError, which carries the scores: the
labeller keeps them and records why progress is missing, instead of losing the scores or inventing
progress.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

from rgvlm_core.labeling.types import SCORE_MAX, SCORE_MIN, StepScore

_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


class ScoreError(ValueError):
    """The answer cannot be turned into one valid score per step; the message says why."""


class ProgressError(ScoreError):
    """The scores are usable (`scores`, without progress) but the progress answers are not."""

    def __init__(self, message: str, scores: tuple[StepScore, ...]) -> None:
        super().__init__(message)
        self.scores = scores


def parse_scores(text: str, steps: list[int], *, progress: bool = False) -> tuple[StepScore, ...]:
    """One StepScore per step (in step order), with its progress when `progress` is asked; or
    ScoreError (ProgressError when only the progress answers are unusable)."""
    doc = _extract_json(text)
    entries: Any = doc.get("scores") if isinstance(doc, dict) else doc
    keyed = isinstance(entries, dict)
    scores = _from_keyed(doc, entries, steps, progress) if keyed else _from_list(entries, steps)
    if not progress:
        return scores
    try:
        if keyed:
            answers = [entries[str(t)].get("progress", _MISSING) for t in steps]
        else:
            answers = _listed_progress(doc, entries, steps)
        values = [_progress(v, t) for t, v in zip(steps, answers, strict=True)]
    except ScoreError as exc:
        raise ProgressError(str(exc), scores) from None
    return tuple(replace(s, progress=p) for s, p in zip(scores, values, strict=True))


def _from_list(entries: Any, steps: list[int]) -> tuple[StepScore, ...]:
    if not isinstance(entries, list):
        raise ScoreError('expected a JSON object {"scores": [...]}')
    if len(entries) != len(steps):
        raise ScoreError(f"expected {len(steps)} scores (steps {_fmt(steps)}), got {len(entries)}")
    if all(isinstance(e, dict) for e in entries):
        return _from_objects(entries, steps)
    return tuple(StepScore(t, _score(v, t), "") for t, v in zip(steps, entries, strict=True))


_MISSING = object()  # a step's progress answer that is not there at all


def _listed_progress(doc: Any, entries: list[Any], steps: list[int]) -> list[Any]:
    """The progress answers of a list-form answer, in step order (`_MISSING` where absent)."""
    if all(isinstance(e, dict) for e in entries):
        by_step = {e["step"]: e.get("progress", _MISSING) for e in entries}
        if any(v is not _MISSING for v in by_step.values()):
            return [by_step[t] for t in steps]
    listed = doc.get("progress") if isinstance(doc, dict) else None
    if listed is None:
        raise ScoreError(f'no progress answers: expected "progress" next to each score (steps {_fmt(steps)})')
    if not isinstance(listed, list) or len(listed) != len(steps):
        got = len(listed) if isinstance(listed, list) else repr(listed)
        raise ScoreError(f"expected {len(steps)} progress answers (steps {_fmt(steps)}), got {got}")
    return listed


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


def _from_keyed(
    doc: dict[str, Any], entries: dict[str, Any], steps: list[int], progress: bool
) -> tuple[StepScore, ...]:
    """The schema's form, read exactly as the schema admits it (see messages.scores_schema)."""
    extra = [k for k in doc if k != "scores"]
    if extra:
        raise ScoreError(f'unexpected keys next to "scores": {_fmt(extra)}')
    keys = [str(t) for t in steps]
    unknown = [k for k in entries if k not in keys]
    if unknown:
        quoted = ", ".join(json.dumps(k) for k in unknown)
        raise ScoreError(f'"scores" has keys that are not steps to score ({_fmt(steps)}): {quoted}')
    missing = [t for t, k in zip(steps, keys, strict=True) if k not in entries]
    if missing:
        raise ScoreError(f"no score for step {_fmt(missing)} (steps {_fmt(steps)} each need one)")
    return tuple(_keyed_entry(entries[k], t, progress) for t, k in zip(steps, keys, strict=True))


def _keyed_entry(entry: Any, t: int, progress: bool) -> StepScore:
    if not isinstance(entry, dict):
        raise ScoreError(
            f'the entry of step {t} is {entry!r}, not {{"score": <integer>, "reason": "<text>"}}'
        )
    known = ("score", "progress", "reason") if progress else ("score", "reason")
    extra = [k for k in entry if k not in known]
    if extra:
        names = '"score", "progress" and "reason"' if progress else '"score" and "reason"'
        raise ScoreError(f"the entry of step {t} has keys other than {names}: {_fmt(extra)}")
    if "score" not in entry or "reason" not in entry:
        raise ScoreError(f'the entry of step {t} needs both "score" and "reason"')
    if not isinstance(entry["reason"], str):
        raise ScoreError(f"the reason of step {t} is {entry['reason']!r}, not text")
    return StepScore(t, _score(entry["score"], t), entry["reason"])


def _score(value: Any, t: int, what: str = "score") -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScoreError(f"the {what} of step {t} is {value!r}, not an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise ScoreError(f"the {what} of step {t} is {value}, not an integer")
        value = int(value)
    if not SCORE_MIN <= value <= SCORE_MAX:
        raise ScoreError(f"the {what} of step {t} is {value}, outside {SCORE_MIN}..{SCORE_MAX}")
    return int(value)


def _progress(value: Any, t: int) -> int:
    """A progress answer: an integer 0..10, like a score."""
    if value is _MISSING:
        raise ScoreError(f"no progress for step {t} (each step needs one next to its score)")
    return _score(value, t, "progress")


def _extract_json(text: str) -> Any:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for candidate in candidates:
        candidate = candidate.strip()
        starts = sorted(i for i in (candidate.find("{"), candidate.find("[")) if i >= 0)
        for start in starts:  # the outermost value first
            try:
                value, _ = _DECODER.raw_decode(candidate[start:])
                return value
            except json.JSONDecodeError:
                continue
    snippet = " ".join(text.split())[:80]
    raise ScoreError(f"no JSON found in the answer ({snippet!r})")


def _refuse_repeated_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object hook: a key written twice is an error, not "the last one wins"."""
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            twice = f"step {key} is scored twice" if key.isdigit() else f'the key "{key}" appears twice'
            raise ScoreError(f"{twice} in one JSON object")
        seen[key] = value
    return seen


_DECODER = json.JSONDecoder(object_pairs_hook=_refuse_repeated_keys)


def _fmt(items: list[int] | list[str]) -> str:
    return ", ".join(map(str, items))
