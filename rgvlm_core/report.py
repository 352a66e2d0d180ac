"""A self-contained HTML report of compared runs (an experiment, or any set of runs).

One file that opens anywhere without a network: Plotly's JavaScript is embedded once, the figures
follow, then the tables, and the CSV of every row is both written beside the report and embedded as
a download link. Every number comes from `rgvlm_core.compare`, the same code as the dashboard.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from rgvlm_core import compare
from rgvlm_core.charts_compare import completion_figure, curves_figure, method_colours, success_figure
from rgvlm_core.workspace import StoreReader
from rgvlm_core.workspace.files import atomic_write_bytes

CURVE_METRICS = ("losses/q", "losses/v", "losses/actor")


@dataclass(frozen=True)
class Comparison:
    """Everything a comparison shows, computed once."""

    runs: pd.DataFrame
    episodes: pd.DataFrame
    seeds: pd.DataFrame  # per run, condition and length (with the expert's rows)
    summary: pd.DataFrame  # compare.by_length
    success: pd.DataFrame  # compare.success_overall
    colours: dict[str, str]  # the workspace's colour of every method (charts_compare.method_colours)

    def csv(self) -> str:
        return compare.comparison_csv(self.seeds, self.summary)


def build_comparison(
    reader: StoreReader, run_ids: Sequence[str] | None, *, expert: bool = True
) -> Comparison:
    """Aggregate the evaluated episodes of `run_ids` (None: every run), with the expert on the same tasks."""
    runs = compare.runs_table(reader, run_ids)
    episodes = compare.eval_rows(reader, runs)
    if expert and not episodes.empty:
        episodes = pd.concat([episodes, compare.expert_rows(episodes)], ignore_index=True)
    seeds = compare.per_seed(episodes)
    colours = method_colours(compare.methods_in_order(reader))
    summary, success = compare.by_length(seeds), compare.success_overall(episodes)
    return Comparison(runs, episodes, seeds, summary, success, colours)


def render_report(reader: StoreReader, comparison: Comparison, *, title: str, about: dict[str, Any]) -> str:
    """The report's HTML; `about` (experiment settings) is printed as given."""
    figures = [
        (
            "Proportion of subtasks completed by task length (mean, 95% CI over seeds; points: seeds)",
            completion_figure(comparison.summary, comparison.seeds, colours=comparison.colours),
        ),
        ("Full-task success rate", success_figure(comparison.success, comparison.colours)),
    ]
    runs = comparison.runs
    for metric in CURVE_METRICS:
        figures.append(
            (
                f"Learning curve: {metric}",
                curves_figure(compare.learning_curves(reader, runs, metric), metric, comparison.colours),
            )
        )
    parts = [f"<h1>{html.escape(title)}</h1>", _about(about, runs)]
    for i, (caption, fig) in enumerate(figures):
        plot = fig.to_html(full_html=False, include_plotlyjs=i == 0, config={"displaylogo": False})
        parts.append(f"<h2>{html.escape(caption)}</h2>{plot}")
    table = comparison.summary.assign(method=comparison.summary["method"].map(compare.method_label))
    parts.append("<h2>By task length</h2>" + table.to_html(index=False, float_format=lambda v: f"{v:.3f}"))
    success = comparison.success.assign(method=comparison.success["method"].map(compare.method_label))
    parts.append(
        "<h2>Full-task success</h2>" + success.to_html(index=False, float_format=lambda v: f"{v:.3f}")
    )
    parts.append("<h2>Runs</h2>" + runs.drop(columns=["finished_at"]).to_html(index=False))
    data = base64.b64encode(comparison.csv().encode()).decode()
    parts.append(
        f'<p><a download="comparison.csv" href="data:text/csv;base64,{data}">Download all rows (CSV)</a></p>'
    )
    return _PAGE.format(title=html.escape(title), body="\n".join(parts))


def write_report(
    reader: StoreReader, run_ids: Sequence[str] | None, path: Path, *, title: str, about: dict[str, Any]
) -> tuple[Path, Path]:
    """Write the report and its CSV (same name, .csv) atomically; returns both paths."""
    comparison = build_comparison(reader, run_ids)
    page = render_report(reader, comparison, title=title, about=about)
    csv_path = path.with_suffix(".csv")
    atomic_write_bytes(csv_path, comparison.csv().encode())
    atomic_write_bytes(path, page.encode())
    return path, csv_path


def _about(about: dict[str, Any], runs: pd.DataFrame) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"<li><b>{html.escape(k)}</b>: <code>{html.escape(_text(v))}</code></li>" for k, v in about.items()
    ]
    lines.append(f"<li><b>runs</b>: {len(runs)} ({', '.join(sorted(set(runs['method'])))})</li>")
    lines.append(f"<li><b>written</b>: {stamp} by rgvlm</li>")
    return "<ul>" + "".join(lines) + "</ul>"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#262730}}
table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ddd;padding:3px 8px;text-align:right}}
code{{font-size:12px;word-break:break-all}}</style></head>
<body>
{body}
</body></html>
"""


__all__ = ["Comparison", "build_comparison", "render_report", "write_report"]
