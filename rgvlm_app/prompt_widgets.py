"""Widgets of the Prompts page: versions, diffs, a new version, the exact messages, test and relabel.

Each function draws one part of the page and returns what the page needs next. Everything a model
would read is shown as plain text (st.code / st.text), never as Markdown.
"""

from __future__ import annotations

import difflib
import functools
import os
import shlex
from dataclasses import dataclass
from typing import Any

import pandas as pd
import streamlit as st

from rgvlm_core.catalog import EpisodeFilter, list_episodes, workspace_counts
from rgvlm_core.errors import RGVLMError
from rgvlm_core.jobs import start_job
from rgvlm_core.labeling.backends.base import ChatRequest, ImagePart, TextPart
from rgvlm_core.labeling.factory import LabelSpec
from rgvlm_core.labeling.messages import (
    QueryConfig,
    choose_frames,
    encode_frame,
    stage1_request,
    stage2_request,
)
from rgvlm_core.labeling.prompts import TEMPLATE_FIELDS, PromptVersion, new_version
from rgvlm_core.labeling.reference import ReferenceLabeller
from rgvlm_core.labeling.store import load_segments, save_prompt
from rgvlm_core.labeling.types import Segment
from rgvlm_core.workspace import StoreReader, Workspace

# -- session keys of the Prompts page, all here with their defaults -------------------------------
SELECTED = "prompts.selected"  # prompt_id of the version shown, edited from, previewed and used
DIFF_A, DIFF_B = "prompts.diff_a", "prompts.diff_b"  # the two versions compared
NOTE = "prompts.note"  # the note of a new version
SAVE_ERROR = "prompts.save_error"  # why the last attempt to save a version failed
FLASH = "prompts.flash"  # a message for the next run, after a rerun (e.g. "saved")
EPISODE_TEXT = "prompts.episode_text"  # goal filter of the preview's episode list
EPISODE = "prompts.episode"  # episode previewed
SEGMENT = "prompts.segment"  # index of the segment previewed, among the episode's
JOBS = "prompts.jobs"  # ids of the jobs started from this page
DEFAULTS: dict[str, Any] = {
    SELECTED: None,
    DIFF_A: None,
    DIFF_B: None,
    NOTE: "",
    SAVE_ERROR: None,
    FLASH: None,
    EPISODE_TEXT: "",
    JOBS: [],
}


def edit_key(parent_id: str, field: str) -> str:
    """The text area holding one template of a new version derived from `parent_id`."""
    return f"prompts.edit.{parent_id}.{field}"


def setting_key(prefix: str, name: str) -> str:
    """A backend or relabel setting; `prefix` tells the test form from the relabel form."""
    return f"prompts.{prefix}.{name}"


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, list(value) if isinstance(value, list) else value)


PREVIEW_EPISODES = 200  # episodes offered in the preview's list
ANALYSIS_PLACEHOLDER = "<the stage-one analysis: the model's answer to the stage-one query goes here>"
REFERENCE_IS_NOT_A_VLM = (
    "The reference labeller reads ground truth (the simulator's progress record or the ALFRED plan); "
    "it is not a vision-language model and does not use the prompt."
)


# -- versions ----------------------------------------------------------------------------------------
def _label(version: PromptVersion) -> str:
    return f"{version.prompt_id} · {version.note or '(no note)'}"


def version_select(versions: list[PromptVersion], label: str, key: str) -> PromptVersion:
    """A selectbox over versions by id; returns the chosen version."""
    by_id = {v.prompt_id: v for v in versions}
    if st.session_state.get(key) not in by_id:
        st.session_state[key] = versions[0].prompt_id
    chosen = st.selectbox(label, list(by_id), key=key, format_func=lambda pid: _label(by_id[pid]))
    return by_id[str(chosen)]


def version_table(versions: list[PromptVersion]) -> None:
    rows = [
        {
            "version": v.prompt_id,
            "parent": v.parent or "",
            "created": v.created_at or "(built in)",
            "note": v.note,
        }
        for v in versions
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="prompts.versions")


def templates_view(version: PromptVersion) -> None:
    """The six templates of a version, read-only."""
    for field in TEMPLATE_FIELDS:
        st.caption(field)
        st.code(getattr(version, field), language=None, wrap_lines=True)


def template_diff(a: PromptVersion, b: PromptVersion) -> dict[str, str]:
    """A unified diff per template that differs between two versions."""
    out = {}
    for field in TEMPLATE_FIELDS:
        lines = difflib.unified_diff(
            getattr(a, field).splitlines(),
            getattr(b, field).splitlines(),
            fromfile=f"{a.prompt_id}/{field}",
            tofile=f"{b.prompt_id}/{field}",
            lineterm="",
        )
        text = "\n".join(lines)
        if text:
            out[field] = text
    return out


