"""Store maintenance: compaction, garbage collection and schema migration."""

from __future__ import annotations

import typer

from rgvlm_core.cli.common import console, open_workspace
from rgvlm_core.workspace import TABLES


def compact(
    table: list[str] = typer.Argument(None, help="Tables to compact (default: all)."),
    gc: bool = typer.Option(True, help="Also delete superseded shards past their grace period."),
) -> None:
    """Merge each table's shards into one file (faster reads after many small writes)."""
    ws = open_workspace(create=False)
    names = table or sorted(TABLES)
    for name in names:
        if ws.compact(name):
            console.print(f"compacted {name}")
    if gc:
        removed = ws.collect_garbage()
        console.print(f"removed {removed} unused file(s)")


def migrate() -> None:
    """Upgrade tables written by an older rgvlm to this version's schema (new columns get their
    documented defaults); the old files stay readable until garbage collection."""
    ws = open_workspace(create=False, seed=False)
    done = ws.migrate()
    for name, (old, new) in sorted(done.items()):
        console.print(f"migrated {name}: schema v{old} -> v{new}")
    if not done:
        console.print("every table is at this rgvlm's schema; nothing to do")


def register(app: typer.Typer) -> None:
    app.command()(compact)
    app.command()(migrate)
