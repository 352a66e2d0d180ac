"""The Compare page shows a fair comparison: each method's difference from Sparse paired by seed,
one phrasing at a time, results by first-subtask kind and completion against training steps, and
says so in a line where a section has no data. The store is written straight through
Workspace.commit (no training)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_app import compare_widgets as cw
from rgvlm_core.compare_fair import MEAN_OVER_LENGTHS, paired_differences
from rgvlm_core.report import NO_CURVES, build_comparison
from rgvlm_core.workspace import Workspace
from tests.app_support import markdown_texts, open_page
from tests.test_app_compare import _array, _download, _KeptMediaFiles
from tests.test_compare_paired import commit_store, curve_row, eval_row, run_row

COST = "sparse+rgvlm:lab@cost"
# completed subtasks per (method, seed) at lengths 2 and 4, held-out phrasing
UNSEEN = {
    ("sparse", 0): (0, 1), ("sparse", 1): (1, 1), ("sparse", 2): (0, 2), ("sparse", 3): (1, 1),
    (COST, 0): (1, 2), (COST, 1): (2, 3), (COST, 2): (1, 3), (COST, 3): (2, 3),
    ("rgvlm:lab", 0): (0, 2), ("rgvlm:lab", 1): (1, 0), ("rgvlm:lab", 2): (1, 2),  # legacy: raw
    ("clip:c@centred", 9): (1, 1),  # a seed Sparse does not have: no pair
}  # fmt: skip
KINDS = {2: "Pickup", 4: "Heat"}


def _runs() -> list[dict[str, Any]]:
    return [run_row(f"{method}-s{seed}", method, seed) for method, seed in UNSEEN]


def _evals(phrasings: tuple[str, ...], kinds: bool = True) -> list[dict[str, Any]]:
    rows = []
    for (method, seed), done in UNSEEN.items():
        for phrasing in phrasings:
            for length, completed in zip((2, 4), done, strict=True):
                completed = length if phrasing == "seen" else completed  # seen phrasings: all done
                kind = KINDS[length] if kinds and not (method == "sparse" and seed == 3) else None
                row = eval_row(f"{method}-s{seed}", completed=completed, length=length, phrasing=phrasing)
                rows.append({**row, "first_kind": kind})
    return rows


def _curves() -> list[dict[str, Any]]:
    return [
        curve_row(f"{method}-s{seed}", step, length, (0.2 if step == 100 else 0.5) + 0.1 * seed)
        for method, seed in UNSEEN
        if method in ("sparse", COST)
        for step in (100, 200)
        for length in (2, 4)
    ]


@pytest.fixture(scope="module")
def fair_ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """Both phrasings, first-subtask kinds (one Sparse run without), curves for Sparse and COST."""
    ws = Workspace.open(tmp_path_factory.mktemp("fair") / "ws")
    return commit_store(ws, _runs(), _evals(("unseen", "seen")), _curves())


def _chart(at: AppTest, key: str) -> list[dict[str, Any]]:
    [chart] = [c for c in at.get("plotly_chart") if key in c.proto.id]
    return json.loads(chart.proto.spec)["data"]


TABLES = {"paired": "pairs", "kinds": "first_kind", "by_length": "length"}  # a column only it has


def _frame(at: AppTest, name: str) -> pd.DataFrame:
    """The page's table `name` (of TABLES), told apart by its columns (styled tables carry no key)."""
    frames = [df.value for df in at.dataframe]
    if name == "by_length":
        frames = [f for f in frames if "pairs" not in f.columns]
    [frame] = [f for f in frames if TABLES[name] in f.columns]
    return frame


def test_the_page_shows_each_methods_paired_difference_from_sparse_and_which_exclude_zero(
    fair_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, fair_ws.root, "compare", timeout=60)
    assert at.session_state[cw.PHRASING] == "unseen"
    reader = fair_ws.reader()
    comparison = build_comparison(reader, None, expert=False, phrasing="unseen")
    reader.close()
    want = paired_differences(comparison.seeds)
    table = _frame(at, "paired")
    assert list(table["mean"]) == pytest.approx(list(want["mean"]))
    assert list(table["pairs"]) == list(want["pairs"])
    bars = [t for t in _chart(at, "compare.paired") if t["type"] == "bar"]
    assert {b["name"] for b in bars} == {
        "Sparse+RG-VLM (lab, cost)",
        "RG-VLM (lab, raw)",
    }  # not clip: 0 pairs
    cost = next(b for b in bars if b["name"] == "Sparse+RG-VLM (lab, cost)")
    mine = want[(want["method"] == COST)]
    assert list(cost["x"]) == ["2", "4", MEAN_OVER_LENGTHS]
    assert _array(cost["y"]) == pytest.approx(list(mine["mean"]))
    assert _array(cost["error_y"]["array"]) == pytest.approx(list(mine["ci_high"] - mine["mean"]))
    overall = mine[mine["length"] == MEAN_OVER_LENGTHS].iloc[0]
    assert overall["excludes_zero"] and overall["mean"] > 0  # the cost mapping beats Sparse here
    said = "\n".join(markdown_texts(at))
    assert "Difference from Sparse (paired by seed)" in [s.value for s in at.subheader]
    assert f"Sparse+RG-VLM (lab, cost) {overall['mean']:+.3f}" in said and "above Sparse" in said
    assert "RG-VLM (lab, raw)" in said and "interval includes 0" in said
    assert "Fewer than 2 seeds shared with Sparse, so no interval: CLIP (c, centred)." in said


