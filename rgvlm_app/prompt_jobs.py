"""The Prompts page's label jobs: an LVLM test on one episode, and relabelling the workspace.

Both start `rgvlm label ...` as a background job (never a thread in the app); the command is shown
before it starts, so the same run can be repeated from a terminal.
"""

from __future__ import annotations

import functools
import os
import shlex
from dataclasses import dataclass
from typing import Any

import streamlit as st

from rgvlm_app import prompt_datasets as pd_
from rgvlm_app import prompt_widgets as pw
from rgvlm_app.text import md_code, md_escape
from rgvlm_core.catalog import EpisodeFilter, workspace_counts
from rgvlm_core.errors import RGVLMError
from rgvlm_core.jobs import start_job
from rgvlm_core.labeling.factory import BASE_URL_ENV, LabelSpec
from rgvlm_core.labeling.prompts import PromptVersion
from rgvlm_core.redact import redact
from rgvlm_core.workspace import StoreReader, Workspace


@dataclass(frozen=True)
class BackendChoice:
    """The LVLM settings of a job; the API key stays in the environment, named by `api_key_env`."""

    backend: str
    model: str
    base_urls: tuple[str, ...]
    api_key_env: str
    concurrency: int
    prompt_id: str

    def problems(self) -> list[str]:
        out = []
        if not self.model:
            out.append("Name the model (as the server knows it, or a local folder for hf).")
        if self.backend == "openai" and not self.base_urls:
            out.append("Give the server's base URL, e.g. http://127.0.0.1:8000/v1 for vLLM.")
        return out

    @property
    def urls_hold_secrets(self) -> bool:
        """A base URL with a credential in it (`http://user:KEY@host/v1`, `?api_key=...`)."""
        return any(redact(url) != url for url in self.base_urls)

    def args(self) -> list[str]:
        """The command-line options; base URLs holding a credential travel in `env()` instead, since a
        command line is visible to every user of the machine (`ps`) while the job runs."""
        out = ["--labeller", "lvlm", "--backend", self.backend, "--model", self.model]
        if not self.urls_hold_secrets:
            for url in self.base_urls:
                out += ["--base-url", url]
        out += ["--api-key-env", self.api_key_env, "--concurrency", str(self.concurrency)]
        return [*out, "--prompt", self.prompt_id]

    def env(self) -> dict[str, str]:
        """What the job's environment adds: the base URLs when they hold a credential (RGVLM_BASE_URL)."""
        return {BASE_URL_ENV: ",".join(self.base_urls)} if self.urls_hold_secrets else {}


def backend_settings(prefix: str, prompt_id: str) -> BackendChoice:
    """Backend, model, base URLs, concurrency; says whether the API key variable is set (never its value)."""
    spec = LabelSpec()
    left, right = st.columns(2)
    backend = str(left.selectbox("Backend", ["openai", "hf"], key=pw.setting_key(prefix, "backend")))
    model = right.text_input(
        "Model", value=os.environ.get("RGVLM_MODEL", ""), key=pw.setting_key(prefix, "model")
    ).strip()
    urls = ""
    if backend == "openai":
        urls = left.text_input(
            "Base URL(s), comma-separated",
            value=os.environ.get(BASE_URL_ENV, ""),
            key=pw.setting_key(prefix, "base_url"),
        )
    concurrency = right.number_input(
        "Concurrency", 1, 256, spec.concurrency, key=pw.setting_key(prefix, "concurrency")
    )
    key_env = left.text_input(
        "API key environment variable", value=spec.api_key_env, key=pw.setting_key(prefix, "key_env")
    ).strip()
    if key_env:
        state = "is set" if os.environ.get(key_env) else "is not set (fine for a local server)"
        right.caption(f"{md_code(key_env)} {state} in the dashboard's environment; jobs read it from there.")
    return BackendChoice(
        backend=backend,
        model=model,
        base_urls=tuple(u.strip() for u in urls.split(",") if u.strip()),
        api_key_env=key_env or spec.api_key_env,
        concurrency=int(concurrency),
        prompt_id=prompt_id,
    )


def start(workspace: Workspace, args: list[str], name: str, env: dict[str, str] | None = None) -> None:
    """Start `rgvlm label ...` as a job and remember it for the jobs panel."""
    try:
        job = start_job(workspace, args, name=name, env=env)
    except RGVLMError as exc:
        pw.show_error(exc)
        return
    st.session_state[pw.JOBS] = [*st.session_state[pw.JOBS], job.job_id]
    st.success(f"Started job {job.job_id}: {md_escape(job.command)}")  # as recorded: secrets masked


def lvlm_test(workspace: Workspace, prompt: PromptVersion, episode_id: str) -> None:
    """Test the prompt on one episode with an LVLM: a label job restricted to that episode."""
    choice = backend_settings("test", prompt.prompt_id)
    if not st.button("Start a test job on this episode", key="prompts.test_lvlm"):
        return
    for problem in choice.problems():
        pw.show_error(problem)
    if choice.problems():
        return
    name = f"test-{prompt.prompt_id}-{episode_id}"
    args = ["label", *choice.args(), "--name", name, "--episode", episode_id]
    start(workspace, args, name, choice.env())


