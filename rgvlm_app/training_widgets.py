"""Widgets of the Training page: the launch form, the page's jobs, live learning curves, a run's record.

Training never runs in the dashboard's process (it would load torch): the form only builds the
arguments of `rgvlm experiment` / `rgvlm train` and starts them as jobs, which return at once. Curves
and records are read back from the store, where the jobs write them as they go.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shlex
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pandas as pd
import streamlit as st

from rgvlm_app.text import md_code, md_escape
from rgvlm_core import compare
from rgvlm_core.audit import reference_run
from rgvlm_core.errors import RGVLMError
from rgvlm_core.jobs import Job, get_job, list_jobs, start_job
from rgvlm_core.labeling.rewards import DEFAULT_MAPPING, MAPPING_HELP, MAPPINGS
from rgvlm_core.rl.config import IQL_HELP, IQLConfig
from rgvlm_core.rl.runs import default_run_name
from rgvlm_core.workspace import StoreReader, Workspace

# -- session keys of the Training page, all here with their defaults --------------------------------
METHODS = "training.methods"  # reward sources (methods) of the experiment
NAME = "training.name"  # experiment name (prefilled, renewed after each launch)
CONDITIONS = "training.conditions"  # evaluation conditions
DATA_SPLITS = "training.data_splits"  # train on the episodes of these splits only (none chosen: every split)
JOBS = "training.jobs"  # ids of the jobs started from this page in this session
FLASH = "training.flash"  # what the last launch started, shown after the rerun (Markdown)
LAUNCH_S = "training.launch_s"  # seconds start_job took on the last launch
METRIC = "training.metric"  # the training metric plotted
CURVE_RUNS = "training.curve_runs"  # finished runs whose curves are plotted beside the jobs' runs
RUN = "training.run"  # the run whose stored record is shown (also in the URL as `run`)
_RENEW = "training.renew_name"
DEFAULTS: dict[str, Any] = {
    CONDITIONS: list(compare.CONDITIONS),
    DATA_SPLITS: [],
    JOBS: [],
    FLASH: None,
    LAUNCH_S: None,
}

HYPERPARAMETERS = ("expectile", "beta", "gamma", "lr", "hidden", "batch_size", "tau")
STEPS = {"expectile": 0.05, "beta": 0.5, "gamma": 0.01, "lr": 1e-4, "tau": 0.001}
FORMATS = {"lr": "%.2e", "tau": "%.4f", "gamma": "%.3f"}
ENCODERS = {
    "minilm": "minilm: all-MiniLM-L6-v2 sentence embeddings (the paper's choice)",
    "hash": "hash: a hashing encoder, no model files (quick tests)",
}
TRAINING_COMMANDS = ("experiment", "train")
REFRESH_S = 2.0  # how often the curves of running jobs are redrawn
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def key(name: str) -> str:
    """The widget key of a form field (`iql.beta` for a hyperparameter)."""
    return f"training.{name}"


def init_state() -> None:
    """Declare the page's keys; read the run of the URL once per session; renew the name after a launch."""
    for k, value in DEFAULTS.items():
        st.session_state.setdefault(k, list(value) if isinstance(value, list) else value)
    if st.session_state.pop(_RENEW, False) or NAME not in st.session_state:
        st.session_state[NAME] = f"exp-{dt.datetime.now():%Y%m%d-%H%M%S}"  # fresh: a new experiment
    if RUN not in st.session_state:
        st.session_state[RUN] = st.query_params.get("run")


def flash() -> None:
    if message := st.session_state.pop(FLASH, None):
        st.success(message, icon=":material/rocket_launch:")


def _text(value: Any) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


# -- the form -----------------------------------------------------------------------------------------
def reward_sources(reader: StoreReader) -> list[str]:
    """sparse, reference (if a reference run exists), rgvlm:RUN and sparse+rgvlm:RUN per label run, bc."""
    runs = [r["run_id"] for r in reader.rows("SELECT run_id FROM label_runs ORDER BY created_at")]
    reference = ["reference"] if reference_run(reader) else []
    return ["sparse", *reference, *(f"{h}:{r}" for r in runs for h in ("rgvlm", "sparse+rgvlm")), compare.BC]


