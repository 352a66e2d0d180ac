"""The Prompts page's session keys and shared helpers, and its version widgets: list, diff, new version.

Each widget function draws one part of the page and returns what the page needs next. Everything a
model would read is shown as plain text (st.code / st.text), never as Markdown. The preview lives in
prompt_preview.py, the datasets it and the relabel form choose from in prompt_datasets.py, and the
label jobs in prompt_jobs.py.

Widget state rule (see `keep_valid`, `segment_key`): a browser keeps showing, and sends back, the
option label it last drew for a widget id. A widget whose options belong to one episode is therefore
keyed by that episode, and a widget whose options can change between runs has its value checked
against them before it is drawn; otherwise a stale label comes back as a string where an index or an
id was expected.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from rgvlm_app.text import md_escape
from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.prompts import TEMPLATE_FIELDS, PromptVersion, new_version
from rgvlm_core.labeling.store import save_prompt
from rgvlm_core.workspace import Workspace

# -- session keys of the Prompts page, all here with their defaults -------------------------------
SELECTED = "prompts.selected"  # prompt_id of the version shown, edited from, previewed and used
DIFF_A, DIFF_B = "prompts.diff_a", "prompts.diff_b"  # the two versions compared
NOTE = "prompts.note"  # the note of a new version
SAVE_ERROR = "prompts.save_error"  # why the last attempt to save a version failed (one line of Markdown)
FLASH = "prompts.flash"  # a message for the next run, after a rerun (e.g. "saved")
EPISODE_TEXT = "prompts.episode_text"  # goal filter of the preview's episode list
PREVIEW_DATASET = "prompts.preview_dataset"  # dataset of the preview's episode list ("": all)
EPISODE = "prompts.episode"  # episode previewed
JOBS = "prompts.jobs"  # ids of the jobs started from this page
ALL_DATASETS = ""  # the dataset choice that keeps every dataset
DEFAULTS: dict[str, Any] = {
    SELECTED: None,
    DIFF_A: None,
    DIFF_B: None,
    NOTE: "",
    SAVE_ERROR: None,
    FLASH: None,
    EPISODE_TEXT: "",
    PREVIEW_DATASET: ALL_DATASETS,
    JOBS: [],
}


def edit_key(parent_id: str, field: str) -> str:
    """The text area holding one template of a new version derived from `parent_id`."""
    return f"prompts.edit.{parent_id}.{field}"


def ask_progress_key(parent_id: str) -> str:
    """The checkbox turning the progress question on or off in a new version derived from `parent_id`."""
    return f"prompts.edit.{parent_id}.ask_progress"


def segment_key(episode_id: str) -> str:
    """The subtask picker of one episode: its options are that episode's subtasks, so its key is too."""
    return f"prompts.segment.{episode_id}"


def setting_key(prefix: str, name: str) -> str:
    """A backend or relabel setting; `prefix` tells the test form from the relabel form."""
    return f"prompts.{prefix}.{name}"


def init_state() -> None:
    for key, value in DEFAULTS.items():
        st.session_state.setdefault(key, list(value) if isinstance(value, list) else value)


def keep_valid(key: str, options: Sequence[Any], default: Any) -> None:
    """Before drawing a widget whose options may differ from the last run: reset a value not among them.

    The check is by equality and type, so a stale option label (a str where an int or another id was
    stored) is replaced too; assigning through session_state also redraws the browser's widget.
    """
    value = st.session_state.get(key, default)
    if not any(type(value) is type(o) and value == o for o in options):
        st.session_state[key] = default


def keep_valid_many(key: str, options: Sequence[Any]) -> None:
    """The multiselect version of `keep_valid`: drop chosen values that are no longer options."""
    chosen = st.session_state.get(key)
    if isinstance(chosen, list):
        kept = [v for v in chosen if any(type(v) is type(o) and v == o for o in options)]
        if kept != chosen:
            st.session_state[key] = kept


def error_line(message: object) -> str:
    """A message as the one line st.error shows (RGVLMError texts may carry template excerpts)."""
    return " ".join(str(message).split())


def show_error(message: object) -> None:
    """A message (an exception, a problem) as one line of plain text: escaped, since st.error renders
    Markdown and messages carry data (ids, paths, template excerpts, what a person typed)."""
    st.error(md_escape(error_line(message)))


# What rendering a user's template can raise: RGVLMError (the sandbox, its bounds, Jinja's own errors)
# and arithmetic errors (`{{ 1 / 0 }}`), which rgvlm_core.labeling.prompts.render does not convert yet.
# Both are the template author's to fix, so the page says why instead of showing a traceback.
TEMPLATE_ERRORS: tuple[type[Exception], ...] = (RGVLMError, ArithmeticError)


def template_error(exc: Exception) -> str:
    """The reason a template failed, naming a non-RGVLMError by its type (e.g. ZeroDivisionError)."""
    return str(exc) if isinstance(exc, RGVLMError) else f"{type(exc).__name__}: {exc}"


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
    keep_valid(key, list(by_id), versions[0].prompt_id)
    chosen = st.selectbox(label, list(by_id), key=key, format_func=lambda pid: _label(by_id[pid]))
    return by_id[str(chosen)]


def version_table(versions: list[PromptVersion]) -> None:
    rows = [
        {
            "version": v.prompt_id,
            "parent": v.parent or "",
            "created": v.created_at or "(built in)",
            "progress": "asked" if v.ask_progress else "",
            "note": v.note,
        }
        for v in versions
    ]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="prompts.versions")


def templates_view(version: PromptVersion) -> None:
    """The six templates of a version, read-only, and whether it asks the progress question."""
    st.caption(f"Progress question: {'asked' if version.ask_progress else 'not asked'}")
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
    if a.ask_progress != b.ask_progress:
        asker = b if b.ask_progress else a
        st.caption(f"Only {asker.prompt_id} asks the progress question.")
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
    ask = bool(st.session_state.get(ask_progress_key(parent.prompt_id), parent.ask_progress))
    note = st.session_state[NOTE].strip()
    if not note:
        st.session_state[SAVE_ERROR] = "Write a note saying what this version changes; nothing was saved."
        return
    if not changes and ask == parent.ask_progress:
        st.session_state[SAVE_ERROR] = (
            "No template differs from the parent, nor the progress question; nothing was saved."
        )
        return
    try:
        child = save_prompt(workspace, new_version(parent, changes, note, ask_progress=ask))
    except TEMPLATE_ERRORS as exc:
        why = md_escape(error_line(template_error(exc)))
        st.session_state[SAVE_ERROR] = f"{why} — nothing was saved."
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
        st.checkbox(
            "Ask the progress question",
            value=parent.ask_progress,
            key=ask_progress_key(parent.prompt_id),
            help="Stage two also asks, per step, how far the subtask is done (0..10): the potential of "
            "shaped rewards. The stage-two template sees it as `ask_progress`.",
        )
        st.text_input("Note (required): what this version changes and why", key=NOTE)
        st.form_submit_button(
            "Save new version", on_click=_save_new_version, args=(workspace, parent), key="prompts.save"
        )
    if st.session_state[SAVE_ERROR]:
        st.error(st.session_state[SAVE_ERROR])  # Markdown, its data escaped where it was written


def flash() -> None:
    """Show, once, the message left by the previous run."""
    message = st.session_state[FLASH]
    if message:
        st.success(message)
        st.session_state[FLASH] = None
