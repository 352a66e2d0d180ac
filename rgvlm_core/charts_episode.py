"""The Episodes page's reward timeline: one episode's per-step scores, sparse rewards and subtasks.

Pure: rows in, a Plotly figure out. Every point trace has the step as x, so a click on any point
names its step (`clicked_step`). Traces carry `meta = {"run": 0|1|None, "signal": ...}` so tests
and reports can find the scores of a run without relying on trace order or names.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import plotly.graph_objects as go
import pyarrow as pa

from rgvlm_core.episodes import SUBTASK_KINDS

Rows: TypeAlias = pa.Table | Sequence[Mapping[str, Any]]

# Fixed colours: the chosen run, the second run, and the signals every timeline shares.
RUN_COLOURS: tuple[str, str] = ("#4C78A8", "#F58518")
FAILED_COLOUR = "#E45756"
OVERRIDDEN_COLOUR = "#B279A2"
SPARSE_COLOUR = "#54A24B"
CURSOR_COLOUR = "#262730"
LABEL_COLOUR = "#31333F"
SUBTASK_KIND_COLOURS: dict[str, str] = dict(
    zip(
        SUBTASK_KINDS,
        ("#4C78A8", "#72B7B2", "#E45756", "#9ECAE9", "#54A24B", "#EECA3B", "#B279A2"),
        strict=True,
    )
)
FAILED_Y = -0.7  # failed steps have no score: they sit under the axis' 0
SCORE_RANGE = (-1.3, 10.9)
# Subtask labels sit above the plot area: the first row just over its top edge (y in paper units).
LABEL_Y = 1.01
LABEL_ROW_SHARE = 0.09  # a second row's offset, in plot heights
LABEL_ROW_PX = 20  # top margin per row of labels
LABEL_CHAR_SHARE = 0.012  # a label character's width as a share of the x axis (about 10 px of 850)


def _rows(data: Rows | None) -> list[dict[str, Any]]:
    if data is None:
        return []
    if isinstance(data, pa.Table):
        return data.to_pylist()
    return [dict(r) for r in data]


def reward_timeline(
    steps: Rows,
    labels_a: Rows | None,
    labels_b: Rows | None = None,
    *,
    subtasks: Rows = (),
    cursor: int | None = None,
    run_names: Sequence[str] = ("run", "second run"),
    height: int = 300,
) -> go.Figure:
    """Scores of one or two runs per step over the sparse reward, subtask bands and a step cursor.

    steps: rows with t and sparse_reward; labels_*: rows of `effective_labels` for this episode
    (t, score, status, run_score, reason, override_reason); subtasks: rows with idx, kind,
    first_step, last_step (and optionally completed).

    The page draws this figure anew at every step, so it is assembled from plain dicts and built
    without Plotly's property validation (which took most of a step's time); the tests validate
    the same figure with Plotly.
    """
    step_rows = _rows(steps)
    data = [_sparse_trace(step_rows)]
    for i, labels in enumerate((labels_a, labels_b)):
        if labels is not None:
            name = run_names[i] if i < len(run_names) else f"run {i + 1}"
            data.extend(_run_traces(_rows(labels), i, name))
    layout = _layout(len(step_rows), _rows(subtasks), cursor, height)
    return go.Figure({"data": data, "layout": layout}, _validate=False)


def _sparse_trace(step_rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "bar",
        "x": [s["t"] for s in step_rows],
        "y": [s.get("sparse_reward") or 0.0 for s in step_rows],
        "name": "sparse reward",
        "marker": {"color": SPARSE_COLOUR},
        "opacity": 0.35,
        "width": 0.3,
        "yaxis": "y2",
        "meta": {"run": None, "signal": "sparse"},
        "hovertemplate": "step %{x}<br>sparse reward %{y}<extra></extra>",
    }


def _layout(n: int, subtasks: list[dict[str, Any]], cursor: int | None, height: int) -> dict[str, Any]:
    shapes, annotations = subtask_bands(subtasks, n)
    if cursor is not None:
        shapes.append(_cursor(cursor))
    rows_of_labels = 1 + max((a["y"] > LABEL_Y for a in annotations), default=False)
    return {
        "height": height,
        "shapes": shapes,
        "annotations": annotations,
        "margin": {"l": 10, "r": 10, "t": 12 + LABEL_ROW_PX * rows_of_labels, "b": 10},
        "bargap": 0.6,
        "hovermode": "closest",
        "clickmode": "event+select",
        "dragmode": False,
        "legend": {"orientation": "h", "y": -0.18, "x": 0, "font": {"size": 11}},
        "xaxis": {
            "title": {"text": "step", "standoff": 4},
            "range": [-0.6, max(n, 1) - 0.4],
            "tickformat": "d",
            **({"dtick": 1} if n <= 25 else {}),
            "zeroline": False,
        },
        "yaxis": {
            "title": {"text": "score"},
            "range": list(SCORE_RANGE),
            "tickvals": [0, 2, 4, 6, 8, 10],
            "zeroline": False,
        },
        "yaxis2": {
            "title": {"text": "sparse reward"},
            "overlaying": "y",
            "side": "right",
            "range": [0, 1.15],
            "tickvals": [0, 1],
            "showgrid": False,
        },
    }


def _run_traces(labels: list[dict[str, Any]], run: int, name: str) -> list[dict[str, Any]]:
    """A run's scores as a line, its failed steps at the bottom, its overridden steps as diamonds."""
    colour = RUN_COLOURS[run % len(RUN_COLOURS)]
    who = _hover_name(name)
    common = {"legendgroup": f"run{run}"}
    return [
        {**common, **_score_trace(labels, run, name, colour, who)},
        {**common, **_failed_trace([r for r in labels if r["status"] == "failed"], run, name, colour, who)},
        {**common, **_overridden_trace([r for r in labels if r["status"] == "overridden"], run, name, who)},
    ]


