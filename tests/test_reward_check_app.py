"""Audit -> Reward check in AppTest: the verdict in words, the tables, the link into the Episodes page."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app import audit_reward_check as rc
from rgvlm_app import audit_widgets as aw
from rgvlm_core.audit import reference_run
from rgvlm_core.sample import label_sample
from rgvlm_core.workspace import Workspace
from tests.app_support import open_page

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def labelled(sample_ws: Workspace) -> tuple[Workspace, str]:
    label_sample(sample_ws)
    reader = sample_ws.reader()
    reference = reference_run(reader)
    reader.close()
    assert reference is not None
    return sample_ws, reference


def _reward_tab(monkeypatch: pytest.MonkeyPatch, ws: Workspace) -> AppTest:
    at = open_page(monkeypatch, ws.root, "audit", timeout=60)
    at.session_state[aw.TAB] = rc.TAB_NAME
    at.run()
    assert not at.exception, at.exception
    return at


def _check(at: AppTest, source: str, mapping: str) -> AppTest:
    at.selectbox(key=rc.SOURCE).set_value(source)
    at.selectbox(key=rc.MAPPING).set_value(mapping)
    at.number_input(key=rc.TASKS).set_value(1)
    at.run()
    at.button(key=rc.RUN).click().run()
    assert not at.exception, at.exception
    return at


def test_the_tab_flags_raw_as_paying_loops_and_links_the_worst_detour(
    labelled: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference = labelled
    at = _reward_tab(monkeypatch, ws)
    assert any(c.value.startswith("A reward that pays every step") for c in at.caption)
    at = _check(at, f"sparse+rgvlm:{reference}", "raw")
    [verdict] = at.error
    assert "pays loops" in verdict.value and "completes 0 of 6 tasks" in verdict.value
    assert any("non\\-expert segments earn more than expert ones" in w.value for w in at.warning)
    honest = [c.value for c in at.caption if "reference labeller" in c.value]
    assert honest and "not an LVLM" in honest[0]
    by_kind, tasks = (frame.value for frame in at.dataframe)
    assert {"kind", "expert_return", "other_return"} <= set(by_kind.columns)
    assert len(tasks) == 6 and set(tasks["status"]) == {"loops"}
    assert all(tasks["loop"].str.len() > 0)
    [link] = [link.proto for link in at.get("page_link") if link.proto.page == "episodes"]
    query = {k: v[0] for k, v in parse_qs(link.query_string).items()}
    assert set(query) == {"episode", "step", "run"} and query["run"] == reference
    assert link.label.startswith("Example of a paid detour: a ")


def test_cost_is_shown_as_keeping_completion_optimal_and_results_are_kept_per_choice(
    labelled: tuple[Workspace, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, reference = labelled
    at = _check(_reward_tab(monkeypatch, ws), f"sparse+rgvlm:{reference}", "raw")
    at.selectbox(key=rc.MAPPING).set_value("cost").run()
    assert any("Choose a reward source and run the check" in i.value for i in at.info)  # not run yet
    at.button(key=rc.RUN).click().run()
    assert not at.exception, at.exception
    assert any("keeps completion optimal" in s.value for s in at.success)
    labels = [link.proto.label for link in at.get("page_link") if link.proto.page == "episodes"]
    assert all("paid detour" not in label for label in labels)  # cost pays the experts more
    at.selectbox(key=rc.MAPPING).set_value("raw").run()  # back: the session still holds raw's result
    assert any("pays loops" in e.value for e in at.error)
    assert at.button(key=rc.RUN).label == "Run the check again"


def test_the_reward_check_tab_never_imports_torch() -> None:
    code = (
        "import sys, rgvlm_app.audit_reward_check, rgvlm_core.reward_check; "
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
