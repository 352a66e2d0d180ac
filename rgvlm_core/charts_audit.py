"""Plotly figures of the audit views: score distributions, the completion confusion matrix, run vs run.

Pure functions: figures from the tables of `rgvlm_core.audit` (or plain sequences), nothing read from
the store. A run keeps one colour on every chart: the reference run a fixed dark grey, the others
the palette by their place in the order the runs were created. Run names are data: they reach the
figure through `plotly_escape` and never inside a hover template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from rgvlm_core.charts import _PALETTE, plotly_escape

REFERENCE_COLOUR = "#3B3B3B"
SCORES = list(range(11))  # the score scale, 0..10
_MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def run_colours(run_ids: Sequence[str], reference_id: str | None = None) -> dict[str, str]:
    """A colour per run: `run_ids` in creation order, the reference grey.

    A run's colour depends on its place among all runs only, so it stays put as runs are added and
    whichever run (or dataset, with its own reference) is chosen as the yardstick.
    """
    colours = {r: _PALETTE[i % len(_PALETTE)] for i, r in enumerate(run_ids)}
    if reference_id is not None:
        colours[reference_id] = REFERENCE_COLOUR
    return colours


def score_distribution(
    rows: Sequence[Mapping[str, Any]],
    colours: Mapping[str, str],
    *,
    order: Sequence[str] | None = None,
    title: str = "Score distribution",
) -> go.Figure:
    """Grouped bars: per run, the share of its scored steps at each score (rows: run_id, score, n)."""
    counts: dict[str, dict[int, int]] = {}
    for row in rows:
        counts.setdefault(str(row["run_id"]), {})[int(row["score"])] = int(row["n"])
    runs = [r for r in (order or []) if r in counts] + [r for r in counts if r not in (order or [])]
    fig = go.Figure()
    for run in runs:
        total = sum(counts[run].values())
        n = [counts[run].get(s, 0) for s in SCORES]
        fig.add_bar(
            name=plotly_escape(run),
            x=SCORES,
            y=[100.0 * k / total if total else 0.0 for k in n],
            customdata=n,
            marker_color=colours.get(run, _PALETTE[0]),
            hovertemplate="%{fullData.name}<br>score %{x}: %{customdata:,} steps (%{y:.1f}%)<extra></extra>",
        )
    fig.update_layout(
        title=title,
        barmode="group",
        height=340,
        margin=_MARGIN,
        xaxis={"title": "score", "tickmode": "array", "tickvals": SCORES},
        yaxis={"title": "share of the run's scored steps (%)"},
        legend={"title": {"text": "run"}},
    )
    return fig


def confusion_matrix(rows: Sequence[Mapping[str, Any]], threshold: int, *, title: str = "") -> go.Figure:
    """A 2 x 2 heatmap: "completed a subtask" (rows) against "scored high" (columns), with counts.

    `rows` holds `high`, `completed` and `n` (the table of `audit.confusion` without a group).
    """
    z = confusion_counts(rows)
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[f"scored high (≥ {threshold})", f"scored low (< {threshold})"],
            y=["completed a subtask", "no subtask completed"],
            text=[[f"{v:,}" for v in line] for line in z],
            texttemplate="%{text}",
            colorscale="Blues",
            showscale=False,
            hovertemplate="%{y}, %{x}: %{z:,} steps<extra></extra>",
        )
    )
    fig.update_layout(
        title=title or f"Scored high (≥ {threshold}) vs completed a subtask",
        height=300,
        margin=_MARGIN,
        yaxis={"autorange": "reversed"},
    )
    return fig


def confusion_counts(rows: Sequence[Mapping[str, Any]]) -> list[list[int]]:
    """[[completed & high, completed & low], [not completed & high, not completed & low]]."""
    z = [[0, 0], [0, 0]]
    for row in rows:
        z[0 if row["completed"] else 1][0 if row["high"] else 1] += int(row["n"])
    return z


def score_scatter(
    scores_a: Sequence[int],
    scores_b: Sequence[int],
    *,
    name_a: str,
    name_b: str,
    jitter: float = 0.3,
    max_points: int = 5000,
    seed: int = 0,
) -> go.Figure:
    """Per-step scores of two runs against each other, jittered so equal pairs show as a cloud.

    Above `max_points` steps a seeded random subset is drawn; the title says so.
    """
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    rng = np.random.default_rng(seed)
    shown = len(a)
    if shown > max_points:
        keep = rng.choice(shown, size=max_points, replace=False)
        a, b, shown = a[keep], b[keep], max_points
    fig = go.Figure(
        go.Scattergl(
            x=a + rng.uniform(-jitter, jitter, size=len(a)),
            y=b + rng.uniform(-jitter, jitter, size=len(b)),
            mode="markers",
            marker={"size": 4, "opacity": 0.35, "color": _PALETTE[0]},
            hoverinfo="skip",
        )
    )
    fig.add_shape(type="line", x0=-0.5, y0=-0.5, x1=10.5, y1=10.5, line={"color": "#8E8E8E", "dash": "dot"})
    subset = f" (a random {shown:,} of {len(scores_a):,} steps)" if shown < len(scores_a) else ""
    axis = {"range": [-0.7, 10.7], "tickvals": SCORES}
    fig.update_layout(
        title=f"Per-step scores, jittered{subset}",
        height=420,
        margin=_MARGIN,
        xaxis={**axis, "title": plotly_escape(name_a)},
        yaxis={**axis, "title": plotly_escape(name_b), "scaleanchor": "x"},
        showlegend=False,
    )
    return fig