def _score_trace(labels: list[dict[str, Any]], run: int, name: str, colour: str, who: str) -> dict[str, Any]:
    first = run == 0
    return {
        "type": "scatter",
        "x": [r["t"] for r in labels],
        "y": [r["score"] if r["status"] != "failed" else None for r in labels],
        "customdata": [[r["status"], r.get("run_score"), r.get("reason") or ""] for r in labels],
        "mode": "lines+markers",
        "name": name,
        "line": {"color": colour, "width": 2, "dash": "solid" if first else "dash"},
        "marker": {"color": colour, "size": 9 if first else 7, "symbol": "circle" if first else "square"},
        "connectgaps": False,
        "meta": {"run": run, "signal": "score"},
        "hovertemplate": f"{who}<br>step %{{x}}: score %{{y}} (%{{customdata[0]}})"
        "<br>%{customdata[2]}<extra></extra>",
    }


def _failed_trace(failed: list[dict[str, Any]], run: int, name: str, colour: str, who: str) -> dict[str, Any]:
    return {
        "type": "scatter",
        "x": [r["t"] for r in failed],
        "y": [FAILED_Y - 0.25 * run] * len(failed),
        "customdata": [[r.get("reason") or ""] for r in failed],
        "mode": "markers",
        "name": f"{name}: failed",
        "marker": {"color": FAILED_COLOUR, "size": 11, "symbol": "x", "line": {"color": colour, "width": 1}},
        "showlegend": bool(failed),
        "meta": {"run": run, "signal": "failed"},
        "hovertemplate": f"{who}<br>step %{{x}}: failed<br>%{{customdata[0]}}<extra></extra>",
    }


