"""Plotly figure builders shared by the dashboard and the CLI's HTML reports.

Pure functions: data in, figure out. Colours are fixed per category so a split or a task type
looks the same on every chart of the product.

Plotly renders a subset of HTML in every text it draws (titles, axis and tick labels, legend names,
hover text): `<b>`, `<br>`, `<a href>` and entities. Text taken from data (ids, task types, goals) goes
through `plotly_escape` inside the builders, so callers pass it raw and it shows as written.
"""

from __future__ import annotations

import html
from collections.abc import Mapping

import plotly.graph_objects as go

from rgvlm_core.episodes import ALFRED_TASK_TYPES

SPLIT_COLOURS: dict[str, str] = {
    "train": "#4C78A8",
    "valid_seen": "#F58518",
    "valid_unseen": "#E45756",
    "tests_seen": "#72B7B2",
    "tests_unseen": "#54A24B",
}
_PALETTE = ("#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#EECA3B", "#B279A2", "#FF9DA6", "#9D755D")
TASK_TYPE_COLOURS: dict[str, str] = dict(zip(ALFRED_TASK_TYPES, _PALETTE, strict=False))
NEUTRAL = "#8E8E8E"
SEQUENCE = "#4C78A8"  # one colour for ordinal categories (number of subtasks)


def plotly_escape(text: str) -> str:
    """Text from data as Plotly shows it literally (its labels render `<b>`, `<br>` and `&...;`)."""
    return html.escape(str(text), quote=False)


def colour_for(category: str, fixed: Mapping[str, str]) -> str:
    """The fixed colour of a known category; unknown ones get a stable colour from the palette."""
    if category in fixed:
        return fixed[category]
    if category.startswith("unknown"):
        return NEUTRAL
    return _PALETTE[sum(map(ord, category)) % len(_PALETTE)] if category else NEUTRAL


def count_bars(
    counts: Mapping[str, int],
    *,
    title: str,
    x_title: str,
    colours: Mapping[str, str] | str | None = None,
    order: list[str] | None = None,
    horizontal: bool = False,
) -> go.Figure:
    """A bar chart of episode counts per category, each bar labelled with its value."""
    keys = [k for k in (order or []) if k in counts] + [k for k in counts if k not in (order or [])]
    values = [counts[k] for k in keys]
    if isinstance(colours, str):
        bar_colours = [colours] * len(keys)
    else:
        bar_colours = [colour_for(k, colours or {}) for k in keys]
    labels = [plotly_escape(k) for k in keys]
    bar = (
        go.Bar(
            y=labels,
            x=values,
            orientation="h",
            marker_color=bar_colours,
            text=values,
            textposition="auto",
            textangle=0,
        )
        if horizontal
        else go.Bar(
            x=labels, y=values, marker_color=bar_colours, text=values, textposition="auto", textangle=0
        )
    )
    fig = go.Figure(bar)
    axis = {"title": x_title, "type": "category"}
    fig.update_layout(
        title=title,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        height=320,
        showlegend=False,
        **(
            {"yaxis": {**axis, "autorange": "reversed"}, "xaxis": {"title": "episodes"}}
            if horizontal
            else {"xaxis": axis, "yaxis": {"title": "episodes"}}
        ),
    )
    return fig