@dataclass(frozen=True)
class TrainingForm:
    """The settings chosen on the page, and the commands they make."""

    methods: tuple[str, ...]
    lam: float
    vlm_reward: str
    seeds: int
    steps: int
    log_every: int
    iql: tuple[tuple[str, int | float], ...]  # the main hyperparameters, in HYPERPARAMETERS order
    encoder: str
    episodes_per_length: int
    conditions: tuple[str, ...]
    name: str
    data_splits: tuple[str, ...] = ()  # empty: every split

    def split_args(self) -> list[str]:
        return [a for split in self.data_splits for a in ("--data-split", split)]

    def iql_args(self, **changes: float) -> list[str]:
        return [a for n, v in self.iql for a in ("--iql", f"{n}={_text(changes.get(n, v))}")]

    def experiment_args(self) -> list[str]:
        """`rgvlm experiment ...`: every method x seed, trained then evaluated."""
        return [
            "experiment", "--methods", ",".join(self.methods), "--seeds", str(self.seeds),
            "--steps", str(self.steps), "--lambda", _text(self.lam), "--vlm-reward", self.vlm_reward,
            "-k", str(self.episodes_per_length),
            "--conditions", ",".join(self.conditions), "--encoder", self.encoder,
            "--log-every", str(self.log_every), "--name", self.name, *self.split_args(), *self.iql_args(),
        ]  # fmt: skip

    def train_args(self, method: str, seed: int, name: str) -> list[str]:
        """`rgvlm train ...` of one method and seed (bc = the sparse data with beta 0, as experiments do)."""
        bc = method == compare.BC
        return [
            "train", "--reward", "sparse" if bc else method, "--seed", str(seed), "--steps", str(self.steps),
            "--lambda", _text(self.lam), "--vlm-reward", self.vlm_reward, "--encoder", self.encoder,
            "--log-every", str(self.log_every), "--name", name, *self.split_args(),
            *(self.iql_args(beta=0.0) if bc else self.iql_args()),
        ]  # fmt: skip


def _problem(where: Any, field: str, message: str | None, problems: dict[str, str]) -> None:
    """Show a validation error right under its field, naming it, and remember it."""
    if message:
        problems[field] = f"{field}: {message}"
        where.error(problems[field], icon=":material/error:")


# The plain number fields: label, minimum, default, step, help.
NUMBERS: dict[str, tuple[str, int, int, int, str]] = {
    "seeds": ("Seeds", 1, 3, 1, "Training seeds 0..N-1 of every method."),
    "steps": ("Steps", 1, 5000, 500, IQL_HELP["steps"]),
    "log_every": ("Log every", 1, 250, 50, IQL_HELP["log_every"]),
    "episodes": ("Evaluation episodes per length", 1, 20, 5, "Per task length (1 to 6 subtasks) and "
                 "condition; every run meets the same tasks."),
}  # fmt: skip


def _number(where: Any, name: str) -> int:
    label, low, default, step, help_text = NUMBERS[name]
    return int(where.number_input(label, low, None, default, step, key=key(name), help=help_text))


def _methods(sources: list[str], problems: dict[str, str]) -> list[str]:
    if METHODS not in st.session_state:
        st.session_state[METHODS] = [m for m in ("sparse", "reference", compare.BC) if m in sources]
    st.session_state[METHODS] = [m for m in st.session_state[METHODS] if m in sources]
    methods = st.multiselect(
        "Reward sources", sources, key=METHODS, format_func=compare.method_label,
        help="One method each: the sparse task reward, the RG-VLM rewards of a label run (alone or added "
        "to the sparse one), or behaviour cloning (IQL's actor with beta = 0).",
    )  # fmt: skip
    _problem(st, "Reward sources", None if methods else "choose at least one", problems)
    return list(methods)


def _mapping(where: Any, methods: list[str], problems: dict[str, str]) -> str:
    """How the label runs' scores become rewards (labeling/rewards.py); shaping needs the sparse reward."""
    vlm = [m for m in methods if m not in ("sparse", compare.BC)]
    mapping = where.selectbox(
        "VLM reward", MAPPINGS, index=MAPPINGS.index(DEFAULT_MAPPING), key=key("vlm_reward"),
        disabled=not vlm, help="; ".join(f"{k}: {v}" for k, v in MAPPING_HELP.items()),
    )  # fmt: skip
    alone = [m for m in vlm if not m.startswith("sparse+")]
    message = None
    if mapping == "shaped" and alone:
        message = f"shaped reshapes the sparse reward: use it with sparse+ sources, not {', '.join(alone)}"
    _problem(where, "VLM reward", message, problems)
    return str(mapping)


def _iql_config(values: Mapping[str, int | float], steps: int, log_every: int) -> IQLConfig:
    """The form's IQL settings as an IQLConfig, each number as its field's type (int or float).

    A number_input returns an int or a float, as its default is; the cast makes that explicit.
    """
    defaults = IQLConfig()
    typed: dict[str, Any] = {name: type(getattr(defaults, name))(value) for name, value in values.items()}
    return replace(defaults, steps=steps, log_every=log_every, **typed)


