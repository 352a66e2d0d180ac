"""Playing an episode on the Episodes page: its header, subtasks, frame, controls and step facts.

The frame of step t is the observation *before* action t: steps 0..t-1 have been taken. A subtask
is therefore done at step t only when it was completed and its last step is before t. Where a step has
no frame but a replayed ALFRED state (ALFRED's JSON has no images; `rgvlm import --replay`), the player
shows a frame rendered from that state, captioned as such (`rgvlm_core.alfred.render`).
"""

from __future__ import annotations

import time
from typing import Any

import streamlit as st

from rgvlm_app.episode_data import EpisodeView
from rgvlm_app.episode_state import K, seed_widget, set_step
from rgvlm_app.text import md_code, md_escape
from rgvlm_core.alfred.render import RENDERED_NOTE, frame_caption, is_rendered_state, state_png
from rgvlm_core.errors import RGVLMError

PLAY_INTERVAL_S = 0.8
# Playback speeds: a low-level episode of 180 steps takes 2.4 min at 1x, 36 s at 4x.
SPEEDS: dict[str, float] = {"0.5x": 0.5, "1x": 1.0, "2x": 2.0, "4x": 4.0}
# How a subtask stands at the current step: marker and words.
DONE, CURRENT, TO_COME, MISSED, NOT_REACHED = "✓", "▶", "○", "✗", "–"


# -- header and subtasks ---------------------------------------------------------------------------
def episode_header(ep: EpisodeView) -> None:
    """Goal, task type, split, dataset, behaviour (simulator data) and the episode id."""
    info = ep.info
    st.subheader(md_escape(info["goal"] or "(no goal text)"))
    facts = [md_escape(str(info[k])) for k in ("task_type", "split", "dataset") if info.get(k)]
    if info.get("behaviour"):
        facts.append(f"behaviour: {md_escape(info['behaviour'])}")
    if info.get("scene"):
        facts.append(md_escape(info["scene"]))
    facts.append(f"{ep.n_steps} steps, {len(ep.subtasks)} subtasks")
    st.caption(" · ".join(facts) + f"  \n{md_code(info['episode_id'])}")


def subtask_state(sub: dict[str, Any], step: int) -> str:
    """DONE, CURRENT, TO_COME, MISSED (passed without completing it) or NOT_REACHED at `step`."""
    first, last = sub.get("first_step"), sub.get("last_step")
    if first is None or last is None or first < 0:
        return NOT_REACHED
    if step < first:
        return TO_COME
    if step <= last:
        return CURRENT
    return DONE if sub.get("completed") else MISSED


def subtask_lines(ep: EpisodeView, step: int) -> list[str]:
    """One Markdown line per subtask: its state at `step`, kind, instruction and steps."""
    lines = []
    for sub in ep.subtasks:
        state = subtask_state(sub, step)
        span = "not reached" if state == NOT_REACHED else f"steps {sub['first_step']}–{sub['last_step']}"
        if state == CURRENT and sub.get("completed") and step == sub["last_step"]:
            span += ", done by this step's action"
        elif state == MISSED:
            span += ", not completed"
        text = f"{state} {sub['idx'] + 1}. {sub['kind']}: {md_escape(sub['instruction'] or '')} ({span})"
        lines.append(f"- **{text}**" if state == CURRENT else f"- {text}")
    return lines


def subtask_list(ep: EpisodeView, step: int) -> None:
    """The subtasks with what is done at this step; the current one in bold."""
    st.markdown("\n".join(subtask_lines(ep, step)) or "No subtasks.")


def task_only_view(ep: EpisodeView) -> None:
    """A task-only episode (ALFRED's test splits): its goal and the instructions stored with it."""
    st.info("A task-only episode (an ALFRED test split): a goal and instructions, no steps to play.")
    instructions = [i for i in (ep.info.get("instructions") or []) if i]
    if instructions:
        st.markdown("**Instructions**")
        st.markdown("\n".join(f"{n}. {md_escape(text)}" for n, text in enumerate(instructions, 1)))
    else:
        st.caption("No instructions are stored with this episode.")


# -- the player ------------------------------------------------------------------------------------
def _clamp(ep: EpisodeView) -> int:
    step = max(0, min(ep.n_steps - 1, int(st.session_state[K.STEP])))
    st.session_state[K.STEP] = step
    return step


def _move(delta: int, n_steps: int) -> None:
    set_step(max(0, min(n_steps - 1, st.session_state[K.STEP] + delta)))


def _slid() -> None:
    set_step(st.session_state[K.SLIDER])


def interval_of(speed: str) -> float:
    """Seconds between automatic steps at a playback speed (1x when the speed is unknown)."""
    return PLAY_INTERVAL_S / SPEEDS.get(speed, 1.0)


def _interval() -> float:
    return interval_of(st.session_state[K.SPEED])


def play_interval() -> float | None:
    """Seconds between automatic steps while playing (for st.fragment(run_every=...)), else None."""
    return _interval() if st.session_state[K.PLAYING] else None


