"""JSON from files and servers we don't control: bounded nesting, finite numbers only.

``json.loads`` recurses once per nesting level and turns ``1e999`` into ``inf``; a hostile
settings file, import file, library index or Hub answer could then crash a reader far from
the parse (``RecursionError``, ``OverflowError`` in ``int(inf)``). Every JSON that comes from
outside goes through :func:`loads`, which refuses both with one readable ``ValueError``.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 64


class JSONLimitError(ValueError):
    """The JSON is well formed but nested too deeply or holds a non-finite number."""


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONLimitError(f"the number {text[:20]} is too large")
    return value


def _no_constant(name: str) -> float:
    raise JSONLimitError(f"{name} is not a number JSON allows")


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply ``value`` nests lists and dicts, counted without recursion; stops past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def loads(text: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``text`` like ``json.loads``; raise ``ValueError`` (with a reason) instead of crashing.

    ``json.JSONDecodeError`` is a ``ValueError`` too, so callers catch one type.
    """
    try:
        value = json.loads(text, parse_float=_finite_float, parse_constant=_no_constant)
    except RecursionError:
        raise JSONLimitError(f"it is nested more than {max_depth} levels deep") from None
    if depth(value, max_depth) > max_depth:
        raise JSONLimitError(f"it is nested more than {max_depth} levels deep")
    return value
