"""Data commands: import an ALFRED-format folder, show counts, list episodes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rgvlm_core.cli.common import console, err_console, open_workspace, print_json, progress_bar

if TYPE_CHECKING:
    from rgvlm_core.importer import ImportSummary

SHOWN_ERRORS = 50  # refusal lines printed during an import; all are stored in the workspace


def import_(
    path: Path = typer.Argument(..., help="ALFRED-format folder (holding train/, valid_seen/, ...)."),
    split: list[str] = typer.Option(None, "--split", "-s", help="Import only this split (repeatable)."),
    limit: int = typer.Option(None, "--limit", "-n", min=1, help="Import at most N trajectories."),
    annotation: int = typer.Option(
        None, "--annotation", min=0, help="Keep only this annotation (repeat_idx) per trajectory."
    ),
    splits_file: Path = typer.Option(
        None,
        "--splits-file",
        help="ALFRED splits file (oct21.json); found automatically when beside the data.",
    ),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first refused file; import nothing."),
    batch_size: int = typer.Option(1000, "--batch-size", min=1, hidden=True, help="Trajectories per commit."),
    replay: bool = typer.Option(
        False,
        "--replay",
        help="Replay each train/valid trajectory in the symbolic household and store its states on every "
        "step (where the replay reaches every subgoal), so `rgvlm train --states sim` can learn from it.",
    ),
    layouts: Path = typer.Option(
        None,
        "--layouts",
        help="ALFRED's layouts folder for --replay "
        "(default: $RGVLM_ALFRED_LAYOUTS, else ../shared/alfred/layouts).",
    ),
) -> None:
    """Import an ALFRED-format folder (idempotent: importing it again adds nothing)."""

    from rgvlm_core.importer import ImportConfig, import_alfred
    from rgvlm_core.jobs import report_progress

    if not path.exists():
        from rgvlm_core.errors import RGVLMError

        raise RGVLMError(f"{path}: no such file or folder")
    if replay:
        _use_layouts(layouts)
    ws = open_workspace(create=True, seed=False)
    config = ImportConfig(
        splits=tuple(split) if split else None,
        limit=limit,
        annotation=annotation,
        splits_file=splits_file,
        strict=strict,
        batch_size=batch_size,
        replay=replay,
    )
    shown = 0
    run = import_alfred(ws, path, config)
    with progress_bar("importing", transient=True) as progress:
        task = progress.add_task("import", total=None, info="")
        while True:
            try:
                event = next(run)
            except StopIteration as stop:
                summary = stop.value
                break
            progress.update(task, completed=event.done, total=event.total)
            report_progress(event.done, event.total, event.path)
            for line in event.errors:
                if shown < SHOWN_ERRORS:
                    err_console.print(f"refused: {line}", style="yellow", markup=False, soft_wrap=True)
                shown += 1
    if shown > SHOWN_ERRORS:
        err_console.print(f"... and {shown - SHOWN_ERRORS} more refusals (all kept in the imports table)")
    console.print(
        f"imported {summary.trajectories} trajectories, {summary.episodes} episodes, "
        f"{summary.subtasks} subtasks, {summary.steps} steps; "
        f"skipped {summary.skipped_trajectories} trajectories and {summary.skipped_episodes} episodes "
        f"already present; refused {summary.refused_trajectories} files and "
        f"{summary.refused_episodes} annotations",
        markup=False,
    )
    if replay:
        _print_replay(summary)


def _use_layouts(layouts: Path | None) -> None:
    """Point the replay at ALFRED's layouts (refused before anything is read when they are absent)."""
    import os

    from rgvlm_core.errors import UsageError
    from rgvlm_core.sim.low.floorplan import LAYOUTS_ENV, layouts_dir

    folder = layouts_dir(layouts)
    if not folder.is_dir():
        raise UsageError(
            f"{folder}: ALFRED's layouts folder not found; --replay needs it "
            f"(--layouts DIR or ${LAYOUTS_ENV})"
        )
    os.environ[LAYOUTS_ENV] = str(folder.resolve())  # read again wherever the stored states are read


def _print_replay(summary: ImportSummary) -> None:
    failures = summary.replay_failures
    console.print(
        f"replayed: {summary.replayed} new trajectories have simulator states; "
        f"{len(failures)} were imported without them (their replay did not reach every subgoal)",
        markup=False,
    )
    for line in failures[:SHOWN_ERRORS]:
        err_console.print(f"not replayed: {line}", style="yellow", markup=False, soft_wrap=True)
    if len(failures) > SHOWN_ERRORS:
        err_console.print(f"... and {len(failures) - SHOWN_ERRORS} more")


def info(as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Counts of what the workspace holds."""
    from rgvlm_core.catalog import workspace_counts

    ws = open_workspace(create=True)
    reader = ws.reader()
    counts = workspace_counts(reader)
    reader.close()
    if as_json:
        print_json(counts)
        return
    from rich.table import Table

    console.print(f"workspace {counts['workspace']} (snapshot {counts['snapshot']})", markup=False)
    console.print(
        f"{counts['episodes']} episodes ({counts['task_only_episodes']} task-only), "
        f"{counts['trajectories']} trajectories, {counts['subtasks']} subtasks, {counts['steps']} steps; "
        f"{counts['label_runs']} label runs, {counts['train_runs']} training runs",
        markup=False,
    )
    for title, key in (("split", "by_split"), ("subtasks", "by_n_subtasks"), ("task type", "by_task_type")):
        table = Table(title_justify="left")
        table.add_column(title)
        table.add_column("episodes", justify="right")
        for k, n in counts[key].items():
            table.add_row(str(k), str(n))
        console.print(table)


def episodes(
    split: list[str] = typer.Option(None, "--split", "-s", help="Only this split (repeatable)."),
    task_type: list[str] = typer.Option(None, "--task-type", "-t", help="Only this task type (repeatable)."),
    n_subtasks: list[int] = typer.Option(
        None, "--n-subtasks", "-k", help="Only this many subtasks (repeatable)."
    ),
    text: str = typer.Option(None, "--text", help="Goal contains this text (case-insensitive)."),
    task_only: bool = typer.Option(
        True, "--task-only/--no-task-only", help="Include test episodes without steps."
    ),
    sort: str = typer.Option("episode_id", "--sort", help="Sort column."),
    desc: bool = typer.Option(False, "--desc", help="Sort descending."),
    limit: int = typer.Option(50, "--limit", "-n", min=0, help="At most N rows (0: all)."),
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list."),
) -> None:
    """List episodes with their task type, split, number of subtasks and steps."""
    from rgvlm_core.catalog import EpisodeFilter, list_episodes

    ws = open_workspace(create=True)
    flt = EpisodeFilter(
        splits=tuple(split or ()),
        task_types=tuple(task_type or ()),
        n_subtasks=tuple(n_subtasks or ()),
        text=text,
        include_task_only=task_only,
        sort_by=sort,
        descending=desc,
        limit=limit or None,
    )
    reader = ws.reader()
    rows = list_episodes(reader, flt).to_pylist()
    reader.close()
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table()
    for col in ("episode_id", "split", "task_type", "n_subtasks", "n_steps", "goal"):
        table.add_column(col, overflow="fold")
    for r in rows:
        n_sub = "-" if r["n_subtasks"] is None else str(r["n_subtasks"])
        table.add_row(r["episode_id"], r["split"], r["task_type"] or "-", n_sub, str(r["n_steps"]), r["goal"])
    console.print(table)
    console.print(f"{len(rows)} episode(s)", markup=False)


def register(app: typer.Typer) -> None:
    app.command("import")(import_)
    app.command()(info)
    app.command()(episodes)
