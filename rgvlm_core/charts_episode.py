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
SUBTASK_KIND_COLOURS: dict[str, str] = dict(
    zip(
        SUBTASK_KINDS,
        ("#4C78A8", "#72B7B2", "#E45756", "#9ECAE9", "#54A24B", "#EECA3B", "#B279A2"),
        strict=True,
    )
)
FAILED_Y = -0.7  # failed steps have no score: they sit under the axis' 0
SCORE_RANGE = (-1.3, 10.9)


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
    """
    step_rows = _rows(steps)
    fig = go.Figure()
    fig.add_trace(
        go.Bar(
            x=[s["t"] for s in step_rows],
            y=[s.get("sparse_reward") or 0.0 for s in step_rows],
            name="sparse reward",
            marker_color=SPARSE_COLOUR,
            opacity=0.35,
            width=0.3,
            yaxis="y2",
            meta={"run": None, "signal": "sparse"},
            hovertemplate="step %{x}<br>sparse reward %{y}<extra></extra>",
        )
    )
    for i, labels in enumerate((labels_a, labels_b)):
        if labels is not None:
            name = run_names[i] if i < len(run_names) else f"run {i + 1}"
            for trace in _run_traces(_rows(labels), i, name):
                fig.add_trace(trace)
    for sub in _rows(subtasks):
        _add_band(fig, sub)
    if cursor is not None:
        fig.add_vline(x=cursor, line_color=CURSOR_COLOUR, line_width=2, opacity=0.6)
    n = len(step_rows)
    fig.update_layout(
        height=height,
        margin={"l": 10, "r": 10, "t": 30, "b": 10},
        bargap=0.6,
        hovermode="closest",
        clickmode="event+select",
        dragmode=False,
        legend={"orientation": "h", "y": -0.18, "x": 0, "font": {"size": 11}},
        xaxis={
            "title": {"text": "step", "standoff": 4},
            "range": [-0.6, max(n, 1) - 0.4],
            "tickformat": "d",
            **({"dtick": 1} if n <= 25 else {}),
            "zeroline": False,
        },
        yaxis={
            "title": "score",
            "range": list(SCORE_RANGE),
            "tickvals": [0, 2, 4, 6, 8, 10],
            "zeroline": False,
        },
        yaxis2={
            "title": "sparse reward",
            "overlaying": "y",
            "side": "right",
            "range": [0, 1.15],
            "tickvals": [0, 1],
            "showgrid": False,
        },
    )
    return fig


def _run_traces(labels: list[dict[str, Any]], run: int, name: str) -> list[go.Scatter]:
    """A run's scores as a line, its failed steps at the bottom, its overridden steps as diamonds."""
    colour = RUN_COLOURS[run % len(RUN_COLOURS)]
    t = [r["t"] for r in labels]
    scores = [r["score"] if r["status"] != "failed" else None for r in labels]
    custom = [[r["status"], r.get("run_score"), r.get("reason") or ""] for r in labels]
    traces = [
        go.Scatter(
            x=t,
            y=scores,
            customdata=custom,
            mode="lines+markers",
            name=name,
            line={"color": colour, "width": 2, "dash": "solid" if run == 0 else "dash"},
            marker={
                "color": colour,
                "size": 9 if run == 0 else 7,
                "symbol": "circle" if run == 0 else "square",
            },
            connectgaps=False,
            legendgroup=f"run{run}",
            meta={"run": run, "signal": "score"},
            hovertemplate=f"{_hover_name(name)}<br>step %{{x}}: score %{{y}} (%{{customdata[0]}})"
            "<br>%{customdata[2]}<extra></extra>",
        )
    ]
    failed = [r for r in labels if r["status"] == "failed"]
    traces.append(
        go.Scatter(
            x=[r["t"] for r in failed],
            y=[FAILED_Y - 0.25 * run] * len(failed),
            customdata=[[r.get("reason") or ""] for r in failed],
            mode="markers",
            name=f"{name}: failed",
            marker={"color": FAILED_COLOUR, "size": 11, "symbol": "x", "line": {"color": colour, "width": 1}},
            legendgroup=f"run{run}",
            showlegend=bool(failed),
            meta={"run": run, "signal": "failed"},
            hovertemplate=f"{_hover_name(name)}<br>step %{{x}}: failed<br>%{{customdata[0]}}<extra></extra>",
        )
    )
    overridden = [r for r in labels if r["status"] == "overridden"]
    traces.append(
        go.Scatter(
            x=[r["t"] for r in overridden],
            y=[r["score"] for r in overridden],
            customdata=[[r.get("run_score"), r.get("override_reason") or ""] for r in overridden],
            mode="markers",
            name=f"{name}: overridden",
            marker={
                "color": OVERRIDDEN_COLOUR,
                "size": 15,
                "symbol": "diamond-open",
                "line": {"color": OVERRIDDEN_COLOUR, "width": 3},
            },
            legendgroup=f"run{run}",
            showlegend=bool(overridden),
            meta={"run": run, "signal": "overridden"},
            hovertemplate=f"{_hover_name(name)}<br>step %{{x}}: overridden to %{{y}} "
            "(run said %{customdata[0]})<br>%{customdata[1]}<extra></extra>",
        )
    )
    return traces


def _hover_name(name: str) -> str:
    """A run name inside a hover template, with Plotly's template syntax neutralised."""
    return name.replace("%{", "%{{").replace("<", "&lt;")


def _add_band(fig: go.Figure, sub: Mapping[str, Any]) -> None:
    first, last = sub.get("first_step"), sub.get("last_step")
    if first is None or last is None or first < 0:
        return  # a subtask the trajectory never reached
    kind = sub.get("kind") or "?"
    done = "" if sub.get("completed", True) else " (not completed)"
    fig.add_vrect(
        x0=first - 0.5,
        x1=last + 0.5,
        fillcolor=SUBTASK_KIND_COLOURS.get(kind, "#8E8E8E"),
        opacity=0.10,
        layer="below",
        line_width=0,
        annotation_text=f"{int(sub.get('idx', 0)) + 1} {kind}{done}",
        annotation_position="top left",
        annotation_font_size=11,
    )


def clicked_step(points: Sequence[Mapping[str, Any]], n_steps: int) -> int | None:
    """The step a click selected (the x of its first point), clamped to the episode; None if none."""
    for point in points:
        x = point.get("x")
        if isinstance(x, int | float):
            return max(0, min(n_steps - 1, round(x)))
    return None