def test_the_phrasing_choice_filters_every_table_chart_and_the_csv(
    fair_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("streamlit.testing.v1.app_test.MediaFileManager", _KeptMediaFiles)
    at = open_page(monkeypatch, fair_ws.root, "compare", timeout=60)
    completion = [t for t in _chart(at, "compare.completion") if t["type"] == "bar"]
    sparse = next(t for t in completion if t["name"] == "Sparse")
    assert _array(sparse["y"]) == pytest.approx([(0 + 0.5 + 0 + 0.5) / 4, (0.25 * 3 + 0.5) / 4])
    csv = pd.read_csv(io.StringIO(_download(at, cw.CSV).decode()))
    assert set(csv["phrasing"]) == {"unseen"}

    at.segmented_control(key=cw.PHRASING).set_value("seen").run()
    assert not at.exception, at.exception
    completion = [t for t in _chart(at, "compare.completion") if t["type"] == "bar"]
    assert all(y == 1.0 for t in completion for y in _array(t["y"]))  # every seen task was completed
    assert set(_frame(at, "by_length")["phrasing"]) == {"seen"}
    assert list(_frame(at, "paired")["mean"]) == pytest.approx([0.0] * 6)
    assert set(_frame(at, "kinds")["phrasing"]) == {"seen"}
    csv = pd.read_csv(io.StringIO(_download(at, cw.CSV).decode()))
    assert set(csv["phrasing"]) == {"seen"} and set(csv["proportion"]) == {1.0}
    assert any("No run evaluated at checkpoints" in c.value for c in at.caption)  # curves are unseen only


def test_results_by_first_kind_leave_out_unknown_kinds_and_say_how_many(
    fair_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, fair_ws.root, "compare", timeout=60)
    kinds = _frame(at, "kinds")
    sparse = kinds[kinds["method"] == "Sparse"].set_index("first_kind")
    assert list(sparse.index) == ["Pickup", "Heat"] and list(sparse["seeds"]) == [3, 3]  # seed 3 has none
    assert sparse.loc["Pickup", "mean"] == pytest.approx((0 + 0.5 + 0) / 3)
    assert sparse.loc["Heat", "mean"] == pytest.approx((0.25 + 0.25 + 0.5) / 3)
    assert any("2 evaluated episode(s) have no recorded first-subtask kind" in c.value for c in at.caption)
    bars = [t for t in _chart(at, "compare.kinds") if t["type"] == "bar"]
    assert list(next(b for b in bars if b["name"] == "Sparse")["x"]) == ["Pickup", "Heat"]


def test_completion_against_steps_is_one_line_per_method_with_a_band_over_seeds(
    fair_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    at = open_page(monkeypatch, fair_ws.root, "compare", timeout=60)
    traces = _chart(at, "compare.steps")
    lines = {t["name"]: t for t in traces if t.get("mode") == "lines+markers"}
    assert set(lines) == {"Sparse", "Sparse+RG-VLM (lab, cost)"}  # the runs that have curves
    assert _array(lines["Sparse"]["x"]) == [100, 200]
    # each run's value is the same at both lengths: 0.2 + 0.1 * seed at step 100 (seeds 0..3)
    assert _array(lines["Sparse"]["y"]) == pytest.approx([0.2 + 0.15, 0.5 + 0.15])
    bands = [t for t in traces if t.get("fill") == "toself"]
    assert len(bands) == 2 and all(len(_array(b["y"])) == 4 for b in bands)
    assert "Completion against training steps" in [s.value for s in at.subheader]


def test_a_single_phrasing_is_said_and_missing_data_is_explained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = [r for r in _runs() if not r["run_id"].startswith("sparse-")]  # no Sparse baseline
    ws = commit_store(Workspace.open(tmp_path / "ws"), runs, _evals(("seen",), kinds=False))
    at = open_page(monkeypatch, ws.root, "compare", timeout=60)
    assert not at.get("segmented_control")  # no experiment and one phrasing: nothing to choose
    said = markdown_texts(at)
    assert any("Seen (training) phrasings: the only phrasing" in s for s in said), said
    assert any("No Sparse runs among those compared" in s for s in said), said
    assert not [c for c in at.get("plotly_chart") if "compare.paired" in c.proto.id]
    assert NO_CURVES in said and not [c for c in at.get("plotly_chart") if "compare.steps" in c.proto.id]
    assert any("have no recorded first-subtask kind" in s and "none has one" in s for s in said), said
    assert [c for c in at.get("plotly_chart") if "compare.completion" in c.proto.id]