def _overridden_trace(overridden: list[dict[str, Any]], run: int, name: str, who: str) -> dict[str, Any]:
    return {
        "type": "scatter",
        "x": [r["t"] for r in overridden],
        "y": [r["score"] for r in overridden],
        "customdata": [[r.get("run_score"), r.get("override_reason") or ""] for r in overridden],
        "mode": "markers",
        "name": f"{name}: overridden",
        "marker": {
            "color": OVERRIDDEN_COLOUR,
            "size": 15,
            "symbol": "diamond-open",
            "line": {"color": OVERRIDDEN_COLOUR, "width": 3},
        },
        "showlegend": bool(overridden),
        "meta": {"run": run, "signal": "overridden"},
        "hovertemplate": f"{who}<br>step %{{x}}: overridden to %{{y}} "
        "(run said %{customdata[0]})<br>%{customdata[1]}<extra></extra>",
    }


def _hover_name(name: str) -> str:
    """A run name inside a hover template, with Plotly's template syntax neutralised."""
    return name.replace("%{", "%{{").replace("<", "&lt;")


def _cursor(step: int) -> dict[str, Any]:
    """The vertical line of the current step, across the plot area."""
    return {
        "type": "line",
        "x0": step,
        "x1": step,
        "xref": "x",
        "y0": 0,
        "y1": 1,
        "yref": "paper",
        "line": {"color": CURSOR_COLOUR, "width": 2},
        "opacity": 0.6,
    }


def subtask_bands(subtasks: Sequence[Mapping[str, Any]], n_steps: int) -> tuple[list[dict], list[dict]]:
    """A shaded band per reached subtask, and its label ABOVE the plot area (paper coordinates).

    Labels sit outside the data so they never cover a score; where a band is too narrow for its
    label, labels alternate between two rows so neighbours do not overlap either.
    """
    reached = [s for s in subtasks if s.get("first_step") is not None and s.get("last_step") is not None]
    reached = [s for s in reached if s["first_step"] >= 0]
    texts = [_band_label(s) for s in reached]
    width = max(n_steps, 1)
    crowded = any(
        (s["last_step"] - s["first_step"] + 1) / width < len(text) * LABEL_CHAR_SHARE
        for s, text in zip(reached, texts, strict=True)
    )
    shapes, annotations = [], []
    for i, (sub, text) in enumerate(zip(reached, texts, strict=True)):
        colour = SUBTASK_KIND_COLOURS.get(sub.get("kind") or "?", "#8E8E8E")
        shapes.append(_band(sub["first_step"], sub["last_step"], colour))
        row = 1 if crowded and i % 2 else 0
        annotations.append(_band_annotation(sub["first_step"], sub["last_step"], text, colour, row))
    return shapes, annotations


def _band(first: int, last: int, colour: str) -> dict[str, Any]:
    """A subtask's steps shaded across the plot's height, behind the data."""
    return {
        "type": "rect",
        "x0": first - 0.5,
        "x1": last + 0.5,
        "xref": "x",
        "y0": 0,
        "y1": 1,
        "yref": "paper",
        "fillcolor": colour,
        "opacity": 0.10,
        "layer": "below",
        "line": {"width": 0},
    }


def _band_annotation(first: int, last: int, text: str, colour: str, row: int) -> dict[str, Any]:
    """A band's label centred over it, in row 0 or 1 above the plot; a square of its colour first."""
    return {
        "text": f"<span style='color:{colour}'>■</span> {text}",
        "x": (first + last) / 2,
        "xref": "x",
        "y": LABEL_Y + row * LABEL_ROW_SHARE,
        "yref": "paper",
        "xanchor": "center",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 11, "color": LABEL_COLOUR},
    }


def _band_label(sub: Mapping[str, Any]) -> str:
    done = "" if sub.get("completed", True) else " (not completed)"
    return f"{int(sub.get('idx', 0)) + 1} {sub.get('kind') or '?'}{done}"


def clicked_step(points: Sequence[Mapping[str, Any]], n_steps: int) -> int | None:
    """The step a click selected (the x of its first point), clamped to the episode; None if none."""
    for point in points:
        x = point.get("x")
        if isinstance(x, int | float):
            return max(0, min(n_steps - 1, round(x)))
    return None
