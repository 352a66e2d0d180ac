"""Prompt versions: the two RG-VLM stages as Jinja2 templates, rendered in a sandbox.

A version is identified by the hash of its content, and records its parent and a note, so any
label can be traced to the exact words that produced it. Templates render in Jinja2's immutable
sandbox with strict undefined variables: a template can format the documented variables and
nothing else (no attribute access to Python internals, no mutation, no unknown names).

Variables (all stages):
  goal          the task's goal sentence
  instruction   the segment's instruction (the subtask's, or the goal for a whole episode)
  subtask_kind  Pickup, Put, Heat, Cool, Clean, Slice, Toggle (or "" for a whole episode)
  unit          "subtask" or "episode"
  actions       list of {t, action}: the segment's steps, numbered by their step in the episode
  n_steps       number of steps to score
  steps_list    the step numbers, comma-separated ("4, 5, 6")
  n_frames      number of frames sent in stage one
  score_min, score_max   the score range (0 and 10)
  ask_progress  true when the version asks the progress question (see PromptVersion.ask_progress)
Stage two adds `analysis` (the stage-one answer); the repair message adds `error` and `previous`.
The frame label adds `t`, `action` and `index` (the frame's position among those sent).

Renders are bounded (template_sandbox.RenderLimits: 1,000,000 characters, 200,000 loop iterations
and calls, 2 s): a template asking for more, like `{{ 'A' * 10**10 }}`, is refused with a one-line
RGVLMError naming it, in the CLI and in the dashboard's process alike, and so is saving it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SecurityError

from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.template_sandbox import BoundedSandbox, RenderLimitError

TEMPLATE_FIELDS = ("stage1_system", "stage1_user", "frame_label", "stage2_system", "stage2_user", "repair")

STAGE1_SYSTEM = (
    "You are an expert evaluator of household robot demonstrations. You look at what the robot sees and "
    "does, and judge precisely how each action changes the scene."
)
STAGE1_USER = """\
Task goal: {{ goal }}
{% if unit == "subtask" %}Current subtask ({{ subtask_kind }}): {{ instruction }}
{% endif %}
You are shown {{ n_frames }} frames of this segment in order, each labelled with its step number and \
the action the robot takes next. The actions of the segment, numbered by step:
{% for a in actions %}{{ a.t }}. {{ a.action }}
{% endfor %}
Analyse the segment step by step: what each action changes in the scene, whether it moves the \
{{ "subtask" if unit == "subtask" else "task" }} forward, and which actions are detours, mistakes, undone \
work or failed attempts. Refer to actions by their step number. Do not give scores yet."""
FRAME_LABEL = "Frame {{ index + 1 }}: step {{ t }}, next action {{ action }}"
STAGE2_SYSTEM = "You score robot actions. You answer with JSON only."
STAGE2_USER = """\
Task goal: {{ goal }}
{% if unit == "subtask" %}Current subtask ({{ subtask_kind }}): {{ instruction }}
{% endif %}
Analysis of the segment:
{{ analysis }}

Actions, numbered by step:
{% for a in actions %}{{ a.t }}. {{ a.action }}
{% endfor %}
Score each action from {{ score_min }} to {{ score_max }} by its contribution to completing the \
{{ "subtask" if unit == "subtask" else "task" }}: {{ score_max }} for an action that completes it or is \
essential to it, {{ score_min }} for one that is useless, undone later or harmful. \
{% if ask_progress %}Also give each step's progress: how much of the \
{{ "subtask" if unit == "subtask" else "task" }} is done once the action is taken, from {{ score_min }} \
(nothing of it done) to {{ score_max }} (done), whatever the action itself contributed. {% endif %}\
Answer with JSON only, \
keyed by step number, in this form: {"scores": {"<step number>": {"score": <integer>, \
{% if ask_progress %}"progress": <integer {{ score_min }}..{{ score_max }}>, {% endif %}"reason": \
"<a few words>"}, ...}} with exactly one entry for each of the {{ n_steps }} steps: {{ steps_list }}."""
REPAIR = """\
Your answer could not be used: {{ error }}
Answer again with JSON only, keyed by step number: {"scores": {"<step number>": {"score": <integer \
{{ score_min }}..{{ score_max }}>, {% if ask_progress %}"progress": <integer \
{{ score_min }}..{{ score_max }}>, {% endif %}"reason": "<a few words>"}, ...}}, exactly one entry for each \
of the steps {{ steps_list }}."""

_ENV = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)


