"""Learning commands: `rgvlm train`, `rgvlm evaluate`, `rgvlm train-runs`."""

from __future__ import annotations

import typer

from rgvlm_core.cli.common import (
    console,
    open_workspace,
    print_json,
    progress_bar,
    threads_option,
    vlm_reward_option,
)


def train(
    reward: str = typer.Option(
        "sparse",
        "--reward",
        "-r",
        help="sparse, reference, sparse+reference, rgvlm:RUN, sparse+rgvlm:RUN or clip:RUN; a VLM source may "
        "end in @MAPPING (e.g. sparse+reference@shaped).",
    ),
    lam: float = typer.Option(1.0, "--lambda", help="Weight of the VLM reward in sparse+rgvlm."),
    vlm_reward: str = vlm_reward_option(),
    seed: int = typer.Option(0, "--seed", help="Seed (CPU runs are reproducible)."),
    steps: int = typer.Option(20_000, "--steps", min=1, help="Gradient steps."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Transitions per step."),
    encoder: str = typer.Option("minilm", "--encoder", help="Instruction encoder: minilm or hash."),
    failed: str = typer.Option("sparse", "--failed-labels", help="Steps whose label failed: sparse or drop."),
    states: str = typer.Option(
        "sim",
        "--states",
        help="State features: sim (simulator states: generated episodes, and ALFRED's imported with "
        "--replay) or alfred (ALFRED ResNet features).",
    ),
    data_split: list[str] = typer.Option(
        [],
        "--data-split",
        help="Train on the episodes of this split only (repeatable; default: every split).",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = threads_option(),
    name: str = typer.Option(None, "--name", help="Run name (default: derived, unique)."),
    log_every: int = typer.Option(1000, "--log-every", min=1, help="Store metrics every N steps."),
    iql: list[str] = typer.Option(
        [], "--iql", help="IQL setting NAME=VALUE, repeatable (e.g. --iql beta=3 --iql expectile=0.7)."
    ),
) -> None:
    """Train language-conditioned IQL on the workspace's simulator or ALFRED data with a reward source."""

    from rgvlm_core.catalog import EpisodeFilter
    from rgvlm_core.errors import UsageError
    from rgvlm_core.jobs import report_progress
    from rgvlm_core.rl.config import IQLConfig, with_overrides
    from rgvlm_core.rl.runs import TrainSpec, train_run

    if failed not in ("sparse", "drop"):
        raise UsageError(f"--failed-labels must be sparse or drop, got {failed!r}")
    if states not in ("sim", "alfred"):
        raise UsageError(f"--states must be sim or alfred, got {states!r}")
    ws = open_workspace(create=False)
    base = IQLConfig(steps=steps, seed=seed, batch_size=batch_size, device=device, log_every=log_every)
    config = with_overrides(base, iql)
    spec = TrainSpec(
        reward=reward,
        lam=lam,
        vlm_reward=vlm_reward,
        encoder=encoder,
        failed=failed,
        states=states,
        name=name,
        filters=EpisodeFilter(splits=tuple(data_split)),
    )
    last = None
    with progress_bar("training") as bar:
        task = bar.add_task("train", total=steps, info="")
        for last in train_run(ws, spec, config, threads=threads):
            info = f"q {last.metrics.get('losses/q', 0):.3f} v {last.metrics.get('losses/v', 0):.3f}"
            bar.update(task, completed=last.step, info=info)
            report_progress(last.step, steps, info)
    if last is not None:
        console.print(f"trained {last.run_id}: {steps} steps on reward {reward}", markup=False)


def evaluate(
    run: str = typer.Argument(..., help="Training run."),
    condition: str = typer.Option(
        "default",
        "--condition",
        help="default or randomized initial states; for a run trained on replayed ALFRED trajectories, "
        "the ALFRED split whose tasks are evaluated: valid_seen or valid_unseen.",
    ),
    episodes_per_length: int = typer.Option(
        20, "--episodes-per-length", "-k", min=1, help="Episodes per length."
    ),
    seed: int = typer.Option(0, "--seed", help="Evaluation seed (the same tasks for every run)."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-length summary as JSON."),
) -> None:
    """Evaluate a trained policy in the simulator by task length (held-out instructions); store the rows."""
    from rgvlm_core.alfred.splits import EVAL_SPLITS
    from rgvlm_core.errors import UsageError
    from rgvlm_core.rl.runs import evaluate_run
    from rgvlm_core.sim.evaluate import summarize

    if condition not in ("default", "randomized", *EVAL_SPLITS):
        raise UsageError(
            "--condition must be default or randomized (or an ALFRED split for runs on ALFRED), "
            f"got {condition!r}"
        )
    ws = open_workspace(create=False)
    results = list(
        evaluate_run(ws, run, condition=condition, episodes_per_length=episodes_per_length, seed=seed)
    )
    summary = summarize(results)
    if as_json:
        print_json(summary)
        return
    for row in summary:
        low, high = row["ci95"]
        console.print(
            f"{row['length']} subtasks: {row['mean_completed']:.3f} completed [{low:.3f}, {high:.3f}], "
            f"success {row['success_rate']:.3f} ({row['n']} episodes)",
            markup=False,
        )


def train_runs(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """List training runs with their reward source, seed, steps and evaluations."""
    reader = open_workspace(create=False).reader()
    rows = reader.rows(
        "SELECT r.run_id, r.reward_source, r.seed, r.steps, r.finished_at, count(e.run_id) AS eval_episodes, "
        "avg(e.completed::DOUBLE / e.n_subtasks) AS mean_completed "
        "FROM train_runs r LEFT JOIN eval_results e USING (run_id) GROUP BY ALL ORDER BY r.finished_at"
    )
    reader.close()
    if as_json:
        print_json(rows)
        return
    for r in rows:
        score = "-" if r["mean_completed"] is None else f"{r['mean_completed']:.3f}"
        console.print(
            f"{r['run_id']}  {r['reward_source']}  seed {r['seed']}  {r['steps']} steps  "
            f"evaluated {r['eval_episodes']} episodes, completed {score}",
            markup=False,
        )


def register(app: typer.Typer) -> None:
    app.command()(train)
    app.command()(evaluate)
    app.command("train-runs")(train_runs)
