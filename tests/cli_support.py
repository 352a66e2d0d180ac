"""Running the real `rgvlm` command in a subprocess, as a user's shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rgvlm(
    *args: str, env: dict[str, str] | None = None, columns: int = 200, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`rgvlm ARGS` on this checkout; the caller's environment (tests set RGVLM_NO_SAMPLE) plus `env`."""
    return subprocess.run(
        [sys.executable, "-m", "rgvlm_core.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": str(columns), **(env or {})},
        timeout=timeout,
    )