@dataclass(frozen=True)
class PromptVersion:
    """One version of the prompts; `prompt_id` is a hash of the six templates and the question asked.

    `ask_progress` turns on the progress question: stage two also asks, per step, how far the
    current subtask is done after it (0..10), the potential that reward shaping needs
    (labeling/rewards.py). The templates see it as `ask_progress`, and the JSON schema sent to
    constraining servers requires the answer. The built-in default does NOT ask it: the paper's
    stage two asks for scores only, the question adds completion tokens and one more thing a
    small model can get wrong on every step of every run, and only the shaped mapping reads it.
    `rgvlm label --progress` derives a version that asks it (`with_progress`).
    """

    stage1_system: str = STAGE1_SYSTEM
    stage1_user: str = STAGE1_USER
    frame_label: str = FRAME_LABEL
    stage2_system: str = STAGE2_SYSTEM
    stage2_user: str = STAGE2_USER
    repair: str = REPAIR
    ask_progress: bool = False
    parent: str | None = None
    note: str = ""
    created_at: str = ""

    @property
    def prompt_id(self) -> str:
        doc: dict[str, Any] = {f: getattr(self, f) for f in TEMPLATE_FIELDS}
        if self.ask_progress:  # only when on: versions stored before the flag existed keep their ids
            doc["ask_progress"] = True
        content = json.dumps(doc, sort_keys=True)
        return hashlib.sha256(content.encode()).hexdigest()[:12]

    def templates(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in TEMPLATE_FIELDS}

    def to_row(self) -> dict[str, Any]:
        return {"prompt_id": self.prompt_id, **asdict(self)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PromptVersion:
        values = {f.name: row[f.name] for f in fields(cls) if f.name in row}
        values["ask_progress"] = bool(values.get("ask_progress"))  # absent or null in older rows
        return cls(**values)


DEFAULT_PROMPT = PromptVersion(note="built-in default (RG-VLM two-stage, written for this project)")


@functools.lru_cache(maxsize=256)
def _compiled(template: str) -> Template:
    return _ENV.compile_bounded(template)


def render(template: str, variables: dict[str, Any], *, name: str = "template") -> str:
    """Render one template in the bounded sandbox; any problem becomes a one-line RGVLMError naming it."""
    try:
        return _ENV.render_bounded(_compiled(template), variables).strip()
    except RenderLimitError as exc:
        raise RGVLMError(f"{name}: refused: {exc}") from None
    except SecurityError as exc:
        raise RGVLMError(
            f"{name}: refused by the sandbox ({_one_line(exc)}); templates may only format variables"
        ) from exc
    except TemplateSyntaxError as exc:
        raise RGVLMError(
            f"{name}: TemplateSyntaxError: {_one_line(exc.message)} (line {exc.lineno})"
        ) from exc
    except RecursionError as exc:  # e.g. a macro calling itself, or lists nested thousands deep
        raise RGVLMError(f"{name}: refused: too deep to render ({_one_line(exc)})") from None
    except _TEMPLATE_MISTAKES as exc:
        raise RGVLMError(f"{name}: {type(exc).__name__}: {_one_line(exc)}") from exc


# What a template's own code raises on bad input (1 / 0, cycler() without items, 'x'.index('y')).
_TEMPLATE_MISTAKES = (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, RuntimeError)


def _one_line(exc: object) -> str:
    """An exception's message on one line."""
    return " ".join(str(exc).split())


def example_variables() -> dict[str, Any]:
    """A full set of variables, used to check a template before it is saved."""
    actions = [{"t": 4, "action": "GotoLocation(Fridge)"}, {"t": 5, "action": "OpenObject(Fridge)"}]
    return {
        "goal": "Put a cold apple on the counter.",
        "instruction": "Chill the apple in the fridge.",
        "subtask_kind": "Cool",
        "unit": "subtask",
        "actions": actions,
        "n_steps": 2,
        "steps_list": "4, 5",
        "n_frames": 2,
        "score_min": 0,
        "score_max": 10,
        "analysis": "Step 4 moves to the fridge; step 5 opens it.",
        "error": "expected 2 scores, got 1",
        "previous": '{"scores": [{"step": 4, "score": 7, "reason": "toward the fridge"}]}',
        "t": 4,
        "action": "GotoLocation(Fridge)",
        "index": 0,
        "ask_progress": False,
    }


def validate(version: PromptVersion) -> None:
    """Render every template with example variables; raise RGVLMError on the first problem.

    A version that asks the progress question must ask for the `"progress"` key in its stage-two
    template: otherwise a model that is not constrained never answers it and every segment of a
    run would lose its progress."""
    variables = {**example_variables(), "ask_progress": version.ask_progress}
    for field_name, template in version.templates().items():
        text = render(template, variables, name=field_name)
        if field_name == "stage2_user" and version.ask_progress and '"progress"' not in text:
            raise RGVLMError(
                "ask_progress: this version asks the progress question but its stage2_user never asks "
                'for "progress"; add it to the answer form, e.g. {% if ask_progress %}"progress": '
                "<integer 0..10>, {% endif %}"
            )


def new_version(
    parent: PromptVersion, changes: dict[str, str], note: str, *, ask_progress: bool | None = None
) -> PromptVersion:
    """A child version of `parent` with some templates changed (and the progress question turned on
    or off when `ask_progress` is given); checked before it is returned."""
    unknown = set(changes) - set(TEMPLATE_FIELDS)
    if unknown:
        raise RGVLMError(f"unknown prompt fields {sorted(unknown)}; known: {', '.join(TEMPLATE_FIELDS)}")
    child = replace(
        parent,
        **changes,
        ask_progress=parent.ask_progress if ask_progress is None else ask_progress,
        parent=parent.prompt_id,
        note=note,
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    validate(child)
    return child


def with_progress(version: PromptVersion, ask: bool) -> PromptVersion:
    """`version` itself when it already asks (or does not ask) the progress question as wanted; else
    a child that differs only in that, so every label still names the exact words that made it."""
    if version.ask_progress == ask:
        return version
    what = "asks" if ask else "does not ask"
    return new_version(
        version, {}, f"{version.note} ({what} the progress question)".strip(), ask_progress=ask
    )