def diff_view(a: PromptVersion, b: PromptVersion) -> None:
    diffs = template_diff(a, b)
    if not diffs:
        st.info("The two versions have the same templates.")
        return
    for field, text in diffs.items():
        st.caption(field)
        st.code(text, language="diff")
    same = [f for f in TEMPLATE_FIELDS if f not in diffs]
    if same:
        st.caption("Unchanged: " + ", ".join(same))


def _save_new_version(workspace: Workspace, parent: PromptVersion) -> None:
    """Form callback (it runs before the page, so it may select the new version)."""
    st.session_state[SAVE_ERROR] = None
    edits = {f: st.session_state[edit_key(parent.prompt_id, f)] for f in TEMPLATE_FIELDS}
    changes = {f: text for f, text in edits.items() if text != getattr(parent, f)}
    note = st.session_state[NOTE].strip()
    if not note:
        st.session_state[SAVE_ERROR] = "Write a note saying what this version changes; nothing was saved."
        return
    if not changes:
        st.session_state[SAVE_ERROR] = "No template differs from the parent; nothing was saved."
        return
    try:
        child = save_prompt(workspace, new_version(parent, changes, note))
    except RGVLMError as exc:
        st.session_state[SAVE_ERROR] = f"{exc} — nothing was saved."
        return
    st.session_state[SELECTED] = child.prompt_id
    st.session_state[NOTE] = ""
    st.session_state[FLASH] = f"Saved version {child.prompt_id} (parent {parent.prompt_id})."


def new_version_form(workspace: Workspace, parent: PromptVersion) -> None:
    """Text areas pre-filled with the parent's templates, a required note, Save."""
    with st.form("prompts.new_form"):
        st.caption(
            f"A new version derived from {parent.prompt_id}. Templates are Jinja2, rendered in a sandbox."
        )
        for field in TEMPLATE_FIELDS:
            st.text_area(
                field, value=getattr(parent, field), key=edit_key(parent.prompt_id, field), height=160
            )
        st.text_input("Note (required): what this version changes and why", key=NOTE)
        st.form_submit_button(
            "Save new version", on_click=_save_new_version, args=(workspace, parent), key="prompts.save"
        )
    if st.session_state[SAVE_ERROR]:
        st.error(st.session_state[SAVE_ERROR])


def flash() -> None:
    """Show, once, the message left by the previous run."""
    message = st.session_state[FLASH]
    if message:
        st.success(message)
        st.session_state[FLASH] = None


# -- preview -----------------------------------------------------------------------------------------
def episode_segments(reader: StoreReader, episode_id: str) -> list[Segment]:
    """The query units (subtasks) of one episode."""
    return load_segments(reader, EpisodeFilter(episode_ids=(episode_id,)))


def segment_picker(reader: StoreReader) -> tuple[dict[str, Any], list[Segment], Segment] | None:
    """An episode (from a limited list, filtered by goal) and one of its subtasks."""
    text = st.text_input("Filter episodes by goal", key=EPISODE_TEXT)
    flt = EpisodeFilter(include_task_only=False, text=text or None, limit=PREVIEW_EPISODES)
    episodes = {e["episode_id"]: e for e in list_episodes(reader, flt).to_pylist() if e["n_steps"]}
    if not episodes:
        st.info("No episode with steps matches; clear the filter or import data.")
        return None
    if st.session_state.get(EPISODE) not in episodes:
        st.session_state[EPISODE] = next(iter(episodes))
    episode_id = st.selectbox(
        f"Episode (first {PREVIEW_EPISODES} matching)",
        list(episodes),
        key=EPISODE,
        format_func=lambda e: f"{e} · {episodes[e]['goal']}",
    )
    episode = episodes[episode_id]
    segments = episode_segments(reader, episode_id)
    if not segments:
        st.info("This episode has no labelled unit: none of its subtasks was reached.")
        return None
    if st.session_state.get(SEGMENT, 0) >= len(segments):
        st.session_state[SEGMENT] = 0
    index = st.selectbox(
        "Subtask",
        range(len(segments)),
        key=SEGMENT,
        format_func=lambda i: f"{i + 1}. ({segments[i].kind}) {segments[i].instruction}",
    )
    return episode, segments, segments[int(index or 0)]


