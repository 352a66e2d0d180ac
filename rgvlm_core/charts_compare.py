"""Figures of the method comparison (the paper's figure, success rates, learning curves, paired
differences from Sparse, results by first-subtask kind, completion against training steps).

Pure functions over the tables of `rgvlm_core.compare`. A method keeps one colour on every chart of
the product: known methods have fixed colours, the others take the palette in the order they first
appeared in the workspace (`method_colours`), so two methods never share a colour among the first 16
and a colour does not depend on which runs happen to be on screen. Without that mapping (a method
not yet stored) the colour falls back to a hash of the name.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rgvlm_core.compare import (
    BC,
    CONDITIONS,
    EXPERT,
    LENGTHS,
    REFERENCE_LINES,
    SHOWN_CONDITIONS,
    condition_title,
    method_label,
)
from rgvlm_core.compare_fair import FIRST_KINDS, LENGTH_ORDER, MEAN_OVER_LENGTHS

METHOD_COLOURS: dict[str, str] = {"sparse": "#8E8E8E", EXPERT: "#262730", BC: "#9D755D"}
_METHOD_PALETTE = (
    "#4C78A8", "#F58518", "#E45756", "#72B7B2", "#54A24B", "#EECA3B", "#B279A2", "#FF9DA6",
    "#1F77B4", "#D62728", "#2CA02C", "#9467BD", "#17BECF", "#BCBD22", "#E377C2", "#FF7F0E",
)  # fmt: skip
BAR_GAP = 0.2  # gap between length groups, as a fraction of one x unit (seed points are placed with it)


Colours = Mapping[str, str]


def method_colours(methods_in_order: Sequence[str]) -> dict[str, str]:
    """The workspace's colour of each method (from `compare.methods_in_order`)."""
    others = [m for m in methods_in_order if m not in METHOD_COLOURS]
    return {**{m: _METHOD_PALETTE[i % len(_METHOD_PALETTE)] for i, m in enumerate(others)}, **METHOD_COLOURS}


def method_colour(method: str, colours: Colours | None = None) -> str:
    """The colour of `method` everywhere in the product."""
    if method in METHOD_COLOURS:
        return METHOD_COLOURS[method]
    if colours and method in colours:
        return colours[method]
    digest = hashlib.sha1(method.encode()).digest()
    return _METHOD_PALETTE[digest[0] % len(_METHOD_PALETTE)]


def completion_figure(
    summary: pd.DataFrame,
    seeds: pd.DataFrame | None = None,
    *,
    conditions: Sequence[str] = SHOWN_CONDITIONS,
    metric: str = "Proportion of subtasks completed",
    colours: Colours | None = None,
) -> go.Figure:
    """Grouped bars (method) per task length with 95% CI whiskers, one panel per condition.

    `summary` is `compare.by_length` output; expert and behaviour-cloning rows are drawn as dashed
    reference lines. `seeds` (per-seed rows) adds each seed as a point on its bar.
    """
    shown = [c for c in conditions if c in set(summary["condition"])] or list(conditions[:1])
    fig = make_subplots(
        rows=1, cols=len(shown), shared_yaxes=True, subplot_titles=[condition_title(c) for c in shown]
    )
    methods = [m for m in _ordered(summary["method"]) if m not in REFERENCE_LINES]
    width = (1 - BAR_GAP) / max(1, len(methods))
    for col, condition in enumerate(shown, start=1):
        part = summary[summary["condition"] == condition]
        for j, method in enumerate(methods):
            rows = part[part["method"] == method].sort_values("length")
            fig.add_trace(
                go.Bar(
                    x=rows["length"],
                    y=rows["mean"],
                    name=method_label(method),
                    legendgroup=method,
                    showlegend=col == 1,
                    marker_color=method_colour(method, colours),
                    error_y=_whiskers(rows),
                    customdata=rows[["seeds", "ci_low", "ci_high"]].to_numpy(),
                    hovertemplate=f"{method_label(method)}<br>%{{x}} subtasks: %{{y:.3f}} "
                    "(95% CI %{customdata[1]:.3f} to %{customdata[2]:.3f}, "
                    "%{customdata[0]} seeds)<extra></extra>",
                ),
                row=1,
                col=col,
            )
            if seeds is not None and not seeds.empty:
                points = seeds[(seeds["condition"] == condition) & (seeds["method"] == method)]
                offset = -(1 - BAR_GAP) / 2 + (j + 0.5) * width
                fig.add_trace(
                    go.Scatter(
                        x=points["length"] + offset,
                        y=points["proportion"],
                        mode="markers",
                        marker={"color": "white", "size": 6, "line": {"color": "#262730", "width": 1}},
                        name=f"{method_label(method)} seeds",
                        legendgroup=method,
                        showlegend=False,
                        customdata=points[["train_seed"]].to_numpy(),
                        hovertemplate="seed %{customdata[0]}: %{y:.3f}<extra></extra>",
                    ),
                    row=1,
                    col=col,
                )
        for method in (m for m in REFERENCE_LINES if m in set(part["method"])):
            rows = part[part["method"] == method].sort_values("length")
            fig.add_trace(
                go.Scatter(
                    x=rows["length"],
                    y=rows["mean"],
                    mode="lines+markers",
                    line={"color": method_colour(method, colours), "dash": "dash"},
                    name=method_label(method),
                    legendgroup=method,
                    showlegend=col == 1,
                    hovertemplate=f"{method_label(method)}: %{{y:.3f}}<extra></extra>",
                ),
                row=1,
                col=col,
            )
    fig.update_layout(
        barmode="group", bargap=BAR_GAP, bargroupgap=0.0, legend={"orientation": "h", "y": -0.2}
    )
    fig.update_xaxes(title_text="Number of subtasks in the task", tickvals=list(LENGTHS), range=[0.5, 6.5])
    fig.update_yaxes(title_text=metric, range=[0, 1.05], col=1)
    return fig


