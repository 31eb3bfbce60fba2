"""Time, step and size limits for one render of a chat template, checked from the sandbox's hooks.

A render gets a :class:`Budget` (a deadline, a step count and size limits that grow with the input);
the sandbox calls the checks here before it builds a string, list or number, so a template that would
build gigabytes is refused while the value is still small. Limits on the template's source, checked
before it is compiled, are in :mod:`llamadesk.chat.template_source`.
"""

from __future__ import annotations

import contextvars
import itertools
import re
import string
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.runtime import Macro
from jinja2.utils import Cycler, Namespace

MAX_RENDER_SECONDS = 2.0
"""Wall-clock limit for one render; a template still running after this is stopped."""
MAX_STEPS = 2_000_000
"""Limit on loop iterations, calls and attribute look-ups in one render (machine-independent)."""
MAX_OUTPUT_CHARS = 4_000_000
"""Limit on the size of the output and of any string or list a template builds (plus 2x the input).

A list or dict counts at its size written out as text, every repeat of a shared part included (plus 2x
the size of the messages, tools and other values passed in)."""
MAX_ITEMS = 100_000
"""Limit on the length of any list, tuple, dict or set a template builds (plus 2x the messages)."""
MAX_RANGE = 20_000
"""Largest ``range()`` a template may ask for (Jinja's own sandbox allows 100,000)."""
MAX_INT_BITS = 65_536
"""Largest integer, in bits, that a product or power in a template may build."""
_MAX_FORMAT_WIDTH = 10_000

_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_PERCENT_NAME = re.compile(r"%\(([^)]*)\)")
_FIELD_NAME = re.compile(r"[^.\[]*")
_DIGITS = re.compile(r"\d+")
_CONTAINERS = (list, tuple, dict, set, frozenset)
# Values whose text form includes the text of what they hold: their size is measured in depth.
_DICT_ITEMS: type[Any] = type({}.items())
NESTED: tuple[type[Any], ...] = (list, tuple, dict, set, frozenset, type({}.keys()), type({}.values()))
NESTED += (_DICT_ITEMS, Namespace)


class Shape(NamedTuple):
    """How big a value is written out as text (``str()``, ``tojson``), repeats of a shared part included."""

    size: int
    """A lower bound on its length as text, in characters."""
    items: int
    """The values nested in it at any depth (each one is a line of ``tojson(indent=...)``)."""
    levels: int
    """The sum of those values' depths below it (how far ``tojson(indent=...)`` indents them)."""


@dataclass
class Budget:
    """Time, step and size limits for one render, checked from the sandbox hooks."""

    deadline: float
    max_size: int
    max_items: int
    max_nested: int  # the size limit on lists and dicts, as written out (see measure)
    steps: int = field(default=0)
    # Shapes of the lists and dicts measured so far, by id, each with the value itself so that its id
    # stays unique; they never change, since the sandbox lets a template mutate nothing but namespaces.
    # The weight (references and characters the cache alone may keep alive) is held under max_nested.
    shapes: dict[int, tuple[Any, Shape]] = field(default_factory=dict)
    shapes_weight: int = field(default=0)

    def tick(self) -> None:
        """Count one step; refuse the render once it is over the step or time limit."""
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise SecurityError(f"it did more than {MAX_STEPS:,} steps")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"it ran longer than {MAX_RENDER_SECONDS:g} seconds")


_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar(
    "llamadesk_template_budget", default=None
)


def tick() -> None:
    """Count one step against the current render's budget (none outside a render)."""
    budget = _budget.get()
    if budget is not None:
        budget.tick()


def size_limit() -> int:
    """The most characters a string built by the current render may have."""
    budget = _budget.get()
    return MAX_OUTPUT_CHARS if budget is None else budget.max_size


def items_limit() -> int:
    """The most items a list, tuple, dict or set built by the current render may have."""
    budget = _budget.get()
    return MAX_ITEMS if budget is None else budget.max_items


def nested_limit() -> int:
    """The most characters a list or dict built by the current render may write out as text."""
    budget = _budget.get()
    return MAX_OUTPUT_CHARS if budget is None else budget.max_nested


def _nested_too_large(limit: int) -> SecurityError:
    return SecurityError(f"it built a value that would be more than {limit:,} characters as text")


