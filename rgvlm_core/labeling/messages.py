"""Building the two RG-VLM queries of a segment: frames chosen, tagged and encoded; prompts rendered.

Pure functions over a segment and a prompt version (plus reading frame files), so the exact
messages a model receives can be tested and previewed in the dashboard.

The stage-two JSON schema (`scores_schema`) admits exactly the valid answers, because a server
that constrains its output may return ANY instance of it. It is an object keyed by step:
`{"scores": {"3": {"score": 7, "reason": "..."}, "4": {...}}}`, every step a required property,
no other key allowed. The earlier form, a list of `{"step", "score", "reason"}` with `step` an
enum and the length fixed, let a server repeat a step (a third of the segments failed against a
schema-following server). The keyed form was chosen over one fixed `step` per list position
(`prefixItems` + `const`, `items: false`) because more servers enforce it:
- OpenAI structured outputs (strict) needs every property required and additionalProperties false,
  which this form is made of, and does not support `prefixItems`.
- lm-format-enforcer (a vLLM guided-decoding backend) offers only the declared keys and never a key
  twice, and cannot close an object before its required keys; it ignores `prefixItems` (its issue
  #111), which would leave list items unconstrained.
- llama.cpp's schema-to-grammar (llama-server, Ollama) documents `prefixItems` as broken; it
  writes required properties in order and no others when additionalProperties is false.
- xgrammar, llguidance and outlines (vLLM, SGLang) support both forms.
Scores keep `minimum`/`maximum`: xgrammar, llguidance, llama.cpp and OpenAI enforce them;
lm-format-enforcer and outlines do not (the parser refuses an out-of-range score and the repair
retry asks again). An 11-value enum per step would be enforced everywhere, but OpenAI limits a
schema to 1,000 enum values, which an episode of real ALFRED (up to 165 steps) would exceed. The
keyed form costs three object properties per step, far below OpenAI's limit of 5,000.

When the prompt version asks the progress question (`ask_progress`), each step's entry also holds
`"progress"`, an integer 0..10 bounded like the score and required like it (four properties per
step); the parser then requires it too, so the two still admit exactly the same answers.

Where an episode has no frame files but its steps carry replayed ALFRED states (ALFRED's JSON has no
images; `rgvlm import --replay`), the frames sent are rendered from those states (`alfred.render`):
stage one then says so before the frames (`RENDERED_FRAMES_NOTE`), and each frame's label ends with
`RENDERED_TAG`, whatever the prompt version, so a model is never led to take a drawing for a camera.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rgvlm_core.labeling.backends.base import ChatRequest, ImagePart, Message, TextPart
from rgvlm_core.labeling.prompts import PromptVersion, render
from rgvlm_core.labeling.types import SCORE_MAX, SCORE_MIN, Segment

END_OF_SEGMENT = "none (the scene after the segment's last action)"
RENDERED_TAG = "(rendered schematic, not a camera image)"
RENDERED_FRAMES_NOTE = (
    "Note: this dataset has no camera images. Each frame below is a schematic top-down drawing rendered "
    "from the replayed symbolic state of the household, not a photo: the floor (light squares), furniture "
    "and appliances as labelled squares (hollow with a green edge when open, yellow when switched on), "
    "objects as dots (chips name those moved, heated, cooled, cleaned or sliced), the robot as a dark disc "
    "with an orange 90-degree view cone, instances within its reach outlined orange, and strips listing "
    "what is within reach and what it holds. Judge the actions from these drawings."
)
PROGRESS_TOKENS_PER_STEP = 8  # what `"progress": 10, ` adds to a step's answer, with room to spare


@dataclass(frozen=True)
class FrameChoice:
    """A frame to send: which step it shows (before `action`), and its file, or the replayed state it is
    rendered from where the step has no file."""

    t: int
    action: str
    path: str | None
    state: str | None = None

    @property
    def rendered(self) -> bool:
        return self.path is None and self.state is not None


@dataclass(frozen=True)
class QueryConfig:
    """How queries are built (paper defaults where the paper is silent: see docs/paper.md)."""

    max_frames: int = 16  # frames per stage-one query, evenly subsampled, first and last always kept
    max_side: int = 336  # longest side of a frame in pixels; larger frames are downscaled
    jpeg_quality: int = 90  # when a frame has to be re-encoded
    stage1_max_tokens: int = 768  # length of the stage-one analysis
    tokens_per_step: int = 48  # stage-two answer budget per scored step (plus 64)


def choose_frames(segment: Segment, max_frames: int) -> list[FrameChoice]:
    """Up to `max_frames` frames: before each step, then after the last; evenly spaced, ends kept.
    Frame files where the segment has them; else frames rendered from its replayed states, if any."""
    # DEVIATION: imageless ALFRED episodes are labelled from rendered schematics, not ALFRED's camera frames
    if segment.rendered_frames:
        frames = [FrameChoice(s.t, s.action, None, s.state) for s in segment.steps if s.state]
        if segment.final_state and segment.steps:
            frames.append(FrameChoice(segment.steps[-1].t + 1, END_OF_SEGMENT, None, segment.final_state))
    else:
        frames = [FrameChoice(s.t, s.action, s.frame) for s in segment.steps if s.frame]
        if segment.final_frame and segment.steps:
            frames.append(FrameChoice(segment.steps[-1].t + 1, END_OF_SEGMENT, segment.final_frame))
    if len(frames) <= max_frames:
        return frames
    if max_frames == 1:
        return [frames[-1]]
    picks = sorted({round(i * (len(frames) - 1) / (max_frames - 1)) for i in range(max_frames)})
    return [frames[i] for i in picks]


def encode_choice(choice: FrameChoice, max_side: int, quality: int = 90) -> ImagePart:
    """A chosen frame as it is sent: its file (`encode_frame`), or a PNG rendered from its replayed state
    (OSError naming the step when it cannot be rendered, as for a frame file that cannot be read)."""
    if choice.path is not None:
        return encode_frame(choice.path, max_side, quality)
    from rgvlm_core.alfred.render import frame_caption, state_png
    from rgvlm_core.errors import RGVLMError

    action = None if choice.action == END_OF_SEGMENT else choice.action
    try:
        data = state_png(str(choice.state), frame_caption(choice.t, action), max_side)
    except (RGVLMError, ValueError, KeyError, TypeError) as exc:
        raise OSError(f"step {choice.t}: cannot render its replayed state: {exc}") from None
    return ImagePart(data, "image/png")


def encode_frame(path: str, max_side: int, quality: int = 90) -> ImagePart:
    """The frame as it is sent: the file's own bytes when small enough, else downscaled JPEG."""
    from PIL import Image

    from rgvlm_core.alfred.files import MAX_FRAME_BYTES, RefusedPath, read_capped

    try:
        data = read_capped(Path(path), MAX_FRAME_BYTES)  # never blocks on a FIFO, never reads /dev/zero whole
    except RefusedPath as exc:
        raise OSError(str(exc)) from None  # the caller's "cannot read a frame" failure
    with Image.open(io.BytesIO(data)) as img:
        if max(img.size) <= max_side and img.format in ("JPEG", "PNG"):
            return ImagePart(data, "image/jpeg" if img.format == "JPEG" else "image/png")
        img.draft("RGB", (max_side, max_side))  # JPEG: decode at a reduced scale when possible
        img = img.convert("RGB")
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
        out = io.BytesIO()
        img.save(out, format="JPEG", quality=quality)
    return ImagePart(out.getvalue(), "image/jpeg")


