"""Labelling commands: `rgvlm label`, `rgvlm label-runs`, `rgvlm prompts ...`, `rgvlm override`."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from rgvlm_core.cli.common import console, err_console, open_workspace, print_json, progress_bar
from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.redact import redact

if TYPE_CHECKING:
    from rich.progress import Progress

    from rgvlm_core.labeling.runs import RunProgress
    from rgvlm_core.workspace import Workspace

prompts_app = typer.Typer(help="Prompt versions of the two RG-VLM stages.")
NO_LVLM = (
    "No LVLM is configured (give --model and --base-url, or set RGVLM_MODEL and RGVLM_BASE_URL): "
    "labelling with "
    "the reference labeller, which reads ground truth and is not a vision-language model."
)


def label(
    labeller: str = typer.Option(
        "auto",
        "--labeller",
        "-l",
        help="lvlm, reference or clip; auto: lvlm when a model is configured, else reference.",
    ),
    backend: str = typer.Option(
        "openai",
        "--backend",
        help="LVLM backend: openai (any OpenAI-compatible server) or hf (local transformers).",
    ),
    model: str = typer.Option(
        None, "--model", "-m", envvar="RGVLM_MODEL", help="Model name (openai), local folder (hf, clip)."
    ),
    base_url: list[str] = typer.Option(
        None,
        "--base-url",
        help="Server URL ending in /v1 (repeatable: spread the load). Env: RGVLM_BASE_URL, comma-separated.",
    ),
    api_key_env: str = typer.Option(
        "RGVLM_API_KEY", "--api-key-env", help="Environment variable holding the API key (never stored)."
    ),
    prompt: str = typer.Option(
        None, "--prompt", "-p", help="Prompt version id (or prefix); default: the built-in default."
    ),
    progress: bool = typer.Option(
        None,
        "--progress/--no-progress",
        help="Also ask, per step, how far the subtask is done (0..10), for shaped rewards. "
        "Default: on for reference; for lvlm as the prompt version says (--progress derives a version).",
    ),
    concurrency: int = typer.Option(8, "--concurrency", "-c", min=1, help="Queries in flight at once."),
    noise: float = typer.Option(
        0.0, "--noise", min=0.0, max=1.0, help="reference: flip probability P, jitter 5P."
    ),
    noise_seed: int = typer.Option(0, "--noise-seed", help="reference: seed of the noise model."),
    name: str = typer.Option(
        None, "--name", help="Run name; rerunning a name resumes it. Default: derived from the settings."
    ),
    unit: str = typer.Option("subtask", "--unit", help="Query unit: subtask (paper default) or episode."),
    max_frames: int = typer.Option(16, "--max-frames", min=1, help="Frames per stage-one query."),
    max_side: int = typer.Option(336, "--max-side", min=32, help="Longest side of a frame sent, in pixels."),
    json_schema: bool = typer.Option(
        None,
        "--json-schema/--no-json-schema",
        help="Constrained JSON output (default: when the server offers it).",
    ),
    price_prompt: float = typer.Option(
        None, "--price-prompt", help="Cost per 1,000 prompt tokens, for accounting."
    ),
    price_completion: float = typer.Option(
        None, "--price-completion", help="Cost per 1,000 completion tokens."
    ),
    device: str = typer.Option("auto", "--device", help="hf/clip: cpu, cuda, auto."),
    dtype: str = typer.Option("auto", "--dtype", help="hf: float32, bfloat16, float16, auto."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="hf: queries generated together."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Query the model even for segments labelled before."
    ),
    split: list[str] = typer.Option(None, "--split", "-s", help="Only this split (repeatable)."),
    task_type: list[str] = typer.Option(None, "--task-type", "-t", help="Only this task type (repeatable)."),
    n_subtasks: list[int] = typer.Option(
        None, "--n-subtasks", "-k", help="Only this many subtasks (repeatable)."
    ),
    dataset: list[str] = typer.Option(
        None, "--dataset", help="Only this dataset: alfred or sim (repeatable)."
    ),
    limit: int = typer.Option(None, "--limit", "-n", min=1, help="At most N episodes."),
    episode: list[str] = typer.Option(None, "--episode", "-e", help="Only this episode id (repeatable)."),
    flush_every: int = typer.Option(200, "--flush-every", min=1, hidden=True, help="Segments per commit."),
) -> None:
    """Label the steps of the workspace's episodes with rewards (resumable, cached, with progress)."""

    from rgvlm_core.catalog import EpisodeFilter
    from rgvlm_core.labeling.factory import BASE_URL_ENV, LabelSpec, build_labeller, default_run_name
    from rgvlm_core.labeling.runs import RunConfig, label_run

    urls = tuple(base_url or [u for u in os.environ.get(BASE_URL_ENV, "").split(",") if u])
    if labeller == "auto":
        labeller = "lvlm" if model else "reference"
        if labeller == "reference":
            err_console.print(NO_LVLM, style="yellow", markup=False, soft_wrap=True)
    ws = open_workspace(create=True)
    spec = LabelSpec(
        labeller=labeller,
        backend=backend,
        model=model or "",
        base_urls=urls,
        api_key_env=api_key_env,
        prompt=prompt,
        progress=progress,
        concurrency=concurrency,
        noise=noise,
        noise_seed=noise_seed,
        max_frames=max_frames,
        max_side=max_side,
        json_schema=json_schema,
        price_prompt=price_prompt,
        price_completion=price_completion,
        device=device,
        dtype=dtype,
        batch_size=batch_size,
    )
    built, prompt_id = build_labeller(ws, spec)
    flt = EpisodeFilter(
        splits=tuple(split or ()),
        task_types=tuple(task_type or ()),
        n_subtasks=tuple(n_subtasks or ()),
        datasets=tuple(dataset or ()),
        limit=limit,
        episode_ids=tuple(episode or ()),
    )
    config = RunConfig(
        name=name or default_run_name(built, unit, flt),
        unit=unit,
        filters=flt,
        concurrency=concurrency,
        use_cache=not no_cache,
        command=redact(" ".join(["rgvlm", *sys.argv[1:]])),  # a key inside --base-url is not stored
        flush_every=flush_every,
    )
    with progress_bar(f"labelling {config.name}") as bar:
        last = _run_with_bar(bar, label_run(ws, built, config, prompt_id))
        _summarize(ws, last)  # inside the bar: an error erases it


