"""Layers point down: the core imports no UI framework, and the dashboard process never loads torch."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import rgvlm_core

ROOT = Path(__file__).resolve().parents[1]


def _modules_loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def _core_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(rgvlm_core.__path__, "rgvlm_core.")]
    return [n for n in names if not n.startswith("rgvlm_core.cli")]


def test_the_core_outside_the_cli_imports_neither_streamlit_nor_typer() -> None:
    loaded = _modules_loaded_after("\n".join(f"import {m}" for m in _core_modules()))
    assert not {"streamlit", "typer"} & loaded


def test_the_dashboard_modules_never_import_torch_or_transformers() -> None:
    pages = sorted(p.stem for p in (ROOT / "pages").glob("*.py"))
    code = "import rgvlm_app.state, rgvlm_core.catalog, rgvlm_core.charts, rgvlm_core.workspace"
    loaded = _modules_loaded_after(code)
    assert pages, "no pages found"
    assert not {"torch", "transformers"} & loaded


def test_no_page_or_app_file_imports_torch_directly() -> None:
    for path in [ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "rgvlm_app").glob("*.py")]:
        text = path.read_text()
        for banned in ("import torch", "from torch", "import transformers", "from transformers"):
            assert banned not in text, f"{path.name} contains {banned!r}"


def test_rgvlm_info_starts_without_loading_torch() -> None:
    loaded = _modules_loaded_after("import rgvlm_core.cli, rgvlm_core.catalog, rgvlm_core.importer")
    assert "torch" not in loaded
