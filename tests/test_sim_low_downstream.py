"""Low-level trajectories downstream of the generator: read, labelled, trained on and evaluated.

Until `rgvlm sim generate --level low` exists, the episodes are written here from the low-level expert
(`sim.low.expert.plan` stepped by `sim.low.world.apply`), in the layout of docs' low-level contract:
GotoLocation + manipulation subgoals per subtask, ALFRED's low actions, `rgvlm_sim` version 2 with the
floor plan once and the states without it.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from rgvlm_core.alfred import iter_alfred
from rgvlm_core.sim.generate import VERB_OF
from rgvlm_core.sim.low import expert
from rgvlm_core.sim.low.floorplan import GRID
from rgvlm_core.sim.low.nav import N_NAV
from rgvlm_core.sim.low.scenes import randomize_low, sample_low_task
from rgvlm_core.sim.low.serialize import floor_plan_document, low_state_to_dict, plan_to_string
from rgvlm_core.sim.low.world import ACTION_INDEX, ACTIONS, LowState, apply, progress, valid_mask

API_NAV = {
    "MoveAhead_25": {"action": "MoveAhead", "forceAction": True, "moveMagnitude": 0.25},
    "RotateLeft_90": {"action": "RotateLeft", "forceAction": True},
    "RotateRight_90": {"action": "RotateRight", "forceAction": True},
    "LookUp_15": {"action": "LookUp", "forceAction": True},
    "LookDown_15": {"action": "LookDown", "forceAction": True},
}


# -- a low-level traj_data.json, written as the contract says ---------------------------------------
def _rollout(seed: int, n_subtasks: int, style: str) -> dict[str, Any] | None:
    """An expert (or detouring, or stopped) low-level episode: actions, states, rewards, progress."""
    rng = np.random.default_rng([seed, n_subtasks])
    task, s = sample_low_task(rng, n_subtasks, None)
    if seed % 2:
        s = randomize_low(s, rng)
    states, actions, rewards, moved, valid, reasons = [s], [], [], [], [], []
    done, remaining = 0, len(expert.plan(s, task))
    expert_length = remaining
    detours = 3 if style == "suboptimal" else 0
    queue: list[int] = []  # the expert's plan, followed to its end (replanned after a detour only)
    while done < len(task.subtasks):
        if style == "failed" and len(actions) >= max(2, expert_length // 2):
            break
        if detours and rng.random() < 0.3:
            detours -= 1
            choice = np.flatnonzero(valid_mask(s))
            a, queue = int(choice[rng.integers(len(choice))]), []
        else:
            queue = queue or expert.plan(s, task, done)
            a = queue.pop(0)
        s, err = apply(s, a)
        now = progress(s.world, task, done)
        left = len(expert.plan(s, task, now))
        actions.append(a)
        rewards.append(now - done)
        moved.append(now > done or left < remaining)
        valid.append(err is None)
        reasons.append(err)
        states.append(s)
        done, remaining = now, left
    if not actions or max(rewards) > 1:
        return None
    return {
        "task": task,
        "states": states,
        "actions": actions,
        "rewards": rewards,
        "progress": moved,
        "valid": valid,
        "reasons": reasons,
        "style": style,
        "condition": "randomized" if seed % 2 else "default",
        "expert_length": expert_length,
    }


def _high_idxs(actions: list[int], rewards: list[int]) -> list[int]:
    """2k for subtask k's navigation before its first interaction, 2k+1 for the rest of its segment."""
    out, k, touched = [], 0, False
    for a, r in zip(actions, rewards, strict=True):
        touched = touched or a >= N_NAV
        out.append(2 * k + (1 if touched else 0))
        if r:
            k, touched = k + 1, False
    return out


def _object_id(cls: str, s: LowState) -> str:
    r = s.plan.receptacle(s.world.agent or "")
    return f"{cls}|{r.x:+.2f}|+00.90|{r.z:+.2f}"


def _low_action(a: int, high_idx: int, s: LowState) -> dict[str, Any]:
    verb, arg = ACTIONS[a]
    if not arg:
        return {
            "high_idx": high_idx,
            "discrete_action": {"action": verb, "args": {}},
            "api_action": API_NAV[verb],
        }
    api: dict[str, Any] = {"action": verb, "objectId": _object_id(arg, s) if s.world.agent else arg}
    return {"high_idx": high_idx, "discrete_action": {"action": verb, "args": [arg]}, "api_action": api}