def _show_message_parts(request: ChatRequest) -> None:
    """Each message: text parts as plain text; a text part followed by an image is a frame tile."""
    for message in request.messages:
        st.markdown(f"**{message.role}**")
        parts = list(message.parts)
        tiles: list[tuple[str, ImagePart]] = []
        for i, part in enumerate(parts):
            nxt = parts[i + 1] if i + 1 < len(parts) else None
            if isinstance(part, TextPart) and isinstance(nxt, ImagePart):
                tiles.append((part.text, nxt))
            elif isinstance(part, TextPart):
                st.code(part.text, language=None, wrap_lines=True)
        columns = st.columns(4) if tiles else []
        for i, (label, image) in enumerate(tiles):
            with columns[i % 4]:
                st.text(label)
                st.image(image.data)


def messages_preview(prompt: PromptVersion, segment: Segment, config: QueryConfig) -> None:
    """The exact two queries a model would receive for this segment with this prompt version."""
    frames = choose_frames(segment, config.max_frames)
    try:
        images = [(c, encode_frame(c.path, config.max_side, config.jpeg_quality)) for c in frames]
    except OSError as exc:
        st.error(f"A frame of this episode cannot be read: {exc}")
        return
    try:
        first = stage1_request(prompt, segment, images, config)
        second = stage2_request(prompt, segment, ANALYSIS_PLACEHOLDER, len(images), config)
    except RGVLMError as exc:
        st.error(str(exc))
        return
    st.subheader("Stage one: frames and analysis question")
    st.caption(
        f"{len(images)} frames (at most {config.max_frames}), up to {first.max_tokens} tokens of answer"
    )
    _show_message_parts(first)
    st.subheader("Stage two: scores, text only")
    st.caption(f"With a placeholder for the analysis; up to {second.max_tokens} tokens of answer")
    _show_message_parts(second)
    with st.expander("JSON schema of the stage-two answer"):
        st.json(second.json_schema)


def reference_test(segments: list[Segment]) -> None:
    """Label one episode with the reference labeller, in this process (instant)."""
    st.caption(REFERENCE_IS_NOT_A_VLM)
    if not st.button("Label this episode with the reference labeller", key="prompts.test_reference"):
        return
    labeller = ReferenceLabeller()
    rows = []
    for segment in segments:
        label = labeller.label_now(segment)
        actions = {s.t: s.action for s in segment.steps}
        for score in label.scores:
            rows.append(
                {
                    "subtask": segment.index + 1,
                    "step": score.t,
                    "action": actions[score.t],
                    "score": score.score,
                    "reason": score.reason,
                }
            )
        if label.status == "failed":
            st.error(f"subtask {segment.index + 1}: {label.error}")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="prompts.reference_scores")


# -- jobs --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackendChoice:
    """The LVLM settings of a job; the API key stays in the environment, named by `api_key_env`."""

    backend: str
    model: str
    base_urls: tuple[str, ...]
    api_key_env: str
    concurrency: int
    prompt_id: str

    def problems(self) -> list[str]:
        out = []
        if not self.model:
            out.append("Name the model (as the server knows it, or a local folder for hf).")
        if self.backend == "openai" and not self.base_urls:
            out.append("Give the server's base URL, e.g. http://127.0.0.1:8000/v1 for vLLM.")
        return out

    def args(self) -> list[str]:
        out = ["--labeller", "lvlm", "--backend", self.backend, "--model", self.model]
        for url in self.base_urls:
            out += ["--base-url", url]
        out += ["--api-key-env", self.api_key_env, "--concurrency", str(self.concurrency)]
        return [*out, "--prompt", self.prompt_id]


def backend_settings(prefix: str, prompt_id: str) -> BackendChoice:
    """Backend, model, base URLs, concurrency; says whether the API key variable is set (never its value)."""
    spec = LabelSpec()
    left, right = st.columns(2)
    backend = str(left.selectbox("Backend", ["openai", "hf"], key=setting_key(prefix, "backend")))
    model = right.text_input(
        "Model", value=os.environ.get("RGVLM_MODEL", ""), key=setting_key(prefix, "model")
    ).strip()
    urls = ""
    if backend == "openai":
        urls = left.text_input(
            "Base URL(s), comma-separated",
            value=os.environ.get("RGVLM_BASE_URL", ""),
            key=setting_key(prefix, "base_url"),
        )
    concurrency = right.number_input(
        "Concurrency", 1, 256, spec.concurrency, key=setting_key(prefix, "concurrency")
    )
    key_env = left.text_input(
        "API key environment variable", value=spec.api_key_env, key=setting_key(prefix, "key_env")
    ).strip()
    if key_env:
        state = "is set" if os.environ.get(key_env) else "is not set (fine for a local server)"
        right.caption(f"`{key_env}` {state} in the dashboard's environment; jobs read it from there.")
    return BackendChoice(
        backend=backend,
        model=model,
        base_urls=tuple(u.strip() for u in urls.split(",") if u.strip()),
        api_key_env=key_env or spec.api_key_env,
        concurrency=int(concurrency),
        prompt_id=prompt_id,
    )


