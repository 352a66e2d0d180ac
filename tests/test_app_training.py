"""The Training page: reward sources, launching real experiment and train jobs, live curves, records."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app import training_widgets as tw
from rgvlm_core.charts_compare import method_colour, method_colours
from rgvlm_core.compare import BC, method_label, methods_in_order, runs_table
from rgvlm_core.jobs import Job, cancel_job, get_job, list_jobs
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT
from rgvlm_core.labeling.reference import NoiseConfig, ReferenceLabeller
from rgvlm_core.labeling.runs import RunConfig, label_run
from rgvlm_core.rl.config import IQL_HELP, IQLConfig
from rgvlm_core.sample import label_sample
from rgvlm_core.workspace import Workspace
from tests.app_support import open_page
from tests.labeling_support import sample_workspace

ROOT = Path(__file__).resolve().parents[1]
JOB_TIMEOUT_S = 300


def _training_page(monkeypatch: pytest.MonkeyPatch, ws: Workspace) -> AppTest:
    return open_page(monkeypatch, ws.root, "training", timeout=60)


def _fill(at: AppTest, methods: list[str], **numbers: float) -> None:
    """Choose the methods and set number fields by name (`iql.beta=3.0`: use iql_beta=3.0)."""
    at.multiselect(key=tw.METHODS).set_value(methods)
    for name, value in numbers.items():
        at.number_input(key=tw.key(name.replace("iql_", "iql."))).set_value(value)
    at.run()


def _wait(ws: Workspace, job_id: str) -> Job:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job = get_job(ws, job_id)
        if job.status != "running":
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} still running after {JOB_TIMEOUT_S} s: {get_job(ws, job_id)}")


def _curve_traces(at: AppTest) -> list[dict]:
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert charts, "no learning-curve chart"
    return charts[0]["data"]


def _numbers(values: dict | list) -> list[float]:
    """A Plotly trace's values, as plain numbers (figures encode arrays as typed binary data)."""
    if isinstance(values, list):
        return values
    return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]).tolist()


def _records(at: AppTest) -> dict[str, dict[str, str]]:
    """The record tables shown (config, spec, dataset, provenance) as field -> value."""
    tables = [df.value for df in at.dataframe if list(df.value.columns[:2]) == ["field", "value"]]
    return {
        column: dict(zip(t["field"], t["value"], strict=True))
        for column, t in zip(tw.RECORD, tables, strict=True)
    }


@pytest.fixture()
def labelled_ws(sample_ws: Workspace) -> tuple[Workspace, str]:
    reference, _ = label_sample(sample_ws)
    return sample_ws, reference


def _label_run_with_a_prompt(ws: Workspace) -> str:
    """A label run that records a prompt version, as an LVLM run does (scored here from ground truth)."""
    labeller = ReferenceLabeller(NoiseConfig.from_level(0.2))
    config = RunConfig(name="prompted", command="(test)")
    for _ in label_run(ws, labeller, config, prompt_id=DEFAULT_PROMPT.prompt_id):
        pass
    return config.name


