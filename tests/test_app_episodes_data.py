"""What the Episodes page reads for one episode: the same rows as the whole tables, from fewer shards."""

from __future__ import annotations

import pytest

from rgvlm_app import episode_data, episode_shards
from rgvlm_core.labeling.store import add_override, effective_labels
from rgvlm_core.workspace import Workspace
from tests.test_app_episodes import EPISODE, labelled  # noqa: F401 (fixture)


def _episodes(ws: Workspace) -> list[str]:
    return [r["episode_id"] for r in ws.reader().rows("SELECT episode_id FROM episodes WHERE NOT task_only")]


def test_an_episodes_labels_of_every_run_are_the_stores_effective_labels(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
) -> None:
    ws, runs = labelled
    add_override(ws, runs[1], EPISODE, 4, 0, "a person disagrees")
    reader = ws.reader()
    for episode in [*_episodes(ws)[::7], EPISODE]:
        got = episode_data.episode_labels(reader, episode)
        assert set(got) == set(runs)
        for run in runs:
            stored = effective_labels(reader, run, [episode]).drop_columns(["episode_id"]).to_pylist()
            assert got[run] == stored
    assert episode_data.runs_labelling(reader, EPISODE) == {runs[0]: 25, runs[1]: 25}


def test_one_episode_is_read_from_the_shards_that_hold_it_not_from_all(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
) -> None:
    ws, _ = labelled
    files = ws.snapshot().files("labels")
    assert len(files) > 2  # the sample's two runs write several shards each
    holding = episode_shards.shards_holding(ws, files, EPISODE)
    assert 1 <= len(holding) < len(files)
    assert episode_shards.shards_holding(ws, files, "sim:no-such-episode#9") == []


def test_a_shard_gone_since_the_snapshot_was_read_falls_back_to_the_whole_table(
    labelled: tuple[Workspace, list[str]],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ws, runs = labelled
    reader = ws.reader()
    gone = str(ws.root / "store" / "labels" / "compacted-away.parquet")
    monkeypatch.setattr(episode_data, "shards_holding", lambda *_: [gone])
    rows = episode_data._episode_rows(
        reader, "labels", EPISODE, "SELECT run_id, t FROM {src} WHERE episode_id = ? ORDER BY run_id, t", []
    )
    assert len(rows) == 2 * 25 and {r["run_id"] for r in rows} == set(runs)