def _run_with_bar(bar: Progress, run: Iterator[RunProgress]) -> RunProgress:
    """Drive a label run, showing and reporting its progress; stops cleanly when cancelled."""
    from rgvlm_core.jobs import JobCancelled, cancel_requested, cooperative, report_progress

    task = bar.add_task("label", total=None, info="")
    last = None
    try:
        with cooperative():
            for last in run:
                info = f"ok {last.ok} failed {last.failed} cached {last.cached}"
                bar.update(task, completed=last.done, total=last.total, info=info)
                report_progress(last.done, last.total, info)
                if cancel_requested():
                    break
    finally:
        close = getattr(run, "close", None)
        if close is not None:
            close()  # closing the run commits the segments already finished, now
    if cancel_requested():
        raise JobCancelled()
    if last is None or last.total == 0:
        raise RGVLMError("no segments to label: the filters match no episode with steps")
    return last


def _summarize(ws: Workspace, last: RunProgress) -> None:
    """The run's one-line summary; an error when no step of the run has a label."""
    cost = f", cost {last.cost:.4f}" if last.cost is not None else ""
    console.print(
        f"run {last.run_id}: {last.done} of {last.total} segments labelled "
        f"({last.skipped} from an earlier attempt, "
        f"{last.cached} from the cache), {last.ok} ok, {last.failed} failed; {last.calls} model calls, "
        f"{last.prompt_tokens + last.completion_tokens} tokens{cost}",
        soft_wrap=True,
    )
    last_error = redact(last.last_error) if last.last_error else None
    if last.ok == 0 and _ok_steps(ws, last) == 0:
        why = f"; last failure: {last_error}" if last_error else ""
        raise RGVLMError(f"run {last.run_id}: no step got a label (every segment failed){why}")
    if last.failed and last_error:
        err_console.print(f"last failure: {last_error}", style="yellow", soft_wrap=True)
    if last.no_progress and last.last_progress_error:
        err_console.print(
            f"{last.no_progress} segments kept their scores without progress answers; last: "
            f"{redact(last.last_progress_error)}",
            style="yellow",
            soft_wrap=True,
            markup=False,
        )


def _ok_steps(ws: Workspace, last: RunProgress) -> int:
    """Steps of the run labelled ok, counting an earlier attempt's (read only when it matters)."""
    if last.skipped == 0:
        return 0  # this attempt did every segment, and none was ok
    from rgvlm_core.labeling.store import label_runs as runs

    reader = ws.reader()
    try:
        row = next((r for r in runs(reader) if r["run_id"] == last.run_id), None)
    finally:
        reader.close()
    return 0 if row is None else int(row["ok_steps"])