@pytest.fixture(scope="module")
def finished(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Workspace, str, Job, AppTest, float]]:
    """One tiny experiment launched from the page and run to the end (shared: it takes a while)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RGVLM_NO_SAMPLE", "1")
        ws = sample_workspace(tmp_path_factory.mktemp("training"), tmp_path_factory.getbasetemp())
        labels = _label_run_with_a_prompt(ws)
        at = _training_page(mp, ws)
        _fill(at, [f"sparse+rgvlm:{labels}", BC], seeds=1, steps=20, log_every=5, episodes=1, iql_beta=3.0)
        at.multiselect(key=tw.CONDITIONS).set_value(["default"])
        at.selectbox(key=tw.key("encoder")).set_value("hash")
        at.text_input(key=tw.NAME).input("tiny")
        at.run()
        clicked = time.perf_counter()
        at.button(key=tw.key("launch")).click().run()
        page_s = time.perf_counter() - clicked
        assert not at.exception, at.exception
        [job_id] = at.session_state[tw.JOBS]
        job = _wait(ws, job_id)
        at.run()
        yield ws, labels, job, at, page_s


def test_the_page_offers_every_reward_source_with_iql_defaults_and_help(
    labelled_ws: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference = labelled_ws
    at = _training_page(monkeypatch, ws)
    reader = ws.reader()
    runs = [r["run_id"] for r in reader.rows("SELECT run_id FROM label_runs ORDER BY created_at")]
    reader.close()
    expected = ["sparse", "reference"]
    for run in runs:
        expected += [f"rgvlm:{run}", f"sparse+rgvlm:{run}"]
    assert at.multiselect(key=tw.METHODS).options == [method_label(m) for m in [*expected, BC]]
    assert reference in runs and len(runs) == 2
    for name in tw.HYPERPARAMETERS:
        field = at.number_input(key=tw.key(f"iql.{name}"))
        assert field.value == getattr(IQLConfig(), name) and field.help == IQL_HELP[name]
    assert at.selectbox(key=tw.key("encoder")).value == "minilm"
    assert not at.get("plotly_chart") and any("No finished training run" in i.value for i in at.info)


def test_without_a_reference_run_the_page_offers_no_reference_method(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = _training_page(monkeypatch, sample_ws)
    assert at.multiselect(key=tw.METHODS).options == [method_label("sparse"), method_label(BC)]


def test_no_method_or_a_bad_setting_is_named_inline_and_starts_no_job(
    labelled_ws: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = labelled_ws
    at = _training_page(monkeypatch, ws)
    _fill(at, [], iql_expectile=1.0)
    errors = [e.value for e in at.error]
    assert "Reward sources: choose at least one" in errors
    assert any("expectile" in e and "between 0 and 1" in e for e in errors), errors
    at.button(key=tw.key("launch")).click().run()
    assert any(e.value.startswith("Not started") and "Reward sources" in e.value for e in at.error)
    at.button(key=tw.key("launch_single")).click().run()
    assert any(e.value.startswith("Not started") and "IQL hyperparameters" in e.value for e in at.error)
    assert at.session_state[tw.JOBS] == [] and list_jobs(ws) == []


def test_the_vlm_reward_mapping_is_chosen_on_the_page_and_shaping_alone_is_refused_inline(
    labelled_ws: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, labels = labelled_ws
    at = _training_page(monkeypatch, ws)
    mapping = at.selectbox(key=tw.key("vlm_reward"))
    assert mapping.value == "cost" and list(mapping.options) == ["raw", "cost", "centred", "shaped"]
    _fill(at, [f"rgvlm:{labels}"])
    mapping.set_value("shaped").run()
    errors = [e.value for e in at.error]
    assert any(e.startswith("VLM reward: shaped reshapes the sparse reward") for e in errors), errors
    at.button(key=tw.key("launch")).click().run()
    assert list_jobs(ws) == []
    _fill(at, [f"sparse+rgvlm:{labels}"])
    assert not [e.value for e in at.error if e.value.startswith("VLM reward")]


def test_the_training_splits_are_chosen_on_the_page_and_passed_to_both_commands(
    monkeypatch: pytest.MonkeyPatch, sample_ws: Workspace
) -> None:
    at = _training_page(monkeypatch, sample_ws)
    splits = at.multiselect(key=tw.DATA_SPLITS)
    assert splits.value == [] and set(splits.options) >= {"train"}  # none chosen: every split
    assert "--data-split" not in at.code[0].value
    splits.set_value(["train"]).run()
    assert not at.exception, at.exception
    assert "--data-split train" in at.code[0].value
    form = tw.TrainingForm((BC,), 1.0, "cost", 1, 10, 5, (), "hash", 1, ("default",), "x", ("train",))
    assert form.train_args(BC, 0, "run")[-2:] == ["--data-split", "train"]


def test_launching_an_experiment_starts_one_job_with_exactly_the_page_settings(
    finished: tuple[Workspace, str, Job, AppTest, float],
) -> None:
    _, labels, job, at, page_s = finished
    assert job.args == (
        "experiment", "--methods", f"sparse+rgvlm:{labels},bc", "--seeds", "1", "--steps", "20",
        "--lambda", "1.0", "--vlm-reward", "cost", "-k", "1", "--conditions", "default", "--encoder", "hash",
        "--log-every", "5",
        "--name", "tiny", "--iql", "expectile=0.8", "--iql", "beta=3.0", "--iql", "gamma=0.97",
        "--iql", "lr=0.0003", "--iql", "hidden=256", "--iql", "batch_size=256", "--iql", "tau=0.005",
    )  # fmt: skip
    assert job.status == "done", (job.status, job.error)
    assert at.session_state[tw.LAUNCH_S] < 1.0  # start_job only spawns the process
    assert page_s < 10.0  # the click's whole rerun, page drawn again with the new job


def test_the_finished_runs_appear_with_their_curves_in_their_methods_colours(
    finished: tuple[Workspace, str, Job, AppTest, float],
) -> None:
    ws, labels, _, at, _ = finished
    reader = ws.reader()
    runs = runs_table(reader)
    colours = method_colours(methods_in_order(reader))
    reader.close()
    # the method names the mapping the page chose (cost, the default), as the stored source does
    assert sorted(runs["method"]) == sorted([f"sparse+rgvlm:{labels}@cost", BC])
    shown = next(df.value for df in at.dataframe if "method" in df.value.columns)
    assert list(shown["run_id"]) == list(runs["run_id"])
    q_traces = _curve_traces(at)  # the default metric: the q loss, which behaviour cloning does not have
    bc_runs = list(runs.loc[runs["method"] == BC, "run_id"])
    assert q_traces and not any(t["hovertemplate"].startswith(run) for t in q_traces for run in bc_runs)
    at.selectbox(key=tw.METRIC).set_value("losses/actor").run()  # every method trains an actor
    traces = _curve_traces(at)
    by_run = {run: t for t in traces for run in runs["run_id"] if t["hovertemplate"].startswith(run)}
    assert set(by_run) == set(runs["run_id"])
    for run, method in zip(runs["run_id"], runs["method"], strict=True):
        assert by_run[run]["line"]["color"] == method_colour(method, colours)
        assert _numbers(by_run[run]["x"]) == [5, 10, 15, 20]  # logged every 5 of 20 steps
    assert not at.exception


def test_the_record_shown_for_a_run_is_what_it_stored(
    finished: tuple[Workspace, str, Job, AppTest, float],
) -> None:
    ws, labels, _, at, _ = finished
    reader = ws.reader()
    [stored] = reader.rows(
        "SELECT run_id, config, spec, dataset, provenance FROM train_runs WHERE reward_source LIKE 'sparse+%'"
    )
    [labelled] = reader.rows("SELECT prompt_id FROM label_runs WHERE run_id = ?", [labels])
    reader.close()
    at.selectbox(key=tw.RUN).set_value(stored["run_id"]).run()
    assert at.query_params["run"] == stored["run_id"]  # a link reopens this run
    shown = _records(at)
    config, provenance = json.loads(stored["config"]), json.loads(stored["provenance"])
    assert shown["config"]["seed"] == "0" == json.dumps(config["seed"])
    assert shown["config"]["beta"] == "3.0" == json.dumps(config["beta"])
    assert shown["provenance"]["label_run.run_id"] == labels == provenance["label_run"]["run_id"]
    assert shown["provenance"]["label_run.prompt_id"] == labelled["prompt_id"] == DEFAULT_PROMPT.prompt_id
    assert shown["provenance"]["label_run.prompt_id"] == provenance["label_run"]["prompt_id"]
    assert shown["provenance"]["versions.torch"] == provenance["versions"]["torch"]
    assert (
        shown["spec"]["reward"] == f"sparse+rgvlm:{labels}@cost"
        and shown["spec"]["vlm_reward"] == "cost"
        and shown["spec"]["failed"] == "sparse"
    )
    for column in ("config", "spec", "dataset", "provenance"):
        flat = tw.flatten(json.loads(stored[column]))
        assert shown[column] == {f: tw.shown_value(v) for f, v in flat}


def test_a_long_experiment_shows_live_curves_and_the_cancel_button_stops_it(
    labelled_ws: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = labelled_ws
    at = _training_page(monkeypatch, ws)
    _fill(at, ["sparse"], seeds=1, steps=1_000_000, log_every=20)
    at.selectbox(key=tw.key("encoder")).set_value("hash")
    at.text_input(key=tw.NAME).input("long")
    at.run()
    at.button(key=tw.key("launch")).click().run()
    [job_id] = at.session_state[tw.JOBS]
    reader = ws.reader()
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not reader.scalar("SELECT count(*) FROM train_metrics WHERE starts_with(run_id, 'long-')"):
        assert get_job(ws, job_id).status == "running" and time.monotonic() < deadline, read_log_of(
            ws, job_id
        )
        time.sleep(0.5)
    reader.close()
    at.run()
    [trace] = _curve_traces(at)
    assert trace["hovertemplate"].startswith("long-sparse-s0-")  # a running run, found by its experiment
    assert trace["line"]["color"] == method_colour("sparse")
    at.button(key=f"cancel-{job_id}").click().run()
    assert not at.exception, at.exception
    job = _wait(ws, job_id)
    assert job.status == "cancelled", (job.status, job.error)


def read_log_of(ws: Workspace, job_id: str) -> str:
    from rgvlm_core.jobs import read_log

    return read_log(get_job(ws, job_id), 3000)


def test_a_single_run_of_behaviour_cloning_is_a_train_job_with_beta_zero(
    labelled_ws: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, _ = labelled_ws
    at = _training_page(monkeypatch, ws)
    _fill(at, ["sparse"], steps=1_000_000, log_every=10)
    at.selectbox(key=tw.key("encoder")).set_value("hash")
    at.selectbox(key=tw.key("single.source")).set_value(BC)
    at.number_input(key=tw.key("single.seed")).set_value(4)
    at.button(key=tw.key("launch_single")).click().run()
    [job_id] = at.session_state[tw.JOBS]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while get_job(ws, job_id).total is None:  # training has started (cancelled earlier, it would just die)
        assert get_job(ws, job_id).status == "running" and time.monotonic() < deadline, read_log_of(
            ws, job_id
        )
        time.sleep(0.5)
    job = cancel_job(ws, job_id)
    assert job.status == "cancelled", (job.status, job.error)
    name = job.args[job.args.index("--name") + 1]
    assert name.startswith("iql-bc-s4-")
    assert job.args == (
        "train", "--reward", "sparse", "--seed", "4", "--steps", "1000000", "--lambda", "1.0",
        "--vlm-reward", "cost", "--encoder", "hash", "--log-every", "10", "--name", name,
        "--iql", "expectile=0.8", "--iql", "beta=0.0", "--iql", "gamma=0.97", "--iql", "lr=0.0003",
        "--iql", "hidden=256", "--iql", "batch_size=256", "--iql", "tau=0.005",
    )  # fmt: skip


def test_drawing_the_page_with_runs_and_their_records_never_loads_torch(
    finished: tuple[Workspace, str, Job, AppTest, float],
) -> None:
    ws = finished[0]
    probe = (
        "import sys\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({str(ROOT / 'app.py')!r}, default_timeout=60)\n"
        "at.run()\n"
        "at.switch_page('pages/training.py').run()\n"
        "assert not at.exception and at.get('plotly_chart') and at.dataframe, at.exception\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    env = {**os.environ, "RGVLM_WORKSPACE": str(ws.root), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
