"""Experiment commands: `rgvlm experiment` (train and evaluate a grid) and `rgvlm report`."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import typer

from rgvlm_core.cli.common import (
    console,
    open_workspace,
    print_json,
    progress_bar,
    quiet_library_progress,
    threads_option,
    vlm_reward_option,
)
from rgvlm_core.rl.config import LOW_SUBTASK_BUDGET, SUBTASK_BUDGET
from rgvlm_core.workspace import Workspace


def _csv(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _conditions(conditions: str, eval_tasks: str | None) -> tuple[str, ...]:
    """--conditions, or the ALFRED splits of --eval-tasks (which replace them)."""
    if eval_tasks is None:
        return tuple(_csv(conditions))
    from rgvlm_core.alfred.tasks import parse_eval_tasks

    return parse_eval_tasks(eval_tasks)


def experiment(
    methods: str = typer.Option(
        ...,
        "--methods",
        "-m",
        help="Comma-separated: sparse, reference, sparse+reference, rgvlm:RUN, sparse+rgvlm:RUN, "
        "clip:RUN, bc; a VLM method may end in @MAPPING (e.g. sparse+reference@cost,"
        "sparse+reference@shaped).",
    ),
    seeds: int = typer.Option(3, "--seeds", min=1, help="Training seeds per method (0..N-1)."),
    steps: int = typer.Option(5_000, "--steps", min=1, help="Gradient steps per run."),
    lam: float = typer.Option(1.0, "--lambda", help="Weight of the VLM reward in sparse+ methods."),
    vlm_reward: str = vlm_reward_option(),
    episodes_per_length: int = typer.Option(
        50,
        "--episodes-per-length",
        "-k",
        min=1,
        help="Evaluation tasks per task length, condition and phrasing (50 gives intervals of about +-0.07).",
    ),
    conditions: str = typer.Option("default,randomized", "--conditions", help="Evaluation conditions."),
    data_split: list[str] = typer.Option(
        [],
        "--data-split",
        help="Train on the episodes of this split only (repeatable; default: every split).",
    ),
    eval_tasks: str = typer.Option(
        None,
        "--eval-tasks",
        help="Evaluate on ALFRED's own tasks instead (runs trained on replayed ALFRED trajectories): "
        "alfred:valid_seen,alfred:valid_unseen (the default for such data).",
    ),
    phrasings: str = typer.Option(
        "unseen,seen", "--phrasings", help="Instruction phrasings evaluated: unseen (held out) and/or seen."
    ),
    subtask_budget: int = typer.Option(
        SUBTASK_BUDGET,
        "--subtask-budget",
        min=0,
        help="Steps each subtask may take in evaluation before the episode is cut off; 0: the old per-task "
        f"budget (twice the expert's plan). On low-level data the default becomes {LOW_SUBTASK_BUDGET}.",
    ),
    curve_every: int = typer.Option(
        0, "--curve-every", min=0, help="Evaluate every N updates for a completion-vs-steps curve (0: never)."
    ),
    curve_episodes: int = typer.Option(
        5, "--curve-episodes", min=1, help="Tasks per length, condition and phrasing at each curve point."
    ),
    split: str = typer.Option(
        "test",
        "--split",
        help="test (reported: evaluation seed 0, training seeds 0..N-1) or validation (for choosing "
        "hyper-parameters: its own evaluation tasks and training seeds 1000..).",
    ),
    name: str = typer.Option(None, "--name", help="Experiment name; an existing one is resumed."),
    report: Path = typer.Option(None, "--report", help="Write a self-contained HTML report (and a .csv)."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Transitions per step."),
    encoder: str = typer.Option("minilm", "--encoder", help="Instruction encoder: minilm or hash."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    threads: int = threads_option(),
    workers: int = typer.Option(
        None,
        "--workers",
        min=1,
        help="Runs trained at once, each in its own process (default: one per CPU core; Ray: its CPUs).",
    ),
    stack: int = typer.Option(
        None,
        "--stack",
        min=1,
        help="Seeds of one method trained as one stacked model: the same maths in another float summation "
        "order (default: 1 on a CPU, so results do not depend on --workers; on a GPU, enough to fill them).",
    ),
    executor: str = typer.Option("local", "--executor", help="Where runs execute: local or ray."),
    address: str = typer.Option(
        None, "--address", help="Ray cluster to join (--executor ray; default: start a local Ray instance)."
    ),
    log_every: int = typer.Option(250, "--log-every", min=1, help="Store metrics every N steps."),
    iql: list[str] = typer.Option(
        [], "--iql", help="IQL setting NAME=VALUE, repeatable (e.g. --iql beta=3 --iql expectile=0.7)."
    ),
) -> None:
    """Train and evaluate every method x seed, then (optionally) write the comparison report.

    Runs execute in parallel (--workers; the results do not depend on it); --stack K trains K seeds of
    a method as one stacked model. A finished run prints one line: method, seed, final losses and its
    evaluation summary.
    """
    from rgvlm_core.jobs import JobCancelled, cancel_requested, cooperative, report_progress
    from rgvlm_core.rl.config import IQLConfig, with_overrides
    from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment

    if report is not None:
        check_report_path(report)  # before the training, not after it
    ws = open_workspace(create=False)
    from rgvlm_core.rl.experiment import split_seeds

    seed_list, eval_seed = split_seeds(split, seeds)
    spec = ExperimentSpec(
        methods=tuple(_csv(methods)),
        seeds=seed_list,
        eval_seed=eval_seed,
        split=split,
        phrasings=tuple(_csv(phrasings)),
        subtask_budget=subtask_budget or None,
        curve_every=curve_every,
        curve_episodes=curve_episodes,
        lam=lam,
        vlm_reward=vlm_reward,
        conditions=_conditions(conditions, eval_tasks),
        data_splits=tuple(data_split),
        episodes_per_length=episodes_per_length,
        encoder=encoder,
        name=name,
        command=shlex.join(["rgvlm", *sys.argv[1:]]),
    )
    base = IQLConfig(steps=steps, batch_size=batch_size, device=device, log_every=min(log_every, steps))
    config = with_overrides(base, iql)
    quiet_library_progress()
    last = None
    runs = run_experiment(
        ws,
        spec,
        config,
        threads=threads,
        workers=workers or default_workers(executor, address),
        executor=executor,
        address=address,
        stack=stack,
    )
    with progress_bar("experiment") as bar, cooperative():
        task = bar.add_task("experiment", total=1000, info="")
        for last in runs:
            info = last.text()
            bar.update(task, completed=int(1000 * last.fraction), info=info)
            report_progress(int(1000 * last.fraction), 1000, info, force=last.finished_run is not None)
            if last.finished_run is not None:
                console.print(last.finished_run.line(), markup=False, highlight=False, soft_wrap=True)
    if last is None:
        if cancel_requested():
            raise JobCancelled()
        return
    if last.finished == last.runs:
        console.print(f"experiment {last.experiment_id}: {last.runs} runs finished", markup=False)
    else:  # stopped (cancelled) before the end: the next run of the same name resumes it
        console.print(
            f"experiment {last.experiment_id}: {last.finished} of {last.runs} runs finished; "
            f"run it again with --name {last.experiment_id} to resume",
            markup=False,
        )
    if cancel_requested():
        raise JobCancelled()  # recorded as cancelled, not done
    if report is not None:
        _write(ws, last.experiment_id, report)


def default_workers(executor: str, address: str | None) -> int:
    """One worker per CPU core this process may use; 0 on a Ray cluster (`address`): its CPUs decide."""
    if executor == "ray" and address is not None:
        return 0
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def report_cmd(
    experiment_id: str = typer.Argument(..., help="Experiment (see `rgvlm experiments`)."),
    out: Path = typer.Option(
        Path("report.html"), "--out", "-o", help="HTML file to write (and a .csv beside)."
    ),
    phrasing: str = typer.Option(
        None,
        "--phrasing",
        help="Instruction phrasing the report shows: unseen (held out; the default when evaluated) or seen.",
    ),
) -> None:
    """Write the self-contained HTML report of an experiment's finished runs."""
    from rgvlm_core.errors import UsageError

    if phrasing not in (None, "unseen", "seen"):
        raise UsageError(f"--phrasing must be unseen or seen, got {phrasing!r}")
    check_report_path(out)
    _write(open_workspace(create=False), experiment_id, out, phrasing)


