"""`rgvlm reward-check`: does a reward keep the task's optimal policy? (rgvlm_core.reward_check)"""

from __future__ import annotations

from typing import Any, cast

import typer

from rgvlm_core.cli.common import console, open_workspace, print_json, progress_bar, vlm_reward_option
from rgvlm_core.reward_check import CheckConfig

_HELP = {name: f.metadata["help"] for name, f in CheckConfig.__dataclass_fields__.items()}


def reward_check(
    reward: str = typer.Option(
        ...,
        "--reward",
        "-r",
        help="sparse, reference, sparse+reference, rgvlm:RUN, sparse+rgvlm:RUN or clip:RUN; a VLM source may "
        "end in @MAPPING (e.g. sparse+reference@raw).",
    ),
    vlm_reward: str = vlm_reward_option(),
    lam: float = typer.Option(1.0, "--lambda", help=_HELP["lam"]),
    gamma: float = typer.Option(0.97, "--gamma", help=_HELP["gamma"]),
    tasks_per_length: int = typer.Option(
        2, "--tasks-per-length", "-k", min=1, help=_HELP["tasks_per_length"]
    ),
    seed: int = typer.Option(7, "--seed", min=0, help=_HELP["seed"]),
    max_states: int = typer.Option(50_000, "--max-states", min=1, help=_HELP["max_states"]),
    scope: str = typer.Option("subtask", "--scope", help=_HELP["scope"]),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Check a reward before training on it: (a) expert against other segments' returns in the data,
    (b) whether the optimal policy of simulator tasks under it completes them (an exact solve)."""
    from rgvlm_core.errors import UsageError
    from rgvlm_core.jobs import report_progress
    from rgvlm_core.reward_check import TaskRow, check_reward
    from rgvlm_core.rl.dataset import parse_reward_source
    from rgvlm_core.sim.solve import SCOPES, Scope

    if scope not in SCOPES:
        raise UsageError(f"--scope must be {' or '.join(SCOPES)}, got {scope!r}")
    CheckConfig(vlm_reward, lam, gamma, tasks_per_length, seed, max_states)  # bad settings: before any bar
    reader = open_workspace(create=False).reader()
    try:
        parse_reward_source(reward, reader, lam=lam, mapping=vlm_reward, gamma=gamma)  # the same
        with progress_bar("solving tasks", transient=True) as bar:
            task = bar.add_task("solve", total=None, info="")

            def shown(done: int, total: int, row: TaskRow) -> None:
                info = f"{row.length} subtasks: {row.solve.status}"
                bar.update(task, completed=done, total=total, info=info)
                report_progress(done, total, info)

            check = check_reward(
                reader,
                reward,
                vlm_reward,
                lam,
                gamma,
                tasks_per_length,
                seed,
                max_states,
                scope=cast(Scope, scope),  # checked above
                progress=shown,
            )
    finally:
        reader.close()
    if as_json:
        print_json(check.to_json())
        return
    _print_summary(check.to_json())


def _print_summary(doc: dict[str, Any]) -> None:
    """A table of the tasks solved, the returns by subtask kind, and the verdict."""
    from rich.table import Table

    table = Table(title=f"reward check: {doc['reward_source']}", title_justify="left")
    for col in ("length", "task type", "status", "optimal / expert steps", "states"):
        table.add_column(col, justify="left" if col in ("task type", "status") else "right")
    for row in doc["task_rows"]:
        optimal = "-" if row["optimal_length"] is None else str(row["optimal_length"])
        skipped = row["status"] == "skipped"
        states = f"> {doc['max_states']:,}" if skipped else f"{sum(s['states'] for s in row['subtasks']):,}"
        table.add_row(
            str(row["length"]),
            row["task_type"],
            row["status"],
            f"{optimal} / {row['expert_length']}",
            states,
        )
    console.print(table)
    returns = doc["returns"]
    if returns:
        console.print("mean discounted return of completed segments (expert vs other, segments):")
        for kind in returns["by_kind"]:
            console.print(
                f"  {kind['kind']}: {kind['expert_return']:.3f} ({kind['expert_segments']}) vs "
                f"{kind['other_return']:.3f} ({kind['other_segments']})"
            )
    for sentence in doc["verdict"]:
        console.print(sentence, soft_wrap=True)
    console.print(f"took {doc['seconds']:.1f} s")


def register(app: typer.Typer) -> None:
    app.command("reward-check")(reward_check)