def _scalar_size(value: Any) -> int:
    """A lower bound on the length of ``str(value)`` for a value that holds no other values."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if isinstance(value, bool) or value is None:
        return 4  # True, None, null, ...
    if isinstance(value, int):
        bits = value.bit_length()
        return 1 if bits < 64 else (bits - 1) * 3 // 10 + 1  # 3/10 < log10(2)
    return 3 if isinstance(value, float) else 0


def _element_size(value: Any) -> int:
    """A lower bound on the length of ``repr(value)`` (or its JSON) for a value that holds no others."""
    return len(value) + 2 if isinstance(value, str) else _scalar_size(value) or 1


def measure(value: Any) -> tuple[Shape, bool]:
    """The shape of a list, dict or namespace, and whether it can change (it holds a namespace).

    Each distinct list or dict is walked once (a shared part costs one look-up however often it is
    repeated) and the walk stops as soon as the size passes the limit, so measuring is cheap even
    for a value that would take gigabytes to write out.
    """
    budget = _budget.get()
    cache = budget.shapes if budget is not None else {}
    hit = cache.get(id(value))
    if hit is not None:
        return hit[1], True
    bound = nested_limit()
    memo: dict[int, Shape] = {}  # values holding a namespace, for this walk only
    active: set[int] = set()

    def visit(node: Any) -> tuple[Shape, bool]:
        key = id(node)
        hit = cache.get(key)
        if hit is not None:
            return hit[1], True
        if key in memo:
            return memo[key], False
        if key in active:
            raise SecurityError("it built a value that contains itself")
        active.add(key)
        size, items, levels, nested, stable = 1, 0, 0, 0, True
        if isinstance(node, Namespace):
            size, stable = 12, False  # <Namespace {...}>
            pairs: Iterable[tuple[Any, Any]] = node._Namespace__attrs.items()
        elif isinstance(node, (dict, _DICT_ITEMS)):
            pairs = node.items() if isinstance(node, dict) else node
        else:
            pairs = zip(itertools.repeat(None), node)
        for name, child in pairs:
            # Each value counts its text, a separator, a line and its depth under tojson(indent=...).
            if isinstance(child, NESTED):
                shape, child_stable = visit(child)
                stable = stable and child_stable
                size += shape.size + 1
                nested += shape.size
                items += 1 + shape.items
                levels += 1 + shape.items + shape.levels
            else:
                size += _element_size(child) + 1
                items += 1
                levels += 1
            if isinstance(name, NESTED):  # a tuple as a dict key
                shape, name_stable = visit(name)
                stable = stable and name_stable
                size += shape.size + 1
                nested += shape.size
            elif name is not None:
                size += _element_size(name) + 1
            if size > bound:
                raise _nested_too_large(bound)
        active.discard(key)
        result = Shape(size, items, levels)
        if stable:
            _remember(node, result, budget, weight=size - nested)  # its references and own strings
        else:
            memo[key] = result
        return result, stable

    return visit(value)


def _remember(value: Any, shape: Shape, budget: Budget | None, weight: int) -> None:
    if budget is None:
        return
    if budget.shapes_weight + weight > budget.max_nested:
        budget.shapes.clear()  # let go of the values that are gone (a later check walks them again)
        budget.shapes_weight = 0
    budget.shapes[id(value)] = (value, shape)
    budget.shapes_weight += weight


def shape_of(value: Any) -> Shape:
    """The shape of any value; refuses one larger than this render may build."""
    return measure(value)[0] if isinstance(value, NESTED) else Shape(_scalar_size(value), 0, 0)


def text_size(value: Any) -> int:
    """A lower bound on the length of ``str(value)``; refuses a value larger than this render may build."""
    return shape_of(value).size


def check_size(value: Any) -> Any:
    """Refuse a string or container larger than this render may build."""
    if isinstance(value, (str, bytes)) and len(value) > size_limit():
        raise SecurityError(f"it built a text of {len(value):,} characters, more than allowed")
    if isinstance(value, _CONTAINERS) and len(value) > items_limit():
        raise SecurityError(f"it built a list of {len(value):,} items, more than allowed")
    if isinstance(value, NESTED):
        measure(value)
    return value


def check_built(value: Any) -> Any:
    """The filter every list, tuple and dict literal of a template goes through (see ``_parse``)."""
    return check_size(value)


def _check_repeat(seq: list[Any] | tuple[Any, ...], count: int) -> tuple[Shape, bool]:
    """The shape of ``seq * count`` and whether it can change, refused before it is built if too large."""
    shape, stable = measure(seq)
    count = max(count, 0)
    repeated = Shape(1 + count * (shape.size - 1), count * shape.items, count * shape.levels)
    if repeated.size > nested_limit():
        raise _nested_too_large(nested_limit())
    return repeated, stable


def check_concat(parts: Sequence[list[Any] | tuple[Any, ...]]) -> tuple[Shape, bool]:
    """The shape of ``parts[0] + parts[1] + ...`` and whether it can change, refused before it is built."""
    check_items(sum(len(part) for part in parts))
    measured = [measure(part) for part in parts]
    joined = Shape(
        1 + sum(shape.size - 1 for shape, _stable in measured),
        sum(shape.items for shape, _stable in measured),
        sum(shape.levels for shape, _stable in measured),
    )
    if joined.size > nested_limit():
        raise _nested_too_large(nested_limit())
    return joined, all(stable for shape_of, stable in measured)


def remember_built(value: Any, measured: tuple[Shape, bool]) -> Any:
    """Caches the shape of a list just built from parts already measured, saving a walk of it."""
    shape, stable = measured
    if stable and isinstance(value, (list, tuple)):
        _remember(value, shape, _budget.get(), weight=1 + len(value))  # its parts hold the strings
    return value


def check_items(count: int) -> None:
    """Refuse a list of ``count`` items before it is built, if that is more than allowed."""
    if count > items_limit():
        limit = items_limit()
        raise SecurityError(f"it would build a list of {count:,} items, more than the {limit:,} allowed")


def check_growth(expected: int) -> None:
    """Refuse a string of ``expected`` characters before it is built, if that is more than allowed."""
    if expected > size_limit():
        limit = size_limit()
        raise SecurityError(
            f"it would build a value of {expected:,} characters, more than the {limit:,} allowed"
        )


def check_width(width: Any) -> None:
    """Refuse a padding width (``center``, ``ljust``, ...) larger than the size limit."""
    if isinstance(width, int) and width > size_limit():
        raise SecurityError(f"a width of {width:,} is too large")


def _check_format_output(size: int) -> None:
    """Refuse a format whose fields would write more than allowed (fields may repeat a value)."""
    if size > nested_limit():
        limit = nested_limit()
        raise SecurityError(f"it would build a value of {size:,} characters, more than the {limit:,} allowed")


def check_percent_format(fmt: str, args: Any = ()) -> None:
    """Refuse ``%``-format specs with huge widths or precisions (``'%999999999d' % 1``).

    ``args`` is the right-hand side of ``%``: what the fields write out must fit the size limit.
    """
    for match in _PERCENT_SPEC.finditer(fmt):
        for part in match.groups():
            if part == "*" or (part is not None and int(part) > _MAX_FORMAT_WIDTH):
                raise SecurityError("a %-format width or precision is too large")
    names = _PERCENT_NAME.findall(fmt) if isinstance(args, Mapping) else []
    if names:  # '%(x)s%(x)s' % {'x': ...}
        values: Iterable[Any] = [args.get(name) for name in names]
    else:
        values = args if isinstance(args, tuple) else (args,)
    _check_format_output(len(fmt) + sum(text_size(value) for value in values))


def check_brace_format(fmt: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> None:
    """Refuse ``str.format`` specs with huge or nested widths (``'{:>999999999}'``).

    ``args`` and ``kwargs`` are what ``format()`` gets: what the fields write out must fit the size limit.
    """
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # format() itself reports the error
    size, auto = 0, 0
    for literal, name, spec, _conversion in fields:
        size += len(literal)
        if spec and ("{" in spec or any(int(d) > _MAX_FORMAT_WIDTH for d in _DIGITS.findall(spec))):
            raise SecurityError("a format width or precision is too large")
        if name is None:
            continue
        match = _FIELD_NAME.match(name)
        first = match.group() if match else ""
        if not first:
            first, auto = str(auto), auto + 1
        if first.isdecimal():  # what int() and str.format take as an index ("²".isdigit() is True too)
            value = args[int(first)] if int(first) < len(args) else None
        else:
            value = (kwargs or {}).get(first)
        size += text_size(value)  # '{0[x]}' writes part of it: count all of it
    _check_format_output(size)


def safe_range(*args: int) -> range:
    """``range()`` capped at :data:`MAX_RANGE` items."""
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range() of {len(rng):,} items is larger than the {MAX_RANGE:,} allowed")
    return rng


def loop_guard(iterable: Any) -> Iterator[Any]:
    """Wraps every ``{% for %}`` iterable so that each iteration counts against the budget."""
    for item in iterable:
        tick()
        yield item


def guarded_str_join(seq: Iterable[Any]) -> str:
    """Jinja's ``~`` operator, refusing results larger than allowed."""
    items = list(seq)
    check_growth(sum(text_size(item) for item in items))
    parts = [str(item) for item in items]
    check_growth(sum(map(len, parts)))
    return "".join(parts)


