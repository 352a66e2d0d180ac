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
