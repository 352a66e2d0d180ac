"""feat_conv.pt: the three row layouts are told apart and mapped to steps; wrong tensors are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from rgvlm_core.alfred import inspect_features, read_trajectory
from rgvlm_core.alfred.features import feature_layout
from rgvlm_core.errors import DataFormatError
from tests.alfred_factory import write_features, write_trajectory


@pytest.mark.parametrize("layout", ["low_actions", "low_actions+1"])
def test_reader_maps_step_t_to_feature_row_t_in_the_low_action_layouts(tmp_path: Path, layout: str) -> None:
    path = write_trajectory(tmp_path, features=layout)
    result = read_trajectory(path, "train", tmp_path)
    trajectory = result.trajectory
    assert result.errors == () and trajectory is not None
    assert trajectory.features_layout == layout
    assert trajectory.features_path == str(path.parent / "feat_conv.pt")
    assert [step.feature_row for step in trajectory.steps] == list(range(8))


def test_reader_maps_steps_to_their_first_image_row_in_the_images_layout(tmp_path: Path) -> None:
    def three_frames_for_the_first_action(doc: dict) -> None:
        first = dict(doc["images"][0], image_name="extra.png")
        doc["images"].insert(1, first)

    path = write_trajectory(tmp_path, features="images+10", mutate=three_frames_for_the_first_action)
    write_features(path.parent, 17 + 10)  # 16 images written by the factory, plus the inserted one
    result = read_trajectory(path, "train", tmp_path)
    trajectory = result.trajectory
    assert result.errors == () and trajectory is not None
    assert trajectory.features_layout == "images+10"
    assert [step.feature_row for step in trajectory.steps] == [0, 3, 5, 7, 9, 11, 13, 15]


def test_reader_reads_features_saved_in_the_legacy_non_zip_format(tmp_path: Path) -> None:
    path = write_trajectory(tmp_path)
    write_features(path.parent, 9, legacy=True)
    result = read_trajectory(path, "train", tmp_path)
    assert result.trajectory is not None and result.trajectory.features_layout == "low_actions+1"


def test_feature_layout_prefers_low_actions_then_plus_one_then_images_when_counts_collide() -> None:
    assert feature_layout(12, n_low_actions=12, n_images=2) == "low_actions"
    assert feature_layout(13, n_low_actions=12, n_images=3) == "low_actions+1"
    assert feature_layout(13, n_low_actions=5, n_images=3) == "images+10"
    assert feature_layout(14, n_low_actions=5, n_images=3) is None


@pytest.mark.parametrize(
    ("rows", "row_shape", "dtype", "field", "contains"),
    [
        (8, (512, 7), "float32", "shape", "got [8, 512, 7]"),
        (8, (2048, 7, 7), "float32", "shape", "got [8, 2048, 7, 7]"),
        (8, (512, 7, 7, 1), "float32", "shape", "expected [T, 512, 7, 7]"),
        (8, (512, 7, 7), "uint8", "dtype", "torch.uint8"),
        (30, (512, 7, 7), "float32", "shape[0]", "T=30 matches no layout"),
        (0, (512, 7, 7), "float32", "shape[0]", "T=0"),
    ],
    ids=["three_dims", "wrong_channels", "five_dims", "integer", "wrong_t", "empty"],
)
def test_inspect_features_refuses_tensors_of_the_wrong_shape_or_type(
    tmp_path: Path, rows: int, row_shape: tuple[int, ...], dtype: str, field: str, contains: str
) -> None:
    path = write_features(tmp_path, rows, row_shape, dtype=dtype)
    with pytest.raises(DataFormatError) as caught:
        inspect_features(path, n_low_actions=8, n_images=16)
    assert (caught.value.source, caught.value.field) == (str(path), field)
    assert contains in caught.value.problem


def test_inspect_features_accepts_half_precision(tmp_path: Path) -> None:
    path = write_features(tmp_path, 26, dtype="float16")
    assert inspect_features(path, n_low_actions=8, n_images=16) == "images+10"


def test_inspect_features_names_the_given_source(tmp_path: Path) -> None:
    path = tmp_path / "feat_conv.pt"
    path.write_bytes(b"")
    with pytest.raises(DataFormatError, match=r"^train/x/feat_conv\.pt: not a readable torch tensor file"):
        inspect_features(path, 8, 16, source="train/x/feat_conv.pt")
