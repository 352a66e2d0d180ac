"""Lint and types run with the tests, so CI (which runs pytest) fails on a lint or type error: ruff (lint
and format, configured in pyproject.toml) over the whole tree, and plain `mypy` over the core, the
dashboard's helpers, app.py and the page scripts.

ruff and mypy are dev dependencies: a missing one fails here, like any broken install, instead of skipping.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _checked_files() -> list[Path]:
    """What plain `mypy` must check: every module of the core and the dashboard, and every page."""
    return [
        *ROOT.glob("rgvlm_core/**/*.py"),
        *ROOT.glob("rgvlm_app/**/*.py"),
        *ROOT.glob("pages/*.py"),
        ROOT / "app.py",
    ]


@pytest.mark.slow
def test_plain_mypy_checks_the_core_the_dashboard_and_its_pages_and_finds_no_error() -> None:
    # The project's .mypy_cache (git-ignored) keeps reruns to seconds; a cold run takes about a minute.
    done = subprocess.run(
        [sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=280, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"no issues found in (\d+) source files", done.stdout)
    assert found, done.stdout
    assert int(found.group(1)) == len(_checked_files()), (done.stdout, len(_checked_files()))


def test_ruff_finds_no_lint_error_and_nothing_to_reformat() -> None:
    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"ruff {' '.join(args)}:\n{done.stdout}{done.stderr}"