def filter_args(flt: EpisodeFilter) -> list[str]:
    """The `rgvlm label` options selecting the same episodes as `flt`."""
    out: list[str] = []
    for flag, values in (
        ("--dataset", flt.datasets),
        ("--split", flt.splits),
        ("--task-type", flt.task_types),
        ("--n-subtasks", flt.n_subtasks),
    ):
        for value in values:
            out += [flag, str(value)]
    return out + (["--limit", str(flt.limit)] if flt.limit else [])


@st.cache_data(show_spinner=False, max_entries=8)
def _filter_options(_reader: StoreReader, root: str, snapshot: int) -> dict[str, list[Any]]:
    counts = workspace_counts(_reader)
    return {k: list(counts[f"by_{k}"]) for k in ("split", "task_type", "n_subtasks")}


def filter_options(reader: StoreReader) -> dict[str, list[Any]]:
    """The splits, task types and numbers of subtasks the workspace holds (cached per snapshot)."""
    return _filter_options(reader, str(reader.workspace.root), reader.workspace.snapshot().version)


# (workspace_counts group, label, setting key) of the relabel form's multiselects
RELABEL_FILTERS = (
    ("split", "Splits", "splits"),
    ("task_type", "Task types", "task_types"),
    ("n_subtasks", "Number of subtasks", "n_subtasks"),
)


def _relabel_filter(reader: StoreReader) -> EpisodeFilter:
    """Which episodes to relabel: datasets (when several), splits, task types, subtask counts, N."""
    options = filter_options(reader)
    datasets = pd_.relabel_datasets(pd_.dataset_scopes(reader))
    key = functools.partial(pw.setting_key, "relabel")
    chosen: dict[str, tuple[Any, ...]] = {}
    for column, (name, label, suffix) in zip(st.columns(3), RELABEL_FILTERS, strict=True):
        pw.keep_valid_many(key(suffix), options[name])
        chosen[name] = tuple(column.multiselect(label, options[name], key=key(suffix)))
    limit = int(st.number_input("At most N episodes (0: all)", 0, None, 0, key=key("limit")))
    return EpisodeFilter(
        datasets=datasets,
        splits=chosen["split"],
        task_types=chosen["task_type"],
        n_subtasks=tuple(int(k) for k in chosen["n_subtasks"]),
        limit=limit or None,
    )


def _method(prompt: PromptVersion) -> tuple[str, list[str], BackendChoice | None]:
    """The labeller radio and its settings: (labeller, its command-line options, LVLM choice or None)."""
    labeller = str(
        st.radio(
            "Labeller",
            ["reference", "lvlm"],
            horizontal=True,
            key=pw.setting_key("relabel", "labeller"),
            format_func=lambda x: {
                "reference": "reference (ground truth)",
                "lvlm": "LVLM (two-stage RG-VLM)",
            }[x],
        )
    )
    if labeller == "reference":
        st.info(pw.REFERENCE_IS_NOT_A_VLM + " Noise mimics an imperfect model.")
        noise = st.slider("Noise", 0.0, 1.0, 0.0, 0.05, key=pw.setting_key("relabel", "noise"))
        seed = st.number_input("Noise seed", 0, 2**31 - 1, 0, key=pw.setting_key("relabel", "seed"))
        return (
            labeller,
            ["--labeller", "reference", "--noise", f"{noise:g}", "--noise-seed", str(int(seed))],
            None,
        )
    choice = backend_settings("relabel", prompt.prompt_id)
    return labeller, choice.args(), choice


def relabel_form(reader: StoreReader, prompt: PromptVersion) -> None:
    """Relabel the workspace, or a filtered part of it, as a job; says what the scope holds first."""
    labeller, method, choice = _method(prompt)
    flt = _relabel_filter(reader)
    b, c = st.columns(2)
    unit = str(b.selectbox("Query unit", ["subtask", "episode"], key=pw.setting_key("relabel", "unit")))
    name = c.text_input("Run name (empty: derived from the settings)", key=pw.setting_key("relabel", "name"))
    name = name.strip()
    pd_.scope_summary(pd_.dataset_scopes(reader, flt), lvlm=choice is not None)
    args = ["label", *method, "--unit", unit, *filter_args(flt), *(["--name", name] if name else [])]
    st.caption("Command")
    st.code(shlex.join(["rgvlm", *args]), language=None, wrap_lines=True)
    if not st.button("Start relabelling", type="primary", key="prompts.relabel_start"):
        return
    problems = choice.problems() if choice else []
    for problem in problems:
        pw.show_error(problem)
    if not problems:
        start(reader.workspace, args, name or f"relabel ({labeller})", choice.env() if choice else None)
