"""Random instances of a JSON schema: what a server that constrains its output to the schema, and
does nothing more, may answer (vLLM guided decoding, OpenAI structured outputs).

`random_instance` models the subset of JSON Schema the product sends and refuses every keyword it
does not model (SchemaNotUnderstood), so a schema it cannot follow is never answered as if it were
looser than it is. Used by the loopback server's `schema_responder` (tests/fake_openai.py).
"""

from __future__ import annotations

import copy
import random
from typing import Any


class SchemaNotUnderstood(ValueError):
    """A schema keyword, type or value the generator does not model: refused, never ignored."""


_ANNOTATIONS = frozenset({"title", "description", "$comment", "examples", "default"})
_TYPE_KEYWORDS = {
    "object": frozenset({"properties", "required", "additionalProperties"}),
    "array": frozenset({"items", "prefixItems", "minItems", "maxItems"}),
    "integer": frozenset({"minimum", "maximum"}),
    "string": frozenset(),
}
_WORDS = (
    "the",
    "agent",
    "opens",
    "fridge",
    "apple",
    "détour",
    'a "quoted" word',
    "back\\slash",
    "line\nbreak",
)
_SPAN = 1000  # an unbounded integer is drawn within this distance of its one bound (or of 0)


def random_instance(schema: Any, rng: random.Random, path: str = "$") -> Any:
    """A random JSON value that `schema` admits, drawn from every shape it allows.

    The subset modelled: `type` object (properties, required, additionalProperties true/false),
    array (items, prefixItems, minItems, maxItems), integer (minimum, maximum) and string; `enum`
    and `const` on any of them; annotations. Anything else raises SchemaNotUnderstood, so a schema
    this cannot follow is never answered as if it were looser than it is.
    """
    if schema is True or schema == {}:
        return _any_value(rng)
    if not isinstance(schema, dict):
        raise SchemaNotUnderstood(f"{path}: a schema must be an object or true, got {schema!r}")
    kind = schema.get("type")
    if kind is None and not ("enum" in schema or "const" in schema):
        raise SchemaNotUnderstood(f"{path}: a schema without enum or const needs a type")
    if kind is not None and (not isinstance(kind, str) or kind not in _TYPE_KEYWORDS):
        raise SchemaNotUnderstood(f"{path}: type {kind!r} is not modelled")
    allowed = _ANNOTATIONS | {"type", "enum", "const"} | _TYPE_KEYWORDS.get(kind, frozenset())
    unknown = sorted(set(schema) - allowed)
    if unknown:
        raise SchemaNotUnderstood(f"{path}: keywords {unknown} are not modelled for type {kind!r}")
    if "enum" in schema or "const" in schema:
        return copy.deepcopy(rng.choice(_listed_values(schema, path)))
    draw = {"object": _random_object, "array": _random_array, "integer": _random_integer}
    return draw.get(kind, _random_string)(schema, rng, path)


def _listed_values(schema: dict[str, Any], path: str) -> list[Any]:
    """The values of `const` / `enum` that also fit the schema's type and bounds."""
    values = [schema["const"]] if "const" in schema else schema["enum"]
    if not isinstance(values, list) or not values:
        raise SchemaNotUnderstood(f"{path}: enum must be a non-empty list")
    rest = {k: v for k, v in schema.items() if k not in ("enum", "const")}
    if "enum" in schema and "const" in schema:
        values = [v for v in values if v in schema["enum"]]
    if rest.get("type") in ("object", "array") and set(rest) - _ANNOTATIONS - {"type"}:
        raise SchemaNotUnderstood(f"{path}: enum or const next to {rest['type']} keywords is not modelled")
    fitting = [v for v in values if _fits_scalar(v, rest)]
    if not fitting:
        raise SchemaNotUnderstood(f"{path}: no value of enum/const fits the rest of the schema")
    return fitting


def _fits_scalar(value: Any, schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    is_int = isinstance(value, int) and not isinstance(value, bool)
    checks = {
        None: True,
        "integer": is_int,
        "string": isinstance(value, str),
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
    }
    if not checks[kind]:
        return False
    low, high = schema.get("minimum"), schema.get("maximum")
    return not is_int or ((low is None or value >= low) and (high is None or value <= high))


def _random_object(schema: dict[str, Any], rng: random.Random, path: str) -> dict[str, Any]:
    props = schema.get("properties", {})
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    if not isinstance(props, dict) or not isinstance(required, list) or not isinstance(extra, bool):
        raise SchemaNotUnderstood(f"{path}: properties/required/additionalProperties of an unmodelled form")
    missing = [k for k in required if k not in props]
    if missing and not extra:
        raise SchemaNotUnderstood(f"{path}: required {missing} are neither properties nor allowed extras")
    keys = [k for k in props if k in required or rng.random() < 0.5]
    if rng.random() < 0.5:  # a server may write the properties in any order (lm-format-enforcer does)
        rng.shuffle(keys)
    out = {k: random_instance(props[k], rng, f"{path}.{k}") for k in keys}
    out.update({k: _any_value(rng) for k in missing})
    if extra:
        for i in range(rng.randint(0, 2)):
            name = f"extra_{i}"
            if name not in props:
                out[name] = _any_value(rng)
    return out


def _random_array(schema: dict[str, Any], rng: random.Random, path: str) -> list[Any]:
    prefix = schema.get("prefixItems", [])
    items = schema.get("items", True)
    low = schema.get("minItems", 0)
    if not isinstance(prefix, list) or not isinstance(low, int) or isinstance(low, bool):
        raise SchemaNotUnderstood(f"{path}: prefixItems/minItems of an unmodelled form")
    longest = len(prefix) if items is False else max(low, len(prefix)) + 3
    high = schema.get("maxItems", longest)
    if not isinstance(high, int) or isinstance(high, bool):
        raise SchemaNotUnderstood(f"{path}: maxItems must be an integer")
    high = min(high, longest)
    if low > high:
        raise SchemaNotUnderstood(f"{path}: no length fits minItems {low}, maxItems {high}")
    length = rng.randint(low, high)
    return [
        random_instance(prefix[i] if i < len(prefix) else items, rng, f"{path}[{i}]") for i in range(length)
    ]


def _random_integer(schema: dict[str, Any], rng: random.Random, path: str) -> int:
    low, high = schema.get("minimum"), schema.get("maximum")
    for bound in (low, high):
        if bound is not None and (not isinstance(bound, int) or isinstance(bound, bool)):
            raise SchemaNotUnderstood(f"{path}: integer bounds must be integers, got {bound!r}")
    if low is None:
        low = (high if high is not None else _SPAN // 2) - _SPAN
    if high is None:
        high = low + _SPAN
    if low > high:
        raise SchemaNotUnderstood(f"{path}: no integer between {low} and {high}")
    return rng.choice((low, high)) if rng.random() < 0.2 else rng.randint(low, high)  # edges often


def _random_string(schema: dict[str, Any], rng: random.Random, path: str) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 5)))


def _any_value(rng: random.Random) -> Any:
    return rng.choice((rng.randint(-5, 20), _random_string({}, rng, "$"), None, True))
