"""A self-contained HTML report of compared runs (an experiment, or any set of runs).

One file that opens anywhere without a network: Plotly's JavaScript is embedded once, the figures
follow, then the tables, and the CSV of every row is both written beside the report and embedded as
a download link. Every number comes from `rgvlm_core.compare` and `rgvlm_core.compare_fair`, the same
code as the dashboard. A comparison is of one phrasing (held-out instructions unless asked), named
in the report, so a reader never mixes seen and unseen phrasings.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from rgvlm_core import compare, compare_fair
from rgvlm_core.charts_compare import (
    completion_figure,
    curves_figure,
    kinds_figure,
    method_colours,
    paired_figure,
    steps_figure,
    success_figure,
)
from rgvlm_core.workspace import StoreReader
from rgvlm_core.workspace.files import atomic_write_bytes

CURVE_METRICS = ("losses/q", "losses/v", "losses/actor")
PHRASING_HELP = {
    "unseen": "instructions held out from the training data",
    "seen": "instructions phrased as in the training data",
}


@dataclass(frozen=True)
class Comparison:
    """Everything a comparison shows, computed once."""

    runs: pd.DataFrame
    episodes: pd.DataFrame
    seeds: pd.DataFrame  # per run, condition and length (with the expert's rows)
    summary: pd.DataFrame  # compare.by_length
    success: pd.DataFrame  # compare.success_overall
    colours: dict[str, str]  # the workspace's colour of every method (charts_compare.method_colours)
    phrasing: str = compare.PHRASINGS[0]  # the phrasing every table and figure shows
    phrasings: tuple[str, ...] = ()  # every phrasing these runs were evaluated with
    paired: pd.DataFrame = field(default_factory=pd.DataFrame)  # compare_fair.paired_differences
    kinds: pd.DataFrame = field(default_factory=pd.DataFrame)  # compare_fair.by_first_kind
    kinds_missing: int = 0  # evaluated episodes without a first-subtask kind (left out of `kinds`)
    curves: pd.DataFrame = field(default_factory=pd.DataFrame)  # compare_fair.completion_curves

    def csv(self) -> str:
        return compare.comparison_csv(self.seeds, self.summary)


def build_comparison(
    reader: StoreReader,
    run_ids: Sequence[str] | None,
    *,
    expert: bool = True,
    phrasing: str | None = None,
) -> Comparison:
    """Aggregate the evaluated episodes of `run_ids` (None: every run) of one phrasing (None: held-out
    when evaluated, else the only one), with the expert replayed on the same tasks."""
    runs = compare.runs_table(reader, run_ids)
    available = tuple(compare.phrasings(reader, list(runs["run_id"])))
    chosen = phrasing or compare.default_phrasing(available)
    episodes = compare.eval_rows(reader, runs, chosen)
    if expert and not episodes.empty:
        episodes = pd.concat([episodes, compare.expert_rows(episodes)], ignore_index=True)
    seeds = compare.per_seed(episodes)
    colours = method_colours(compare.methods_in_order(reader))
    summary, success = compare.by_length(seeds), compare.success_overall(episodes)
    return Comparison(
        runs, episodes, seeds, summary, success, colours, chosen, available,
        paired=compare_fair.paired_differences(seeds),
        kinds=compare_fair.by_first_kind(episodes),
        kinds_missing=compare_fair.missing_first_kind(episodes),
        curves=compare_fair.completion_curves(compare_fair.eval_curves(reader, runs, chosen)),
    )  # fmt: skip


def render_report(reader: StoreReader, comparison: Comparison, *, title: str, about: dict[str, Any]) -> str:
    """The report's HTML; `about` (experiment settings) is printed as given."""
    c = comparison
    parts = [f"<h1>{html.escape(title)}</h1>", _about(about, c.runs, c.phrasing)]
    completion = completion_figure(c.summary, c.seeds, colours=c.colours)
    parts.append(f"<h2>{html.escape(COMPLETION_CAPTION)}</h2>{_plot(completion)}")
    parts += _paired_parts(c)
    parts.append(f"<h2>Full-task success rate</h2>{_plot(success_figure(c.success, c.colours))}")
    parts += _steps_and_kinds_parts(c)
    for metric in CURVE_METRICS:
        curves = curves_figure(compare.learning_curves(reader, c.runs, metric), metric, c.colours)
        parts.append(f"<h2>{html.escape(f'Learning curve: {metric}')}</h2>{_plot(curves)}")
    parts.append("<h2>By task length</h2>" + _table(c.summary))
    parts.append("<h2>Full-task success</h2>" + _table(c.success))
    parts.append("<h2>Runs</h2>" + c.runs.drop(columns=["finished_at"]).to_html(index=False))
    data = base64.b64encode(c.csv().encode()).decode()
    parts.append(
        f'<p><a download="comparison.csv" href="data:text/csv;base64,{data}">Download all rows (CSV)</a></p>'
    )
    body = "\n".join([_plotly_js(), *parts])  # Plotly's JavaScript once, before every figure
    return _PAGE.format(title=html.escape(title), body=body)


