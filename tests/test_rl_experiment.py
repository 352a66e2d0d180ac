"""`rgvlm experiment`: a grid of methods x seeds trained, evaluated, recorded, resumable and reported."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from rgvlm_core.errors import RGVLMError
from rgvlm_core.rl.experiment import ExperimentSpec, run_experiment
from rgvlm_core.rl.iql import IQLConfig
from rgvlm_core.sample import label_sample

ROOT = Path(__file__).resolve().parents[1]


def rgvlm(ws_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "rgvlm_core.cli", "-w", str(ws_root), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def expected_by_length(ws_root: Path, run_ids: list[str], phrasing: str = "unseen") -> pd.DataFrame:
    """The paper's metric computed straight from the stored rows, independently of rgvlm_core.compare."""
    import duckdb

    files = sorted(str(p) for p in (ws_root / "store").rglob("eval_results*/**/*.parquet"))
    assert files, "no eval_results shards"
    con = duckdb.connect()
    per_run = con.execute(
        "SELECT run_id, condition, length, avg(completed / n_subtasks) AS p "
        "FROM read_parquet(?) WHERE run_id IN (SELECT unnest(?)) AND phrasing = ? GROUP BY ALL",
        [files, run_ids, phrasing],
    ).df()
    return per_run


def test_the_cli_experiment_writes_a_report_whose_numbers_equal_the_store(sample_ws) -> None:  # type: ignore[no-untyped-def]
    label_sample(sample_ws)
    report = sample_ws.root / "report.html"
    grid = "--methods sparse,sparse+reference,bc --seeds 2 --steps 20 --log-every 10 -k 2 --encoder hash"
    ran = rgvlm(sample_ws.root, "experiment", *grid.split(), "--name", "smoke", "--report", str(report))
    assert ran.returncode == 0, ran.stderr
    assert "experiment smoke: 6 runs finished" in ran.stdout
    page = report.read_text()
    assert "<script" in page and "Plotly" in page and 'src="http' not in page  # self-contained
    csv_text = report.with_suffix(".csv").read_text()
    embedded = re.search(r'href="data:text/csv;base64,([^"]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)).decode() == csv_text
    rows = pd.read_csv(io.StringIO(csv_text))
    seeds = rows[rows["kind"] == "seed"]
    means = rows[rows["kind"] == "mean"]
    runs = sorted(set(seeds["run_id"]) - {"expert"})
    assert len(runs) == 6 and set(means["method"]) >= {"sparse", "bc", "expert"}
    truth = expected_by_length(sample_ws.root, runs)
    assert len(truth) == 6 * 2 * 6  # runs x conditions x lengths
    merged = seeds.merge(truth, on=["run_id", "condition", "length"])
    assert len(merged) == len(truth)
    assert (merged["proportion"] - merged["p"]).abs().max() < 1e-12
    method_of = dict(zip(seeds["run_id"], seeds["method"], strict=False))
    truth["method"] = truth["run_id"].map(method_of)
    expected = truth.groupby(["method", "condition", "length"])["p"].mean()
    got = means.set_index(["method", "condition", "length"])["proportion"]
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12)
    # rerunning the same experiment resumes it: nothing is trained again
    again = rgvlm(sample_ws.root, "experiment", *grid.split(), "--name", "smoke")
    assert again.returncode == 0, again.stderr
    listed = rgvlm(sample_ws.root, "train-runs", "--json")
    assert listed.stdout.count('"run_id"') == 6
    # the report of the seen phrasings shows exactly their numbers
    seen = sample_ws.root / "seen.html"
    wrote = rgvlm(sample_ws.root, "report", "smoke", "--phrasing", "seen", "-o", str(seen))
    assert wrote.returncode == 0, wrote.stderr
    rows = pd.read_csv(seen.with_suffix(".csv"))
    rows = rows[rows["kind"] == "seed"]
    truth = expected_by_length(sample_ws.root, runs, "seen")
    merged = rows.merge(truth, on=["run_id", "condition", "length"])
    assert len(merged) == len(truth) and (merged["proportion"] - merged["p"]).abs().max() < 1e-12
    bad = rgvlm(sample_ws.root, "report", "smoke", "--phrasing", "heard", "-o", str(seen))
    assert bad.returncode == 1 and "--phrasing must be unseen or seen, got 'heard'" in bad.stderr


def test_an_unknown_method_is_refused_before_anything_is_stored(sample_ws) -> None:  # type: ignore[no-untyped-def]
    spec = ExperimentSpec(methods=("sparse", "rgvlm:ghost"), seeds=(0,), encoder="hash")
    with pytest.raises(RGVLMError, match="no label run 'ghost'"):
        list(run_experiment(sample_ws, spec, IQLConfig(steps=5)))
    reader = sample_ws.reader()
    assert reader.scalar("SELECT count(*) FROM experiments") == 0
    assert reader.scalar("SELECT count(*) FROM train_runs") == 0
    reader.close()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ExperimentSpec(methods=()), "at least one method"),
        (ExperimentSpec(methods=("sparse", "sparse")), "each method once"),
        (ExperimentSpec(methods=("sparse",), seeds=(1, 1)), "distinct"),
        (ExperimentSpec(methods=("sparse",), conditions=("windy",)), "conditions"),
    ],
)
def test_a_bad_experiment_spec_names_the_bad_value(spec: ExperimentSpec, message: str) -> None:
    with pytest.raises(RGVLMError, match=message):
        spec.validate()


def test_behaviour_cloning_is_iql_with_beta_zero_and_is_named_bc(sample_ws) -> None:  # type: ignore[no-untyped-def]
    from rgvlm_core.compare import runs_table

    spec = ExperimentSpec(
        methods=("bc",),
        seeds=(3,),
        encoder="hash",
        episodes_per_length=1,
        conditions=("default",),
        name="bc-only",
    )
    progress = list(run_experiment(sample_ws, spec, IQLConfig(steps=4, log_every=2)))
    assert progress[-1].phase == "finished" and progress[-1].fraction == 1.0
    reader = sample_ws.reader()
    runs = runs_table(reader)
    config = reader.scalar("SELECT config FROM train_runs")
    reader.close()
    assert (
        list(runs["method"]) == ["bc"]
        and list(runs["seed"]) == [3]
        and list(runs["experiment"]) == ["bc-only"]
    )
    assert '"beta": 0.0' in config
