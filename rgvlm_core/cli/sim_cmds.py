"""`rgvlm sim ...`: generate datasets with the embedded household simulator, and evaluate policies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rgvlm_core.cli.common import console, print_json, progress_bar

if TYPE_CHECKING:
    from rgvlm_core.sim.evaluate import EpisodeResult

sim_app = typer.Typer(help="The embedded household simulator: generate datasets, evaluate policies.")


@sim_app.command()
def generate(
    episodes: int = typer.Option(100, "--episodes", "-n", min=1, help="Episodes to generate."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same dataset."),
    out: Path = typer.Option(..., "--out", "-o", help="New folder to write the ALFRED-format dataset to."),
    mix: str = typer.Option(
        "expert=0.5,suboptimal=0.35,failed=0.15",
        "--mix",
        help="Shares of expert, suboptimal and failed episodes.",
    ),
    min_subtasks: int = typer.Option(1, "--min-subtasks", min=1, max=6, help="Fewest subtasks per task."),
    max_subtasks: int = typer.Option(6, "--max-subtasks", min=1, max=6, help="Most subtasks per task."),
    randomized: float = typer.Option(
        0.5, "--randomized", min=0.0, max=1.0, help="Share of randomised starts."
    ),
    annotations: int = typer.Option(
        2, "--annotations", min=1, max=6, help="Instruction paraphrases per episode."
    ),
    split: str = typer.Option("train", "--split", help="Split folder to write into."),
    frames: bool = typer.Option(True, "--frames/--no-frames", help="Render raw_images/ (JPEG, 300x300)."),
    jpeg_quality: int = typer.Option(80, "--jpeg-quality", min=1, max=95, help="JPEG quality of the frames."),
    workers: int = typer.Option(2, "--workers", min=1, help="Processes (the result does not depend on it)."),
    level: str = typer.Option(
        "subgoal",
        "--level",
        help="Action level: subgoal (one action per ALFRED subgoal) or low (ALFRED's low-level actions "
        "on a floor plan: walks, turns, looks, interactions).",
    ),
    floor_plans: str | None = typer.Option(
        None,
        "--floor-plans",
        help="Low level: ALFRED floor plans, e.g. kitchens,201-205 (sets kitchens, livingrooms, bedrooms, "
        "bathrooms; numbers; ranges), read from $RGVLM_ALFRED_LAYOUTS. Default: generated rooms.",
    ),
) -> None:
    """Generate an ALFRED-format dataset (traj_data.json + raw_images/) of simulator episodes."""

    from rgvlm_core.jobs import report_progress
    from rgvlm_core.sim.generate import GenerateConfig, parse_mix
    from rgvlm_core.sim.generate import generate as run

    config = GenerateConfig(
        episodes=episodes,
        seed=seed,
        mix=parse_mix(mix),
        min_subtasks=min_subtasks,
        max_subtasks=max_subtasks,
        randomized=randomized,
        annotations=annotations,
        frames=frames,
        split=split,
        jpeg_quality=jpeg_quality,
        level=level,
        floor_plans=_floor_plans(floor_plans, level),
    )
    config.check()  # before the folder is made: a bad --floor-plans leaves nothing behind
    _check_out_folder(out)
    steps = 0
    with progress_bar("generating") as progress:
        task = progress.add_task("generate", total=episodes, info="")
        for done, item in enumerate(run(out, config, workers=workers), start=1):
            steps += item.steps
            progress.advance(task)
            report_progress(done, episodes, item.path)
    console.print(
        f"wrote {episodes} episodes ({steps} steps) to {out}; import with: rgvlm import {out}", markup=False
    )


def _check_out_folder(out: Path) -> None:
    """A path we can create a dataset folder at, or one line saying why not (before any work)."""
    from rgvlm_core.errors import UsageError

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file; give a new folder to write the dataset to")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"--out {out}: cannot create the folder ({reason}); give a folder you can write"
        ) from None


@sim_app.command()
def evaluate(
    policy: str = typer.Option("expert", "--policy", help="expert or random."),
    episodes_per_length: int = typer.Option(
        100, "--episodes-per-length", "-k", min=1, help="Episodes per length."
    ),
    condition: str = typer.Option("default", "--condition", help="default or randomized initial states."),
    seed: int = typer.Option(0, "--seed", help="Evaluation seed (the same tasks for every policy)."),
    lengths: str = typer.Option("1,2,3,4,5,6", "--lengths", help="Task lengths (numbers of subtasks)."),
    level: str = typer.Option(
        "subgoal",
        "--level",
        help="Action level: subgoal (ALFRED subgoals) or low (ALFRED's low-level actions).",
    ),
    floor_plans: str | None = typer.Option(
        None,
        "--floor-plans",
        help="Low level: ALFRED floor plans, e.g. kitchens,201-205 (sets kitchens, livingrooms, bedrooms, "
        "bathrooms; numbers; ranges). Default: generated rooms.",
    ),
    subtask_budget: int | None = typer.Option(
        None,
        "--subtask-budget",
        min=1,
        help="Steps each subtask may take (default: twice the expert's plan for the whole task).",
    ),
    eval_tasks: str | None = typer.Option(
        None,
        "--eval-tasks",
        help="ALFRED's own tasks instead of generated ones: alfred:valid_seen, alfred:valid_unseen and/or "
        "alfred:train, comma-separated (chains of 1-6 consecutive subtasks of each replayed trajectory; "
        "the expert is ALFRED's recorded actions).",
    ),
    alfred_data: Path | None = typer.Option(
        None,
        "--alfred-data",
        help="ALFRED's data folder for --eval-tasks (default: $RGVLM_ALFRED_DATA, else "
        "../shared/alfred/json_2.1.0).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Evaluate a built-in policy by task length: the proportion of subtasks completed."""
    from rgvlm_core.errors import UsageError
    from rgvlm_core.sim.evaluate import EvalConfig, summarize
    from rgvlm_core.sim.evaluate import evaluate as run

    if policy not in ("expert", "random"):
        raise UsageError(f"--policy must be expert or random, got {policy!r}")
    if condition not in ("default", "randomized"):
        raise UsageError(f"--condition must be default or randomized, got {condition!r}")
    if level not in ("subgoal", "low"):
        raise UsageError(f"--level must be subgoal or low, got {level!r}")
    try:
        chosen = tuple(int(x) for x in lengths.split(","))
    except ValueError:
        raise UsageError(f"--lengths takes numbers separated by commas, got {lengths!r}") from None
    if eval_tasks is not None:
        _evaluate_alfred(
            policy, eval_tasks, alfred_data, chosen, episodes_per_length, seed, subtask_budget, as_json
        )
        return
    plans = _floor_plans(floor_plans, level)
    config = EvalConfig(
        lengths=chosen,
        episodes_per_length=episodes_per_length,
        condition=condition,
        seed=seed,
        subtask_budget=subtask_budget,
        level=level,  # type: ignore[arg-type]  # checked above
        floor_plans=plans,
    )
    with progress_bar("evaluating", transient=True) as progress:
        task = progress.add_task("evaluate", total=len(chosen) * episodes_per_length, info="")
        results = []
        for result in run(policy, config):
            results.append(result)
            progress.advance(task)
    summary = summarize(results)
    where = _where(results)
    if as_json:
        print_json([{**line, "level": level, **where.get(line["length"], {})} for line in summary])
        return
    from rich.table import Table

    rooms = "" if level == "subgoal" else f" on {floor_plans or 'generated rooms'}"
    table = Table(
        title=f"{policy} policy, {level} level{rooms}, {condition} initial states, "
        f"{episodes_per_length} episodes per length"
    )
    columns = ["subtasks", "episodes", "completed (mean)", "95% CI", "full-task success"]
    for col in columns + (["floor plans"] if level == "low" else []):
        table.add_column(col, justify="right")
    for line in summary:
        low, high = line["ci95"]
        cells = [
            str(line["length"]),
            str(line["n"]),
            f"{line['mean_completed']:.3f}",
            f"[{low:.3f}, {high:.3f}]",
            f"{line['success_rate']:.3f}",
        ]
        if level == "low":
            cells.append(str(len(where[line["length"]]["floor_plans"])))
        table.add_row(*cells)
    console.print(table)