COMPLETION_CAPTION = (
    "Proportion of subtasks completed by task length (mean, 95% CI over seeds; points: seeds)"
)


def _paired_parts(c: Comparison) -> list[str]:
    """Each method's difference from Sparse, paired by seed: chart, findings in words, table."""
    parts = ["<h2>Difference from Sparse (paired by seed)</h2>"]
    gap = compare_fair.paired_gap(c.seeds, c.paired)
    if gap:
        return [*parts, f"<p>{html.escape(gap)}</p>"]
    findings = compare_fair.paired_findings(c.paired, c.seeds)
    parts.append(_plot(paired_figure(c.paired, c.colours)))
    parts.append("<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in findings) + "</ul>")
    return [*parts, _table(c.paired)]


def _steps_and_kinds_parts(c: Comparison) -> list[str]:
    """Completion against training steps, and results by first-subtask kind, each with a sentence
    when its data are missing."""
    parts = ["<h2>Completion against training steps (mean over seeds, 95% CI band)</h2>"]
    if c.curves.empty:
        parts.append(f"<p>{html.escape(NO_CURVES)}</p>")
    else:
        parts.append(_plot(steps_figure(c.curves, c.colours)))
    parts.append("<h2>By kind of first subtask (mean over seeds, 95% CI)</h2>")
    if not c.kinds.empty:
        parts.append(_plot(kinds_figure(c.kinds, c.colours)) + _table(c.kinds))
    if c.kinds_missing or c.kinds.empty:
        parts.append(f"<p>{html.escape(kinds_note(c.kinds_missing, c.kinds.empty))}</p>")
    return parts


NO_CURVES = (
    "No run evaluated at checkpoints during training (evaluation curves are recorded by runs trained "
    "with checkpoint evaluation)."
)


def kinds_note(missing: int, empty: bool) -> str:
    """Why results by first-subtask kind are partial or absent: rows evaluated before it was recorded."""
    if empty and not missing:
        return "No evaluated episode records the kind of its first subtask."
    return (
        f"{missing:,} evaluated episode(s) have no recorded first-subtask kind (evaluated before it was "
        f"recorded) and are left out{'; none has one' if empty else ''}. Re-evaluate to include them."
    )


def _plot(fig: Any) -> str:
    """A figure's HTML without Plotly's JavaScript (included once per page, see render_report)."""
    return str(fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def _plotly_js() -> str:
    """Plotly's JavaScript, embedded so the report opens without a network."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def _table(frame: pd.DataFrame) -> str:
    """A compare table with readable method names and three decimals."""
    shown = frame.assign(method=frame["method"].map(compare.method_label))
    return shown.to_html(index=False, float_format=lambda v: f"{v:.3f}")


def write_report(
    reader: StoreReader,
    run_ids: Sequence[str] | None,
    path: Path,
    *,
    title: str,
    about: dict[str, Any],
    phrasing: str | None = None,
) -> tuple[Path, Path]:
    """Write the report and its CSV (same name, .csv) atomically, of one phrasing (None: held-out
    when evaluated); returns both paths."""
    comparison = build_comparison(reader, run_ids, phrasing=phrasing)
    page = render_report(reader, comparison, title=title, about=about)
    csv_path = path.with_suffix(".csv")
    atomic_write_bytes(csv_path, comparison.csv().encode())
    atomic_write_bytes(path, page.encode())
    return path, csv_path


def _about(about: dict[str, Any], runs: pd.DataFrame, phrasing: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"<li><b>{html.escape(k)}</b>: <code>{html.escape(_text(v))}</code></li>" for k, v in about.items()
    ]
    methods = ", ".join(sorted(set(runs["method"])))
    lines.append(f"<li><b>runs</b>: {len(runs)} ({html.escape(methods)})</li>")
    lines.append(f"<li><b>phrasing</b>: {html.escape(phrasing)} ({PHRASING_HELP.get(phrasing, '')})</li>")
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


__all__ = [
    "NO_CURVES",
    "PHRASING_HELP",
    "Comparison",
    "build_comparison",
    "kinds_note",
    "render_report",
    "write_report",
]
