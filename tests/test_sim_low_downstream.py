"""Low-level trajectories downstream of the generator: `generate(GenerateConfig(level="low"))` written,
then read by the ALFRED reader with ALFRED's low-level tokens and self-contained states."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from rgvlm_core.alfred import iter_alfred
from rgvlm_core.sim.generate import GenerateConfig, Generated, generate
from rgvlm_core.sim.low.world import ACTION_INDEX


def write_low_dataset(
    out: Path, episodes: int, lengths: tuple[int, ...] = (1, 2), floor_plans: tuple[int, ...] | None = None
) -> list[Generated]:
    """`episodes` low-level trajectories under out/train/ (behaviours mixed, no frames)."""
    config = GenerateConfig(
        episodes=episodes,
        seed=1,
        level="low",
        floor_plans=floor_plans,
        min_subtasks=min(lengths),
        max_subtasks=max(lengths),
        frames=False,
        annotations=1,
    )
    return list(generate(out, config))


@pytest.fixture(scope="module")
def low_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Generated]]:
    out = tmp_path_factory.mktemp("low") / "data"
    return out, write_low_dataset(out, 12)


# -- the reader ----------------------------------------------------------------------------------------
def test_the_reader_imports_low_level_trajectories_with_low_tokens_and_self_contained_states(
    low_data: tuple[Path, list[Generated]],
) -> None:
    from rgvlm_core.sim.low.serialize import low_state_from_dict

    out, written = low_data
    results = list(iter_alfred(out))
    assert not [e for r in results for e in r.errors]
    by_trial = {Path(r.trajectory.source_dir).name: r for r in results if r.trajectory}
    assert len(by_trial) == len(written)
    for res in by_trial.values():
        traj = res.trajectory
        assert traj is not None and traj.dataset == "sim"
        doc = orjson.loads((Path(traj.source_dir) / "traj_data.json").read_bytes())
        sim = doc["rgvlm_sim"]
        assert all(s.action in ACTION_INDEX for s in traj.steps)
        assert [s.sparse_reward for s in traj.steps] == sim["rewards"]
        first = low_state_from_dict(json.loads(traj.steps[0].state or "{}"))
        assert first.plan.name == sim["floor_plan"]["name"] and list(first.pose) == sim["states"][0]["pose"]
        final = low_state_from_dict(json.loads(traj.final_state or "{}"))
        assert list(final.pose) == sim["states"][-1]["pose"]
        (ep,) = res.episodes
        assert len(ep.subtasks) == sim["n_subtasks"]
        assert [s.completed for s in ep.subtasks] == [k < sim["completed"] for k in range(sim["n_subtasks"])]