def _advance_if_playing(ep: EpisodeView) -> None:
    if not st.session_state[K.PLAYING]:
        return
    now = time.monotonic()
    if now - st.session_state[K.PLAY_AT] >= 0.8 * _interval():
        st.session_state[K.PLAY_AT] = now
        if st.session_state[K.STEP] >= ep.n_steps - 1:
            st.session_state[K.PLAYING] = False
            st.rerun()  # a full run drops the fragment's timer
        _move(1, ep.n_steps)


def player(ep: EpisodeView) -> int:
    """The current step's frame and controls: Previous/Next (← →), a slider, Play/Stop. Returns the step."""
    _advance_if_playing(ep)
    step = _clamp(ep)
    row = ep.steps[step]
    if row["frame_path"]:
        st.image(row["frame_path"], width=300, caption=f"Observation before step {step}")
    elif is_rendered_state(row.get("state")):
        _rendered_frame(row["state"], step, row["action"])
    else:
        st.info("No frame in this dataset (imported without raw_images).")
    prev_col, next_col, play_col = st.columns(3)
    prev_col.button(
        "Prev",
        key=K.PREV,
        icon=":material/chevron_left:",
        shortcut="Left",
        on_click=_move,
        args=(-1, ep.n_steps),
        disabled=step == 0,
        width="stretch",
    )
    next_col.button(
        "Next",
        key=K.NEXT,
        icon=":material/chevron_right:",
        shortcut="Right",
        on_click=_move,
        args=(1, ep.n_steps),
        disabled=step >= ep.n_steps - 1,
        width="stretch",
    )
    _play_button(play_col, step >= ep.n_steps - 1)
    if ep.n_steps > 1:
        slider_col, speed_col = st.columns([2.5, 1], vertical_alignment="bottom")
        seed_widget(K.SLIDER, step)
        slider_col.slider(
            "Step", 0, ep.n_steps - 1, key=K.SLIDER, on_change=_slid, label_visibility="collapsed"
        )
        _speed_pick(speed_col)
    return step


@st.cache_data(max_entries=256, show_spinner=False)
def _rendered_png(state: str, caption: str) -> bytes:
    return state_png(state, caption)


def _rendered_frame(state: str, step: int, action: str) -> None:
    """The frame rendered from a step's replayed state, captioned so that nobody takes it for a camera."""
    try:
        png = _rendered_png(state, frame_caption(step, action))
    except RGVLMError as exc:  # the trajectory file or the layouts moved since the import
        st.warning(
            f"No frame: this step's replayed state cannot be drawn: {md_escape(str(exc))}",
            icon=":material/hide_image:",
        )
        return
    caption = f"Observation before step {step}, {RENDERED_NOTE}"
    st.image(png, width=300, caption=caption, output_format="PNG")  # as drawn: "auto" would send a JPEG


def _play_button(col: Any, at_end: bool) -> None:
    playing = st.session_state[K.PLAYING]
    if col.button(
        "Stop" if playing else "Play",
        key=K.PLAY,
        icon=":material/stop:" if playing else ":material/play_arrow:",
        disabled=not playing and at_end,
        width="stretch",
    ):
        st.session_state[K.PLAYING] = not playing
        st.session_state[K.PLAY_AT] = time.monotonic()
        st.rerun()  # a full run gives the fragment its timer (or takes it away)


def _speed_pick(col: Any) -> None:
    """The playback speed; a change while playing reruns the page, which resets the player's timer."""
    seed_widget(K.SPEED_PICK, st.session_state[K.SPEED])
    col.selectbox(
        "Speed",
        list(SPEEDS),
        key=K.SPEED_PICK,
        on_change=_sped,
        label_visibility="collapsed",
        help=f"Playback speed: 1x is a step every {PLAY_INTERVAL_S:g} s.",
    )
    if st.session_state.pop(_SPEED_CHANGED, False) and st.session_state[K.PLAYING]:
        st.rerun()  # the fragment's timer is set by a full run


_SPEED_CHANGED = "episodes.speed_changed"


def _sped() -> None:
    st.session_state[K.SPEED] = st.session_state[K.SPEED_PICK]
    st.session_state[_SPEED_CHANGED] = True


def step_facts(ep: EpisodeView, step: int) -> None:
    """Step k of n, the action token, and the subtask it belongs to with its instruction."""
    row = ep.steps[step]
    st.markdown(f"#### Step {step} · {step + 1} of {ep.n_steps}")
    flags = []
    if row.get("valid") is False:
        flags.append("invalid action")
    if row.get("progress") is not None:
        flags.append("made progress" if row["progress"] else "no progress")
    if row.get("sparse_reward"):
        flags.append(f"sparse reward {row['sparse_reward']:g}")
    st.markdown(f"Action **{md_escape(row['action'])}**" + (f" · {', '.join(flags)}" if flags else ""))
    sub = ep.subtask_of(step)
    if sub is not None:
        instruction = md_escape(sub["instruction"] or "")
        st.markdown(f"Subtask {sub['idx'] + 1} of {len(ep.subtasks)} · {sub['kind']}: *{instruction}*")
