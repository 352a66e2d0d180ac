"""How big a value a template operation would make, computed from lengths before it is made.

The arithmetic behind template_sandbox.BoundedSandbox: upper bounds on the text of a value (nested
containers included), on what printf and str.format produce, on what growing string methods and
Jinja filters produce. Each is cheap (lengths, counts) and stops counting once past the limit.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2.utils import Namespace


@dataclass(frozen=True)
class RenderLimits:
    """What one render may make; generous for prompts (a few KB each), tight for a runaway template."""

    max_chars: int = 1_000_000  # characters of output, and characters or items of any one value
    max_allocated: int = 16_000_000  # characters and items all the values of one render may add up to
    max_steps: int = 200_000  # a loop iteration or a filter is 1 step, any other call CALL_STEPS
    max_seconds: float = 2.0  # wall time, read at every step and every piece of output
    max_int_bits: int = 10_000  # about 3,000 decimal digits (Python prints at most 4,300)
    max_depth: int = 100  # nesting of lists and mappings turned into text
    max_template_chars: int = 100_000  # template source, checked before it is compiled


class RenderLimitError(Exception):
    """A render asked for more than its RenderLimits; the message says what, in one line."""


@dataclass(frozen=True)
class Sizer:
    """Size estimates under one set of limits (`newline` is the environment's line break)."""

    limits: RenderLimits
    newline: str = "\n"

    def text_size(self, value: Any) -> int:
        """An upper bound on len(str(value)), or a number past max_chars; never builds the text."""
        return measure(value, self.limits.max_chars, self.limits.max_depth)[0]

    def method_size(
        self, owner: str | bytes, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> int:
        """An upper bound on the size of `owner.name(*args, **kwargs)`; 0 for methods that do not grow."""
        n = len(owner)
        if name in ("center", "ljust", "rjust", "zfill"):
            return max(n, int_arg(args, kwargs, 0, "width", 0))
        if name == "expandtabs":
            tab = "\t" if isinstance(owner, str) else b"\t"
            return n + owner.count(tab) * max(int_arg(args, kwargs, 0, "tabsize", 8), 0)  # type: ignore[arg-type]
        if name == "replace" and len(args) >= 2:
            return _replace_size(owner, args[0], args[1], int_arg(args, kwargs, 2, "count", -1))
        if name == "join" and args:
            items = args[0]
            return sum(len(x) for x in items if isinstance(x, str | bytes)) + max(len(items) - 1, 0) * n
        if name == "translate" and args and isinstance(args[0], Mapping):
            longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
            return n * max(longest, 1)
        if name == "format" and isinstance(owner, str):
            return self.format_size(owner, [*args, *kwargs.values()])
        if name == "format_map" and isinstance(owner, str) and args and isinstance(args[0], Mapping):
            return self.format_size(owner, list(args[0].values()))
        return 0

    def printf_size(self, fmt: str | bytes, values: Any) -> int:
        """An upper bound on len(fmt % values): each conversion at most its width or its widest value."""
        text = fmt if isinstance(fmt, str) else fmt.decode("latin-1")
        specs = [m for m in _PRINTF.finditer(text) if m.group(4) != "%"]
        if not specs:
            return len(text)
        pool = list(values.values()) if isinstance(values, Mapping) else _as_list(values)
        widths = [g for m in specs for g in (m.group(2), m.group(3)) if g]
        return len(text) + len(specs) * (self._widest(widths, pool) + self._longest(pool))

    def format_size(self, fmt: str, pool: list[Any]) -> int:
        """An upper bound on len(fmt.format(...)) with the values in `pool`."""
        try:
            parsed = list(string.Formatter().parse(fmt))
        except ValueError:  # the real call raises the same error
            return len(fmt)
        fields = [spec or "" for _, field, spec, _ in parsed if field is not None]
        widths = [w for spec in fields for w in (_DIGITS.findall(spec) + (["*"] if "{" in spec else []))]
        literal = sum(len(text) for text, *_ in parsed)
        return literal + len(fields) * (self._widest(widths, pool) + self._longest(pool))

    def _widest(self, widths: list[str], pool: list[Any]) -> int:
        """The largest width or precision; `*` (or a nested field) takes any integer among the values."""
        widest = 0
        for width in widths:
            if width == "*":
                widest = max(widest, max((abs(v) for v in pool if is_int(v)), default=0))
            else:
                widest = max(widest, int(width) if len(width) < 19 else 10**18)
        return widest

    def _longest(self, pool: list[Any]) -> int:
        return max((self.text_size(v) for v in pool), default=0)


_PRINTF = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?(.)", re.S)
_DIGITS = re.compile(r"\d+")
LIPSUM_WORD_CHARS = 14  # the longest lorem-ipsum word, a space and markup to spare
_OTHER_OBJECT_CHARS = 200  # repr of a function, macro, loop or other object
STRINGIFYING = frozenset(
    {"capitalize", "e", "escape", "forceescape", "lower", "safe", "string", "striptags", "title", "trim"}
    | {"truncate", "upper", "urlencode", "wordcount", "filesizeformat"}
)


def is_int(value: Any) -> bool:
    return isinstance(value, int)


def is_sequence(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple)


def _as_list(values: Any) -> list[Any]:
    return list(values) if isinstance(values, tuple) else [values]


def int_arg(args: tuple[Any, ...], kwargs: dict[str, Any], index: int, name: str, default: int) -> int:
    value = args[index] if len(args) > index else kwargs.get(name, default)
    return value if is_int(value) else default


def shallow_size(value: Any) -> int:
    """Characters of a string, items of a container, about a tenth of an int's bits; else 1."""
    if isinstance(value, str | bytes | list | tuple | dict | set | frozenset):
        return len(value)
    if is_int(value):
        return int(value.bit_length()) // 10 + 1
    return 1


def _repr_size(text: str) -> int:
    """An upper bound on len(repr(text)) (how a string inside a list prints)."""
    if text.isprintable():
        return len(text) + 2 + text.count("\\") + text.count("'") + text.count('"')
    return (4 if text.isascii() else 10) * len(text) + 2


def measure(value: Any, limit: int, max_depth: int) -> tuple[int, int]:
    """(an upper bound on len(str(value)), its nesting depth), from lengths; stops once past `limit`.

    Walks nested lists, tuples, sets, mappings and namespaces depth first (memory: the depth) and
    refuses nesting deeper than `max_depth`, which Python could not print anyway.
    """
    if isinstance(value, str):
        return len(value), 0
    total = deepest = 0
    stack: list[Iterator[Any]] = [iter((value,))]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
            continue
        size, children = _node_size(item)
        total += size
        if total > limit:
            break
        if children is not None:
            if len(stack) > max_depth:
                raise RenderLimitError(f"too deep: a value nested more than {max_depth} levels")
            stack.append(children)
            deepest = max(deepest, len(stack) - 1)
    return total, deepest


_END = object()


def _node_size(item: Any) -> tuple[int, Iterator[Any] | None]:
    """The characters `item` adds to its parent's text itself, and its children if it has any."""
    if isinstance(item, str):
        return _repr_size(item), None
    if isinstance(item, bytes):
        return 4 * len(item) + 3, None
    if isinstance(item, bool) or item is None:
        return 5, None
    if is_int(item):
        return int(item.bit_length()) * 3 // 10 + 2, None
    if isinstance(item, float):
        return 25, None
    if isinstance(item, list | tuple | set | frozenset):
        return 2 + 2 * len(item), iter(item)
    if isinstance(item, Mapping):
        return 2 + 4 * len(item), (x for pair in item.items() for x in pair)
    if isinstance(item, Namespace):
        return 13, iter((getattr(item, "_Namespace__attrs", {}),))
    if isinstance(item, type({}.keys()) | type({}.values()) | type({}.items())):
        return 15 + 2 * len(item), iter(item)
    return _OTHER_OBJECT_CHARS, None


def _replace_size(owner: Any, old: Any, new: Any, count: int | None) -> int:
    if (
        not isinstance(owner, str | bytes)
        or not isinstance(old, str | bytes)
        or not isinstance(new, str | bytes)
    ):
        return len(owner) if isinstance(owner, str | bytes) else 0
    try:
        found = owner.count(old) if old else len(owner) + 1  # type: ignore[arg-type]
    except TypeError:  # str and bytes mixed: the real call raises the same error
        return 0
    if count is not None and count >= 0:
        found = min(found, count)
    return len(owner) + found * max(len(new) - len(old), 0)


def _materialise(arguments: dict[str, Any], name: str) -> list[Any]:
    """The iterable argument `name` as a list, put back so the filter iterates the same items."""
    items = arguments[name]
    if not isinstance(items, list):
        items = list(items)
        arguments[name] = items
    return items


def _size_center(sizer: Sizer, a: dict[str, Any]) -> int:
    return max(sizer.text_size(a["value"]), a["width"] if is_int(a["width"]) else 0)


def _size_indent(sizer: Sizer, a: dict[str, Any]) -> int:
    s, width = a["s"], a["width"]
    pad = width if is_int(width) else len(str(width))
    lines = s.count("\n") + 1 if isinstance(s, str) else sizer.text_size(s)
    return sizer.text_size(s) + lines * max(pad, 0)


def _size_wordwrap(sizer: Sizer, a: dict[str, Any]) -> int:
    s = a["s"] if isinstance(a["s"], str) else ""
    wrap = a["wrapstring"] if a["wrapstring"] is not None else sizer.newline
    width = max(a["width"], 1) if is_int(a["width"]) else 1
    lines = 2 * len(s) // width + s.count("\n") + 2  # two lines in a row hold at least `width` characters
    return sizer.text_size(a["s"]) + lines * len(str(wrap))


def _size_format(sizer: Sizer, a: dict[str, Any]) -> int:
    values = a["kwargs"] or a["args"]
    if not isinstance(a["value"], str):
        return sizer.text_size(a["value"])
    return sizer.printf_size(a["value"], values)


def _size_join(sizer: Sizer, a: dict[str, Any]) -> int:
    items = _materialise(a, "value")
    glue = len(a["d"]) if isinstance(a["d"], str) else 0
    total = max(len(items) - 1, 0) * glue
    for item in items:
        total += sizer.text_size(item)
        if total > sizer.limits.max_chars:
            break
    return total


def _size_replace(sizer: Sizer, a: dict[str, Any]) -> int:
    return max(sizer.text_size(a["s"]), _replace_size(a["s"], a["old"], a["new"], a["count"]))


def _size_tojson(sizer: Sizer, a: dict[str, Any]) -> int:
    indent = a["indent"]
    pad = indent if is_int(indent) else len(indent) if isinstance(indent, str) else 0
    size, depth = measure(a["value"], sizer.limits.max_chars, sizer.limits.max_depth)
    return 6 * size + size * (depth + 1) * max(pad, 0)  # a line per item, indented by its depth


def _size_pprint(sizer: Sizer, a: dict[str, Any]) -> int:
    return 3 * sizer.text_size(a["value"])


def _size_batch(sizer: Sizer, a: dict[str, Any]) -> int:
    fill = a["linecount"] if a["fill_with"] is not None and is_int(a["linecount"]) else 0
    return len(_materialise(a, "value")) + max(fill, 0)


def _size_slice(sizer: Sizer, a: dict[str, Any]) -> int:
    slices = a["slices"] if is_int(a["slices"]) else 0
    return len(_materialise(a, "value")) + 2 * max(slices, 0)


def _size_sum(sizer: Sizer, a: dict[str, Any]) -> int:
    """Summing lists copies the running total at each item: its work is items x total."""
    items = _materialise(a, "iterable")
    if not (is_sequence(a["start"]) or any(is_sequence(x) for x in items)):
        return 0
    total = sum(len(x) for x in (a["start"], *items) if is_sequence(x))
    if len(items) * total > sizer.limits.max_allocated:
        raise RenderLimitError(
            f"too much work: the sum filter would copy {len(items) * total:,} items "
            f"(summing {len(items):,} lists of {total:,} items in all)"
        )
    return total


def _size_urlize(sizer: Sizer, a: dict[str, Any]) -> int:
    extra = sum(len(a[k]) for k in ("target", "rel") if isinstance(a[k], str))
    size = sizer.text_size(a["value"])
    return 3 * size + (size // 4 + 1) * (60 + extra)  # a link per 4 characters at most


def _size_xmlattr(sizer: Sizer, a: dict[str, Any]) -> int:
    return 6 * sizer.text_size(a["d"])


FILTER_SIZES: dict[str, Callable[[Sizer, dict[str, Any]], int]] = {
    "center": _size_center,
    "indent": _size_indent,
    "wordwrap": _size_wordwrap,
    "format": _size_format,
    "join": _size_join,
    "replace": _size_replace,
    "tojson": _size_tojson,
    "pprint": _size_pprint,
    "batch": _size_batch,
    "slice": _size_slice,
    "sum": _size_sum,
    "urlize": _size_urlize,
    "xmlattr": _size_xmlattr,
}
