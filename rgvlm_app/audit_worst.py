"""Audit -> Worst episodes: the disagreement ranking as a readable table, one click from the Episodes page.

The ranking (`rgvlm_core.audit.disagreement_ranking`) leads the table, pinned on the left so it never
scrolls away, followed by what names an episode: its goal, task type and number of subtasks. A click
on any cell of a row opens that episode IN PLACE (same tab, same session) on the Episodes page, with
the audited run and the reference side by side at the worst step, through the Episodes page's URL
contract `?episode=ID&step=T&run=RUN&vs=RUN_B`.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import streamlit as st

from rgvlm_app.audit_widgets import computed
from rgvlm_app.home_widgets import dataset_name
from rgvlm_app.text import md_code, md_escape
from rgvlm_core.workspace import StoreReader

TABLE = "audit.worst"  # session key of the table (its selection is the click)
EPISODES_PAGE = "pages/episodes.py"
# Column titles, in the order shown (the scores at the worst step say its |difference|).
RANK, MEAN, GOAL, TASK_TYPE, SUBTASKS, STEP, SCORES, EPISODE = (
    "rank",
    "mean |diff|",
    "goal",
    "task type",
    "subtasks",
    "worst step",
    "scores there",
    "episode",
)
COLUMNS = (RANK, MEAN, GOAL, TASK_TYPE, SUBTASKS, STEP, SCORES, EPISODE)


def episode_params(episode_id: str, step: int, run: str, reference: str) -> dict[str, str]:
    """The query of the Episodes page that shows `run` beside `reference` at `step` of the episode."""
    return {"episode": episode_id, "step": str(int(step)), "run": run, "vs": reference}


def table_rows(ranking: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows as shown: ranking first, then what names the episode; text cells hold the raw data."""
    return [
        {
            RANK: i,
            MEAN: r["mae"],
            GOAL: r["goal"],
            TASK_TYPE: r["task_type"],
            SUBTASKS: r["n_subtasks"],
            STEP: r["worst_step"],
            SCORES: f"{r['worst_score']} vs {r['worst_reference']}",
            EPISODE: r["episode_id"],
        }
        for i, r in enumerate(ranking, start=1)
    ]


_CONFIG = {
    RANK: st.column_config.NumberColumn(width=50, pinned=True, help="1 = the most disagreement"),
    MEAN: st.column_config.NumberColumn(
        format="%.2f", width=90, pinned=True, help="mean |score − reference score| over the steps both scored"
    ),
    GOAL: st.column_config.TextColumn(width=330),
    TASK_TYPE: st.column_config.TextColumn(width=170),
    SUBTASKS: st.column_config.NumberColumn(width=70),
    STEP: st.column_config.NumberColumn(
        width=80, help="the step of the largest |difference| (earliest on ties)"
    ),
    SCORES: st.column_config.TextColumn(
        width=90, help="the run's score vs the reference's at the worst step"
    ),
    EPISODE: st.column_config.TextColumn(width="large"),
}


def clicked_row(event: Any) -> int | None:
    """The row a click selected: on its row marker, or on any of its cells."""
    selection = event.selection
    rows = list(selection.rows) or [cell[0] for cell in selection.cells]
    return int(rows[0]) if rows else None


def worst_episodes(reader: StoreReader, run: str, reference: str, dataset: str) -> None:
    """The ranking of `run` against `reference` on `dataset`; a clicked row switches to the Episodes page."""
    table: pa.Table = computed(reader, "disagreement_ranking", run, reference, dataset=dataset)
    if not table.num_rows:
        st.info(f"The two runs share no scored {md_escape(dataset_name(dataset))} step.")
        return
    ranking = table.to_pylist()
    st.caption(
        f"{len(ranking)} episodes where {md_code(run)} and the reference {md_code(reference)} disagree most. "
        "Click a row to open the episode here, both runs side by side, at its worst step."
    )
    event = st.dataframe(
        table_rows(ranking),
        key=TABLE,
        hide_index=True,
        column_order=COLUMNS,
        column_config=_CONFIG,
        on_select="rerun",
        selection_mode=["single-row", "single-cell"],
    )
    row = clicked_row(event)
    if row is not None:
        chosen = ranking[row]
        st.switch_page(
            EPISODES_PAGE,
            query_params=episode_params(chosen["episode_id"], chosen["worst_step"], run, reference),
        )