def label_runs(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """List label runs with their counts of ok and failed steps, tokens and cost."""
    from rgvlm_core.labeling.store import label_runs as runs

    reader = open_workspace(create=True).reader()
    rows = runs(reader)
    reader.close()
    if as_json:
        print_json(rows)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for col in (
        "run",
        "labeller",
        "model",
        "prompt",
        "segments",
        "ok steps",
        "failed steps",
        "mean score",
        "calls",
        "cost",
    ):
        left = col in ("run", "labeller", "model", "prompt")
        table.add_column(
            col, justify="left" if left else "right", overflow="fold", min_width=8 if left else None
        )
    for r in rows:
        mean = "-" if r["mean_score"] is None else f"{r['mean_score']:.2f}"
        cost = "-" if r["cost"] is None else f"{r['cost']:.4f}"
        table.add_row(
            Text(r["run_id"]),
            r["labeller"],
            Text(r["model"] or "-"),
            r["prompt_id"] or "-",
            str(r["segments"]),
            str(r["ok_steps"]),
            str(r["failed_steps"]),
            mean,
            str(r["calls"]),
            cost,
        )
    console.print(table)


@prompts_app.command("list")
def prompts_list(as_json: bool = typer.Option(False, "--json", help="Print a JSON list.")) -> None:
    """Prompt versions: the built-in default and the workspace's own."""
    from rgvlm_core.labeling.store import list_prompts

    reader = open_workspace(create=True).reader()
    versions = list_prompts(reader)
    reader.close()
    if as_json:
        print_json([v.to_row() for v in versions])
        return
    for v in versions:
        console.print(
            f"{v.prompt_id}  parent {v.parent or '-':12}  {v.created_at or 'built-in':25}  {v.note}",
            markup=False,
        )


@prompts_app.command("show")
def prompts_show(
    version: str = typer.Argument("default", help="Version id or prefix (default: the built-in default)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON (a file `prompts add` accepts)."),
) -> None:
    """Show a prompt version's templates."""
    from rgvlm_core.labeling.prompts import TEMPLATE_FIELDS
    from rgvlm_core.labeling.store import get_prompt

    reader = open_workspace(create=True).reader()
    v = get_prompt(reader, version)
    reader.close()
    if as_json:
        print_json(v.to_row())
        return
    console.print(f"prompt {v.prompt_id} (parent {v.parent or '-'}): {v.note}", markup=False)
    console.print(f"asks the progress question: {'yes' if v.ask_progress else 'no'}", markup=False)
    for f in TEMPLATE_FIELDS:
        console.print(f"\n[{f}]", style="bold", markup=False)
        console.print(getattr(v, f), markup=False, highlight=False)


@prompts_app.command("add")
def prompts_add(
    file: Path = typer.Argument(
        ...,
        help="JSON with the templates to change (any of stage1_system, stage1_user, frame_label, "
        "stage2_system, stage2_user, repair), and optionally ask_progress (true or false).",
    ),
    parent: str = typer.Option("default", "--parent", help="Version the new one derives from."),
    note: str = typer.Option(..., "--note", help="What changed and why."),
) -> None:
    """Add a prompt version derived from a parent (checked in the sandbox before it is stored)."""
    from rgvlm_core.labeling.prompts import TEMPLATE_FIELDS, new_version
    from rgvlm_core.labeling.store import get_prompt, save_prompt

    try:
        doc = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise UsageError(f"{file}: cannot read a JSON object of templates ({exc})") from None
    if not isinstance(doc, dict):
        raise UsageError(f"{file}: expected a JSON object of templates")
    changes = {k: v for k, v in doc.items() if k in TEMPLATE_FIELDS}
    ignored = set(doc) - set(TEMPLATE_FIELDS) - {"prompt_id", "parent", "note", "created_at", "ask_progress"}
    if ignored:
        raise UsageError(
            f"{file}: unknown fields {sorted(ignored)}; templates are {', '.join(TEMPLATE_FIELDS)}"
        )
    ask = doc.get("ask_progress")
    if ask is not None and not isinstance(ask, bool):
        raise UsageError(f"{file}: ask_progress must be true or false, got {ask!r}")
    ws = open_workspace(create=True)
    reader = ws.reader()
    base = get_prompt(reader, parent)
    reader.close()
    version = save_prompt(ws, new_version(base, changes, note, ask_progress=ask))
    console.print(f"added prompt {version.prompt_id} (parent {base.prompt_id})", markup=False)


def override(
    run: str = typer.Argument(..., help="Label run."),
    episode: str = typer.Argument(..., help="Episode id."),
    step: int = typer.Argument(..., help="Step t."),
    score: int = typer.Argument(..., help="Score 0..10."),
    reason: str = typer.Option(..., "--reason", help="Why (kept with the override)."),
) -> None:
    """Record a person's score for a step; it wins over the run's score when rewards are read."""
    from rgvlm_core.labeling.store import add_override

    add_override(open_workspace(create=False), run, episode, step, score, reason)
    console.print(f"override stored: {run} {episode} step {step} -> {score}", markup=False)


def register(app: typer.Typer) -> None:
    app.command()(label)
    app.command("label-runs")(label_runs)
    app.command()(override)
    app.add_typer(prompts_app, name="prompts")