def success_figure(success: pd.DataFrame, colours: Colours | None = None) -> go.Figure:
    """Full-task success rate per method, grouped by condition, with 95% CI whiskers over seeds."""
    fig = go.Figure()
    for method in _ordered(success["method"]):
        rows = success[success["method"] == method]
        fig.add_trace(
            go.Bar(
                x=rows["condition"],
                y=rows["mean"],
                name=method_label(method),
                marker_color=method_colour(method, colours),
                error_y=_whiskers(rows),
            )
        )
    fig.update_layout(barmode="group", yaxis={"title": "Full-task success rate", "range": [0, 1.05]})
    return fig


def curves_figure(curves: pd.DataFrame, metric: str, colours: Colours | None = None) -> go.Figure:
    """One line per run, coloured by its method."""
    fig = go.Figure()
    shown: set[str] = set()
    for run_id, rows in curves.groupby("run_id", sort=False):
        method = str(rows["method"].iloc[0])
        fig.add_trace(
            go.Scatter(
                x=rows["step"],
                y=rows["value"],
                mode="lines",
                name=method_label(method),
                legendgroup=method,
                showlegend=method not in shown,
                line={"color": method_colour(method, colours)},
                hovertemplate=f"{run_id}<br>step %{{x}}: %{{y:.4g}}<extra></extra>",
            )
        )
        shown.add(method)
    fig.update_layout(xaxis_title="Gradient step", yaxis_title=metric)
    return fig


def paired_figure(paired: pd.DataFrame, colours: Colours | None = None) -> go.Figure:
    """Each method's difference from Sparse (bars around 0) per task length and over all lengths, with
    paired 95% CI whiskers, one panel per condition. Rows without an interval (one pair) are left out."""
    rows = paired[paired["pairs"] >= 2]
    ticks = {n: n for n in LENGTH_ORDER} | {MEAN_OVER_LENGTHS: "mean over<br>lengths"}
    fig = _bar_panels(
        rows, "length", [t for t in LENGTH_ORDER if t in set(rows["length"])], colours,
        hover="%{x} subtasks: %{y:+.3f} (paired 95% CI %{customdata[1]:+.3f} to %{customdata[2]:+.3f}, "
        "%{customdata[0]} seed pairs)",
        extra="pairs",
    )  # fmt: skip
    fig.add_hline(y=0, line={"color": "#262730", "width": 1})
    fig.update_layout(legend={"y": -0.28})  # below the two-line tick of the mean over lengths
    fig.update_xaxes(title_text="Number of subtasks in the task", type="category", labelalias=ticks)
    fig.update_yaxes(title_text="Difference from Sparse", zeroline=True, col=1)
    return fig


def kinds_figure(kinds: pd.DataFrame, colours: Colours | None = None) -> go.Figure:
    """Proportion completed by the kind of the task's first subtask, per method, 95% CI over seeds."""
    present = set(kinds["first_kind"])
    order = [k for k in FIRST_KINDS if k in present] + sorted(present - set(FIRST_KINDS))
    fig = _bar_panels(
        kinds, "first_kind", order, colours,
        hover="first subtask %{x}: %{y:.3f} (95% CI %{customdata[1]:.3f} to %{customdata[2]:.3f}, "
        "%{customdata[0]} seeds)",
        extra="seeds",
    )  # fmt: skip
    fig.update_xaxes(title_text="Kind of the task's first subtask", type="category")
    fig.update_yaxes(title_text="Proportion of subtasks completed", range=[0, 1.05], col=1)
    return fig


