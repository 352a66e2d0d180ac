"""Run ids, experiment names, commands and settings typed by a person are data: the Compare, Training
and Prompts widgets show them exactly as written.

Rendered with a CommonMark parser as the browser would (`shown`, from tests/app_support.py): captions,
warnings, errors, success messages and page-link labels must read as the raw value, a backtick in
it included (it would close a hand-written code span).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app import prompt_widgets as pw
from rgvlm_app import training_widgets as tw
from rgvlm_app.prompt_datasets import DatasetScope, dataset_label
from rgvlm_app.text import md_escape
from rgvlm_core.report import Comparison
from rgvlm_core.workspace import Workspace
from rgvlm_core.workspace.schema import EXPERIMENT_RUNS, TRAIN_RUNS
from tests.app_support import markdown_texts, open_page, shown

MARKUP = "_x_ *y* [a](b) <b> `t`"
RUN = f"sparse-s0{MARKUP}"  # a training run, never evaluated
EXPERIMENT = f"exp_1{MARKUP}"


@pytest.fixture()
def trained_ws(tmp_path: Path) -> Workspace:
    """A workspace holding one finished, unevaluated training run of an experiment, both named with markup."""
    ws = Workspace.open(tmp_path / "ws", create=True)
    now = dt.datetime.now(dt.timezone.utc)
    run = {"run_id": RUN, "reward_source": "sparse", "lam": 1.0, "seed": 0, "steps": 10, "encoder": "hash"}
    run |= {"config": "{}", "started_at": now, "finished_at": now}
    member = {"experiment_id": EXPERIMENT, "method": "sparse", "seed": 0, "run_id": RUN, "finished_at": now}
    ws.commit(
        {
            TRAIN_RUNS.name: pa.Table.from_pylist([run], schema=TRAIN_RUNS.schema),
            EXPERIMENT_RUNS.name: pa.Table.from_pylist([member], schema=EXPERIMENT_RUNS.schema),
        }
    )
    return ws


def test_the_link_to_compare_an_experiment_names_it_literally(
    trained_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, trained_ws.root, "training")
    labels = [shown(link.proto.label).strip() for link in at.get("page_link")]
    assert f"Compare the methods of {EXPERIMENT}" in labels, labels


def test_runs_not_evaluated_yet_are_named_literally_on_the_compare_page(
    trained_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, trained_ws.root, "compare")
    assert any(f"not listed: {RUN}. Evaluate" in t for t in markdown_texts(at)), markdown_texts(at)


def _chooser(root: str, catalog: object) -> None:  # a script: builtin annotations only
    from pathlib import Path

    from rgvlm_app import compare_widgets as cw
    from rgvlm_core.workspace import Workspace

    cw.init_state()
    cw.choose(Workspace.open(Path(root)).reader(), catalog)


@pytest.mark.parametrize(
    ("param", "value"),
    [("experiment", f"ghost{MARKUP}"), ("runs", f"known,ghost{MARKUP}")],
)
def test_what_a_compare_link_names_in_vain_is_quoted_literally_in_the_warning(
    trained_ws: Workspace, param: str, value: str
) -> None:
    catalog = pd.DataFrame({"run_id": ["known"], "method": ["sparse"], "seed": [0], "evaluated": [4]})
    at = AppTest.from_function(_chooser, args=(str(trained_ws.root), catalog), default_timeout=30)
    at.query_params[param] = value
    at.run()
    assert not at.exception, at.exception
    [warning] = [shown(w.value).strip() for w in at.warning]
    assert f"ghost{MARKUP}" in warning, warning


def _overview(comparison: object) -> None:
    from rgvlm_app import compare_widgets as cw

    cw.overview(comparison)


def test_the_compare_overview_names_methods_literally() -> None:
    method = f"rgvlm:{MARKUP}"
    runs = pd.DataFrame({"run_id": ["r0"], "method": [method], "seed": [0]})
    episodes = pd.DataFrame(
        {"run_id": ["r0"], "condition": ["default"], "length": [1], "episode": [0], "episode_seed": [0]}
    )
    empty = pd.DataFrame()
    comparison = Comparison(runs, episodes, empty, empty, empty, {})
    at = AppTest.from_function(_overview, args=(comparison,), default_timeout=30).run()
    assert not at.exception, at.exception
    [caption] = markdown_texts(at)
    assert f"seeds per method: RG-VLM ({MARKUP}) 1" in caption, caption


def _launcher(root: str, args: list[str]) -> None:
    from pathlib import Path

    import streamlit as st

    from rgvlm_app import training_widgets as tw
    from rgvlm_core.workspace import Workspace

    tw.init_state()
    tw.flash()
    if st.button("Launch", key="launch"):
        tw.launch(Workspace.open(Path(root)), args, "text")


def test_a_launched_training_command_is_shown_whole_in_the_confirmation(trained_ws: Workspace) -> None:
    args = ["info", f"--option-{MARKUP}"]  # refused at once by the CLI: the job ends by itself
    at = AppTest.from_function(_launcher, args=(str(trained_ws.root), args), default_timeout=30).run()
    at.button(key="launch").click().run()
    assert not at.exception, at.exception
    [message] = [shown(s.value).strip() for s in at.success]
    assert message.endswith(f": rgvlm info '--option-{MARKUP}'"), message  # shlex-quoted, as typed
    assert len(at.session_state[tw.JOBS]) == 1


def _error(message: str) -> None:
    from rgvlm_app import prompt_widgets as pw

    pw.show_error(message)


def test_an_error_message_of_the_prompts_page_shows_literally() -> None:
    message = f"cannot start: {MARKUP}\n  second line"
    at = AppTest.from_function(_error, args=(message,), default_timeout=30).run()
    assert [shown(e.value).strip() for e in at.error] == [f"cannot start: {MARKUP} second line"]
    assert pw.error_line(message) == f"cannot start: {MARKUP} second line"


def _relabel_settings(at: AppTest, **values: Any) -> None:
    for name, value in values.items():
        widget = at.text_input(key=pw.setting_key("relabel", name))
        widget.input(value)
    at.run()


def test_the_api_key_variable_named_in_the_relabel_form_shows_literally(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, sample_ws.root, "prompts")
    at.radio(key=pw.setting_key("relabel", "labeller")).set_value("lvlm").run()
    _relabel_settings(at, key_env=f"KEY{MARKUP}")
    assert any(t.startswith(f"KEY{MARKUP} is not set") for t in markdown_texts(at)), markdown_texts(at)


def test_a_started_relabel_job_is_confirmed_with_its_command_literally(
    sample_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, sample_ws.root, "prompts")
    at.number_input(key=pw.setting_key("relabel", "limit")).set_value(1)
    _relabel_settings(at, name=f"run{MARKUP}")
    at.button(key="prompts.relabel_start").click().run()
    assert not at.exception, at.exception
    [message] = [shown(s.value).strip() for s in at.success]
    assert message.endswith(f"--name run{MARKUP}"), message


def test_dataset_names_in_scope_lines_and_radio_options_show_literally() -> None:
    dataset = f"set{MARKUP}"
    scope = DatasetScope(dataset, 3, 1)
    assert shown(scope.describe()).strip() == f"{dataset}: 3 episodes, 1 without frames"
    assert shown(dataset_label(dataset, md_escape)).strip() == dataset  # a radio option renders Markdown
    assert dataset_label(dataset) == dataset  # a multiselect option is plain text