def _hyperparameters(steps: int, log_every: int, problems: dict[str, str]) -> dict[str, int | float]:
    """The main IQL settings (IQLConfig defaults, IQL_HELP tooltips), checked by IQLConfig itself."""
    st.markdown("**IQL hyperparameters**")
    values: dict[str, int | float] = {}
    for col, name in zip(st.columns(len(HYPERPARAMETERS)), HYPERPARAMETERS, strict=True):
        default = getattr(IQLConfig(), name)
        values[name] = col.number_input(
            name, value=default, step=STEPS.get(name, 1), min_value=1 if isinstance(default, int) else None,
            format=FORMATS.get(name), key=key(f"iql.{name}"), help=IQL_HELP[name],
        )  # fmt: skip
    try:
        _iql_config(values, steps, log_every).validate()
    except RGVLMError as exc:
        problems["IQL hyperparameters"] = str(exc)  # names the setting and its allowed range
        st.error(md_escape(str(exc)), icon=":material/error:")
    return values


def data_splits(reader: StoreReader) -> list[str]:
    """The splits of the workspace's episodes that have steps (what training can read)."""
    rows = reader.rows("SELECT DISTINCT split FROM episodes WHERE NOT task_only ORDER BY split")
    return [str(r["split"]) for r in rows]


def training_form(sources: list[str], splits: Sequence[str] = ()) -> tuple[TrainingForm, dict[str, str]]:
    """Draw the settings; returns them with the problems found (field -> message), each shown inline."""
    problems: dict[str, str] = {}
    methods = _methods(sources, problems)
    m, a, b, c, d = st.columns(5)
    vlm_reward = _mapping(m, methods, problems)
    lam = a.number_input(
        "Lambda", value=1.0, step=0.1, key=key("lambda"), disabled=not any("+" in m for m in methods),
        help="Weight of the VLM reward in sparse+ methods: r = r_sparse + lambda r_vlm.",
    )  # fmt: skip
    _problem(a, "Lambda", "must not be negative" if lam < 0 else None, problems)
    seeds, steps, log_every = _number(b, "seeds"), _number(c, "steps"), _number(d, "log_every")
    iql = _hyperparameters(steps, log_every, problems)
    e, k, c, n = st.columns([1, 1, 1.3, 1])
    encoder = e.selectbox(
        "Instruction encoder", list(ENCODERS), key=key("encoder"), help="; ".join(ENCODERS.values())
    )
    episodes = _number(k, "episodes")
    conditions = c.multiselect("Evaluation conditions", list(compare.CONDITIONS), key=CONDITIONS,
                               help="Initial states: as generated (default) or randomised.")  # fmt: skip
    _problem(c, "Evaluation conditions", None if conditions else "choose at least one", problems)
    name = n.text_input("Experiment name", key=NAME, help="An existing experiment's name resumes it.").strip()
    rule = "letters, digits, '.', '_' or '-', starting with a letter or digit"
    _problem(n, "Experiment name", None if _NAME_RE.fullmatch(name) else rule, problems)
    chosen = st.multiselect(
        "Training data: splits", list(splits), key=DATA_SPLITS, placeholder="every split",
        help="Train on the episodes of these splits only (none chosen: every split). On ALFRED data imported "
        "with --replay, leave valid_seen and valid_unseen out: their tasks are where the runs are evaluated.",
    )  # fmt: skip
    form = TrainingForm(
        tuple(methods), float(lam), vlm_reward, seeds, steps, log_every, tuple(iql.items()), str(encoder),
        episodes, tuple(conditions), name, tuple(chosen),
    )  # fmt: skip
    return form, problems


# -- launching ----------------------------------------------------------------------------------------
def launch(workspace: Workspace, args: list[str], name: str) -> None:
    """Start a job (start_job only spawns the process) and rerun the page to show it."""
    started = time.perf_counter()
    try:
        job = start_job(workspace, args, name=name)
    except RGVLMError as exc:
        st.error(md_escape(str(exc)))
        return
    st.session_state[LAUNCH_S] = seconds = time.perf_counter() - started
    st.session_state[JOBS] = [*st.session_state[JOBS], job.job_id]
    command = md_code(shlex.join(["rgvlm", *args]))
    st.session_state[FLASH] = f"Started job {job.job_id} in {seconds:.2f} s: {command}"  # Markdown
    st.session_state[_RENEW] = True
    st.rerun()


def launch_buttons(
    workspace: Workspace, form: TrainingForm, problems: dict[str, str], sources: list[str]
) -> None:
    """The experiment's command and its Launch button; a single `rgvlm train` run in an expander."""
    st.code(shlex.join(["rgvlm", *form.experiment_args()]), language=None, wrap_lines=True)
    if st.button("Launch experiment", type="primary", key=key("launch"), icon=":material/rocket_launch:"):
        if problems:
            st.error(f"Not started: fix {', '.join(problems)} first.", icon=":material/block:")
        else:
            launch(workspace, form.experiment_args(), f"experiment {form.name}")
    with st.expander("Single run (`rgvlm train`: trained only, not evaluated)"):
        a, b = st.columns(2)
        source = a.selectbox(
            "Reward source", sources, key=key("single.source"), format_func=compare.method_label
        )
        seed = int(b.number_input("Seed", 0, None, 0, key=key("single.seed")))
        if st.button("Launch single run", key=key("launch_single")):
            blocking = {f: m for f, m in problems.items() if f in ("Lambda", "IQL hyperparameters")}
            if blocking:
                st.error(f"Not started: fix {', '.join(blocking)} first.", icon=":material/block:")
            else:
                name = default_run_name(str(source), seed)
                launch(workspace, form.train_args(str(source), seed, name), f"train {name}")


