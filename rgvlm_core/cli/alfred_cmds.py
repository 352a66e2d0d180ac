"""`rgvlm alfred ...`: real ALFRED trajectories in the symbolic household (replay)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from rgvlm_core.cli.common import console, print_json, progress_bar

alfred_app = typer.Typer(help="Real ALFRED trajectories in the symbolic household.")


@alfred_app.command()
def replay(
    path: Path = typer.Argument(
        ..., help="A traj_data.json, or a folder searched for them (e.g. json_2.1.0)."
    ),
    layouts: Path | None = typer.Option(
        None,
        "--layouts",
        help="ALFRED's layouts folder (default: $RGVLM_ALFRED_LAYOUTS, else ../shared/alfred/layouts).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    show: int = typer.Option(20, "--show", min=0, help="Failures to list (all of them are in --json)."),
) -> None:
    """Execute each trajectory's low-level actions in the symbolic household and check that every
    subgoal is reached where ALFRED's high_idx says it ends."""
    from rgvlm_core.alfred.replay import replay_files, summarize, trajectory_files
    from rgvlm_core.errors import UsageError
    from rgvlm_core.sim.low.floorplan import LAYOUTS_ENV, layouts_dir

    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    if not layouts_dir(layouts).is_dir():
        raise UsageError(
            f"{layouts_dir(layouts)}: ALFRED's layouts folder not found; the replay needs it "
            f"(--layouts DIR or ${LAYOUTS_ENV})"
        )
    files = list(trajectory_files(path))
    if not files:
        raise UsageError(f"{path}: no traj_data.json under it")
    results = []
    with progress_bar("replaying", transient=True) as progress:
        task = progress.add_task("replay", total=len(files), info="")
        for result in replay_files(files, layouts=layouts):
            results.append(result)
            progress.advance(task)
    report = summarize(results)
    if as_json:
        print_json(report)
        return
    _print(report, show)


def _print(report: dict[str, Any], show: int) -> None:
    from rich.table import Table

    table = Table(title=f"ALFRED replay: {report['trajectories']} trajectories")
    for col in ("", "trajectories", "subgoals", "reached", "fidelity"):
        table.add_column(col, justify="left" if not col else "right")
    for group in ("by_split", "by_task_type"):
        for name, row in report[group].items():
            table.add_row(name, *(str(row[k]) for k in ("trajectories", "subgoals", "reached")), _pct(row))
        table.add_section()
    table.add_row("all", *(str(report[k]) for k in ("trajectories", "subgoals", "reached")), _pct(report))
    console.print(table)
    if report["skipped"]:
        console.print(f"{len(report['skipped'])} files skipped (no plan: ALFRED's test splits)")
    console.print(
        f"{report['points_added_to_layouts']} points of recorded paths are not in the floor plans' layouts "
        "(taken as floor: see docs/alfred-replay.md)"
    )
    failures = report["failures"]
    if failures:
        console.print(f"{len(failures)} trajectories failed:")
        for f in failures[:show]:
            console.print(f"  {f['file']}: step {f['step']}, {f['action']}: {f['why']}", markup=False)
        if len(failures) > show:
            console.print(f"  ... and {len(failures) - show} more (--show, --json)")


def _pct(row: dict[str, Any]) -> str:
    return f"{100 * row['fidelity']:.1f}%" if row["subgoals"] else "-"


def register(app: typer.Typer) -> None:
    app.add_typer(alfred_app, name="alfred")