def variables(segment: Segment, n_frames: int, *, ask_progress: bool = False, **extra: Any) -> dict[str, Any]:
    """The documented template variables (see prompts.py) for a segment."""
    steps = [s.t for s in segment.steps]
    return {
        "ask_progress": ask_progress,
        "goal": segment.goal,
        "instruction": segment.instruction,
        "subtask_kind": segment.kind or "",
        "unit": segment.unit,
        "actions": [{"t": s.t, "action": s.action} for s in segment.steps],
        "n_steps": len(steps),
        "steps_list": ", ".join(map(str, steps)),
        "n_frames": n_frames,
        "score_min": SCORE_MIN,
        "score_max": SCORE_MAX,
        **extra,
    }


def stage1_request(
    prompt: PromptVersion, segment: Segment, frames: list[tuple[FrameChoice, ImagePart]], config: QueryConfig
) -> ChatRequest:
    """Stage one: the frames, each after its label, then the analysis question."""
    values = variables(segment, len(frames), ask_progress=prompt.ask_progress)
    parts: list[TextPart | ImagePart] = [TextPart(render(prompt.stage1_user, values, name="stage1_user"))]
    if any(choice.rendered for choice, _ in frames):
        parts.append(TextPart(RENDERED_FRAMES_NOTE))
    for index, (choice, image) in enumerate(frames):
        label = render(
            prompt.frame_label,
            {**values, "t": choice.t, "action": choice.action, "index": index},
            name="frame_label",
        )
        parts += [TextPart(f"{label} {RENDERED_TAG}" if choice.rendered else label), image]
    messages = (
        Message.text("system", render(prompt.stage1_system, values, name="stage1_system")),
        Message("user", tuple(parts)),
    )
    return ChatRequest(messages, max_tokens=config.stage1_max_tokens, request_id=f"{segment.episode_id}/1")


