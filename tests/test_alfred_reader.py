"""The ALFRED reader on the real json_2.1.0 sample (read in place) and on synthetic trajectories."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rgvlm_core.alfred import (
    ALFRED_SPLITS,
    ReadResult,
    find_alfred_root,
    find_splits_file,
    iter_alfred,
    list_trajectory_files,
    load_splits,
    read_trajectory,
)
from rgvlm_core.episodes import ALFRED_VOCABULARY, parse_action_token
from rgvlm_core.errors import RGVLMError, UsageError
from tests.alfred_factory import (
    DEFAULT_TASK_DIR,
    DEFAULT_TRIAL,
    task_name,
    write_splits_file,
    write_test_trial,
    write_trajectory,
)


@pytest.fixture(scope="module")
def real_root(shared_alfred: Path) -> Path:
    return shared_alfred / "json_2.1.0"


@pytest.fixture(scope="module")
def real_results(real_root: Path) -> list[ReadResult]:
    return list(iter_alfred(real_root, splits_file=None))


def _doc(result: ReadResult, root: Path) -> dict[str, Any]:
    return json.loads((root / result.path).read_text())


def _manipulation_subgoals(doc: dict[str, Any]) -> int:
    actions = [subgoal["discrete_action"]["action"] for subgoal in doc["plan"]["high_pddl"]]
    return sum(action not in ("GotoLocation", "NoOp") for action in actions)


# --- the real sample --------------------------------------------------------------------------


def test_reader_reads_every_real_file_without_error(real_root: Path, real_results: list[ReadResult]) -> None:
    assert len(real_results) == len(list(real_root.rglob("traj_data.json"))) == 412
    problems = [str(error) for result in real_results for error in result.errors]
    assert problems == []
    assert all(result.trajectory is not None for result in real_results)


def test_reader_forms_one_subtask_per_manipulation_subgoal_on_real_files(
    real_root: Path, real_results: list[ReadResult]
) -> None:
    checked = 0
    for result in real_results:
        trajectory = result.trajectory
        assert trajectory is not None
        if trajectory.task_only:
            continue
        doc = _doc(result, real_root)
        n_subtasks = _manipulation_subgoals(doc)
        assert len(trajectory.subtask_spans) == n_subtasks, result.path
        assert len(trajectory.steps) == len(doc["plan"]["low_actions"]), result.path
        assert sum(step.sparse_reward for step in trajectory.steps) == n_subtasks, result.path
        assert trajectory.steps[-1].done and not any(step.done for step in trajectory.steps[:-1])
        assert [step.t for step in trajectory.steps] == list(range(len(trajectory.steps)))
        for episode in result.episodes:
            assert len(episode.subtasks) == n_subtasks
            assert episode.n_subtasks == n_subtasks
        checked += 1
    assert checked == 392


def test_reader_aligns_instructions_of_real_files_without_a_terminal_noop(
    real_root: Path, real_results: list[ReadResult]
) -> None:
    no_noop = []
    for result in real_results:
        assert result.trajectory is not None
        if result.trajectory.task_only:
            continue
        doc = _doc(result, real_root)
        high_pddl = doc["plan"]["high_pddl"]
        if high_pddl[-1]["discrete_action"]["action"] == "NoOp":
            continue
        no_noop.append(result.path)
        for episode in result.episodes:
            descs = doc["turk_annotations"]["anns"][episode.repeat_idx]["high_descs"]
            assert len(descs) == len(high_pddl)
            last = episode.subtasks[-1]
            assert last.high_idxs[-1] == len(high_pddl) - 1
            assert last.instruction.endswith(descs[-1].strip())
            assert last.last_step == len(result.trajectory.steps) - 1
    assert 40 <= len(no_noop) <= 70  # the sample README: "some" files, 54 when counted


def test_reader_gives_real_subtasks_the_instructions_of_their_merged_subgoals(
    real_root: Path, real_results: list[ReadResult]
) -> None:
    result = next(r for r in real_results if r.trajectory and not r.trajectory.task_only)
    doc = _doc(result, real_root)
    assert len(result.episodes) == len(doc["turk_annotations"]["anns"]) >= 1, "one episode per annotation"
    for episode in result.episodes:
        ann = doc["turk_annotations"]["anns"][episode.repeat_idx]
        assert episode.goal == ann["task_desc"].strip()
        assert episode.instructions == tuple(ann["high_descs"])
        for subtask in episode.subtasks:
            expected = " ".join(ann["high_descs"][i].strip() for i in subtask.high_idxs)
            assert subtask.instruction == expected


def test_reader_makes_real_test_trials_task_only_without_steps(real_results: list[ReadResult]) -> None:
    tests = [r for r in real_results if r.trajectory and r.trajectory.split.startswith("tests_")]
    assert len(tests) == 20
    for result in tests:
        trajectory = result.trajectory
        assert trajectory is not None
        assert trajectory.task_only and trajectory.steps == () and trajectory.task_type is None
        assert trajectory.id == f"alfred:{trajectory.split}/{Path(trajectory.source_dir).name}"
        assert result.episodes and all(e.subtasks == () and e.instructions for e in result.episodes)
        assert all(e.n_subtasks is None for e in result.episodes)


def test_reader_writes_real_action_tokens_with_object_classes(real_results: list[ReadResult]) -> None:
    tokens = Counter(step.action for r in real_results if r.trajectory for step in r.trajectory.steps)
    assert tokens["MoveAhead_25"] > 0
    assert tokens["PutObject(SinkBasin)"] > 0  # the receptacle, from a 5-part id
    assert any(re.fullmatch(r"PickupObject\([A-Za-z]+Sliced\)", token) for token in tokens)
    for token in tokens:
        name, arg = parse_action_token(token)
        assert name in ALFRED_VOCABULARY.names
        assert (arg is not None) == (name in ALFRED_VOCABULARY.takes_argument)
        assert arg is None or not re.search(r"_\d+$", arg)


def test_reader_names_real_trajectories_and_episodes_by_split_and_folder(
    real_results: list[ReadResult],
) -> None:
    result = next(r for r in real_results if r.trajectory and r.trajectory.split == "train")
    trajectory = result.trajectory
    assert trajectory is not None
    trial_dir = Path(trajectory.source_dir)
    assert trial_dir.is_absolute()
    assert trajectory.id == f"alfred:train/{trial_dir.parent.name}/{trial_dir.name}"
    assert result.path == f"train/{trial_dir.parent.name}/{trial_dir.name}/traj_data.json"
    assert [e.id for e in result.episodes] == [f"{trajectory.id}#{e.repeat_idx}" for e in result.episodes]
    assert trajectory.dataset == "alfred" and trajectory.scene and trajectory.scene.startswith("FloorPlan")
    assert not trajectory.has_frames and trajectory.features_path is None


def test_iter_alfred_yields_one_episode_per_real_splits_entry(shared_alfred: Path, real_root: Path) -> None:
    splits_path = shared_alfred / "splits_subset.json"
    listed = json.loads(splits_path.read_text())
    entries = {(split, e["task"], e["repeat_idx"]) for split, items in listed.items() for e in items}
    results = list(iter_alfred(real_root, splits_file=splits_path))
    assert all(not r.errors for r in results)
    episodes = [(e.trajectory.split, e.id, e.repeat_idx) for r in results for e in r.episodes]
    assert len(episodes) == len(entries) == sum(len(items) for items in listed.values())


def test_iter_alfred_finds_the_real_splits_file_beside_the_root(shared_alfred: Path, real_root: Path) -> None:
    assert find_splits_file(real_root) == shared_alfred / "splits_subset.json"
    loaded = load_splits(shared_alfred / "splits_subset.json")
    assert set(loaded) == set(ALFRED_SPLITS)
    assert all("/" not in task for task, _ in loaded["tests_seen"])


def test_iter_alfred_with_annotation_zero_gives_one_episode_per_real_trajectory(real_root: Path) -> None:
    results = list(iter_alfred(real_root, annotation=0))
    assert len(results) == 412
    assert all(len(r.episodes) == 1 and r.episodes[0].repeat_idx == 0 for r in results)


def test_iter_alfred_stops_after_limit_trajectories(real_root: Path) -> None:
    assert len(list(iter_alfred(real_root, limit=7))) == 7
    assert len(list(iter_alfred(real_root, splits_file=None, limit=3, splits=["valid_seen"]))) == 3
    assert list(iter_alfred(real_root, limit=0)) == []


def test_iter_alfred_reads_only_the_chosen_real_splits(real_root: Path) -> None:
    results = list(iter_alfred(real_root, splits=["tests_unseen", "valid_unseen"], splits_file=None))
    assert Counter(r.trajectory.split for r in results if r.trajectory) == {
        "valid_unseen": 56,
        "tests_unseen": 10,
    }


def test_find_alfred_root_accepts_json_folder_and_its_parent(shared_alfred: Path, real_root: Path) -> None:
    assert find_alfred_root(real_root) == real_root
    assert find_alfred_root(shared_alfred) == real_root


def test_list_trajectory_files_is_sorted_by_split_then_path(real_root: Path) -> None:
    files = list_trajectory_files(real_root)
    assert len(files) == 412
    order = [ALFRED_SPLITS.index(split) for split, _ in files]
    assert order == sorted(order)
    assert files == list_trajectory_files(real_root)
    for split in ALFRED_SPLITS:
        paths = [p for s, p in files if s == split]
        assert paths == sorted(paths)


# --- synthetic trajectories -------------------------------------------------------------------


def test_reader_merges_goto_into_the_next_manipulation(tmp_path: Path) -> None:
    path = write_trajectory(tmp_path)
    result = read_trajectory(path, "train", tmp_path)
    assert result.errors == ()
    trajectory = result.trajectory
    assert trajectory is not None
    assert trajectory.subtask_spans == (("Pickup", 0, 3, (0, 1)), ("Put", 4, 7, (2, 3)))
    assert [s.subtask_index for s in trajectory.steps] == [0, 0, 0, 0, 1, 1, 1, 1]
    assert [s.sparse_reward for s in trajectory.steps] == [0, 0, 0, 1, 0, 0, 0, 1]
    assert [s.action for s in trajectory.steps][3:5] == ["PickupObject(Apple)", "MoveAhead_25"]
    assert trajectory.steps[-1].action == "PutObject(CounterTop)"
    assert trajectory.id == f"alfred:train/{DEFAULT_TASK_DIR}/{DEFAULT_TRIAL}"
    assert trajectory.task_type == "pick_and_place_simple" and trajectory.scene == "FloorPlan1"
    assert len(result.episodes) == 3
    first = result.episodes[0].subtasks[0]
    assert first.instruction == "Walk to the diningtable. Pick up the apple."
    assert (first.first_step, first.last_step, first.kind) == (0, 3, "Pickup")


def test_reader_merges_a_trailing_goto_into_the_previous_subtask(tmp_path: Path) -> None:
    subgoals = [("GotoLocation", ["sidetable"]), ("ToggleObject", ["desklamp"]), ("GotoLocation", ["bed"])]
    path = write_trajectory(tmp_path, subgoals=subgoals, steps_per_subgoal=2)
    result = read_trajectory(path, "train", tmp_path)
    assert result.errors == ()
    assert result.trajectory is not None
    assert result.trajectory.subtask_spans == (("Toggle", 0, 4, (0, 1, 2)),)
    assert (
        result.episodes[0].subtasks[0].instruction
        == "Walk to the sidetable. Turn on the desklamp. Walk to the bed."
    )


def test_reader_handles_heat_cool_clean_and_sliced_objects(tmp_path: Path) -> None:
    subgoals = [
        ("GotoLocation", ["countertop"]),
        ("SliceObject", ["apple"]),
        ("PickupObject", ["applesliced"]),
        ("HeatObject", ["applesliced"]),
        ("CoolObject", ["applesliced"]),
        ("CleanObject", ["applesliced"]),
    ]
    path = write_trajectory(tmp_path, subgoals=subgoals, noop=False)
    result = read_trajectory(path, "train", tmp_path)
    assert result.errors == ()
    assert result.trajectory is not None
    assert [span[0] for span in result.trajectory.subtask_spans] == [
        "Slice",
        "Pickup",
        "Heat",
        "Cool",
        "Clean",
    ]
    actions = [s.action for s in result.trajectory.steps]
    assert "PickupObject(AppleSliced)" in actions and "PutObject(SinkBasin)" in actions
    assert "ToggleObjectOn(Microwave)" in actions
    assert len(result.episodes[0].instructions) == 6


def test_reader_without_raw_images_gives_no_frames(tmp_path: Path) -> None:
    result = read_trajectory(write_trajectory(tmp_path), "train", tmp_path)
    assert result.trajectory is not None and not result.trajectory.has_frames
    assert all(step.frame is None and step.feature_row is None for step in result.trajectory.steps)


def test_reader_points_each_step_at_the_first_frame_of_its_low_action(tmp_path: Path) -> None:
    path = write_trajectory(tmp_path, frames=True)
    result = read_trajectory(path, "train", tmp_path)
    trajectory = result.trajectory
    assert trajectory is not None and trajectory.has_frames
    assert [s.frame for s in trajectory.steps[:2]] == ["raw_images/000000000.jpg", "raw_images/000000002.jpg"]
    assert all((Path(trajectory.source_dir) / str(s.frame)).is_file() for s in trajectory.steps)


def test_reader_reads_only_the_requested_annotations(tmp_path: Path) -> None:
    path = write_trajectory(tmp_path, n_annotations=4)
    result = read_trajectory(path, "train", tmp_path, repeat_idxs=[3, 1])
    assert [e.repeat_idx for e in result.episodes] == [1, 3]
    assert result.errors == ()


def test_reader_refuses_a_trajectory_when_every_requested_annotation_is_missing(tmp_path: Path) -> None:
    path = write_trajectory(tmp_path, n_annotations=2)
    result = read_trajectory(path, "train", tmp_path, repeat_idxs=[5])
    assert result.trajectory is None and result.episodes == ()
    assert [(e.field, e.problem) for e in result.errors] == [
        ("turk_annotations.anns", "annotation 5 was asked for but the file has 2 (repeat_idx 0..1)")
    ]


def test_reader_reads_a_synthetic_test_trial_as_task_only(tmp_path: Path) -> None:
    path = write_test_trial(tmp_path)
    result = read_trajectory(path, "tests_seen", tmp_path)
    assert result.errors == ()
    assert result.trajectory is not None and result.trajectory.task_only
    assert result.trajectory.id == "alfred:tests_seen/trial_T20190101_000000_000002"
    assert result.path == "tests_seen/trial_T20190101_000000_000002/traj_data.json"
    assert [len(e.instructions) for e in result.episodes] == [4, 4, 4]


def test_iter_alfred_refuses_trajectories_with_too_few_annotations_for_the_chosen_one(tmp_path: Path) -> None:
    write_trajectory(tmp_path, trial="trial_T1", n_annotations=3)
    write_trajectory(tmp_path, trial="trial_T2", n_annotations=5)
    results = list(iter_alfred(tmp_path, annotation=4))
    assert [r.trajectory is None for r in results] == [True, False]
    assert "annotation 4 was asked for but the file has 3" in str(results[0].errors[0])
    assert [e.repeat_idx for e in results[1].episodes] == [4]


def test_iter_alfred_follows_a_splits_file_and_reports_its_bad_entries(tmp_path: Path) -> None:
    root = tmp_path / "json_2.1.0"
    good = write_trajectory(root, trial="trial_T1")
    test = write_test_trial(root)
    splits = write_splits_file(
        tmp_path / "oct21.json",
        {
            "train": [(task_name(good), 0), (task_name(good), 2), (f"{DEFAULT_TASK_DIR}/trial_T9", 0)],
            "tests_seen": [(task_name(test), 1), (task_name(test), 7)],
        },
    )
    assert find_splits_file(root) == splits
    results = list(iter_alfred(tmp_path))  # the parent folder and the auto-detected splits file
    by_path: dict[str, list[ReadResult]] = {}
    for result in results:
        by_path.setdefault(result.path, []).append(result)
    assert [e.repeat_idx for e in by_path[f"train/{task_name(good)}/traj_data.json"][0].episodes] == [0, 2]
    assert [e.repeat_idx for e in by_path[f"tests_seen/{task_name(test)}/traj_data.json"][0].episodes] == [1]
    errors = [(e.source, e.field) for r in by_path[str(splits)] for e in r.errors]
    assert errors == [(str(splits), "train[2].task"), (str(splits), "tests_seen[1].repeat_idx")]
    assert all(r.trajectory is None for r in by_path[str(splits)])


def test_iter_alfred_without_a_splits_file_reads_every_annotation(tmp_path: Path) -> None:
    write_trajectory(tmp_path, trial="trial_T1", n_annotations=2)
    write_trajectory(tmp_path, "valid_seen", trial="trial_T2", n_annotations=6)
    write_test_trial(tmp_path, "tests_unseen")
    results = list(iter_alfred(tmp_path))
    assert [(r.trajectory.split, len(r.episodes)) for r in results if r.trajectory] == [
        ("train", 2),
        ("valid_seen", 6),
        ("tests_unseen", 3),
    ]


def test_iter_alfred_checks_its_arguments_before_reading(tmp_path: Path) -> None:
    write_trajectory(tmp_path)
    with pytest.raises(UsageError, match="unknown ALFRED split 'training'"):
        iter_alfred(tmp_path, splits=["training"])
    with pytest.raises(UsageError, match="limit"):
        iter_alfred(tmp_path, limit=-1)
    with pytest.raises(UsageError, match="annotation"):
        iter_alfred(tmp_path, annotation=-2)


def test_find_alfred_root_refuses_a_folder_without_split_folders(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    with pytest.raises(
        RGVLMError, match="not an ALFRED-format folder: expected split folders train/, valid_seen/"
    ):
        find_alfred_root(tmp_path)
    write_trajectory(tmp_path / "a")
    write_trajectory(tmp_path / "b")
    with pytest.raises(RGVLMError, match="several candidates: a, b"):
        find_alfred_root(tmp_path)
    with pytest.raises(RGVLMError, match="is itself a split folder"):
        find_alfred_root(tmp_path / "a" / "train")