def _evaluate_alfred(
    policy: str,
    text: str,
    root: Path | None,
    lengths: tuple[int, ...],
    episodes_per_length: int,
    seed: int,
    subtask_budget: int | None,
    as_json: bool,
) -> None:
    """`--eval-tasks alfred:SPLIT,...`: each split's tasks, by length (seen and unseen scenes apart)."""
    from rich.table import Table

    from rgvlm_core.alfred.tasks import data_root, parse_eval_tasks
    from rgvlm_core.rl.config import LOW_SUBTASK_BUDGET
    from rgvlm_core.sim.evaluate import EvalConfig, summarize
    from rgvlm_core.sim.evaluate import evaluate as run

    splits = parse_eval_tasks(text)
    folder = str(data_root(root))
    rows: list[dict[str, Any]] = []
    for split in splits:
        config = EvalConfig(
            lengths=lengths,
            episodes_per_length=episodes_per_length,
            condition=split,
            seed=seed,
            subtask_budget=subtask_budget or LOW_SUBTASK_BUDGET,
            level="alfred",
            alfred_root=folder,
        )
        with progress_bar(f"evaluating ALFRED {split}", transient=True) as progress:
            task = progress.add_task("evaluate", total=None, info="")
            results = []
            for result in run(policy, config):
                results.append(result)
                progress.advance(task)
        rows += [{**line, "level": "alfred", "split": split} for line in summarize(results)]
    if as_json:
        print_json(rows)
        return
    budget = subtask_budget or LOW_SUBTASK_BUDGET
    table = Table(title=f"{policy} policy on ALFRED's tasks ({folder}), {budget} steps per subtask")
    for col in ("split", "subtasks", "episodes", "completed (mean)", "95% CI", "full-task success"):
        table.add_column(col, justify="right")
    for line in rows:
        low, high = line["ci95"]
        table.add_row(
            str(line["split"]),
            str(line["length"]),
            str(line["n"]),
            f"{line['mean_completed']:.3f}",
            f"[{low:.3f}, {high:.3f}]",
            f"{line['success_rate']:.3f}",
        )
    console.print(table)


def _floor_plans(text: str | None, level: str) -> tuple[int, ...] | None:
    """The floor plan numbers of --floor-plans (None: generated rooms), refused at the subgoal level."""
    from rgvlm_core.errors import UsageError
    from rgvlm_core.sim.low.floorplan import parse_floor_plans

    if text is None:
        return None
    if level != "low":
        raise UsageError(
            f"--floor-plans {text}: floor plans are for --level low (this run is --level {level})"
        )
    return parse_floor_plans(text)


def _where(results: list[EpisodeResult]) -> dict[int, dict[str, dict[str, int]]]:
    """Low level: per task length, how many episodes ran on each floor plan ({"floor_plans": {name: n}})."""
    out: dict[int, dict[str, dict[str, int]]] = {}
    for r in results:
        if r.floor_plan is not None:
            counts = out.setdefault(r.length, {"floor_plans": {}})["floor_plans"]
            counts[r.floor_plan] = counts.get(r.floor_plan, 0) + 1
    return out


def register(app: typer.Typer) -> None:
    app.add_typer(sim_app, name="sim")