def steps_figure(curves: pd.DataFrame, colours: Colours | None = None) -> go.Figure:
    """Completion against training steps: one line per method (mean over seeds), its 95% CI as a
    band, one panel per condition. `curves` is `compare_fair.completion_curves` output."""
    shown = [c for c in SHOWN_CONDITIONS if c in set(curves["condition"])] or list(CONDITIONS[:1])
    fig = make_subplots(
        rows=1, cols=len(shown), shared_yaxes=True, subplot_titles=[condition_title(c) for c in shown]
    )
    for col, condition in enumerate(shown, start=1):
        part = curves[curves["condition"] == condition]
        for method in _ordered(part["method"]):
            rows = part[part["method"] == method].sort_values("step")
            colour = method_colour(method, colours)
            band = rows.dropna(subset=["ci_low"])
            if not band.empty:
                fig.add_trace(
                    go.Scatter(
                        x=[*band["step"], *band["step"][::-1]],
                        y=[*band["ci_high"], *band["ci_low"][::-1]],
                        fill="toself", fillcolor=_translucent(colour), line={"width": 0},
                        name=f"{method_label(method)} 95% CI", legendgroup=method, showlegend=False,
                        hoverinfo="skip",
                    ),
                    row=1, col=col,
                )  # fmt: skip
            fig.add_trace(
                go.Scatter(
                    x=rows["step"], y=rows["mean"], mode="lines+markers", name=method_label(method),
                    legendgroup=method, showlegend=col == 1, line={"color": colour},
                    customdata=rows[["seeds"]].to_numpy(),
                    hovertemplate=f"{method_label(method)}<br>step %{{x}}: %{{y:.3f}} "
                    "(%{customdata[0]} seeds)<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
    fig.update_layout(legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(title_text="Training step (gradient updates)")
    fig.update_yaxes(title_text="Proportion of subtasks completed", range=[0, 1.05], col=1)
    return fig


def _bar_panels(
    table: pd.DataFrame, x: str, order: Sequence[str], colours: Colours | None, *, hover: str, extra: str
) -> go.Figure:
    """Bars per method over the categories `order` of column `x`, whiskers from ci_low/ci_high, one
    panel per condition (the layout of the paper's figure, for other groupings)."""
    shown = [c for c in SHOWN_CONDITIONS if c in set(table["condition"])] or list(CONDITIONS[:1])
    fig = make_subplots(
        rows=1, cols=len(shown), shared_yaxes=True, subplot_titles=[condition_title(c) for c in shown]
    )
    rank = {v: i for i, v in enumerate(order)}
    for col, condition in enumerate(shown, start=1):
        part = table[table["condition"] == condition]
        for method in _ordered(part["method"]):
            rows = part[part["method"] == method]
            rows = rows.iloc[sorted(range(len(rows)), key=lambda i: rank.get(rows[x].iloc[i], len(rank)))]
            fig.add_trace(
                go.Bar(
                    x=rows[x], y=rows["mean"], name=method_label(method), legendgroup=method,
                    showlegend=col == 1, marker_color=method_colour(method, colours),
                    error_y=_whiskers(rows), customdata=rows[[extra, "ci_low", "ci_high"]].to_numpy(),
                    hovertemplate=f"{method_label(method)}<br>{hover}<extra></extra>",
                ),
                row=1, col=col,
            )  # fmt: skip
    fig.update_layout(barmode="group", bargap=BAR_GAP, legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(categoryorder="array", categoryarray=list(order))
    return fig


def _translucent(colour: str, alpha: float = 0.2) -> str:
    """`#RRGGBB` as an rgba() string, for a band under a line of that colour."""
    red, green, blue = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def _whiskers(rows: pd.DataFrame) -> dict[str, object]:
    up = [(h - m) if not math.isnan(h) else 0.0 for h, m in zip(rows["ci_high"], rows["mean"], strict=True)]
    down = [
        (m - lo) if not math.isnan(lo) else 0.0 for lo, m in zip(rows["ci_low"], rows["mean"], strict=True)
    ]
    return {"type": "data", "symmetric": False, "array": up, "arrayminus": down, "thickness": 1.2}


def _ordered(methods: pd.Series) -> list[str]:
    """Sparse first, then the others alphabetically: a stable order for bars and legends."""
    unique = sorted(set(methods))
    return sorted(unique, key=lambda m: (m != "sparse", m))


__all__ = [
    "METHOD_COLOURS",
    "completion_figure",
    "curves_figure",
    "kinds_figure",
    "method_colour",
    "method_colours",
    "paired_figure",
    "steps_figure",
    "success_figure",
]