def check_report_path(out: Path) -> None:
    """A file path the report (and its .csv beside it) can be written to, or one line saying why not."""
    from rgvlm_core.errors import UsageError

    if out.is_dir():
        raise UsageError(f"report path {out}: is a folder; give a file name such as {out / 'report.html'}")
    folder = out.parent
    if not folder.is_dir():
        raise UsageError(f"report path {out}: folder {folder} does not exist; create it or choose another")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"report path {out}: cannot write in {folder}; choose another folder")


def experiments(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """List experiments: methods, seeds, finished runs."""
    from rgvlm_core.rl.experiment import list_experiments

    reader = open_workspace(create=False).reader()
    try:
        rows = list_experiments(reader)
    finally:
        reader.close()
    if as_json:
        print_json(rows)
        return
    for r in rows:
        console.print(
            f"{r['experiment_id']}  methods {r['methods']}  seeds {r['seeds']}  "
            f"finished runs {r['finished']}",
            markup=False,
        )


def merge(
    folder: Path = typer.Argument(..., help="A folder written by `rgvlm export experiment`."),
    as_json: bool = typer.Option(False, "--json", help="Print what was added and kept as JSON."),
) -> None:
    """Add an exported experiment's finished runs to this workspace's experiment of the same name.

    Refused, with nothing written, when the plans differ or this workspace's training data is not the
    data those runs learnt from; runs already here are kept. `rgvlm experiment` then resumes the rest.
    """
    from rgvlm_core.rl.experiment_io import merge_experiment

    def say(text: str) -> None:
        if not as_json:
            console.print(text, markup=False)

    report = merge_experiment(open_workspace(create=False), folder, progress=say)
    if as_json:
        print_json(report.to_json())
        return
    for note in report.notes:
        console.print(f"note: {note}", markup=False, soft_wrap=True)
    console.print(
        f"experiment {report.experiment_id}: {len(report.added)} runs added, {len(report.kept)} already here "
        "(kept as they are)",
        markup=False,
    )


def _write(ws: Workspace, experiment_id: str, out: Path, phrasing: str | None = None) -> None:
    import json

    from rgvlm_core.report import write_report
    from rgvlm_core.rl.experiment import experiment_run_ids, list_experiments

    reader = ws.reader()
    try:
        run_ids = experiment_run_ids(reader, experiment_id)
        about = next((r for r in list_experiments(reader) if r["experiment_id"] == experiment_id), {})
        settings = {
            "experiment": experiment_id,
            "methods": json.loads(about.get("methods", "[]")),
            "seeds": json.loads(about.get("seeds", "[]")),
            "settings": json.loads(about.get("config", "{}")),
        }
        html_path, csv_path = write_report(
            reader, run_ids, out, title=f"RG-VLM Studio: {experiment_id}", about=settings, phrasing=phrasing
        )
    finally:
        reader.close()
    console.print(f"wrote {html_path} and {csv_path}", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(experiment)
    app.command("experiments")(experiments)
    app.command("report")(report_cmd)
    app.command("merge")(merge)