def start(workspace: Workspace, args: list[str], name: str) -> None:
    """Start `rgvlm label ...` as a job and remember it for the jobs panel."""
    try:
        job = start_job(workspace, args, name=name)
    except RGVLMError as exc:
        st.error(str(exc))
        return
    st.session_state[JOBS] = [*st.session_state[JOBS], job.job_id]
    st.success(f"Started job {job.job_id}: rgvlm {' '.join(args)}")


def lvlm_test(workspace: Workspace, prompt: PromptVersion, episode_id: str) -> None:
    """Test the prompt on one episode with an LVLM: a label job restricted to that episode."""
    choice = backend_settings("test", prompt.prompt_id)
    if not st.button("Start a test job on this episode", key="prompts.test_lvlm"):
        return
    for problem in choice.problems():
        st.error(problem)
    if choice.problems():
        return
    name = f"test-{prompt.prompt_id}-{episode_id}"
    start(workspace, ["label", *choice.args(), "--name", name, "--episode", episode_id], name)


def filter_args(flt: EpisodeFilter) -> list[str]:
    out: list[str] = []
    for flag, values in (
        ("--split", flt.splits),
        ("--task-type", flt.task_types),
        ("--n-subtasks", flt.n_subtasks),
    ):
        for value in values:
            out += [flag, str(value)]
    return out + (["--limit", str(flt.limit)] if flt.limit else [])


@st.cache_data(show_spinner=False, max_entries=8)
def _filter_options(_reader: StoreReader, root: str, snapshot: int) -> dict[str, list[Any]]:
    counts = workspace_counts(_reader)
    return {k: list(counts[f"by_{k}"]) for k in ("split", "task_type", "n_subtasks")}


def filter_options(reader: StoreReader) -> dict[str, list[Any]]:
    """The splits, task types and numbers of subtasks the workspace holds (cached per snapshot)."""
    return _filter_options(reader, str(reader.workspace.root), reader.workspace.snapshot().version)


def _relabel_filter(options: dict[str, list[Any]]) -> EpisodeFilter:
    """Which episodes to relabel: splits, task types, numbers of subtasks, at most N."""
    key = functools.partial(setting_key, "relabel")
    a, b, c = st.columns(3)
    splits = a.multiselect("Splits", options["split"], key=key("splits"))
    task_types = b.multiselect("Task types", options["task_type"], key=key("task_types"))
    n_subtasks = c.multiselect("Number of subtasks", options["n_subtasks"], key=key("n_subtasks"))
    limit = int(st.number_input("At most N episodes (0: all)", 0, None, 0, key=key("limit")))
    return EpisodeFilter(
        splits=tuple(splits),
        task_types=tuple(task_types),
        n_subtasks=tuple(int(k) for k in n_subtasks),
        limit=limit or None,
    )


def relabel_form(workspace: Workspace, prompt: PromptVersion, options: dict[str, list[Any]]) -> None:
    """Relabel the workspace, or a filtered part of it, as a job."""
    labeller = st.radio(
        "Labeller",
        ["reference", "lvlm"],
        horizontal=True,
        key=setting_key("relabel", "labeller"),
        format_func=lambda x: {"reference": "reference (ground truth)", "lvlm": "LVLM (two-stage RG-VLM)"}[x],
    )
    if labeller == "reference":
        st.info(REFERENCE_IS_NOT_A_VLM + " Noise mimics an imperfect model.")
        noise = st.slider("Noise", 0.0, 1.0, 0.0, 0.05, key=setting_key("relabel", "noise"))
        seed = st.number_input("Noise seed", 0, 2**31 - 1, 0, key=setting_key("relabel", "seed"))
        method = ["--labeller", "reference", "--noise", f"{noise:g}", "--noise-seed", str(int(seed))]
        choice = None
    else:
        choice = backend_settings("relabel", prompt.prompt_id)
        method = choice.args()
    flt = _relabel_filter(options)
    b, c = st.columns(2)
    unit = str(b.selectbox("Query unit", ["subtask", "episode"], key=setting_key("relabel", "unit")))
    name = c.text_input("Run name (empty: derived from the settings)", key=setting_key("relabel", "name"))
    name = name.strip()
    args = ["label", *method, "--unit", unit, *filter_args(flt), *(["--name", name] if name else [])]
    st.caption("Command")
    st.code(shlex.join(["rgvlm", *args]), language=None, wrap_lines=True)
    if not st.button("Start relabelling", type="primary", key="prompts.relabel_start"):
        return
    problems = choice.problems() if choice else []
    for problem in problems:
        st.error(problem)
    if not problems:
        start(workspace, args, name or f"relabel ({labeller})")
