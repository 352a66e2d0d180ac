"""`rgvlm export minari NAME` and `rgvlm export parquet DIR`: the dataset the trainer sees, for other tools;
`rgvlm export experiment NAME DIR`: an experiment's finished runs, for `rgvlm merge` in another workspace.

Both take `--reward` as `rgvlm train` does and the episode filters of `rgvlm episodes`/`rgvlm label`;
the output is checked before any work, so a refused command writes nothing (rgvlm_core.export).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from rgvlm_core.cli.common import console, open_workspace, progress_bar, vlm_reward_option
from rgvlm_core.export.collect import ExportConfig, ExportData

export_app = typer.Typer(
    help="Export the workspace's offline dataset (states, instructions, actions, rewards, endings) with "
    "the chosen reward, as Minari or Parquet; or an experiment's finished runs, to merge elsewhere.",
    no_args_is_help=True,
)
_HELP = {name: f.metadata["help"] for name, f in ExportConfig.__dataclass_fields__.items()}

# Options shared by both commands (one definition each, so their names and help never drift apart).
REWARD = typer.Option("sparse", "--reward", "-r", help=_HELP["reward"])
LAMBDA = typer.Option(1.0, "--lambda", help=_HELP["lam"])
GAMMA = typer.Option(ExportConfig.gamma, "--gamma", help=_HELP["gamma"])
STATES = typer.Option("sim", "--states", help=_HELP["states"])
SPLIT = typer.Option(None, "--split", "-s", help="Only this split (repeatable).")
TASK_TYPE = typer.Option(None, "--task-type", "-t", help="Only this task type (repeatable).")
N_SUBTASKS = typer.Option(None, "--n-subtasks", "-k", help="Only this many subtasks (repeatable).")
EPISODE = typer.Option(None, "--episode", "-e", help="Only this episode id (repeatable).")
TEXT = typer.Option(None, "--text", help="Goal contains this text (case-insensitive).")
LIMIT = typer.Option(None, "--limit", "-n", min=1, help="At most N episodes (the first by id).")
FORCE = typer.Option(False, "--force", help="Replace an earlier export of the same name.")


def _config(
    reward: str,
    lam: float,
    vlm_reward: str | None,
    gamma: float,
    states: str,
    filters: tuple[list[str], list[str], list[int], list[str], str | None, int | None],
) -> ExportConfig:
    from rgvlm_core.catalog import EpisodeFilter
    from rgvlm_core.redact import redact

    split, task_type, n_subtasks, episode, text, limit = filters
    flt = EpisodeFilter(
        splits=tuple(split or ()),
        task_types=tuple(task_type or ()),
        n_subtasks=tuple(n_subtasks or ()),
        episode_ids=tuple(episode or ()),
        text=text,
        limit=limit,
    )
    command = redact(" ".join(["rgvlm", *sys.argv[1:]]))
    return ExportConfig(reward, lam, vlm_reward, gamma, states, flt, command)


def _collect(config: ExportConfig) -> ExportData:
    from rgvlm_core.export.collect import collect

    reader = open_workspace(create=False).reader()
    try:
        return collect(reader, config)
    finally:
        reader.close()


@export_app.command("minari")
def minari_(
    name: str = typer.Argument(..., help="Minari dataset id, (namespace/)name(-vVERSION); -v0 when absent."),
    root: Path = typer.Option(
        None, "--root", help="Dataset root (default: MINARI_DATASETS_PATH, else ~/.minari/datasets)."
    ),
    reward: str = REWARD,
    lam: float = LAMBDA,
    vlm_reward: str = vlm_reward_option(),
    gamma: float = GAMMA,
    states: str = STATES,
    split: list[str] = SPLIT,
    task_type: list[str] = TASK_TYPE,
    n_subtasks: list[int] = N_SUBTASKS,
    episode: list[str] = EPISODE,
    text: str = TEXT,
    limit: int = LIMIT,
    force: bool = FORCE,
) -> None:
    """Write a Minari dataset of the chosen episodes with the chosen reward (needs the minari extra)."""
    from rgvlm_core.export.to_minari import minari_target, write_minari
    from rgvlm_core.jobs import report_progress

    config = _config(
        reward, lam, vlm_reward, gamma, states, (split, task_type, n_subtasks, episode, text, limit)
    )
    target = minari_target(name, root, force=force)
    data = _collect(config)
    with progress_bar(f"writing {target.dataset_id}", transient=True) as bar:
        task = bar.add_task("write", total=len(data.episodes), info="")

        def shown(done: int, total: int) -> None:
            bar.update(task, completed=done)
            report_progress(done, total, "episodes")

        path = write_minari(data, target, shown)
    console.print(
        f"wrote Minari dataset {target.dataset_id}: {len(data.episodes)} episodes, {len(data)} steps, reward "
        f"{data.metadata['reward_source']}, to {path}",
        soft_wrap=True,
    )
    console.print(
        f"load it with minari.load_dataset({target.dataset_id!r}) where MINARI_DATASETS_PATH={target.root}",
        soft_wrap=True,
    )


@export_app.command("parquet")
def parquet(
    out: Path = typer.Argument(..., help="Folder to write (steps.parquet, episodes.parquet, README.md)."),
    reward: str = REWARD,
    lam: float = LAMBDA,
    vlm_reward: str = vlm_reward_option(),
    gamma: float = GAMMA,
    states: str = STATES,
    split: list[str] = SPLIT,
    task_type: list[str] = TASK_TYPE,
    n_subtasks: list[int] = N_SUBTASKS,
    episode: list[str] = EPISODE,
    text: str = TEXT,
    limit: int = LIMIT,
    force: bool = FORCE,
) -> None:
    """Write the chosen episodes with the chosen reward as Parquet, with a README of the columns."""
    from rgvlm_core.export.to_parquet import check_parquet_target, write_parquet

    config = _config(
        reward, lam, vlm_reward, gamma, states, (split, task_type, n_subtasks, episode, text, limit)
    )
    check_parquet_target(out, force)
    data = _collect(config)
    write_parquet(data, out, force=force)
    console.print(
        f"wrote {len(data.episodes)} episodes, {len(data)} steps, reward {data.metadata['reward_source']}, "
        f"to {out}",
        soft_wrap=True,
    )


@export_app.command("experiment")
def experiment_(
    name: str = typer.Argument(..., help="Experiment (see `rgvlm experiments`)."),
    out: Path = typer.Argument(..., help="Folder to write (experiment.json and one Parquet file per table)."),
    checkpoints: bool = typer.Option(
        False, "--checkpoints", help="Include the runs' checkpoints (a comparison needs none of them)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an earlier experiment export there."),
) -> None:
    """Write an experiment's finished runs (plan, evaluations, curves, metrics) to a folder that `rgvlm
    merge` adds to another workspace's experiment, such as the same grid's other seeds run elsewhere."""
    from rgvlm_core.redact import redact
    from rgvlm_core.rl.experiment_io import export_experiment

    command = redact(" ".join(["rgvlm", *sys.argv[1:]]))
    manifest = export_experiment(
        open_workspace(create=False),
        name,
        out,
        checkpoints=checkpoints,
        force=force,
        command=command,
        progress=lambda text: console.print(text, markup=False),
    )
    console.print(
        f"wrote {len(manifest['runs'])} finished runs of {name} ({manifest['rows']['eval_results']} "
        f"evaluated episodes) to {out}; add them elsewhere with `rgvlm merge {out}`",
        soft_wrap=True,
        markup=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