def low_traj_document(ep: dict[str, Any], trial: str) -> dict[str, Any]:
    """traj_data.json of a low-level rollout (docs: the low-level contract)."""
    task, states, actions = ep["task"], ep["states"], ep["actions"]
    high_pddl: list[dict[str, Any]] = []
    for k, sub in enumerate(task.subtasks):
        where = sub.target or sub.obj
        high_pddl.append(
            {
                "high_idx": 2 * k,
                "discrete_action": {"action": "GotoLocation", "args": [where.lower()]},
                "planner_action": {"action": "GotoLocation", "location": where},
            }
        )
        high_pddl.append(
            {
                "high_idx": 2 * k + 1,
                "discrete_action": {
                    "action": VERB_OF[sub.kind],
                    "args": [x.lower() for x in (sub.obj, sub.target) if x],
                },
                "planner_action": {
                    "action": VERB_OF[sub.kind],
                    "objectId": sub.obj,
                    "receptacleObjectId": sub.target or "",
                },
            }
        )
    n = len(task.subtasks)
    high_pddl.append(
        {
            "high_idx": 2 * n,
            "discrete_action": {"action": "NoOp", "args": []},
            "planner_action": {"action": "End"},
        }
    )
    idxs = _high_idxs(actions, ep["rewards"])
    low = [_low_action(a, h, s) for a, h, s in zip(actions, idxs, states, strict=False)]
    images = [{"low_idx": t, "high_idx": h, "image_name": f"{t:09d}.png"} for t, h in enumerate(idxs)]
    images.append({"low_idx": len(idxs), "high_idx": idxs[-1], "image_name": f"{len(idxs):09d}.png"})
    descs = [d for text in task.instructions for d in ("", text)]
    plan = states[0].plan
    x, z, heading, horizon = states[0].pose
    return {
        "images": images,
        "pddl_params": task.params,
        "plan": {"high_pddl": high_pddl, "low_actions": low},
        "scene": {
            "floor_plan": plan.name,
            "scene_num": 0,
            "init_action": {
                "action": "TeleportFull",
                "x": x * GRID,
                "z": z * GRID,
                "rotation": heading,
                "horizon": horizon,
            },
        },
        "task_id": trial,
        "task_type": task.task_type,
        "turk_annotations": {
            "anns": [{"assignment_id": "t", "task_desc": task.goal, "high_descs": descs, "votes": [1]}]
        },
        "rgvlm_sim": {
            "version": 2,
            "level": "low",
            "plan": plan_to_string(plan),
            "floor_plan": floor_plan_document(plan),
            "behaviour": ep["style"],
            "condition": ep["condition"],
            "room": task.room,
            "n_subtasks": n,
            "completed": sum(ep["rewards"]),
            "expert_length": ep["expert_length"],
            "subtasks": [asdict(s) for s in task.subtasks],
            "rewards": ep["rewards"],
            "progress": ep["progress"],
            "valid": ep["valid"],
            "invalid_reasons": ep["reasons"],
            "states": [{k: v for k, v in low_state_to_dict(s).items() if k != "plan"} for s in states],
        },
    }


def write_low_dataset(out: Path, episodes: int, lengths: tuple[int, ...] = (1, 2)) -> list[dict[str, Any]]:
    """`episodes` low-level trajectories under out/train/, behaviours mixed; returns the rollouts."""
    written: list[dict[str, Any]] = []
    seed = 0
    styles = ("expert", "suboptimal", "failed")
    while len(written) < episodes:
        seed += 1
        style = styles[len(written) % len(styles)]
        ep = _rollout(seed, lengths[len(written) % len(lengths)], style)
        if ep is None:
            continue
        trial = f"trial_L{seed:06d}"
        folder = out / "train" / f"{ep['task'].task_type}-{seed}" / trial
        folder.mkdir(parents=True)
        (folder / "traj_data.json").write_bytes(orjson.dumps(low_traj_document(ep, trial)))
        written.append(ep)
    return written


@pytest.fixture(scope="module")
def low_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("low") / "data"
    return out, write_low_dataset(out, 12)


# -- the reader ----------------------------------------------------------------------------------------
def test_the_reader_imports_low_level_trajectories_with_low_tokens_and_self_contained_states(
    low_data: tuple[Path, list[dict[str, Any]]],
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
