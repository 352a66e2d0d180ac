"""The Prompts page's preview: an episode and one of its subtasks, the exact messages, a reference test.

Everything a model would read is shown as plain text (st.code / st.text), never as Markdown.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from PIL import Image

from rgvlm_app import prompt_datasets as pd_
from rgvlm_app import prompt_widgets as pw
from rgvlm_app.text import md_escape
from rgvlm_core.alfred.render import RENDERED_NOTE
from rgvlm_core.catalog import EpisodeFilter, get_episode, list_episodes
from rgvlm_core.labeling.backends.base import ChatRequest, ImagePart, TextPart
from rgvlm_core.labeling.messages import (
    QueryConfig,
    choose_frames,
    encode_choice,
    stage1_request,
    stage2_request,
)
from rgvlm_core.labeling.prompts import PromptVersion
from rgvlm_core.labeling.reference import ReferenceLabeller
from rgvlm_core.labeling.store import load_segments
from rgvlm_core.labeling.types import Segment
from rgvlm_core.workspace import StoreReader


def episode_segments(reader: StoreReader, episode_id: str) -> list[Segment]:
    """The query units (subtasks) of one episode."""
    return load_segments(reader, EpisodeFilter(episode_ids=(episode_id,)))


def _episode_select(reader: StoreReader, datasets: tuple[str, ...]) -> dict[str, Any] | None:
    """An episode from a limited list, filtered by goal (and dataset); None when none matches."""
    text = st.text_input("Filter episodes by goal", key=pw.EPISODE_TEXT)
    flt = EpisodeFilter(
        include_task_only=False, datasets=datasets, text=text or None, limit=pw.PREVIEW_EPISODES
    )
    episodes = {e["episode_id"]: e for e in list_episodes(reader, flt).to_pylist() if e["n_steps"]}
    if not episodes:
        st.info("No episode with steps matches; clear the filter, pick another dataset or import data.")
        return None
    pw.keep_valid(pw.EPISODE, list(episodes), next(iter(episodes)))
    episode_id = st.selectbox(
        f"Episode (first {pw.PREVIEW_EPISODES} matching)",
        list(episodes),
        key=pw.EPISODE,
        format_func=lambda e: f"{e} · {episodes[e]['goal']}",
    )
    return episodes[str(episode_id)]


def segment_picker(reader: StoreReader) -> tuple[dict[str, Any], list[Segment], Segment] | None:
    """A dataset (when there are several), an episode and one of its subtasks.

    The subtask picker is keyed by the episode: its options are that episode's subtasks, so a new
    episode gets a fresh picker instead of the previous episode's choice.
    """
    datasets = pd_.preview_dataset(pd_.dataset_scopes(reader, EpisodeFilter(include_task_only=False)))
    episode = _episode_select(reader, datasets)
    if episode is None:
        return None
    segments = episode_segments(reader, episode["episode_id"])
    if not segments:
        st.info("This episode has no labelled unit: none of its subtasks was reached.")
        return None
    key = pw.segment_key(episode["episode_id"])
    pw.keep_valid(key, range(len(segments)), 0)
    index = st.selectbox(
        "Subtask",
        range(len(segments)),
        key=key,
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


def no_frames_warning(reader: StoreReader, episode_id: str) -> None:
    """Say, before the messages, that the model would get no image for this episode, and why."""
    episode = get_episode(reader, episode_id)
    if episode.get("has_frames"):
        why = "its steps name no frame files"
    else:
        dataset = pd_.DATASET_NAMES.get(episode["dataset"], episode["dataset"])
        why = f"its {dataset} trajectory was imported without raw_images"
    folder = md_escape(str(episode.get("source_dir") or "unknown"))
    st.warning(
        f"No frames: {md_escape(why)} (folder: {folder}). The messages below are "
        "what the model would get: text only, with the prompt saying it is shown 0 frames. In practice "
        + pd_.NO_FRAMES_OUTCOME,
        icon=":material/hide_image:",
    )


def messages_preview(
    reader: StoreReader, prompt: PromptVersion, segment: Segment, config: QueryConfig
) -> None:
    """The exact two queries a model would receive for this segment with this prompt version."""
    frames = choose_frames(segment, config.max_frames)
    if not frames:
        no_frames_warning(reader, segment.episode_id)
    elif segment.rendered_frames:
        st.info(
            f"No camera frames: the frames below are schematics {RENDERED_NOTE}, and the messages tell "
            "the model so.",
            icon=":material/draw:",
        )
    try:
        images = [(c, encode_choice(c, config.max_side, config.jpeg_quality)) for c in frames]
    except (OSError, Image.DecompressionBombError) as exc:
        pw.show_error(f"A frame of this episode cannot be read: {exc}")
        return
    try:
        first = stage1_request(prompt, segment, images, config)
        second = stage2_request(prompt, segment, pw.ANALYSIS_PLACEHOLDER, len(images), config)
    except pw.TEMPLATE_ERRORS as exc:
        pw.show_error(
            f"Prompt {prompt.prompt_id} cannot be rendered for this subtask: {pw.template_error(exc)}"
        )
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
    st.caption(pw.REFERENCE_IS_NOT_A_VLM)
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
            pw.show_error(f"subtask {segment.index + 1}: {label.error}")
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="prompts.reference_scores")
