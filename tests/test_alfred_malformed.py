"""Malformed ALFRED files are refused one by one, each with a one-line message naming file and field."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rgvlm_core.alfred import iter_alfred, load_splits, read_trajectory
from rgvlm_core.errors import DataFormatError
from tests.alfred_factory import (
    DEFAULT_TASK_DIR,
    DEFAULT_TRIAL,
    build_document,
    drop_low_actions,
    task_name,
    write_features,
    write_splits_file,
    write_test_trial,
    write_trajectory,
)

Doc = dict[str, Any]


@dataclass(frozen=True)
class Case:
    """One malformed trajectory: how to write it and the error it must get."""

    name: str
    write: Callable[[Path, str], Path]  # (root, trial) -> traj_data.json
    field: str
    contains: str
    file: str = "traj_data.json"  # which file the error names (feat_conv.pt for feature problems)
    annotation_level: bool = False  # only annotation 1 is refused; the trajectory stays


def mutated(edit: Callable[[Doc], None], **options: Any) -> Callable[[Path, str], Path]:
    return lambda root, trial: write_trajectory(root, trial=trial, mutate=edit, **options)


def rewritten(data: bytes) -> Callable[[Path, str], Path]:
    def write(root: Path, trial: str) -> Path:
        path = write_trajectory(root, trial=trial)
        path.write_bytes(data if data != b"<half>" else path.read_bytes()[:700])
        return path

    return write


def with_features(replace: Callable[[Path], object]) -> Callable[[Path, str], Path]:
    def write(root: Path, trial: str) -> Path:
        path = write_trajectory(root, trial=trial, features="low_actions")
        replace(path.parent)
        return path

    return write


def without_frame(name: str) -> Callable[[Path, str], Path]:
    def write(root: Path, trial: str) -> Path:
        path = write_trajectory(root, trial=trial, frames=True)
        (path.parent / "raw_images" / name).unlink()
        return path

    return write


def _save_dict(trial_dir: Path) -> None:
    import torch

    torch.save({"features": torch.zeros(8, 512, 7, 7)}, trial_dir / "feat_conv.pt")


def low(t: int) -> Callable[[Doc], Any]:
    return lambda doc: doc["plan"]["low_actions"][t]


def setter(path: Callable[[Doc], Any], key: Any, value: Any) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        path(doc)[key] = value

    return edit


def deleter(path: Callable[[Doc], Any], key: Any) -> Callable[[Doc], None]:
    def edit(doc: Doc) -> None:
        del path(doc)[key]

    return edit


def _plan(doc: Doc) -> Any:
    return doc["plan"]


def _high(i: int) -> Callable[[Doc], Any]:
    return lambda doc: doc["plan"]["high_pddl"][i]["discrete_action"]


def _ann(r: int) -> Callable[[Doc], Any]:
    return lambda doc: doc["turk_annotations"]["anns"][r]


def _uncover_low_action(doc: Doc) -> None:
    doc["images"] = [image for image in doc["images"] if image["low_idx"] != 4]


# The default trajectory: subgoals Goto(0) Pickup(1) Goto(2) Put(3) NoOp(4); low actions 0-2 go to
# the table, 3 picks up, 4-6 go to the counter, 7 puts; images 2k and 2k+1 show low action k.
CASES: tuple[Case, ...] = (
    Case("truncated_json", rewritten(b"<half>"), "(json)", "invalid JSON at line"),
    Case("empty_file", rewritten(b""), "(json)", "invalid JSON at line 1 column 1"),
    Case("not_utf8", rewritten(b'{"task_id": "\xff\xfe"}'), "(json)", "UTF-8"),
    Case("not_an_object", rewritten(b"[1, 2, 3]"), "", "expected a JSON object at the top level, got array"),
    Case("missing_plan", mutated(deleter(lambda d: d, "plan")), "plan", "missing required key 'plan'"),
    Case(
        "missing_task_type", mutated(deleter(lambda d: d, "task_type")), "task_type", "missing required key"
    ),
    Case(
        "unknown_task_type",
        mutated(setter(lambda d: d, "task_type", "juggle")),
        "task_type",
        "unknown task type",
    ),
    Case("task_id_not_a_string", mutated(setter(lambda d: d, "task_id", 17)), "task_id", "got integer 17"),
    Case(
        "scene_not_an_object",
        mutated(setter(lambda d: d, "scene", "FloorPlan1")),
        "scene",
        "expected an object",
    ),
    Case(
        "low_actions_not_a_list",
        mutated(setter(_plan, "low_actions", {})),
        "plan.low_actions",
        "expected an array",
    ),
    Case("empty_low_actions", mutated(setter(_plan, "low_actions", [])), "plan.low_actions", "empty array"),
    Case(
        "low_action_without_discrete_action",
        mutated(deleter(low(2), "discrete_action")),
        "plan.low_actions[2].discrete_action",
        "missing required key 'discrete_action'",
    ),
    Case(
        "high_idx_decreasing",
        mutated(setter(low(5), "high_idx", 0)),
        "plan.low_actions[5].high_idx",
        "decreases from 2 to 0",
    ),
    Case(
        "high_idx_not_an_integer",
        mutated(setter(low(0), "high_idx", "0")),
        "plan.low_actions[0].high_idx",
        "expected an integer, got string '0'",
    ),
    Case(
        "high_idx_beyond_high_pddl",
        mutated(setter(low(7), "high_idx", 9)),
        "plan.low_actions[7].high_idx",
        "9 is beyond plan.high_pddl, which has 5 subgoals",
    ),
    Case(
        "low_action_in_the_noop",
        mutated(setter(low(7), "high_idx", 4)),
        "plan.low_actions[7].high_idx",
        "terminal NoOp",
    ),
    Case(
        "unknown_low_action",
        mutated(setter(lambda d: d["plan"]["low_actions"][1]["discrete_action"], "action", "Jump_50")),
        "plan.low_actions[1].discrete_action.action",
        "unknown low-level action 'Jump_50'",
    ),
    Case(
        "interaction_without_object_id",
        mutated(deleter(lambda d: d["plan"]["low_actions"][3]["api_action"], "objectId")),
        "plan.low_actions[3].api_action.objectId",
        "missing required key 'objectId'",
    ),
    Case(
        "put_without_receptacle",
        mutated(deleter(lambda d: d["plan"]["low_actions"][7]["api_action"], "receptacleObjectId")),
        "plan.low_actions[7].api_action.receptacleObjectId",
        "missing required key",
    ),
    Case(
        "object_id_without_class",
        mutated(setter(lambda d: d["plan"]["low_actions"][3]["api_action"], "objectId", "|+01.00|+00.90|")),
        "plan.low_actions[3].api_action.objectId",
        "no object class",
    ),
    Case(
        "unknown_high_action",
        mutated(setter(_high(1), "action", "JuggleObject")),
        "plan.high_pddl[1].discrete_action.action",
        "unknown subgoal action 'JuggleObject'",
    ),
    Case(
        "high_pddl_misnumbered",
        mutated(setter(lambda d: d["plan"]["high_pddl"][2], "high_idx", 5)),
        "plan.high_pddl[2].high_idx",
        "expected 2",
    ),
    Case(
        "noop_before_the_end",
        mutated(setter(_high(2), "action", "NoOp")),
        "plan.high_pddl[2].discrete_action.action",
        "NoOp may only be the last subgoal",
    ),
    Case(
        "only_goto_subgoals",
        lambda root, trial: write_trajectory(root, trial=trial, subgoals=[("GotoLocation", ["bed"])]),
        "plan.high_pddl",
        "no manipulation subgoal",
    ),
    Case(
        "subtask_without_steps",
        mutated(lambda doc: drop_low_actions(doc, [2, 3])),
        "plan.high_pddl[2]",
        "subtask 1 (Put, subgoals [2, 3]) has no low-level action",
    ),
    Case(
        "missing_turk_annotations",
        mutated(deleter(lambda d: d, "turk_annotations")),
        "turk_annotations",
        "missing required key",
    ),
    Case(
        "empty_anns",
        mutated(setter(lambda d: d["turk_annotations"], "anns", [])),
        "turk_annotations.anns",
        "empty array",
    ),
    Case(
        "images_not_covering_a_low_action",
        mutated(_uncover_low_action),
        "images",
        "no image for low action 4",
    ),
    Case(
        "image_low_idx_not_an_integer",
        mutated(setter(lambda d: d["images"][3], "low_idx", None)),
        "images[3].low_idx",
        "expected an integer, got null",
    ),
    Case(
        "missing_frame",
        without_frame("000000004.jpg"),
        "images[4].image_name",
        "raw_images/000000004.jpg is missing",
    ),
    Case(
        "features_of_wrong_shape",
        with_features(lambda d: write_features(d, 8, (512, 14, 14))),
        "shape",
        "expected [T, 512, 7, 7]",
        file="feat_conv.pt",
    ),
    Case(
        "features_with_wrong_t",
        with_features(lambda d: write_features(d, 5)),
        "shape[0]",
        "T=5 matches no layout: expected 8 (low_actions), 9 (low_actions+1) or 26 (images+10)",
        file="feat_conv.pt",
    ),
    Case(
        "features_not_float",
        with_features(lambda d: write_features(d, 8, dtype="int64")),
        "dtype",
        "expected a float tensor",
        file="feat_conv.pt",
    ),
    Case("features_not_a_tensor", with_features(_save_dict), "", "expected a tensor", file="feat_conv.pt"),
    Case(
        "features_corrupt",
        with_features(lambda d: (d / "feat_conv.pt").write_bytes(b"not a torch file")),
        "",
        "not a readable torch tensor file",
        file="feat_conv.pt",
    ),
    Case(
        "high_descs_not_a_list",
        mutated(setter(_ann(1), "high_descs", "Walk to the table.")),
        "turk_annotations.anns[1].high_descs",
        "expected an array, got string",
        annotation_level=True,
    ),
    Case(
        "task_desc_not_a_string",
        mutated(setter(_ann(1), "task_desc", None)),
        "turk_annotations.anns[1].task_desc",
        "expected a string, got null",
        annotation_level=True,
    ),
    Case(
        "high_desc_not_a_string",
        mutated(setter(lambda d: d["turk_annotations"]["anns"][1]["high_descs"], 2, 3)),
        "turk_annotations.anns[1].high_descs[2]",
        "expected a string, got integer 3",
        annotation_level=True,
    ),
    Case(
        "high_descs_one_short",
        mutated(lambda d: d["turk_annotations"]["anns"][1]["high_descs"].pop()),
        "turk_annotations.anns[1].high_descs",
        "expected 4 sentences (one per subgoal; 5 subgoals with a terminal NoOp), got 3",
        annotation_level=True,
    ),
)


def _source(trial: str, file: str) -> str:
    return f"train/{DEFAULT_TASK_DIR}/{trial}/{file}"


def test_the_malformed_corpus_has_at_least_twenty_distinct_cases() -> None:
    assert len({case.name for case in CASES}) == len(CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_reader_refuses_each_malformed_file_naming_file_and_field(tmp_path: Path, case: Case) -> None:
    path = case.write(tmp_path, DEFAULT_TRIAL)
    result = read_trajectory(path, "train", tmp_path)
    assert result.path == _source(DEFAULT_TRIAL, "traj_data.json")
    assert len(result.errors) == 1, [str(e) for e in result.errors]
    error = result.errors[0]
    assert (error.source, error.field) == (_source(DEFAULT_TRIAL, case.file), case.field)
    assert case.contains in error.problem
    assert "\n" not in str(error) and str(error).startswith(error.source)
    if case.annotation_level:
        assert result.trajectory is not None
        assert [e.repeat_idx for e in result.episodes] == [0, 2]
    else:
        assert result.trajectory is None and result.episodes == ()


def test_iter_alfred_imports_valid_files_beside_every_malformed_one(tmp_path: Path) -> None:
    valid = [write_trajectory(tmp_path, trial=f"trial_T_valid_{i}", frames=i == 1) for i in range(3)]
    bad = {case.name: case.write(tmp_path, f"trial_T_{case.name}") for case in CASES}
    results = {result.path: result for result in iter_alfred(tmp_path, splits_file=None)}
    assert len(results) == len(valid) + len(CASES)
    for path in valid:
        result = results[_source(path.parent.name, "traj_data.json")]
        assert result.errors == () and result.trajectory is not None and len(result.episodes) == 3
    messages = set()
    for case in CASES:
        result = results[_source(bad[case.name].parent.name, "traj_data.json")]
        assert [e.field for e in result.errors] == [case.field], case.name
        assert (result.trajectory is None) != case.annotation_level
        messages.add((result.errors[0].field, result.errors[0].problem))
    assert len(messages) == len(CASES)


def test_an_annotation_with_the_wrong_high_descs_count_is_refused_alone(tmp_path: Path) -> None:
    def two_extra(doc: Doc) -> None:
        doc["turk_annotations"]["anns"][0]["high_descs"] += ["One more.", "And another."]

    path = write_trajectory(tmp_path, n_annotations=4, mutate=two_extra)
    result = read_trajectory(path, "train", tmp_path)
    assert result.trajectory is not None
    assert [e.repeat_idx for e in result.episodes] == [1, 2, 3]
    assert [(e.field, e.problem) for e in result.errors] == [
        (
            "turk_annotations.anns[0].high_descs",
            "expected 4 sentences (one per subgoal; 5 subgoals with a terminal NoOp), got 6",
        )
    ]


def test_a_trajectory_whose_every_annotation_is_bad_is_refused(tmp_path: Path) -> None:
    def no_goals(doc: Doc) -> None:
        for ann in doc["turk_annotations"]["anns"]:
            ann["task_desc"] = 0

    result = read_trajectory(write_trajectory(tmp_path, mutate=no_goals), "train", tmp_path)
    assert result.trajectory is None and result.episodes == ()
    assert [e.field for e in result.errors] == [f"turk_annotations.anns[{r}].task_desc" for r in range(3)]


def test_a_malformed_test_trial_is_refused_by_field(tmp_path: Path) -> None:
    path = write_test_trial(tmp_path, mutate=lambda doc: doc.pop("task_id"))
    result = read_trajectory(path, "tests_seen", tmp_path)
    assert result.trajectory is None
    assert [(e.source, e.field) for e in result.errors] == [
        (f"tests_seen/{path.parent.name}/traj_data.json", "task_id")
    ]


# --- splits files -----------------------------------------------------------------------------


def test_iter_alfred_reports_a_listed_trial_missing_on_disk(tmp_path: Path) -> None:
    root = tmp_path / "json"
    present = write_trajectory(root)
    splits = write_splits_file(
        tmp_path / "splits.json",
        {"train": [(task_name(present), 0), (f"{DEFAULT_TASK_DIR}/trial_T_gone", 1)]},
    )
    results = list(iter_alfred(root, splits_file=splits))
    missing = [r for r in results if r.trajectory is None]
    assert len(results) == 2 and len(missing) == 1
    error = missing[0].errors[0]
    assert (missing[0].path, error.source, error.field) == (str(splits), str(splits), "train[1].task")
    assert "trial_T_gone/traj_data.json does not exist" in error.problem


def test_iter_alfred_reports_a_repeat_idx_out_of_range(tmp_path: Path) -> None:
    root = tmp_path / "json"
    test = write_test_trial(root, "tests_seen", n_annotations=3)
    entries = [(task_name(test), r) for r in (0, 1, 2, 3, 4)]
    splits = write_splits_file(tmp_path / "oct21.json", {"tests_seen": entries})
    results = list(iter_alfred(root, splits_file=splits))
    assert [len(r.episodes) for r in results] == [3, 0, 0]
    assert [r.errors[0].field for r in results[1:]] == [
        "tests_seen[3].repeat_idx",
        "tests_seen[4].repeat_idx",
    ]
    assert "the file has 3 annotations (0..2)" in results[1].errors[0].problem


@pytest.mark.parametrize(
    ("content", "field", "contains"),
    [
        ([["train", []]], "", "expected a JSON object mapping split names to entry lists, got array"),
        ({"training": []}, "training", "unknown split name 'training'"),
        ({"train": {}}, "train", "expected an array, got object"),
        ({"train": [{"task": "a/b"}]}, "train[0].repeat_idx", "missing required key 'repeat_idx'"),
        ({"train": [{"task": 5, "repeat_idx": 0}]}, "train[0].task", "expected a string, got integer 5"),
        (
            {"train": [{"task": "a/b", "repeat_idx": -1}]},
            "train[0].repeat_idx",
            "expected an annotation index >= 0",
        ),
        (
            {"train": [{"task": "trial_T1", "repeat_idx": 0}]},
            "train[0].task",
            "expected '<task_dir>/<trial>'",
        ),
        (
            {"tests_seen": [{"task": "a/trial_T1", "repeat_idx": 0}]},
            "tests_seen[0].task",
            "expected '<trial>'",
        ),
    ],
    ids=[
        "not_an_object",
        "unknown_split",
        "entries_not_a_list",
        "no_repeat_idx",
        "task_not_a_string",
        "negative_repeat_idx",
        "train_task_without_dir",
        "test_task_with_dir",
    ],
)
def test_load_splits_refuses_a_bad_splits_file_naming_the_field(
    tmp_path: Path, content: Any, field: str, contains: str
) -> None:
    path = tmp_path / "oct21.json"
    path.write_text(json.dumps(content))
    with pytest.raises(DataFormatError) as caught:
        load_splits(path)
    assert (caught.value.source, caught.value.field) == (str(path), field)
    assert contains in caught.value.problem


def test_load_splits_refuses_invalid_json_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "oct21.json"
    path.write_text('{"train": [')
    with pytest.raises(DataFormatError, match=r"\(json\): invalid JSON at line 1 column 12"):
        load_splits(path)


# --- no input makes the reader raise ----------------------------------------------------------

_ODD_VALUES: tuple[Any, ...] = (None, [], {}, "x", -1, 10**9, True, 1.5, [None])


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key/index path in a document, skipping the bulky interaction args."""
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            if key not in ("args", "object_poses", "init_action"):
                found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _edit(doc: Doc, path: tuple[Any, ...], value: Any, delete: bool) -> Doc:
    doc = copy.deepcopy(doc)
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return doc


def test_reader_never_raises_on_any_single_field_edit(tmp_path: Path) -> None:
    path = write_trajectory(tmp_path, frames=True, features="images+10")
    base = build_document()
    rng = random.Random(7)
    edits = read = refused = 0
    for field_path in _paths(base):
        for value in [*rng.sample(_ODD_VALUES, 3), "<delete>"]:
            doc = _edit(base, field_path, value, delete=value == "<delete>")
            path.write_bytes(json.dumps(doc).encode())
            result = read_trajectory(path, "train", tmp_path)
            edits += 1
            for error in result.errors:
                assert "\n" not in str(error) and error.source.startswith("train/")
            if result.trajectory is not None:
                read += 1
                spans = result.trajectory.subtask_spans
                assert sum(step.sparse_reward for step in result.trajectory.steps) == len(spans)
            else:
                refused += 1
                assert result.errors, "a refused file says why"
    assert edits > 500
    assert read > 0 and refused > 0, "the edits include harmless ones (read) and fatal ones (refused)"
