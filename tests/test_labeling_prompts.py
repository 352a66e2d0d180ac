"""Prompt versions: content-hashed, sandboxed, derived with a parent and a note."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT, example_variables, new_version, render, validate
from rgvlm_core.labeling.store import get_prompt, list_prompts, save_prompt

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "template",
    [
        "{{ goal.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ actions.append(1) }}",
        "{{ ''.format.__self__ }}",
        "{% for x in range(10**9) %}{% endfor %}",
    ],
)
def test_the_sandbox_refuses_templates_that_reach_python_internals(template: str) -> None:
    with pytest.raises(RGVLMError, match="stage1_user"):
        render(template, example_variables(), name="stage1_user")


def test_an_unknown_variable_is_refused_by_name() -> None:
    with pytest.raises(RGVLMError, match="'mission' is undefined"):
        new_version(DEFAULT_PROMPT, {"stage1_user": "Do {{ mission }}"}, "typo")


def test_the_default_prompts_render_every_documented_variable() -> None:
    validate(DEFAULT_PROMPT)
    text = render(DEFAULT_PROMPT.stage2_user, example_variables())
    assert "4. GotoLocation(Fridge)" in text and "exactly one entry for each of the 2 steps: 4, 5" in text


def test_a_version_is_named_by_its_content_and_remembers_its_parent() -> None:
    child = new_version(DEFAULT_PROMPT, {"stage2_system": "Answer in JSON. Be strict."}, "stricter")
    assert child.prompt_id != DEFAULT_PROMPT.prompt_id and child.parent == DEFAULT_PROMPT.prompt_id
    same = new_version(DEFAULT_PROMPT, {"stage2_system": "Answer in JSON. Be strict."}, "another note")
    assert same.prompt_id == child.prompt_id, "the id depends on the templates, not the note"


def test_versions_are_stored_once_and_found_by_prefix(sample_ws) -> None:  # type: ignore[no-untyped-def]
    child = new_version(DEFAULT_PROMPT, {"frame_label": "Step {{ t }}: {{ action }}"}, "shorter labels")
    save_prompt(sample_ws, child)
    save_prompt(sample_ws, child)
    reader = sample_ws.reader()
    assert [p.prompt_id for p in list_prompts(reader)] == [DEFAULT_PROMPT.prompt_id, child.prompt_id]
    assert get_prompt(reader, child.prompt_id[:5]).frame_label == "Step {{ t }}: {{ action }}"
    with pytest.raises(RGVLMError, match="no prompt version matches"):
        get_prompt(reader, "zzzz")
    reader.close()


def test_prompts_cli_adds_shows_and_lists_a_version(sample_ws, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    def rgvlm(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "rgvlm_core.cli", "-w", str(sample_ws.root), *args],
                              capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip

    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps({"stage1_system": "You judge robots carefully."}))
    added = rgvlm("prompts", "add", str(edit), "--note", "calmer system prompt")
    assert added.returncode == 0, added.stderr
    new_id = added.stdout.split()[2]
    shown = json.loads(rgvlm("prompts", "show", new_id, "--json").stdout)
    assert (
        shown["stage1_system"] == "You judge robots carefully."
        and shown["parent"] == DEFAULT_PROMPT.prompt_id
    )
    assert new_id in rgvlm("prompts", "list").stdout
    edit.write_text(json.dumps({"stage1_user": "{{ goal.__class__ }}"}))
    bad = rgvlm("prompts", "add", str(edit), "--note", "evil")
    assert bad.returncode == 1 and "refused by the sandbox" in bad.stderr and "Traceback" not in bad.stderr
