"""Bad input to any command is one red line naming the value, exit code 1, no traceback, no bar above it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli_support import rgvlm
from tests.fake_openai import FakeOpenAI, lvlm_label_args
from tests.tiny_models import build_tiny_clip

ROOT = Path(__file__).resolve().parents[1]


def one_red_line(result: subprocess.CompletedProcess[str]) -> str:
    """The only line on stderr: `error: ...` (so no progress bar was left above it)."""
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def clip_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_clip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture()
def a_file(tmp_path: Path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a workspace")
    return path


@pytest.mark.parametrize("below", ["", "sub"], ids=["the-file", "a-folder-below-it"])
def test_a_file_given_as_workspace_is_one_line_naming_it(a_file: Path, below: str) -> None:
    path = a_file / below if below else a_file
    line = one_red_line(rgvlm("-w", str(path), "info"))
    assert str(path) in line and "--workspace" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_an_unreadable_workspace_is_one_line_naming_it(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        line = one_red_line(rgvlm("-w", str(locked / "ws"), "info"))
    finally:
        locked.chmod(0o700)
    assert str(locked / "ws") in line


def test_sim_generate_into_a_file_is_one_line_naming_it(a_file: Path) -> None:
    line = one_red_line(rgvlm("sim", "generate", "--episodes", "1", "--out", str(a_file)))
    assert str(a_file) in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["train", "--reward", "bogus", "--steps", "1", "--encoder", "hash"],
            "unknown reward source 'bogus'",
        ),
        (["label", "--labeller", "reference", "--unit", "chapter"], "unknown query unit 'chapter'"),
        (["sim", "generate", "-n", "1", "--min-subtasks", "5", "--max-subtasks", "2"], "min <= max"),
    ],
    ids=["train", "label", "sim-generate"],
)
def test_a_command_failing_after_its_bar_started_leaves_only_the_error_line(
    sample_ws, tmp_path: Path, args: list[str], expected: str
) -> None:  # type: ignore[no-untyped-def]
    if args[0] == "sim":
        args = [*args, "--out", str(tmp_path / "gen")]
    line = one_red_line(rgvlm("-w", str(sample_ws.root), *args))
    assert expected in line


def test_a_label_run_where_every_segment_failed_exits_1_and_says_so(sample_ws) -> None:  # type: ignore[no-untyped-def]
    with FakeOpenAI(api_key="the-right-key") as fake:  # no key given: every request is refused (401)
        result = rgvlm(
            "-w", str(sample_ws.root), "label", *lvlm_label_args(fake.base_url, "refused", "-n", "1")
        )
    line = one_red_line(result)
    assert "run refused: no step got a label" in line and "unauthorized" in line
    assert "0 ok, 1 failed" in result.stdout


def test_a_label_run_whose_filters_match_nothing_exits_1_and_says_so(sample_ws) -> None:  # type: ignore[no-untyped-def]
    line = one_red_line(rgvlm("-w", str(sample_ws.root), "label", "--labeller", "reference", "-e", "nope"))
    assert "no segments to label" in line


def test_a_resumed_run_with_earlier_labels_is_not_a_failure(sample_ws) -> None:  # type: ignore[no-untyped-def]
    args = ["-w", str(sample_ws.root), "label", "--labeller", "reference", "--name", "ref", "-n", "1"]
    assert rgvlm(*args).returncode == 0
    again = rgvlm(*args)
    assert again.returncode == 0, again.stderr
    assert "1 from an earlier attempt" in again.stdout


@pytest.mark.parametrize(
    "url", ["ftp://host/v1", "http://[::1/v1", "http://host:99999/v1"], ids=["scheme", "ipv6", "port"]
)
def test_a_bad_base_url_is_one_line_naming_it(tmp_path: Path, url: str) -> None:
    line = one_red_line(
        rgvlm("-w", str(tmp_path / "ws"), "label", "--labeller", "lvlm", "--model", "m", "--base-url", url)
    )
    assert url in line


@pytest.mark.parametrize("labeller", ["lvlm", "clip"])
def test_a_device_that_is_not_there_is_one_line_naming_it(
    tmp_path: Path, clip_model: Path, labeller: str
) -> None:
    import torch

    device = "tpu" if torch.cuda.is_available() else "cuda"
    args = ["--labeller", labeller, "--model", str(clip_model), "--device", device]
    line = one_red_line(rgvlm("-w", str(tmp_path / "ws"), "label", *args, "--backend", "hf"))
    assert repr(device) in line


def test_loading_a_model_draws_no_library_progress_bars(sample_ws, clip_model: Path) -> None:  # type: ignore[no-untyped-def]
    args = ["label", "--labeller", "clip", "--model", str(clip_model), "--device", "cpu", "-n", "1"]
    result = rgvlm("-w", str(sample_ws.root), *args)
    assert result.returncode == 0, result.stderr
    assert "Loading weights" not in result.stderr and "it/s]" not in result.stderr, result.stderr


def test_info_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys; from rgvlm_core.cli import app; from typer.testing import CliRunner; "
        f"r = CliRunner().invoke(app, ['-w', {str(tmp_path / 'ws')!r}, 'info', '--json']); "
        "assert r.exit_code == 0, r.output; print('torch' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "RGVLM_NO_SAMPLE": "1"},
        timeout=120,
    )
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize("command", ["report", "experiment"])
def test_a_report_path_in_a_missing_folder_is_refused_before_any_work(
    sample_ws, tmp_path: Path, command: str
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "missing" / "report.html"
    if command == "report":
        args = ["report", "some-experiment", "--out", str(out)]
    else:
        args = ["experiment", "-m", "sparse", "--seeds", "1", "--steps", "1", "-k", "1", "--encoder", "hash"]
        args += ["--conditions", "default", "--report", str(out)]
    line = one_red_line(rgvlm("-w", str(sample_ws.root), *args))
    assert str(out) in line and "does not exist" in line
    reader = sample_ws.reader()
    try:
        assert reader.scalar("SELECT count(*) FROM train_runs") == 0
    finally:
        reader.close()


def test_a_workspace_the_user_may_not_open_is_a_workspace_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rgvlm_core.cli import common
    from rgvlm_core.errors import WorkspaceError

    def refuse(ws: common.Workspace, create: bool) -> None:
        raise PermissionError(13, "Permission denied", str(ws.root / "store"))

    # the folder's own opening fails as an unreadable folder would (tests run as root, which reads all)
    monkeypatch.setattr(common.Workspace, "_open", staticmethod(refuse))
    common.set_workspace_path(tmp_path / "locked")
    with pytest.raises(
        WorkspaceError, match=r"locked: cannot open the workspace \(Permission denied: .*store\)"
    ):
        common.open_workspace(create=True)
