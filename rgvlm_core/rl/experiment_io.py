"""Moving an experiment's finished runs between workspaces: `rgvlm export experiment` and `rgvlm merge`.

A grid of 160 IQL runs is hours of CPU; users split it over machines (or over days on one machine
whose workspace does not last) and need the parts back in one comparison. An export is a folder:
`experiment.json` (what it holds and what it was computed from) and one Parquet file per table
(the plan, the finished runs, their metrics, evaluations and curves); checkpoints only on request,
as a comparison needs none of them.

Merging refuses, naming the value, anything that would compare runs that are not comparable: a plan
whose settings differ from this workspace's plan of the same experiment, or training data that is not
the same as here. Data is compared by content (`data_digest`: states, actions, rewards, endings, masks
and instruction texts of each method's dataset, built here as an experiment would build it), so
runs trained on other labels or other episodes are refused even when every name matches. A run
already here (same run id, or the same method and seed finished here) is kept as it is and counted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

import rgvlm_core
from rgvlm_core.errors import RGVLMError, UsageError
from rgvlm_core.export.files import check_target, replace_dir, temp_beside
from rgvlm_core.rl.runs import code_commit
from rgvlm_core.workspace import StoreReader, Workspace
from rgvlm_core.workspace.schema import (
    EVAL_CURVES,
    EVAL_RESULTS,
    EXPERIMENT_RUNS,
    EXPERIMENTS,
    TRAIN_METRICS,
    TRAIN_RUNS,
)

FORMAT = "rgvlm-experiment-export/1"
MANIFEST = "experiment.json"
CHECKPOINTS = "checkpoints"
# Tables keyed by run id, in the order a merge commits them (experiment_runs last: a run counts as
# finished only once everything it stands for is stored).
RUN_TABLES = (TRAIN_RUNS, TRAIN_METRICS, EVAL_RESULTS, EVAL_CURVES)
# Settings of a plan that never change what a run computes, so they may differ between the parts
IGNORED = {("iql", "seed"), ("iql", "device"), ("iql", "log_every"), ("iql", "compile"), ("vlm_reward",)}
ARRAYS = (
    "states",
    "next_states",
    "instruction_ids",
    "next_instruction_ids",
    "actions",
    "rewards",
    "dones",
    "masks",
)


@dataclass
class MergeReport:
    """What a merge did: runs added, runs kept as they were here, and notes worth reading."""

    experiment_id: str
    added: list[dict[str, Any]] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment_id,
            "added": self.added,
            "kept": self.kept,
            "notes": self.notes,
        }


def data_digest(arrays: Any) -> str:
    """A digest of a dataset's content (24 hex digits), independent of where and how it was built.

    The instruction embeddings are left out (another machine's BLAS may round MiniLM differently);
    the instruction texts and which transition uses which are in.
    """
    h = hashlib.sha256()
    for name in ARRAYS:
        a = np.ascontiguousarray(getattr(arrays, name))
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.view(np.uint8).data)
    h.update(json.dumps(list(arrays.instructions)).encode())
    return h.hexdigest()[:24]


def plan_settings(reader: StoreReader, experiment_id: str) -> dict[str, Any] | None:
    """The newest stored plan's settings of an experiment (None when it has none)."""
    rows = reader.rows(
        "SELECT config FROM experiments WHERE experiment_id = ? ORDER BY created_at DESC LIMIT 1",
        [experiment_id],
    )
    return json.loads(rows[0]["config"]) if rows else None


def plan_differences(here: dict[str, Any], there: dict[str, Any]) -> list[str]:
    """Settings that make two plans of one experiment compute different runs, as `key: a vs b`.

    Sources are compared only for methods both plans name (a part may add methods); settings that
    never change a run (the seed each run replaces, the device, how often metrics are logged) are not.
    """
    out = []
    for key in sorted(set(here) | set(there)):
        if key == "sources":
            a, b = here.get(key) or {}, there.get(key) or {}
            out += [f"source of {m}: {a[m]} vs {b[m]}" for m in sorted(set(a) & set(b)) if a[m] != b[m]]
        elif key == "iql":
            a, b = here.get(key) or {}, there.get(key) or {}
            out += [f"iql.{k}: {a.get(k)} vs {b.get(k)}" for k in sorted(set(a) | set(b))
                    if ("iql", k) not in IGNORED and a.get(k) != b.get(k)]  # fmt: skip
        elif (key,) not in IGNORED and here.get(key) != there.get(key):
            out.append(f"{key}: {here.get(key)} vs {there.get(key)}")
    return out


def source_digests(
    reader: StoreReader, settings: dict[str, Any], sources: Iterable[str]
) -> dict[str, dict[str, Any]]:
    """`data_digest` of each source's dataset, built (or read from the cache) as the experiment does."""
    from rgvlm_core.catalog import EpisodeFilter
    from rgvlm_core.rl.dataset import parse_reward_source
    from rgvlm_core.rl.dataset_cache import cached_dataset
    from rgvlm_core.rl.encoder import make_encoder

    encoder = make_encoder(settings.get("encoder", "minilm"))
    flt = EpisodeFilter(splits=tuple(settings.get("data_splits") or ()))
    gamma = float((settings.get("iql") or {}).get("gamma", 0.97))
    out = {}
    for text in sorted(set(sources)):
        source = parse_reward_source(text, reader, float(settings.get("lam", 1.0)), gamma=gamma)
        arrays = cached_dataset(reader, source, encoder, flt, failed=settings.get("failed", "sparse"))
        out[text] = {
            "digest": data_digest(arrays),
            "transitions": len(arrays),
            "episodes": arrays.info.get("episodes"),
        }
    return out


def _runs_of(reader: StoreReader, experiment_id: str) -> list[dict[str, Any]]:
    return reader.rows(
        "SELECT method, seed, run_id FROM experiment_runs WHERE experiment_id = ? ORDER BY method, seed",
        [experiment_id],
    )


def export_experiment(
    workspace: Workspace,
    experiment_id: str,
    out: Path,
    *,
    checkpoints: bool = False,
    force: bool = False,
    command: str = "",
    progress: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Write the experiment's finished runs to the folder `out`; returns the manifest.

    Written beside `out` and renamed into place, so a killed export leaves no half-written folder;
    `force` replaces only an earlier experiment export.
    """
    check_target(out, force, MANIFEST, FORMAT, "an experiment export")
    reader = workspace.reader()
    try:
        runs = _runs_of(reader, experiment_id)
        if not runs:
            known = sorted({r["experiment_id"] for r in reader.rows("SELECT experiment_id FROM experiments")})
            raise UsageError(
                f"experiment {experiment_id!r} has no finished run to export; known: "
                f"{', '.join(known) or '(none yet)'}"
            )
        settings = plan_settings(reader, experiment_id) or {}
        run_ids = [r["run_id"] for r in runs]
        sources = {r["method"]: (settings.get("sources") or {}).get(r["method"], "sparse") for r in runs}
        progress("digesting the training data of each method")
        data = source_digests(reader, settings, sources.values())
        tables = {
            EXPERIMENTS.name: reader.query(
                "SELECT * FROM experiments WHERE experiment_id = ? ORDER BY created_at DESC LIMIT 1",
                [experiment_id],
            ),
            # the runs listed above only: another may finish while the export reads (the reader follows
            # new snapshots), and its other rows would be missing
            EXPERIMENT_RUNS.name: reader.query(
                "SELECT * FROM experiment_runs WHERE experiment_id = ? AND run_id IN "
                "(SELECT unnest(?::VARCHAR[]))",
                [experiment_id, run_ids],
            ),
        }
        for spec in RUN_TABLES:
            tables[spec.name] = reader.query(
                f"SELECT * FROM {spec.name} WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [run_ids]
            )
        paths = [r["checkpoint"] for r in tables[TRAIN_RUNS.name].to_pylist() if r["checkpoint"]]
        commits = _run_commits(tables[TRAIN_RUNS.name])
    finally:
        reader.close()
    manifest = {
        "format": FORMAT,
        "experiment": experiment_id,
        "runs": runs,
        "sources": sources,
        "data": data,
        "rows": {name: t.num_rows for name, t in tables.items()},
        "checkpoints": checkpoints,
        "code": {"rgvlm": rgvlm_core.__version__, "exported_at": code_commit(), "runs": commits},
        "exported_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
    }
    tmp = temp_beside(out, "export")
    try:
        for name, table in tables.items():
            pq.write_table(table, tmp / f"{name}.parquet", compression="zstd")
        if checkpoints:
            progress(f"copying {len(paths)} checkpoints")
            for rel in paths:
                source = workspace.root / rel
                if not source.is_file():
                    raise RGVLMError(f"checkpoint {source} is missing: export without --checkpoints")
                target = tmp / CHECKPOINTS / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, default=str), encoding="utf-8")
        replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def read_export(folder: Path) -> tuple[dict[str, Any], dict[str, pa.Table]]:
    """An export's manifest and tables, checked: a clear error naming the file or field otherwise."""
    path = folder / MANIFEST
    if not folder.is_dir():
        raise UsageError(f"{folder}: no such folder (give the folder `rgvlm export experiment` wrote)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError:
        raise UsageError(f"{path}: missing; {folder} is not an experiment export") from None
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise UsageError(f"{path}: format {found!r}, expected {FORMAT!r}")
    for key in ("experiment", "runs", "sources", "data", "rows"):
        if key not in manifest:
            raise UsageError(f"{path}: field {key!r} is missing")
    tables = {}
    for spec in (EXPERIMENTS, EXPERIMENT_RUNS, *RUN_TABLES):
        file = folder / f"{spec.name}.parquet"
        try:
            table = pq.read_table(file)
        except (OSError, pa.ArrowInvalid) as exc:
            raise UsageError(f"{file}: cannot be read ({exc})") from None
        missing = [n for n in spec.schema.names if n not in table.column_names]
        if missing:
            raise UsageError(f"{file}: column(s) {', '.join(missing)} missing")
        expected = manifest["rows"].get(spec.name)
        if expected is not None and table.num_rows != expected:
            raise UsageError(f"{file}: {table.num_rows} rows, the manifest says {expected} (truncated?)")
        tables[spec.name] = table.select(spec.schema.names)
    return manifest, tables


def merge_experiment(
    workspace: Workspace, folder: Path, progress: Callable[[str], None] = lambda _: None
) -> MergeReport:
    """Add an export's runs to this workspace's experiment of the same name (see the module doc).

    Every check runs before anything is written, and everything is written in one commit: a refused
    or interrupted merge leaves the workspace as it was.
    """
    manifest, tables = read_export(folder)
    experiment_id = str(manifest["experiment"])
    report = MergeReport(experiment_id)
    plan = tables[EXPERIMENTS.name].to_pylist()
    if not plan:
        raise UsageError(f"{folder / 'experiments.parquet'}: holds no plan of {experiment_id!r}")
    theirs = json.loads(plan[0]["config"])
    with workspace.lock(f"merge-{experiment_id}"):
        reader = workspace.reader()
        try:
            ours = plan_settings(reader, experiment_id)
            if ours is not None:
                differ = plan_differences(ours, theirs)
                if differ:
                    raise UsageError(
                        f"{folder}: experiment {experiment_id!r} here was planned otherwise (here vs the "
                        f"export): {'; '.join(differ)}"
                    )
            done_here = {(r["method"], int(r["seed"])): r["run_id"] for r in _runs_of(reader, experiment_id)}
            known_ids = {r["run_id"] for r in reader.rows("SELECT run_id FROM train_runs")}
            new = []
            for run in manifest["runs"]:
                key = (run["method"], int(run["seed"]))
                if key in done_here or run["run_id"] in known_ids:
                    report.kept.append({**run, "here": done_here.get(key, run["run_id"])})
                else:
                    new.append(run)
            progress("checking that this workspace builds the same training data")
            _check_data(reader, folder, manifest, theirs, {manifest["sources"][r["method"]] for r in new})
        finally:
            reader.close()
        if not new:
            return report
        new_ids = [r["run_id"] for r in new]
        other = [c for c in _run_commits(_rows_of(tables[TRAIN_RUNS.name], new_ids)) if c != code_commit()]
        if other:
            report.notes.append(
                f"runs computed at {', '.join(other)}; this code is at "
                f"{code_commit() or 'an unknown commit'} (merged as they are; rerun one to check they agree)"
            )
        _copy_checkpoints(workspace, folder, manifest, tables[TRAIN_RUNS.name], new_ids)
        out = {spec.name: _rows_of(tables[spec.name], new_ids) for spec in RUN_TABLES}
        runs = tables[EXPERIMENT_RUNS.name]
        out[EXPERIMENT_RUNS.name] = _rows_of(runs.filter(pc.equal(runs["experiment_id"], experiment_id)),
                                             new_ids)  # fmt: skip
        if ours is None:
            out[EXPERIMENTS.name] = tables[EXPERIMENTS.name].slice(0, 1)
        workspace.commit(out, message=f"merge {len(new)} runs of {experiment_id}")
    report.added = new
    return report


def _run_commits(runs: pa.Table) -> list[str]:
    """The commits that computed these runs, from their provenance ("unrecorded" before it was kept)."""
    found = set()
    for text in runs.column("provenance").to_pylist():
        found.add(str((json.loads(text or "{}") or {}).get("commit") or "unrecorded"))
    return sorted(found)


def _rows_of(table: pa.Table, run_ids: list[str]) -> pa.Table:
    return table.filter(pc.is_in(table["run_id"], pa.array(run_ids)))


def _check_data(
    reader: StoreReader, folder: Path, manifest: dict[str, Any], settings: dict[str, Any], sources: set[str]
) -> None:
    """Refuse when a source's training data here is not the data the export's runs were trained on."""
    if not sources:
        return
    try:
        here = source_digests(reader, settings, sources)
    except RGVLMError as exc:
        raise UsageError(f"{folder}: this workspace cannot build the runs' training data: {exc}") from None
    for source in sorted(sources):
        theirs = manifest["data"].get(source)
        if theirs is None:
            raise UsageError(f"{folder / MANIFEST}: field data[{source!r}] is missing")
        if here[source]["digest"] != theirs["digest"]:
            raise UsageError(
                f"{folder}: the training data of {source} differs here ({here[source]['transitions']} "
                f"transitions of {here[source]['episodes']} episodes, digest {here[source]['digest']}) from "
                f"the export's ({theirs['transitions']} of {theirs['episodes']}, {theirs['digest']}): import "
                "the same episodes and label runs first"
            )


def _copy_checkpoints(
    workspace: Workspace, folder: Path, manifest: dict[str, Any], runs: pa.Table, run_ids: list[str]
) -> None:
    if not manifest.get("checkpoints"):
        return
    for row in _rows_of(runs, run_ids).to_pylist():
        rel = row["checkpoint"]
        if not rel:
            continue
        source, target = folder / CHECKPOINTS / rel, workspace.root / rel
        if not source.is_file():
            raise UsageError(f"{source}: missing, though {folder / MANIFEST} says checkpoints are included")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


__all__ = [
    "FORMAT",
    "MergeReport",
    "data_digest",
    "export_experiment",
    "merge_experiment",
    "plan_differences",
    "plan_settings",
    "read_export",
    "source_digests",
]
