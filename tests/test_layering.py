"""Layers point down: the core imports no UI framework, and the dashboard process never loads torch."""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rgvlm_core

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "sentence_transformers")

# Run in a fresh interpreter at a checkout root (argv[1]). For every rgvlm_app/**.py and pages/*.py file:
# import each module its source names anywhere (inside functions and after an early `st.stop()` too),
# then the file itself for rgvlm_app; then open app.py in AppTest and switch to every page, as a person
# clicking through the app would. Prints the heavy packages loaded after each step, and page exceptions.
DASHBOARD_PROBE = textwrap.dedent(
    """
    import ast, importlib, importlib.util, json, sys
    from pathlib import Path

    root = Path(sys.argv[1]).resolve()
    heavy = set(sys.argv[2].split(","))
    sys.path.insert(0, str(root))
    from streamlit.testing.v1 import AppTest

    def loaded():
        return sorted({m.split(".")[0] for m in sys.modules} & heavy)

    def module_name(path):  # rgvlm_app/x/y.py -> rgvlm_app.x.y; a package's __init__.py -> the package
        parts = path.relative_to(root).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    def named_modules(path):
        name = module_name(path)
        package = name if path.stem == "__init__" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = ("." * node.level + (node.module or "")) if node.level else node.module
                base = importlib.util.resolve_name(base, package) if node.level else base
                yield base
                yield from (f"{base}.{alias.name}" for alias in node.names)

    def import_named(path):
        for name in named_modules(path):
            try:
                importlib.import_module(name)
            except ModuleNotFoundError as exc:
                if exc.name != name:  # `from m import function`: only a missing submodule is fine
                    raise

    helpers = sorted((root / "rgvlm_app").rglob("*.py"))
    steps, errors = [], {}
    for path in [*helpers, *sorted((root / "pages").glob("*.py"))]:
        import_named(path)
        if path in helpers:
            importlib.import_module(module_name(path))
        steps.append([path.relative_to(root).as_posix(), loaded()])
    at = AppTest.from_file(str(root / "app.py"), default_timeout=120)
    at.run()
    steps.append(["app.py", loaded()])
    for page in sorted((root / "pages").glob("*.py")):
        try:
            at.switch_page(f"pages/{page.name}").run()
        except Exception as exc:
            errors[page.name] = [f"{type(exc).__name__}: {exc}"]
        else:
            errors.update({page.name: [str(e.value) for e in at.exception]} if at.exception else {})
        steps.append([f"running pages/{page.name}", loaded()])
    print(json.dumps({"steps": steps, "errors": errors}))
    """
)


def _modules_loaded_after(code: str) -> set[str]:
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def _core_modules() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(rgvlm_core.__path__, "rgvlm_core.")]
    return [n for n in names if not n.startswith("rgvlm_core.cli")]


def dashboard_heavy_imports(root: Path, workspace: Path) -> dict[str, list[str]]:
    """Which dashboard file first left torch & co. loaded, for the checkout (or fake tree) at `root`.

    Every file in pages/ and under rgvlm_app/ is found on disk, so a new page is checked without editing
    this test; pages run for real (AppTest on `workspace`), so imports inside functions count too.
    Fails the test if a page raises, since a page that stops early hides its later imports.
    """
    env = {**os.environ, "RGVLM_WORKSPACE": str(workspace), "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", DASHBOARD_PROBE, str(root), ",".join(HEAVY)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["errors"], report["errors"]
    found: dict[str, list[str]] = {}
    before: set[str] = set()
    for step, heavy in report["steps"]:
        if set(heavy) - before:
            found[step] = sorted(set(heavy) - before)
        before |= set(heavy)
    covered = {step.removeprefix("running ") for step, _ in report["steps"]}
    expected = {f"pages/{p.name}" for p in (root / "pages").glob("*.py")}
    expected |= {p.relative_to(root).as_posix() for p in (root / "rgvlm_app").rglob("*.py")}
    assert expected <= covered, sorted(expected - covered)
    return found


def test_the_core_outside_the_cli_imports_neither_streamlit_nor_typer() -> None:
    loaded = _modules_loaded_after("\n".join(f"import {m}" for m in _core_modules()))
    assert not {"streamlit", "typer"} & loaded


def test_running_every_page_and_importing_every_app_module_loads_no_torch(sample_ws) -> None:  # type: ignore[no-untyped-def]
    assert len(list((ROOT / "pages").glob("*.py"))) >= 6, "pages not found on disk"
    assert dashboard_heavy_imports(ROOT, Path(sample_ws.root)) == {}


FAKE_APP = """
import streamlit as st
from pathlib import Path
here = Path(__file__).parent
st.navigation([st.Page(f"pages/{p.name}") for p in sorted((here / "pages").glob("*.py"))]).run()
"""


def _fake_tree(root: Path, bad: dict[str, str]) -> Path:
    files = {
        "app.py": FAKE_APP,
        "pages/home.py": "import streamlit as st\nst.title('Home')\n",
        "rgvlm_app/__init__.py": "",
        "rgvlm_app/widgets.py": "def title() -> str:\n    return 'ok'\n",
        **bad,
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(textwrap.dedent(text))
    return root


# Each fake tree adds one file that loads torch; the check must name the step that loaded it first.
BAD_TREES = {
    "a new page importing torch": (
        {"pages/zz_new.py": "import streamlit as st\nimport torch\nst.title('x')\n"},
        "pages/zz_new.py",
    ),
    "a page importing a core module that needs torch after it stops": (
        {"pages/train.py": "import streamlit as st\nst.stop()\nfrom rgvlm_core.rl import iql\n"},
        "pages/train.py",
    ),
    "a page loading torch only when it runs": (
        {"pages/lazy.py": "import importlib\nimportlib.import_module('to' + 'rch')\n"},
        "running pages/lazy.py",
    ),
    "an app helper that no page imports": ({"rgvlm_app/unused.py": "import torch\n"}, "rgvlm_app/unused.py"),
    "a module in an app subpackage, by a relative import": (
        {
            "rgvlm_app/parts/__init__.py": "",
            "rgvlm_app/parts/a.py": "def f() -> None:\n    from . import b\n",
            "rgvlm_app/parts/b.py": "import sentence_transformers\n",
        },
        "rgvlm_app/parts/a.py",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TREES))
def test_the_dashboard_check_names_the_file_that_loads_torch_in_a_fake_tree(
    tmp_path: Path, case: str
) -> None:
    files, culprit = BAD_TREES[case]
    found = dashboard_heavy_imports(_fake_tree(tmp_path / "tree", files), tmp_path / "ws")
    assert list(found) == [culprit] and "torch" in found[culprit]


def test_the_dashboard_check_passes_a_fake_tree_without_torch(tmp_path: Path) -> None:
    assert dashboard_heavy_imports(_fake_tree(tmp_path / "tree", {}), tmp_path / "ws") == {}


def test_no_page_or_app_file_imports_torch_directly() -> None:
    for path in [ROOT / "app.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "rgvlm_app").glob("*.py")]:
        text = path.read_text()
        for banned in ("import torch", "from torch", "import transformers", "from transformers"):
            assert banned not in text, f"{path.name} contains {banned!r}"


def test_rgvlm_info_starts_without_loading_torch() -> None:
    loaded = _modules_loaded_after("import rgvlm_core.cli, rgvlm_core.catalog, rgvlm_core.importer")
    assert not set(HEAVY) & {name.split(".")[0] for name in loaded}
