"""Typed access to decoded JSON that names the offending field when the data is not as expected.

The reader's parsing functions raise `FieldError(field, problem)`; `read_trajectory` adds the file
name and turns it into a `DataFormatError`, so helpers need not carry the source around.
"""

from __future__ import annotations

from typing import Any

_MAX_VALUE_CHARS = 60

_JSON_TYPE_NAMES: dict[type, str] = {
    dict: "object",
    list: "array",
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


class FieldError(Exception):
    """A problem at one field of the document being read (the caller knows which file)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


def short(value: Any) -> str:
    """The repr of a value, cut to about 60 characters so a message stays on one line."""
    text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def one_line(text: object, limit: int = 160) -> str:
    """Any text (an exception message) flattened to one line of at most `limit` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type: object, array, string, integer, number, boolean, null."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def wrong_type(field: str, expected: str, value: Any) -> FieldError:
    """The error for a value of the wrong type: says what was expected and what came."""
    got = json_type(value)
    shown = "" if isinstance(value, dict | list) else f" {short(value)}"
    return FieldError(field, f"expected {expected}, got {got}{shown}")


def join(prefix: str, key: str) -> str:
    """A dotted field path: join("plan", "low_actions") -> "plan.low_actions"."""
    return f"{prefix}.{key}" if prefix else key


def member(obj: dict[str, Any], key: str, prefix: str = "") -> Any:
    """obj[key], or a FieldError naming the missing key."""
    try:
        return obj[key]
    except KeyError:
        where = f"in {prefix}" if prefix else "at the top level"
        raise FieldError(join(prefix, key), f"missing required key {key!r} {where}") from None


def as_dict(value: Any, field: str) -> dict[str, Any]:
    if type(value) is not dict:
        raise wrong_type(field, "an object", value)
    return value


def as_list(value: Any, field: str) -> list[Any]:
    if type(value) is not list:
        raise wrong_type(field, "an array", value)
    return value


def as_str(value: Any, field: str) -> str:
    if type(value) is not str:
        raise wrong_type(field, "a string", value)
    return value


def as_int(value: Any, field: str) -> int:
    """An integer (JSON true/false are refused although Python counts them as ints)."""
    if type(value) is not int:
        raise wrong_type(field, "an integer", value)
    return value


def dict_member(obj: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    return as_dict(member(obj, key, prefix), join(prefix, key))


def list_member(obj: dict[str, Any], key: str, prefix: str = "") -> list[Any]:
    return as_list(member(obj, key, prefix), join(prefix, key))


def str_member(obj: dict[str, Any], key: str, prefix: str = "") -> str:
    return as_str(member(obj, key, prefix), join(prefix, key))