def training_jobs(workspace: Workspace, newest: int = 3) -> list[Job]:
    """Training jobs worth watching: the newest few, every running one, and this session's."""
    mine = set(st.session_state[JOBS])
    jobs = [j for j in list_jobs(workspace, 100) if j.args and j.args[0] in TRAINING_COMMANDS]
    return [j for i, j in enumerate(jobs) if i < newest or j.status == "running" or j.job_id in mine]


# -- finished runs, live while a job trains ----------------------------------------------------------
def refresh_every(jobs: list[Job]) -> float | None:
    """REFRESH_S while any of the jobs runs; None (no timer) once none does."""
    return REFRESH_S if any(j.status == "running" for j in jobs) else None


def finished_runs(reader: StoreReader, jobs: list[Job]) -> None:
    """The finished runs and a run's record, re-read every REFRESH_S while one of `jobs` runs.

    An experiment stores each run as it finishes; a timed fragment shows them then without
    redrawing the page (the form, the curves) each time. When the last job ends, the page is run
    again once, which draws this without a timer.
    """
    every = refresh_every(jobs)
    st.fragment(run_every=every)(_finished_runs)(reader, tuple(j.job_id for j in jobs), every is not None)


def _finished_runs(reader: StoreReader, job_ids: tuple[str, ...], live: bool) -> None:
    runs = compare.runs_table(reader)
    if runs.empty:
        st.info(
            "No finished training run yet: launch an experiment above, or run `rgvlm experiment` in a "
            "terminal."
        )
    else:
        _runs_and_record(reader, runs)
    if live and refresh_every([get_job(reader.workspace, j) for j in job_ids]) is None:
        st.rerun()  # the last job ended: redraw the page (its runs, no more timer)


def _runs_and_record(reader: StoreReader, runs: pd.DataFrame) -> None:
    st.dataframe(runs, hide_index=True, key="training.runs_table")
    run = run_select(runs)
    experiment = runs.loc[runs["run_id"] == run, "experiment"].iloc[0]
    if isinstance(experiment, str):
        st.page_link(
            "pages/compare.py",
            label=f"Compare the methods of {md_escape(experiment)}",
            icon=":material/leaderboard:",
            query_params={"experiment": experiment},
        )
    st.caption(
        "Exactly what the run stored: its IQL settings, reward source and data, dataset figures, provenance."
    )
    run_record(reader, run)


# -- a run's record ----------------------------------------------------------------------------------
def shown_value(value: Any) -> str:
    """How a stored value is written in the record tables: text as is, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value)


def flatten(doc: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """`{"a": {"b": 1}}` -> [("a.b", 1)]: nested settings as one list of fields."""
    out: list[tuple[str, Any]] = []
    for k, v in doc.items():
        out += flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [(f"{prefix}{k}", v)]
    return out


RECORD = {
    "config": "IQL settings",
    "spec": "Reward and data",
    "dataset": "Dataset",
    "provenance": "Provenance",
}


def run_select(runs: pd.DataFrame) -> str:
    """The run whose record is shown; kept in the URL (`?run=`) so a link reopens it."""
    ids = list(runs["run_id"])
    if st.session_state.get(RUN) not in ids:
        st.session_state[RUN] = ids[-1]
    run = str(st.selectbox("Run", ids, key=RUN))
    st.query_params["run"] = run
    return run


def run_record(reader: StoreReader, run_id: str) -> dict[str, dict[str, Any]]:
    """Show exactly what the run stored (config, spec, dataset, provenance); returns it parsed."""
    row = reader.rows(f"SELECT {', '.join(RECORD)}, checkpoint FROM train_runs WHERE run_id = ?", [run_id])[0]
    record = {column: json.loads(row[column] or "{}") for column in RECORD}
    for tab, column in zip(st.tabs(list(RECORD.values())), RECORD, strict=True):
        fields = flatten(record[column])
        table = pd.DataFrame({"field": [f for f, _ in fields], "value": [shown_value(v) for _, v in fields]})
        if column == "config":
            table["help"] = [IQL_HELP.get(f, "") for f in table["field"]]
        tab.dataframe(table, hide_index=True, key=key(f"record.{column}"), width="stretch")
    with st.expander("Stored JSON"):
        st.json({"checkpoint": row["checkpoint"], **record}, expanded=False)
    return record