def finalize(value: Any) -> Any:
    """Applied to every ``{{ ... }}`` before it is written out: refuses a value too large to write."""
    if isinstance(value, NESTED):
        measure(value)
    return value


def checked_items(name: str, items: Iterator[Any]) -> Iterator[Any]:
    """Wraps the generator a filter returns, so that what it yields counts against the size limit."""
    total = 0
    for item in items:
        total += text_size(item)
        if total > nested_limit():
            limit = nested_limit()
            raise SecurityError(f"its {name} filter would yield more than {limit:,} characters as text")
        yield item


def check_multiply(left: Any, right: Any) -> tuple[Shape, bool] | None:
    """Refuse a product too large to build; for a repeated list or tuple, also return its shape."""
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise SecurityError("a product is too large")
        return None
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str) and isinstance(count, int):
            check_growth(len(seq) * count)
        elif isinstance(seq, (list, tuple)) and isinstance(count, int):
            check_items(len(seq) * count)
            return _check_repeat(seq, count)
    return None


def check_kept_arguments(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Size-check the arguments a call keeps in a new tuple or dict that the template can read back.

    A macro's ``varargs`` and ``kwargs`` and a cycler's ``items`` are built by the call itself: a macro
    passing its ``varargs`` on several times over to itself would otherwise grow them unchecked.
    """
    if obj is Cycler:
        check_size(args)
    elif isinstance(obj, Macro):
        if obj.catch_varargs:
            check_size(args[len(obj.arguments) :])
        if obj.catch_kwargs:
            check_size({name: value for name, value in kwargs.items() if name not in obj.arguments})


def check_method_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Pre-check the string methods whose result can be far larger than their input."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return args
    name = getattr(obj, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill"):
        check_width(args[0] if args else kwargs.get("width"))
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            check_growth(len(owner) + owner.count("\t") * size)
    elif name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        check_growth(len(owner) + (owner.count(old) if old else len(owner) + 1) * len(new))
    elif name == "join" and args:
        items = list(args[0])
        check_growth(
            sum(len(item) if isinstance(item, str) else 0 for item in items) + len(owner) * len(items)
        )
        return (items, *args[1:])
    return args


def render_with_budget(compiled: jinja2.Template, context: dict[str, Any], input_chars: int) -> str:
    """Render ``compiled`` with ``context`` under a fresh budget; limits on size grow with the input."""
    messages = context.get("messages")
    budget = Budget(
        deadline=time.monotonic() + MAX_RENDER_SECONDS,
        max_size=MAX_OUTPUT_CHARS + 2 * input_chars,
        max_items=MAX_ITEMS + 2 * (len(messages) if isinstance(messages, list) else 0),
        max_nested=sys.maxsize,
    )
    token = _budget.set(budget)
    try:
        # Whatever the caller passes in (tools, documents) always fits the limit on nested values.
        given = sum(measure(value)[0].size for value in context.values() if isinstance(value, NESTED))
        budget.max_nested = budget.max_size + 2 * given
        chunks: list[str] = []
        size = 0
        for chunk in compiled.generate(context):
            size += len(chunk)
            if size > budget.max_size:
                raise SecurityError(f"its output is larger than {budget.max_size:,} characters")
            budget.tick()
            chunks.append(chunk)
        return "".join(chunks)
    finally:
        _budget.reset(token)
