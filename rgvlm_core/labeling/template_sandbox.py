"""A Jinja2 sandbox whose renders are bounded in size, work and time, for prompt templates we cannot trust.

Jinja's ImmutableSandboxedEnvironment stops a template from reaching Python internals, but not from
asking for too much while staying inside: `{{ 'A' * 10**10 }}` allocates 10 GB, `{{ 10 ** (10 ** 10) }}`
computes a number of 10^10 digits, two nested `range(10**5)` loops run 10^10 times. Such a render
must not take down the CLI or the dashboard's process, so every place where a template can make a
big value is checked BEFORE the value is made:

- the operators `*`, `+`, `**` and `%` (`intercepted_binops`; intercepting them also stops Jinja from
  folding them at compile time), and `~` (rewritten into a guarded call);
- calls: methods of strings and bytes that grow their result (center, ljust, expandtabs, replace,
  join, translate, format, ...), int.to_bytes, lipsum, and every call counts as a step;
- filters that grow their input (center, indent, wordwrap, format, join, replace, tojson, batch,
  slice, sum, urlize, ...), and every filter that turns a container into text;
- text: every `{{ }}` output, every block of output a macro or `{% set %}` collects, and the whole
  render, which is streamed and stopped once it passes the cap;
- loops: every `{% for %}` iteration counts as a step, and the clock is read at each step.

Limits (RenderLimits) are per render: one value or the output at most `max_chars` characters (or
items), `max_allocated` in all, `max_steps` loop iterations and calls, `max_seconds` of wall time.
A render over a limit raises RenderLimitError, which says what was refused. The estimates are upper
bounds computed from lengths, so a refused value is never built; what only a finished value can show
(a result a few times its input, like escape) is checked right after, within a small factor of the cap.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from jinja2 import Template, nodes
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum
from jinja2.visitor import NodeTransformer

from rgvlm_core.labeling.template_sizes import (
    FILTER_SIZES,
    LIPSUM_WORD_CHARS,
    STRINGIFYING,
    RenderLimitError,
    RenderLimits,
    Sizer,
    int_arg,
    is_int,
    is_sequence,
    shallow_size,
)

__all__ = ["CALL_STEPS", "BoundedSandbox", "RenderLimitError", "RenderLimits"]

CALL_STEPS = 5  # a macro call costs about what five loop iterations do (~10 us against ~1 us here)


class _Budget:
    """The running totals of one render."""

    def __init__(self, limits: RenderLimits) -> None:
        self.limits = limits
        self.steps = 0
        self.allocated = 0
        self.deadline = time.monotonic() + limits.max_seconds

    def step(self, cost: int = 1) -> None:
        self.steps += cost
        if self.steps > self.limits.max_steps:
            raise RenderLimitError(
                f"too much work: more than {self.limits.max_steps:,} steps (a loop iteration or a filter "
                f"is one, any other call {CALL_STEPS})"
            )
        self.check_clock()

    def check_clock(self) -> None:
        if time.monotonic() > self.deadline:
            raise RenderLimitError(f"too slow: the render took more than {self.limits.max_seconds:g} s")

    def charge(self, size: int) -> None:
        self.allocated += size
        if self.allocated > self.limits.max_allocated:
            raise RenderLimitError(
                f"too much made: the render made more than {self.limits.max_allocated:,} characters "
                "and items in all"
            )


_BUDGET: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("render_budget", default=None)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """ImmutableSandboxedEnvironment whose renders (render_bounded) stay within RenderLimits."""

    intercepted_binops = frozenset({"*", "+", "**", "%"})

    def __init__(self, limits: RenderLimits | None = None, **options: Any) -> None:
        super().__init__(**options)
        limits = limits if limits is not None else RenderLimits()
        self.limits = limits
        self.sizer = Sizer(limits, self.newline_sequence)
        self.finalize = self._finalize
        self.filters = {name: self._guard_filter(name, f) for name, f in self.filters.items()}
        self.globals["lipsum"] = self._guard_lipsum(generate_lorem_ipsum)

    # -- rendering -------------------------------------------------------------------------------

    def check_source(self, source: str) -> None:
        """Refuse a template longer than max_template_chars before compiling it."""
        if len(source) > self.limits.max_template_chars:
            raise RenderLimitError(
                f"the template has {len(source):,} characters; at most "
                f"{self.limits.max_template_chars:,} are accepted"
            )

    def compile_bounded(self, source: str) -> Template:
        """Compile `source` under a budget of its own: Jinja computes filters and output with constant
        arguments while compiling, and what it folds is bounded like a render (past the budget it
        leaves the rest to the render, which checks it again). Folding more than max_chars in all
        is pointless: such output is refused anyway."""
        self.check_source(source)
        token = _BUDGET.set(_Budget(replace(self.limits, max_allocated=self.limits.max_chars)))
        try:
            return self.from_string(source)
        finally:
            _BUDGET.reset(token)

    def render_bounded(self, template: Template, variables: Mapping[str, Any]) -> str:
        """Render `template`, streamed, stopping with RenderLimitError at the first limit passed."""
        budget = _Budget(self.limits)
        token = _BUDGET.set(budget)
        try:
            pieces: list[str] = []
            size = 0
            for piece in template.generate(**variables):
                size += len(piece)
                if size > self.limits.max_chars:
                    self._check_size(size, "the output")
                if len(pieces) % 64 == 0:  # steps read the clock too; output without steps is literal
                    budget.check_clock()
                pieces.append(piece)
            return "".join(pieces)
        finally:
            _BUDGET.reset(token)

    # -- checks ----------------------------------------------------------------------------------

    def _check_size(self, size: int, what: str) -> None:
        if size > self.limits.max_chars:
            raise RenderLimitError(
                f"too big: {what} would have {size:,} characters or items; the limit is "
                f"{self.limits.max_chars:,}"
            )

    def _check_bits(self, bits: int, what: str) -> None:
        if bits > self.limits.max_int_bits:
            raise RenderLimitError(
                f"too big: {what} would be a number of about {bits * 3 // 10:,} digits; the limit is "
                f"{self.limits.max_int_bits * 3 // 10:,}"
            )

    def _made(self, value: Any, what: str) -> Any:
        """Check and charge a value just made (for growth only the finished value shows)."""
        size = shallow_size(value)
        self._check_size(size, what)
        budget = _BUDGET.get()
        if budget is not None:
            budget.charge(size)
        return value

    def _step(self, cost: int = 1) -> None:
        budget = _BUDGET.get()
        if budget is not None:
            budget.step(cost)

    def text_size(self, value: Any) -> int:
        """An upper bound on len(str(value)), or a number past max_chars; never builds the text."""
        return self.sizer.text_size(value)

    # -- hooks Jinja calls -------------------------------------------------------------------------

    def _finalize(self, value: Any) -> str:
        """Every `{{ }}` output: its text is sized before it is made (numbers print small: Python
        refuses to print an int of more than 4,300 digits)."""
        if isinstance(value, str):
            text = value
        elif type(value) in _SMALL_TEXT:
            text = str(value)
        else:
            self._check_size(self.text_size(value), "a printed value")
            text = str(value)
        self._check_size(len(text), "a printed value")
        budget = _BUDGET.get()
        if budget is not None:
            budget.charge(len(text))
        return text

    def concat(self, pieces: Iterable[str]) -> str:
        """The output a macro, a call block or `{% set %}...{% endset %}` collects."""
        pieces = list(pieces)
        self._check_size(sum(map(len, pieces)), "a block of output")
        return str(self._made("".join(pieces), "a block of output"))

    def guarded_concat(self, *values: Any) -> str:
        """The `~` operator (templates are rewritten to call this)."""
        self._check_size(sum(self.text_size(v) for v in values), "the ~ operator")
        return "".join(str(v) for v in values)

    def guarded_iter(self, iterable: Any) -> Any:
        """The iterable of a `{% for %}` loop (templates are rewritten to call this)."""
        budget = _BUDGET.get()
        return iterable if budget is None else _Steps(iterable, budget.step)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        what = f"the {operator} operator"
        if operator == "*":
            self._check_repeat(left, right, what)
        elif operator == "+" and is_sequence(left) and is_sequence(right):
            self._check_size(len(left) + len(right), what)
        elif operator == "**" and is_int(left) and is_int(right) and right > 0 and abs(left) > 1:
            self._check_bits(left.bit_length() * right, what)
        elif operator == "%" and isinstance(left, str | bytes):
            self._check_size(self.sizer.printf_size(left, right), what)
        return self._made(self.binop_table[operator](left, right), what)

    def _check_repeat(self, left: Any, right: Any, what: str) -> None:
        if is_int(left) and is_int(right):
            self._check_bits(left.bit_length() + right.bit_length(), what)
        elif is_sequence(left) and is_int(right):
            self._check_size(len(left) * max(right, 0), what)
        elif is_int(left) and is_sequence(right):
            self._check_size(len(right) * max(left, 0), what)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """Every call a template makes: a step, and methods that grow their result sized first."""
        __self._step(CALL_STEPS)
        what = f"{getattr(__obj, '__name__', 'a call')}()"
        method = getattr(__obj, "__wrapped__", __obj)  # str.format comes wrapped by the sandbox
        if isinstance(method, types.BuiltinMethodType):
            owner = getattr(method, "__self__", None)
            if isinstance(owner, str | bytes):
                if method.__name__ == "join" and args and not isinstance(args[0], list | tuple):
                    args = (list(args[0]), *args[1:])
                __self._check_size(__self.sizer.method_size(owner, method.__name__, args, kwargs), what)
            elif is_int(owner) and method.__name__ == "to_bytes":
                __self._check_size(int_arg(args, kwargs, 0, "length", 1), what)
        result = super().call(__context, __obj, *args, **kwargs)
        return __self._made(result, what)

    # -- sizes of what methods and filters would make -------------------------------------------

    # -- filters ---------------------------------------------------------------------------------

    def _guard_filter(self, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        """`func` with its output sized first (growing filters) and checked after (every filter)."""
        estimate = FILTER_SIZES.get(name)
        stringifies = name in STRINGIFYING
        what = f"the {name} filter"
        passed = 0 if getattr(func, "jinja_pass_arg", None) is None else 1  # context or environment first
        signature = inspect.signature(func) if estimate is not None else None
        # Filters with a sync and an async variant take the passed argument without naming it.
        unnamed = passed if signature and next(iter(signature.parameters)) not in _PASSED_NAMES else 0

        @functools.wraps(func)  # keeps jinja_pass_arg: Jinja still passes the context or environment
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._step()
            if signature is not None and estimate is not None:
                bound = signature.bind(*args[unnamed:], **kwargs)
                bound.apply_defaults()
                self._check_size(estimate(self.sizer, bound.arguments), what)
                args, kwargs = (*args[:unnamed], *bound.args), bound.kwargs
            elif stringifies and len(args) > passed:
                self._check_size(self.text_size(args[passed]), what)
            return self._made(func(*args, **kwargs), what)

        return guarded

    def _guard_lipsum(self, lipsum: Callable[..., str]) -> Callable[..., str]:
        @functools.wraps(lipsum)
        def guarded(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
            self._check_size(LIPSUM_WORD_CHARS * max * n if n > 0 and max > 0 else 0, "lipsum()")
            return lipsum(n, html, min, max)

        return guarded

    # -- the template rewrite --------------------------------------------------------------------

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        """Parse, then route every loop's iterable and every `~` through the guards above."""
        tree = super()._parse(source, name, filename)
        _Guards().visit(tree)
        tree.set_environment(self)
        return tree


class _Steps:
    """A loop's iterable that counts a step per item; keeps len() so loop.length stays cheap."""

    def __init__(self, iterable: Any, step: Callable[[], None]) -> None:
        self._iterable = iterable
        self._step = step

    def __iter__(self) -> Iterator[Any]:
        for item in self._iterable:
            self._step()
            yield item

    def __len__(self) -> int:
        return len(self._iterable)


class _Guards(NodeTransformer):
    """Rewrites `{% for x in it %}` to iterate `environment.guarded_iter(it)` and `a ~ b` to
    `environment.guarded_concat(a, b)`: Jinja offers no hook for either."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _environment_call("guarded_iter", [node.iter], node.lineno)  # type: ignore[list-item]
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _environment_call("guarded_concat", node.nodes, node.lineno)


def _environment_call(method: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(method, lineno=lineno), args, [], None, None, lineno=lineno)


# -- sizes --------------------------------------------------------------------------------------

_PASSED_NAMES = frozenset({"environment", "env", "eval_ctx", "context"})
_SMALL_TEXT = frozenset({int, float, bool, type(None)})
