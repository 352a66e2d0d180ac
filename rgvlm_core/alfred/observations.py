"""What each step observes: its frame in raw_images/ and its row in feat_conv.pt.

The observation before low action t is the FIRST `images` entry with low_idx == t. A trial folder
with raw_images/ (the "full" download) must hold that frame for every step, as .jpg although the
JSON says .png; without raw_images/ steps carry no frame. Existence is checked with one listing
of the trial folder and one of raw_images/, not one stat per frame.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rgvlm_core.alfred.checks import FieldError, member, one_line, short, str_member, wrong_type
from rgvlm_core.alfred.features import FEATURES_FILE, inspect_features
from rgvlm_core.alfred.files import file_problem

RAW_IMAGES_DIR = "raw_images"


@dataclass(frozen=True)
class Observations:
    """Per-step frame and feature row (None when the trial has no raw_images/ or feat_conv.pt)."""

    frames: Sequence[str | None] | None
    feature_rows: Sequence[int] | None
    features_path: str | None
    features_layout: str | None


def observe(images: list[Any], n_low: int, trial_dir: Path, source: str) -> Observations:
    """Check `images` covers every low action and find frames and feature rows on disk.

    `source` is the traj_data.json path shown in errors; feature errors name feat_conv.pt beside it.
    """
    first_image = first_images(images, n_low)
    try:
        entries = os.listdir(trial_dir)  # one listing tells both raw_images/ and feat_conv.pt apart
    except OSError as exc:
        raise FieldError("", f"cannot list the trial folder: {one_line(exc)}") from None
    frames = frame_names(images, first_image, trial_dir) if RAW_IMAGES_DIR in entries else None
    if FEATURES_FILE not in entries:
        return Observations(frames, None, None, None)
    feature_file = trial_dir / FEATURES_FILE
    layout = inspect_features(feature_file, n_low, len(images), source=_sibling(source, FEATURES_FILE))
    rows: Sequence[int] = first_image if layout == "images+10" else range(n_low)
    return Observations(frames, rows, os.path.abspath(feature_file), layout)


def _sibling(source: str, name: str) -> str:
    head, _, _ = source.rpartition("/")
    return f"{head}/{name}" if head else name


def first_images(images: list[Any], n_low: int) -> list[int]:
    """For each low action t, the index in `images` of the first entry with low_idx == t."""
    first = [-1] * n_low
    for k, image in enumerate(images):
        if type(image) is not dict:
            raise wrong_type(f"images[{k}]", "an object", image)
        low_idx = image.get("low_idx")
        if type(low_idx) is not int or low_idx < 0:
            field = f"images[{k}].low_idx"
            if type(low_idx) is int:
                raise FieldError(field, f"expected a low action index >= 0, got {low_idx}")
            raise wrong_type(field, "an integer", member(image, "low_idx", f"images[{k}]"))
        if low_idx < n_low and first[low_idx] < 0:
            first[low_idx] = k
    if -1 in first:
        t = first.index(-1)
        missing = first.count(-1)
        raise FieldError(
            "images",
            f"no image for low action {t} (expected an entry with low_idx {t}; "
            f"{missing} of {n_low} low actions have none)",
        )
    return first


def frame_names(images: list[Any], first_image: list[int], trial_dir: Path) -> list[str | None]:
    """`raw_images/<name>.jpg` of each step's observation; every one must be a regular file on disk.

    The listing's file types say which entries are regular files without a stat each (a link costs
    one); a frame that is a FIFO, a folder or a dangling link would hang or fail whoever shows it.
    """
    folder = trial_dir / RAW_IMAGES_DIR
    try:
        with os.scandir(folder) as listing:
            on_disk = {entry.name: _is_regular(entry) for entry in listing}
    except OSError as exc:
        raise FieldError(RAW_IMAGES_DIR, f"cannot list the frames folder: {one_line(exc)}") from None
    frames: list[str | None] = []
    for k in first_image:
        name = str_member(images[k], "image_name", f"images[{k}]")
        jpg = name[:-4] + ".jpg" if name.endswith(".png") else name
        field = f"images[{k}].image_name"
        if jpg not in on_disk:
            raise FieldError(field, f"frame file {RAW_IMAGES_DIR}/{jpg} is missing (for {short(name)})")
        if not on_disk[jpg]:
            problem = file_problem(folder / jpg) or "not a regular file"
            raise FieldError(field, f"frame file {RAW_IMAGES_DIR}/{jpg} is {problem}")
        frames.append(f"{RAW_IMAGES_DIR}/{jpg}")
    return frames


def _is_regular(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_file()  # follows links; a link loop raises
    except OSError:
        return False
