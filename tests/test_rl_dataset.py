"""Offline datasets: transitions, reward sources, the failed-label policy and the instruction cache."""

from __future__ import annotations

import numpy as np
import pytest

from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.store import add_override
from rgvlm_core.rl.dataset import build_dataset, parse_reward_source
from rgvlm_core.rl.encoder import HashEncoder, MiniLMEncoder, encode_cached
from rgvlm_core.sample import label_sample
from rgvlm_core.sim.world import ACTION_TOKENS


@pytest.fixture()
def labelled(sample_ws):  # type: ignore[no-untyped-def]
    clean, noisy = label_sample(sample_ws)
    return sample_ws, clean, noisy


def test_sparse_rewards_and_dones_follow_subtask_completion(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, _, _ = labelled
    reader = ws.reader()
    data = build_dataset(reader, parse_reward_source("sparse", reader), HashEncoder())
    steps = reader.rows("SELECT sum(sparse_reward) r FROM steps s JOIN episodes e USING (trajectory_id)")[0][
        "r"
    ]
    reader.close()
    assert len(data) == 1502 and data.states.shape == (1502, 870)
    assert data.rewards.sum() == pytest.approx(steps)
    assert (data.dones[data.rewards > 0] == 1).all()
    assert data.masks[np.arange(len(data)), data.actions].mean() > 0.9, "most dataset actions are valid"
    invalid = ~data.masks[np.arange(len(data)), data.actions]
    assert invalid.sum() > 0 and all(ACTION_TOKENS[a] for a in data.actions[invalid])


def test_combined_rewards_equal_sparse_plus_lambda_times_score_over_ten(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, _, noisy = labelled
    reader = ws.reader()
    sparse = build_dataset(reader, parse_reward_source("sparse", reader), HashEncoder())
    vlm = build_dataset(reader, parse_reward_source(f"rgvlm:{noisy}@raw", reader), HashEncoder())
    both = build_dataset(
        reader, parse_reward_source(f"sparse+rgvlm:{noisy}", reader, lam=0.5, mapping="raw"), HashEncoder()
    )
    ref = build_dataset(reader, parse_reward_source("reference@raw", reader), HashEncoder())
    scores = reader.query(f"SELECT score FROM labels WHERE run_id = '{noisy}' ORDER BY episode_id, t").column(
        0
    )
    reader.close()
    assert vlm.rewards == pytest.approx(np.asarray(scores.to_pylist(), np.float32) / 10)
    assert both.rewards == pytest.approx(sparse.rewards + 0.5 * vlm.rewards)
    assert ref.info["reward_source"] == "reference@raw" and ref.rewards.max() == pytest.approx(1.0)


def test_overrides_are_applied_and_failed_labels_follow_the_stated_policy(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, clean, _ = labelled
    reader = ws.reader()
    first = reader.rows(
        f"SELECT episode_id, t FROM labels WHERE run_id = '{clean}' ORDER BY episode_id, t LIMIT 1"
    )[0]
    reader.close()
    add_override(ws, clean, first["episode_id"], first["t"], 3, "person says so")
    reader = ws.reader()
    data = build_dataset(reader, parse_reward_source(f"rgvlm:{clean}@raw", reader), HashEncoder())
    assert data.rewards[0] == pytest.approx(0.3)
    # a label run covering only a few episodes: the rest count as steps without a VLM reward
    reader.close()
    from rgvlm_core.catalog import EpisodeFilter
    from rgvlm_core.labeling.reference import ReferenceLabeller
    from rgvlm_core.labeling.runs import RunConfig, label_run

    for _ in label_run(ws, ReferenceLabeller(), RunConfig(name="few", filters=EpisodeFilter(limit=10))):
        pass
    reader = ws.reader()
    kept = build_dataset(reader, parse_reward_source("rgvlm:few", reader), HashEncoder(), failed="sparse")
    dropped = build_dataset(reader, parse_reward_source("rgvlm:few", reader), HashEncoder(), failed="drop")
    reader.close()
    assert kept.info["steps_without_vlm_reward"] == len(kept) - len(dropped) > 0
    assert len(kept) == 1502


def test_unknown_reward_sources_are_refused_with_the_known_forms(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, _, _ = labelled
    reader = ws.reader()
    with pytest.raises(RGVLMError, match="use sparse, reference"):
        parse_reward_source("dense", reader)
    with pytest.raises(RGVLMError, match="no label run 'ghost'"):
        parse_reward_source("rgvlm:ghost", reader)
    reader.close()


def test_instruction_embeddings_are_cached_per_sentence(tmp_path) -> None:  # type: ignore[no-untyped-def]
    class Counting(HashEncoder):
        calls = 0

        def encode(self, texts: list[str]) -> np.ndarray:
            Counting.calls += len(texts)
            return super().encode(texts)

    enc = Counting()
    first = encode_cached(enc, ["Pick up the apple.", "Grab the mug.", "Pick up the apple."], tmp_path)
    again = encode_cached(enc, ["Grab the mug.", "Turn on the lamp."], tmp_path)
    assert Counting.calls == 3 and np.allclose(first[1], again[0])


def test_minilm_embeds_paraphrases_close_and_other_tasks_apart() -> None:
    vectors = MiniLMEncoder().encode(["Pick up the apple.", "Grab the apple.", "Turn on the desk lamp."])
    assert vectors.shape == (3, 384)
    assert float(vectors[0] @ vectors[1]) > float(vectors[0] @ vectors[2]) + 0.3


def _store_clip_run(ws, run_id: str) -> None:  # type: ignore[no-untyped-def]
    """A label_runs row of a CLIP run (the guard reads only the run's labeller)."""
    import datetime as dt

    import pyarrow as pa

    from rgvlm_core.workspace.schema import LABEL_RUNS

    row = {name: "" for name in LABEL_RUNS.schema.names}
    row.update(run_id=run_id, labeller="clip", created_at=dt.datetime.now(dt.timezone.utc))
    ws.commit({LABEL_RUNS.name: pa.Table.from_pylist([row], schema=LABEL_RUNS.schema)})


def test_a_clip_reward_source_refuses_a_run_that_is_not_a_clip_run(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, clean, _ = labelled
    reader = ws.reader()
    with pytest.raises(RGVLMError, match=rf"clip:{clean}.*not CLIP.*rgvlm:{clean}"):
        parse_reward_source(f"clip:{clean}", reader)
    with pytest.raises(RGVLMError, match="not CLIP"):
        parse_reward_source(f"sparse+clip:{clean}", reader)
    reader.close()


def test_an_rgvlm_reward_source_refuses_a_clip_run(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, _, _ = labelled
    _store_clip_run(ws, "clip-run")
    reader = ws.reader()
    assert parse_reward_source("clip:clip-run", reader).run_id == "clip-run"
    for text in ("rgvlm:clip-run", "sparse+rgvlm:clip-run"):
        with pytest.raises(RGVLMError, match=r"is a CLIP run.*clip:clip-run"):
            parse_reward_source(text, reader)
    reader.close()


def test_cut_off_trajectories_bootstrap_from_their_final_state(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, _, _ = labelled
    reader = ws.reader()
    data = build_dataset(reader, parse_reward_source("sparse", reader), HashEncoder())
    rows = reader.rows(
        "SELECT e.episode_id, s.t, t.n_steps, t.completed_subtasks < t.n_subtasks AS unfinished, "
        "s.sparse_reward, sub.instruction FROM episodes e JOIN trajectories t USING (trajectory_id) "
        "JOIN steps s USING (trajectory_id) JOIN subtasks sub ON sub.episode_id = e.episode_id "
        "AND sub.idx = s.subtask_idx WHERE e.dataset = 'sim' AND NOT e.task_only ORDER BY e.episode_id, s.t"
    )
    reader.close()
    last = np.asarray([r["t"] == r["n_steps"] - 1 for r in rows])
    # a trajectory stopped before finishing; unless its last step completed a subtask (that subtask's
    # episode ends there, whatever follows), that step was cut off
    completes = np.asarray([r["sparse_reward"] > 0 for r in rows])
    cut = last & np.asarray([bool(r["unfinished"]) for r in rows]) & ~completes
    assert cut.sum() > 0 and data.info["cut_off_steps"] == cut.sum()
    # a cut-off step is not terminal: IQL's target r + gamma (1 - done) V(s') bootstraps there ...
    assert (data.dones[cut] == 0).all()
    # ... from the state stored after it, under the same subtask's instruction
    assert (data.next_instruction_ids[cut] == data.instruction_ids[cut]).all()
    assert not np.array_equal(data.next_states[cut], data.states[cut])
    # a completed task still ends where its last subtask completes
    assert (data.dones[last & ~cut] == 1).all()
    assert (data.dones == (data.rewards > 0)).all()


def test_mappings_are_named_in_the_source_and_computed_from_the_scores(labelled) -> None:  # type: ignore[no-untyped-def]
    ws, clean, _ = labelled
    reader = ws.reader()
    sparse = build_dataset(reader, parse_reward_source("sparse", reader), HashEncoder())
    raw = build_dataset(reader, parse_reward_source(f"rgvlm:{clean}@raw", reader), HashEncoder())
    cost_source = parse_reward_source(f"sparse+rgvlm:{clean}", reader, mapping="cost")
    cost = build_dataset(reader, cost_source, HashEncoder())
    centred_source = parse_reward_source(f"sparse+rgvlm:{clean}@centred", reader, mapping="cost")
    centred = build_dataset(reader, centred_source, HashEncoder())
    default = parse_reward_source("sparse+reference", reader)
    reader.close()
    assert cost_source.text == f"sparse+rgvlm:{clean}@cost" and cost.info["vlm_reward"] == "cost"
    assert default.mapping == "cost" and default.text.endswith("@cost")
    assert cost.rewards == pytest.approx(sparse.rewards + raw.rewards - 1.0)
    assert centred.rewards == pytest.approx(sparse.rewards + raw.rewards - 0.5)
    assert centred.info["reward_source"].endswith("@centred")  # the text's mapping wins over the option


def test_unusable_mappings_are_refused_naming_the_fix(labelled) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    import pyarrow as pa

    from rgvlm_core.workspace.schema import LABEL_RUNS, LABELS

    ws, clean, _ = labelled
    reader = ws.reader()
    with pytest.raises(RGVLMError, match="sparse reward has no VLM score"):
        parse_reward_source("sparse@cost", reader)
    with pytest.raises(RGVLMError, match="shaped mapping reshapes the sparse reward"):
        parse_reward_source(f"rgvlm:{clean}@shaped", reader)
    with pytest.raises(RGVLMError, match="unknown VLM reward mapping 'square'"):
        parse_reward_source(f"sparse+rgvlm:{clean}@square", reader)
    labels = reader.query(f"SELECT * FROM labels WHERE run_id = '{clean}'").to_pylist()
    run = reader.rows(f"SELECT * FROM label_runs WHERE run_id = '{clean}'")[0]
    reader.close()
    # a run whose labeller was never asked the progress question cannot be shaped
    rows = [{**lab, "run_id": "noprogress", "progress": None} for lab in labels]
    ws.commit({
        LABELS.name: pa.Table.from_pylist(rows, schema=LABELS.schema),
        LABEL_RUNS.name: pa.Table.from_pylist(
            [{**run, "run_id": "noprogress", "created_at": dt.datetime.now(dt.timezone.utc)}],
            schema=LABEL_RUNS.schema),
    })  # fmt: skip
    reader = ws.reader()
    source = parse_reward_source("sparse+rgvlm:noprogress@shaped", reader)
    with pytest.raises(RGVLMError, match=r"no progress answers.*--progress"):
        build_dataset(reader, source, HashEncoder())
    reader.close()
