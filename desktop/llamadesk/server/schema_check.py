"""Checks a ``json_schema`` reply against what its grammar cannot enforce.

llama-cpp-python's schema → grammar converter enforces types, properties, ``enum``/``const``, and
lengths in two cases only (``minLength``/``maxLength`` on a plain ``"type": "string"``,
``minItems``/``maxItems`` on an array with ``items``). Number ranges (``minimum``, ``maximum``,
``exclusiveMinimum``, ``exclusiveMaximum``, ``multipleOf``), lengths elsewhere (a string with a
``pattern`` or ``format``, an array with ``prefixItems``), ``minProperties``/``maxProperties`` and
``uniqueItems`` are not. After generation the parsed reply is checked here, so a reply that breaks
them is reported as such instead of being passed on as valid.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, TypeGuard

__all__ = ["violations"]

MAX_REPORTED = 5

_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "null": type(None)}


def _is_type(value: Any, name: str) -> bool:
    if name == "integer":
        return _number(value) and (isinstance(value, int) or float(value).is_integer())
    if name == "number":
        return _number(value)
    if name == "boolean":
        return isinstance(value, bool)
    kind = _TYPES.get(name)
    return kind is None or isinstance(value, kind)


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _resolve(ref: str, root: Any) -> Any:
    node = root
    for part in ref.lstrip("#").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return {}
    return node


def _show(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def _check(value: Any, schema: Any, root: Any, path: str, out: list[str], depth: int = 0) -> None:
    if not isinstance(schema, Mapping) or depth > 64 or len(out) >= MAX_REPORTED:
        return
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        _check(value, _resolve(ref, root), root, path, out, depth + 1)
    for branch in schema.get("allOf") or ():
        _check(value, branch, root, path, out, depth + 1)
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            found = [_branch(value, b, root, path, depth) for b in branches]
            if all(found):  # no branch fits: say why the first one does not
                out.extend(found[0][: MAX_REPORTED - len(out)])
    kinds = schema.get("type")
    names = [kinds] if isinstance(kinds, str) else kinds if isinstance(kinds, list) else []
    if names and not any(_is_type(value, n) for n in names if isinstance(n, str)):
        out.append(f"{path} is {_show(value)}, not of type {' or '.join(map(str, names))}")
        return
    if _number(value):
        _check_number(value, schema, path, out)
    elif isinstance(value, str):
        _check_count(len(value), schema, "minLength", "maxLength", "characters", path, out)
    elif isinstance(value, list):
        _check_count(len(value), schema, "minItems", "maxItems", "items", path, out)
        if schema.get("uniqueItems") is True:
            seen = [json.dumps(item, sort_keys=True) for item in value]
            if len(set(seen)) != len(seen):
                out.append(f"{path} has repeated items; the schema asks for unique ones")
        prefix = schema.get("prefixItems")
        prefix = prefix if isinstance(prefix, list) else []
        items = schema.get("items")
        for index, item in enumerate(value):
            sub = prefix[index] if index < len(prefix) else items
            _check(item, sub, root, f"{path}[{index}]", out, depth + 1)
    elif isinstance(value, dict):
        _check_count(len(value), schema, "minProperties", "maxProperties", "properties", path, out)
        properties = schema.get("properties")
        properties = properties if isinstance(properties, Mapping) else {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = properties.get(key, extra)
            _check(item, sub, root, f"{path}.{key}", out, depth + 1)


def _branch(value: Any, schema: Any, root: Any, path: str, depth: int) -> list[str]:
    found: list[str] = []
    _check(value, schema, root, path, found, depth + 1)
    if isinstance(schema, Mapping) and "const" in schema and schema["const"] != value:
        found.append(f"{path} is {_show(value)}, not {_show(schema['const'])}")
    if isinstance(schema, Mapping) and isinstance(schema.get("enum"), list) and value not in schema["enum"]:
        found.append(f"{path} is {_show(value)}, not one of the schema's values")
    return found


def _check_number(value: float, schema: Mapping[str, Any], path: str, out: list[str]) -> None:
    bounds = (
        ("minimum", lambda v, b: v >= b, "below the minimum"),
        ("maximum", lambda v, b: v <= b, "above the maximum"),
        ("exclusiveMinimum", lambda v, b: v > b, "not above the exclusive minimum"),
        ("exclusiveMaximum", lambda v, b: v < b, "not below the exclusive maximum"),
    )
    for key, ok, words in bounds:
        bound = schema.get(key)
        if _number(bound) and not ok(value, bound):
            out.append(f"{path} is {_show(value)}, {words} {_show(bound)}")
    step = schema.get("multipleOf")
    if _number(step) and step > 0:
        ratio = value / step
        if not math.isfinite(ratio) or abs(ratio - round(ratio)) > 1e-9 * max(1.0, abs(ratio)):
            out.append(f"{path} is {_show(value)}, not a multiple of {_show(step)}")


def _check_count(
    count: int, schema: Mapping[str, Any], low: str, high: str, what: str, path: str, out: list[str]
) -> None:
    least, most = schema.get(low), schema.get(high)
    if _number(least) and count < least:
        out.append(f"{path} has {count} {what}, fewer than {low} {_show(least)}")
    if _number(most) and count > most:
        out.append(f"{path} has {count} {what}, more than {high} {_show(most)}")


def violations(value: Any, schema: Mapping[str, Any]) -> list[str]:
    """How ``value`` (a parsed reply) breaks ``schema`` (at most a few, each naming where); [] if not."""
    out: list[str] = []
    _check(value, schema, schema, "$", out)
    return out[:MAX_REPORTED]