def scores_schema(steps: list[int], *, progress: bool = False) -> dict[str, Any]:
    """JSON schema of the stage-two answer, for backends that constrain output.

    Keyed by step so that every instance holds each step exactly once (see the module docstring
    for why this form); `parse.parse_scores(..., progress=progress)` accepts exactly these
    instances in this form. With `progress`, each entry also requires the progress answer.
    """
    bounded = {"type": "integer", "minimum": SCORE_MIN, "maximum": SCORE_MAX}
    properties: dict[str, Any] = {"score": bounded}
    if progress:
        properties["progress"] = dict(bounded)
    properties["reason"] = {"type": "string"}
    entry = {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }
    keys = [str(t) for t in steps]
    by_step = {
        "type": "object",
        "properties": {key: entry for key in keys},
        "required": keys,
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"scores": by_step},
        "required": ["scores"],
        "additionalProperties": False,
    }


def stage2_request(
    prompt: PromptVersion, segment: Segment, analysis: str, n_frames: int, config: QueryConfig
) -> ChatRequest:
    """Stage two: text only, the analysis and the numbered actions, asking for JSON scores (and for
    progress answers when the version asks the progress question)."""
    values = variables(segment, n_frames, ask_progress=prompt.ask_progress, analysis=analysis)
    messages = (
        Message.text("system", render(prompt.stage2_system, values, name="stage2_system")),
        Message.text("user", render(prompt.stage2_user, values, name="stage2_user")),
    )
    steps = [s.t for s in segment.steps]
    per_step = config.tokens_per_step + (PROGRESS_TOKENS_PER_STEP if prompt.ask_progress else 0)
    return ChatRequest(
        messages,
        max_tokens=64 + per_step * len(steps),
        json_schema=scores_schema(steps, progress=prompt.ask_progress),
        request_id=f"{segment.episode_id}/2",
    )


def repair_request(
    prompt: PromptVersion, segment: Segment, first: ChatRequest, previous: str, error: str, n_frames: int
) -> ChatRequest:
    """The one repair retry: the model's answer and what was wrong with it, then the question again."""
    values = variables(segment, n_frames, ask_progress=prompt.ask_progress, error=error, previous=previous)
    repair = Message.text("user", render(prompt.repair, values, name="repair"))
    messages = (*first.messages, Message.text("assistant", previous), repair)
    return ChatRequest(
        messages,
        max_tokens=first.max_tokens,
        json_schema=first.json_schema,
        request_id=f"{segment.episode_id}/2r",
    )
