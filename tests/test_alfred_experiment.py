"""Runs trained on replayed ALFRED trajectories are evaluated on ALFRED's own tasks: an experiment trained on
train is evaluated on valid_seen and valid_unseen (never on tasks it trained on), `rgvlm evaluate` takes
the split as its condition, and the Compare page shows the splits apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from rgvlm_core.errors import UsageError
from rgvlm_core.importer import ImportConfig, import_alfred
from rgvlm_core.rl.config import IQLConfig
from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment
from rgvlm_core.rl.runs import evaluate_run
from rgvlm_core.workspace import Workspace
from tests.cli_support import rgvlm

ROOT = Path(__file__).resolve().parents[1]
TINY = IQLConfig(steps=20, hidden=16, batch_size=32, log_every=10)


@pytest.fixture(scope="module")
def ws(shared_alfred: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The ALFRED sample imported with replay and labelled by the reference labeller."""
    import os

    os.environ["RGVLM_ALFRED_LAYOUTS"] = str(shared_alfred / "layouts")
    workspace = Workspace.open(tmp_path_factory.mktemp("alfred-exp") / "ws")
    splits = ("train", "valid_seen", "valid_unseen")
    for _ in import_alfred(workspace, shared_alfred / "json_2.1.0", ImportConfig(splits=splits, replay=True)):
        pass
    done = rgvlm("-w", str(workspace.root), "label", "--labeller", "reference")
    assert done.returncode == 0, done.stderr
    return workspace


def _experiment(ws: Workspace, name: str, **spec: object) -> list[object]:
    config = ExperimentSpec(
        methods=("sparse", "bc", "sparse+reference"), seeds=(0,), episodes_per_length=2, encoder="hash",
        name=name, **spec,  # type: ignore[arg-type]
    )  # fmt: skip
    return list(run_experiment(ws, config, TINY))


def test_training_on_the_evaluation_splits_is_refused(ws: Workspace) -> None:
    with pytest.raises(UsageError, match="holds ALFRED's valid_seen, valid_unseen trajectories"):
        _experiment(ws, "leaky")


def test_an_experiment_on_train_is_evaluated_on_valid_seen_and_unseen(ws: Workspace) -> None:
    _experiment(ws, "alfred", data_splits=("train",))
    reader = ws.reader()
    try:
        rows = reader.rows(
            "SELECT r.run_id, e.condition, e.length, count(*) AS n FROM eval_results e "
            "JOIN experiment_runs r USING (run_id) WHERE r.experiment_id = 'alfred' "
            "GROUP BY ALL ORDER BY ALL"
        )
        info = json.loads(
            reader.rows("SELECT dataset FROM train_runs WHERE run_id = ?", [rows[0]["run_id"]])[0]["dataset"]
        )
    finally:
        reader.close()
    assert {r["condition"] for r in rows} == {"valid_seen", "valid_unseen"}
    assert {r["length"] for r in rows} == {1, 2, 3, 4, 5, 6}
    assert all(r["n"] == 2 for r in rows)
    assert info["level"] == "alfred" and info["splits"] == ["train"] and info["trajectories"] == 280


def test_evaluate_takes_the_split_as_its_condition(ws: Workspace) -> None:
    reader = ws.reader()
    try:
        run_id = reader.rows("SELECT run_id FROM experiment_runs WHERE experiment_id = 'alfred' LIMIT 1")[0]
    finally:
        reader.close()
    with pytest.raises(UsageError, match="--condition valid_seen or valid_unseen"):
        list(evaluate_run(ws, run_id["run_id"], condition="default"))
    results = list(evaluate_run(ws, run_id["run_id"], condition="valid_unseen", episodes_per_length=1))
    assert [r.length for r in results] == [1, 2, 3, 4, 5, 6]
    assert all(r.level == "alfred" and r.condition == "valid_unseen" for r in results)


def test_the_compare_page_shows_alfreds_splits_apart(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RGVLM_WORKSPACE", str(ws.root))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.query_params["experiment"] = "alfred"
    at.switch_page("pages/compare.py").run()
    assert not at.exception, at.exception
    chart = next(c for c in at.get("plotly_chart") if "compare.completion" in c.proto.id)
    layout = json.loads(chart.proto.spec)["layout"]
    titles = [a["text"] for a in layout.get("annotations", [])]
    assert "ALFRED valid_seen tasks" in titles and "ALFRED valid_unseen tasks" in titles
    captions = " ".join(c.value for c in at.caption)
    assert "on ALFRED's own tasks no expert is replayed" in captions
