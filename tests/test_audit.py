"""Audit figures equal the same numbers recomputed independently (pandas) from the raw tables."""

from __future__ import annotations

import pandas as pd
import pytest

from rgvlm_core import audit
from rgvlm_core.catalog import EpisodeFilter
from rgvlm_core.labeling.store import add_override
from rgvlm_core.sample import label_sample


@pytest.fixture()
def labelled(sample_ws):  # type: ignore[no-untyped-def]
    clean, noisy = label_sample(sample_ws)
    return sample_ws, clean, noisy


def _frame(ws, sql: str, params=None) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    reader = ws.reader()
    try:
        return reader.query(sql, params).to_pandas()
    finally:
        reader.close()


def test_the_reference_run_is_the_noise_free_one(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, clean, _ = labelled
    reader = ws.reader()
    assert audit.reference_run(reader) == clean
    reader.close()


def test_agreement_equals_pandas_on_the_joined_scores(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, clean, noisy = labelled
    labels = _frame(ws, "SELECT run_id, episode_id, t, score FROM labels WHERE status = 'ok'")
    a = labels[labels.run_id == noisy].merge(labels[labels.run_id == clean], on=["episode_id", "t"])
    reader = ws.reader()
    got = audit.agreement(reader, noisy, clean)
    reader.close()
    assert got["n"] == len(a)
    assert got["pearson"] == pytest.approx(a.score_x.corr(a.score_y))
    assert got["spearman"] == pytest.approx(a.score_x.rank().corr(a.score_y.rank()), abs=1e-9)
    assert got["mae"] == pytest.approx((a.score_x - a.score_y).abs().mean())
    assert got["exact"] == pytest.approx((a.score_x == a.score_y).mean())


def test_confusion_counts_high_scores_against_completed_subtasks(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, _, noisy = labelled
    rows = _frame(
        ws,
        "SELECT l.score, s.sparse_reward FROM labels l JOIN episodes e USING (episode_id) "
        "JOIN steps s ON s.trajectory_id = e.trajectory_id AND s.t = l.t WHERE l.run_id = ?",
        [noisy],
    )
    expected = rows.groupby([rows.score >= 7, rows.sparse_reward > 0]).size().to_dict()
    reader = ws.reader()
    got = {(r["high"], r["completed"]): r["n"] for r in audit.confusion(reader, noisy).to_pylist()}
    by_type = audit.confusion(reader, noisy, by="task_type").to_pandas()
    reader.close()
    assert got == expected
    assert by_type.n.sum() == len(rows)


def test_overrides_change_the_audited_scores(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, clean, noisy = labelled
    reader = ws.reader()
    before = audit.agreement(reader, noisy, clean)
    worst = audit.disagreement_ranking(reader, noisy, clean, limit=1).to_pylist()[0]
    reader.close()
    ref_score = _frame(
        ws,
        "SELECT score FROM labels WHERE run_id = ? AND episode_id = ? AND t = ?",
        [clean, worst["episode_id"], worst["worst_step"]],
    ).score[0]
    add_override(
        ws, noisy, worst["episode_id"], worst["worst_step"], int(ref_score), "matches the ground truth"
    )
    reader = ws.reader()
    after = audit.agreement(reader, noisy, clean)
    reader.close()
    assert after["mae"] < before["mae"] and after["exact"] > before["exact"]


def test_episode_table_and_ranking_agree_with_each_other(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, clean, noisy = labelled
    reader = ws.reader()
    table = audit.episode_table(reader, EpisodeFilter(), noisy, clean).to_pandas().set_index("episode_id")
    ranking = audit.disagreement_ranking(reader, noisy, clean, limit=10).to_pandas()
    failures = audit.failures(reader, noisy)
    reader.close()
    assert len(table) == 192 and (table.failed_steps == 0).all()
    for row in ranking.itertuples():
        assert table.loc[row.episode_id, "disagreement"] == pytest.approx(row.mae)
    assert list(ranking.mae) == sorted(ranking.mae, reverse=True)
    assert failures.num_rows == 0


# -- the worst step, datasets, and text from data in figures ------------------------------------------
RUN_WITH_MARKUP = "lvlm_run-0.3*[x](y)<b>"  # a run id holding -, ., _, *, a Markdown link and a tag
GOAL_WITH_MARKUP = "Put *the* [x](y) <b>apple</b> on_the counter-top."


def mixed_workspace(ws, data_dir):  # type: ignore[no-untyped-def]
    """The sample (simulator) labelled by its two reference runs, plus 3 ALFRED trajectories (9 episodes)
    imported afterwards, so the reference runs labelled only the simulator; then a noisy run over both
    datasets named with Markdown and HTML. Returns (workspace, reference, noisy, both)."""
    from rgvlm_core.importer import ImportConfig, import_alfred
    from rgvlm_core.labeling.reference import NoiseConfig, ReferenceLabeller
    from rgvlm_core.labeling.runs import RunConfig, label_run
    from tests.alfred_factory import write_trajectory

    reference, noisy = label_sample(ws)

    def goal(doc):  # type: ignore[no-untyped-def]
        for ann in doc["turk_annotations"]["anns"]:
            ann["task_desc"] = GOAL_WITH_MARKUP

    for i in range(3):
        write_trajectory(data_dir, "train", trial=f"trial_T20190101_000000_00000{i}", mutate=goal)
    for _ in import_alfred(ws, data_dir, ImportConfig()):
        pass
    labeller = ReferenceLabeller(NoiseConfig.from_level(0.3))
    for _ in label_run(ws, labeller, RunConfig(name=RUN_WITH_MARKUP)):
        pass
    return ws, reference, noisy, RUN_WITH_MARKUP


@pytest.fixture()
def mixed(sample_ws, tmp_path):  # type: ignore[no-untyped-def]
    return mixed_workspace(sample_ws, tmp_path / "alfred")


def _diffs(ws, run: str, reference: str) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    labels = _frame(ws, "SELECT run_id, episode_id, t, score FROM labels WHERE status = 'ok'")
    pairs = labels[labels.run_id == run].merge(labels[labels.run_id == reference], on=["episode_id", "t"])
    return pairs.assign(d=(pairs.score_x - pairs.score_y).abs())


def test_the_ranking_names_goal_task_type_subtasks_and_the_earliest_step_of_largest_difference(
    labelled,
) -> None:  # type: ignore[no-untyped-def]
    ws, clean, noisy = labelled
    diffs = _diffs(ws, noisy, clean)
    reader = ws.reader()
    ranking = audit.disagreement_ranking(reader, noisy, clean, limit=500).to_pylist()
    episodes = {r["episode_id"]: r for r in reader.rows("SELECT * FROM episodes")}
    reader.close()
    assert len(ranking) == diffs.episode_id.nunique()
    for row in ranking:
        steps = diffs[diffs.episode_id == row["episode_id"]]
        largest = steps.d.max()
        assert row["max_abs_diff"] == largest
        assert row["worst_step"] == steps[steps.d == largest].t.min()  # ties: the earliest step
        episode = episodes[row["episode_id"]]
        for column in ("goal", "task_type", "n_subtasks", "dataset"):
            assert row[column] == episode[column]
    tied = [
        r for r in ranking if (diffs[diffs.episode_id == r["episode_id"]].d == r["max_abs_diff"]).sum() > 1
    ]
    assert tied  # some episodes tie on their largest difference: the earliest-step rule is exercised


def test_worst_step_of_an_episode_is_where_run_and_reference_differ_most(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, clean, noisy = labelled
    reader = ws.reader()
    top = audit.disagreement_ranking(reader, noisy, clean, limit=1).to_pylist()[0]
    assert audit.worst_step(reader, top["episode_id"], noisy, clean) == top["worst_step"]
    assert audit.worst_step(reader, top["episode_id"], clean, clean) is None  # no difference at all
    reader.close()


def test_audit_figures_count_only_the_chosen_dataset(mixed) -> None:  # type: ignore[no-untyped-def]
    ws, reference, _, both = mixed
    labels = _frame(
        ws,
        "SELECT l.run_id, l.episode_id, l.t, l.score, e.dataset, s.sparse_reward FROM labels l "
        "JOIN episodes e USING (episode_id) JOIN steps s ON s.trajectory_id = e.trajectory_id AND s.t = l.t",
    )
    reader = ws.reader()
    for dataset in ("alfred", "sim"):
        mine = labels[(labels.run_id == both) & (labels.dataset == dataset)]
        dist = audit.score_distribution(reader, [both, reference], dataset=dataset).to_pandas()
        assert dist[dist.run_id == both].n.sum() == len(mine)
        confusion = audit.confusion(reader, both, dataset=dataset).to_pandas()
        assert confusion.n.sum() == len(mine)
        ranking = audit.disagreement_ranking(reader, both, reference, limit=500, dataset=dataset)
        assert set(ranking.column("dataset").to_pylist()) <= {dataset}
        agreement = audit.agreement(reader, both, reference, dataset=dataset)
        assert agreement["n"] == (len(mine) if dataset == "sim" else 0)
        by_type = audit.agreement_by(reader, both, reference, "task_type", dataset=dataset)
        assert sum(by_type.column("n").to_pylist()) == agreement["n"]
        assert audit.compare_runs(reader, both, reference, dataset=dataset)["n"] == agreement["n"]
        pairs = audit.step_pairs(reader, both, reference, dataset=dataset)
        assert pairs.num_rows == agreement["n"]
        assert audit.failures(reader, both, dataset=dataset).num_rows == 0
    assert audit.score_distribution(reader, [reference], dataset="alfred").num_rows == 0
    reader.close()


def test_each_run_reports_the_steps_it_labelled_per_dataset(mixed) -> None:  # type: ignore[no-untyped-def]
    ws, reference, noisy, both = mixed
    expected = _frame(
        ws,
        "SELECT l.run_id, e.dataset, count(*) AS n FROM labels l JOIN episodes e USING (episode_id) "
        "GROUP BY ALL",
    )
    reader = ws.reader()
    coverage = audit.run_datasets(reader)
    reader.close()
    assert coverage == {
        run: dict(zip(group.dataset, group.n, strict=True)) for run, group in expected.groupby("run_id")
    }
    assert set(coverage[reference]) == set(coverage[noisy]) == {"sim"}
    assert set(coverage[both]) == {"alfred", "sim"}


def test_the_reference_run_of_a_dataset_is_one_that_labelled_it(mixed) -> None:  # type: ignore[no-untyped-def]
    ws, reference, _, _ = mixed
    reader = ws.reader()
    assert audit.reference_run(reader, dataset="sim") == reference
    assert audit.reference_run(reader, dataset="alfred") is None  # agreement on ALFRED is impossible
    assert audit.reference_run(reader) == reference
    reader.close()


def test_dataset_counts_cover_one_dataset_and_add_up_to_the_workspace(mixed) -> None:  # type: ignore[no-untyped-def]
    from rgvlm_core.catalog import dataset_counts, workspace_counts

    ws = mixed[0]
    reader = ws.reader()
    total = workspace_counts(reader)
    parts = {d: dataset_counts(reader, d) for d in total["by_dataset"]}
    reader.close()
    assert parts["alfred"]["episodes"] == 9 and parts["alfred"]["by_split"] == {"train": 9}
    assert parts["alfred"]["by_task_type"] == {"pick_and_place_simple": 9}
    assert parts["alfred"]["by_n_subtasks"] == {"2": 9}
    for key in ("by_split", "by_task_type", "by_n_subtasks"):
        summed: dict[str, int] = {}
        for part in parts.values():
            for k, n in part[key].items():
                summed[k] = summed.get(k, 0) + n
        assert summed == total[key]
    assert sum(p["episodes"] for p in parts.values()) == total["episodes"]


def test_chart_text_taken_from_data_is_escaped_for_plotly() -> None:
    from rgvlm_core import charts, charts_audit

    bars = charts.count_bars({"<b>x</b>": 2, "a&b": 1}, title="t", x_title="x").to_dict()["data"][0]
    assert list(bars["x"]) == ["&lt;b&gt;x&lt;/b&gt;", "a&amp;b"]
    rows = [{"run_id": RUN_WITH_MARKUP, "score": 3, "n": 4}]
    dist = charts_audit.score_distribution(rows, {}).to_dict()["data"][0]
    assert dist["name"] == charts.plotly_escape(RUN_WITH_MARKUP) == "lvlm_run-0.3*[x](y)&lt;b&gt;"
    assert RUN_WITH_MARKUP not in dist["hovertemplate"]  # a %{...} in an id cannot reach the template
    scatter = charts_audit.score_scatter([1], [2], name_a="A: <i>r</i>", name_b="B").to_dict()["layout"]
    assert scatter["xaxis"]["title"]["text"] == "A: &lt;i&gt;r&lt;/i&gt;"


def test_a_run_keeps_its_colour_whichever_run_is_the_reference() -> None:
    from rgvlm_core.charts_audit import REFERENCE_COLOUR, run_colours

    runs = ["ref-a", "ref-b", "lvlm"]
    with_a, with_b, without = run_colours(runs, "ref-a"), run_colours(runs, "ref-b"), run_colours(runs)
    assert with_a["lvlm"] == with_b["lvlm"] == without["lvlm"]
    assert with_a["ref-b"] == without["ref-b"] and with_a["ref-a"] == with_b["ref-b"] == REFERENCE_COLOUR
