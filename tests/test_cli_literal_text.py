"""Text from datasets, models and users is data: the CLI prints it literally, never as Rich markup."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.alfred_factory import write_trajectory
from tests.cli_support import rgvlm as run_rgvlm

GOAL = "Put the [bold]apple[/bold] in the [link]fridge, then [/x] close it."
RUN = "[bold]ref[/x] [link]"


def rgvlm(*args: str) -> subprocess.CompletedProcess[str]:
    return run_rgvlm(*args, columns=400)  # wide: long goals stay on one line


def _with_goal(doc: dict[str, Any]) -> None:
    for ann in doc["turk_annotations"]["anns"]:
        ann["task_desc"] = GOAL


@pytest.fixture()
def ws(tmp_path: Path) -> Path:
    """A workspace holding one imported episode whose goal reads like Rich markup."""
    data = tmp_path / "alfred"
    write_trajectory(data, "train", n_annotations=1, mutate=_with_goal)
    ws = tmp_path / "ws"
    result = rgvlm("-w", str(ws), "import", str(data))
    assert result.returncode == 0, result.stderr
    return ws


def test_episodes_prints_a_goal_that_looks_like_markup_literally(ws: Path) -> None:
    result = rgvlm("-w", str(ws), "episodes")
    assert result.returncode == 0, result.stderr
    assert GOAL in result.stdout


def test_the_cli_consoles_print_tables_and_lines_of_data_literally() -> None:
    """Every command prints through these two consoles, so no data it prints can be read as markup."""
    from rich.table import Table

    from rgvlm_core.cli.common import console, err_console

    for target in (console, err_console):
        table = Table("split", "task type")
        table.add_row("[/x]", "[bold]pick[/bold] [link]")
        with target.capture() as captured:
            target.print(table)
            target.print(GOAL, style="yellow")
        assert "[/x]" in captured.get() and "[bold]pick[/bold] [link]" in captured.get()
        assert GOAL in captured.get()


def test_a_run_named_like_markup_is_printed_literally_by_label_and_label_runs(ws: Path) -> None:
    labelled = rgvlm("-w", str(ws), "label", "--labeller", "reference", "--name", RUN)
    assert labelled.returncode == 0, labelled.stderr
    assert f"run {RUN}: " in labelled.stdout
    listed = rgvlm("-w", str(ws), "label-runs")
    assert listed.returncode == 0, listed.stderr
    assert RUN in listed.stdout


def test_an_error_quoting_a_markup_like_value_prints_it_literally(ws: Path) -> None:
    result = rgvlm("-w", str(ws), "override", RUN + "x", "[/x]", "0", "5", "--reason", "[link]why")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert RUN + "x" in result.stderr or "[/x]" in result.stderr
