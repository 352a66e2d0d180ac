"""Prompt templates we cannot trust: a render is bounded in size, work and time, and says so in one line.

The sandbox already refuses every escape to Python internals; these templates stay inside it and
only ask for too much: a 100 MB string, a 10 GB one, 10^10 loop iterations, a number of 10^10 digits.
Each must be refused before it is computed, with an RGVLMError naming the template, and with memory
staying small (measured with tracemalloc, not timed). Normal templates render exactly as before.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from rgvlm_core.errors import RGVLMError
from rgvlm_core.labeling.prompts import DEFAULT_PROMPT, example_variables, new_version, render

ROOT = Path(__file__).resolve().parents[1]
PEAK_BYTES = 40 << 20  # what a refused render may allocate at its peak, far below the 100 MB asked for
pytestmark = pytest.mark.timeout(60)  # a regression here hangs: fail instead of waiting

HOSTILE = {
    "string_times_10_8": "{{ 'A' * 10**8 }}",
    "string_times_10_10": "{{ 'A' * 10**10 }}",
    "string_times_twice": "{{ 'A' * 10**4 * 10**4 }}",
    "power_tower": "{{ 10 ** (10 ** 10) }}",  # Jinja's ** groups left: 10**10**10 is (10**10)**10
    "nested_loops_printing": (
        "{% for i in range(10**5) %}{% for j in range(10**5) %}x{% endfor %}{% endfor %}"
    ),
    "nested_loops_silent": "{% for i in range(10**5) %}{% for j in range(10**5) %}{% endfor %}{% endfor %}",
    "list_times_then_join": "{{ (['x' * 10**5] * 10**4)|join }}",
    "concat_doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"
        "{{ ns.s|length }}"
    ),
    "many_distinct_big_strings": (
        "{% set ns = namespace(l=[]) %}{% for i in range(10**5) %}"
        "{% set ns.l = ns.l + ['x' * 10**5 ~ i] %}{% endfor %}{{ ns.l|length }}"
    ),
    "exponential_macro": (
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}"
    ),
    "exponential_recursive_loop": (
        "{% for x in [1] recursive %}{{ loop([1, 1]) if loop.depth < 60 }}{% endfor %}"
    ),
    "deep_nesting": (
        "{% set ns = namespace(l=[]) %}{% for i in range(10**5) %}{% set ns.l = [ns.l] %}{% endfor %}"
        "{{ ns.l }}"
    ),
    "center_filter": "{{ 'x'|center(10**9) }}",
    "center_filter_constant": "{{ 'x'|center(1000000000) }}",
    "indent_filter": "{{ ('\\n' * 10**5)|indent(10**4, blank=True) }}",
    "wordwrap_filter": "{{ ('a ' * 400000)|wordwrap(1, wrapstring='-' * 1000) }}",
    "format_filter": "{{ '%0100000000d'|format(1) }}",
    "replace_filter": "{{ ('x' * 10**6)|replace('x', 'x' * 1000) }}",
    "tojson_indent": "{{ (range(10**5)|list)|tojson(indent=10**4) }}",
    "batch_fill": "{{ range(10**5)|batch(10**9, 'x')|list|length }}",
    "slice_many": "{{ range(10**5)|slice(10**9)|list|length }}",
    "sum_of_lists": "{{ ([range(1000)|list] * 1000)|sum(start=[])|length }}",
    "percent_format": "{{ '%0100000000d' % 1 }}",
    "str_format_width": "{{ '{:>100000000}'.format(1) }}",
    "str_format_precision": "{{ '{:.100000000f}'.format(1.0) }}",
    "str_ljust": "{{ 'x'.ljust(10**9) }}",
    "str_expandtabs": "{{ ('\\t' * 10**5).expandtabs(10**4) }}",
    "str_translate": "{{ ('a' * 10**6).translate({97: 'b' * 1000}) }}",
    "str_join": "{{ ','.join(['x' * 10**5] * 10**4) }}",
    "int_to_bytes": "{{ (1).to_bytes(10**9, 'big') }}",
    "lipsum": "{{ lipsum(10**6) }}",
    "folded_at_compile_time": "{{ 'x'|center(999999) }}" * 200,  # Jinja computes constant filters early
}


@pytest.mark.parametrize("template", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_template_asking_for_too_much_is_refused_in_one_line_with_little_memory(template: str) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(RGVLMError) as caught:
            render(template, example_variables(), name="stage1_user")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert message.startswith("stage1_user: ") and "\n" not in message, message
    assert peak < PEAK_BYTES, f"{peak >> 20} MiB allocated while refusing"


@pytest.mark.parametrize("key", ["string_times_10_8", "nested_loops_silent", "power_tower"])
def test_saving_a_version_with_a_template_asking_for_too_much_is_refused(key: str) -> None:
    with pytest.raises(RGVLMError, match=r"^stage2_user: "):
        new_version(DEFAULT_PROMPT, {"stage2_user": HOSTILE[key]}, "hostile")


def test_a_render_after_a_refused_one_starts_with_a_fresh_budget() -> None:
    with pytest.raises(RGVLMError):
        render(HOSTILE["nested_loops_silent"], {}, name="t")
    text = render("{% for i in range(1000) %}{{ i % 10 }}{% endfor %}", {}, name="t")
    assert len(text) == 1000


@pytest.mark.parametrize(
    "template",
    ["{{ 1 / 0 }}", "{{ n_steps // 0 }}", "{{ n_steps % 0 }}", "{{ 2.0 ** 5000 }}", "{{ cycler().next() }}"],
)
def test_arithmetic_and_lookup_errors_are_one_line_errors_naming_the_template(template: str) -> None:
    with pytest.raises(RGVLMError, match=r"^repair: \w+Error: ") as caught:
        render(template, example_variables(), name="repair")
    assert "\n" not in str(caught.value)


def test_a_syntax_error_is_reported_on_one_line() -> None:
    with pytest.raises(RGVLMError, match=r"^repair: TemplateSyntaxError: .*line 2") as caught:
        render("ok\n{% for %}", {}, name="repair")
    assert "\n" not in str(caught.value)


def test_a_template_longer_than_the_cap_is_refused_before_it_is_compiled() -> None:
    with pytest.raises(RGVLMError, match=r"^frame_label: .*characters"):
        render("x" * 10_000_000, {}, name="frame_label")


BENIGN = [
    *DEFAULT_PROMPT.templates().values(),
    "{{ actions|map(attribute='action')|join(', ') }} ({{ actions|length }} actions)",
    "{{ goal|center(80) }}|{{ goal|indent(4, first=True) }}|{{ goal|wordwrap(20) }}",
    "{{ '%05.1f|%s'|format(3.14159, goal) }} {{ '{:>8}|{}'.format(n_steps, unit) }} {{ '%d' % 42 }}",
    "{{ 'ab' * 3 }} {{ [1, 2] + [3] }} {{ 2 ** 10 }} {{ goal ~ '!' }} {{ actions|tojson }} {{ 10**10**10 }}",
    "{% for a in actions %}{{ loop.index }}/{{ loop.length }} {{ a.t }} {{ a.action|upper }}\n{% endfor %}",
    "{% macro line(a) %}[{{ a.t }}] {{ a.action }}{% endmacro %}"
    "{% for a in actions %}{{ line(a) }}{% endfor %}",
    "{{ range(5)|batch(2, 0)|list }} {{ range(5)|slice(2)|list }} {{ [[1], [2]]|sum(start=[]) }}",
    "{{ goal.replace('apple', 'pear').ljust(40) }}|{{ ','.join(['a', 'b']) }}"
    "|{{ lipsum(1, html=False)|length > 0 }}",
    "{% filter upper %}{{ instruction }}{% endfilter %} {{ ns }}{% set ns = namespace(x=1) %}{{ ns.x }}",
]


@pytest.mark.parametrize("template", BENIGN)
def test_a_normal_template_renders_exactly_as_in_the_plain_sandbox(template: str) -> None:
    plain = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    variables = {**example_variables(), "ns": "ns"}
    if "lipsum" in template:  # random words: compare what does not depend on them
        assert render(template, variables).endswith("|True")
        return
    assert render(template, variables) == plain.from_string(template).render(**variables).strip()


def test_prompts_add_refuses_a_template_asking_for_too_much_in_one_red_line(
    sample_ws, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    edit = tmp_path / "edit.json"
    edit.write_text(json.dumps({"stage1_user": HOSTILE["string_times_10_10"]}))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "rgvlm_core.cli",
            "-w",
            str(sample_ws.root),
            "prompts",
            "add",
            str(edit),
            "--note",
            "x",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: stage1_user: ")
