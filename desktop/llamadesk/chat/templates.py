"""Render a model's Jinja chat template safely, the way Hugging Face renders it.

A GGUF file's ``tokenizer.chat_template`` is code from the internet, so it runs in a locked-down
sandbox: no underscore attributes, a short list of methods on built-in types, no file includes, and
limits on time, loop steps and the size of anything it builds. Whatever goes wrong ends in
:class:`TemplateError` with a message a user can read.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import json
import re
import string
import sys
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.runtime import Context, Macro, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Cycler, Namespace, pass_environment
from jinja2.visitor import NodeTransformer

from llamadesk.errors import LlamaDeskError

__all__ = [
    "CHATML_TEMPLATE",
    "MAX_ITEMS",
    "MAX_OUTPUT_CHARS",
    "MAX_RANGE",
    "MAX_RENDER_SECONDS",
    "MAX_STEPS",
    "ChatFormat",
    "TemplateError",
    "chat_format_for",
    "render_prompt",
    "supports_system_role",
]

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
_MAX_SLOW_TEXT = 200_000
_MAX_INT_BITS = 65_536
_MAX_FORMAT_WIDTH = 10_000
_MAX_JSON_INDENT = 64
_MAX_PPRINT = 2_000  # pprint indents nested values by their keys' width: its output grows with the square

CHATML_TEMPLATE = (
    "{% if bos_token != '<|im_start|>' %}{{ bos_token }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
"""The ChatML format, used when a model ships no chat template.

It writes the model's BOS first (prompts are tokenized without adding one), unless BOS is
``<|im_start|>`` itself.
"""

# End-of-turn markers of the common template families; the ones a template writes become stop strings.
_END_OF_TURN_MARKERS = (
    "<|im_end|>",  # ChatML: Qwen, SmolLM, Phi-4, Hermes
    "<|eot_id|>",  # Llama 3
    "<|eom_id|>",  # Llama 3.1 tool calls
    "<end_of_turn>",  # Gemma
    "<|end|>",  # Phi-3
    "<|END_OF_TURN_TOKEN|>",  # Command-R
    "<|end_of_text|>",  # Granite
    "<｜end▁of▁sentence｜>",  # DeepSeek
    "<|endoftext|>",
    "<|EOT|>",  # DeepSeek Coder
    "<|end_of_turn|>",  # OpenChat
    "<|turn_end|>",  # Megrez
    "</s>",
)

# Names a sandbox-escape attempt reaches for; using one is reported as refused, not as merely undefined.
_PYTHON_NAMES = frozenset(
    {
        "os", "sys", "subprocess", "builtins", "importlib", "eval", "exec", "compile", "open",
        "getattr", "setattr", "delattr", "globals", "locals", "vars", "dir", "type", "object",
        "input", "breakpoint", "config", "request", "url_for", "get_flashed_messages", "lipsum",
    }
)  # fmt: skip

# Methods a template may call on built-in values: what real chat templates use, and nothing that can
# reach the interpreter or build unbounded data.
_STR_METHODS = frozenset(
    {
        "capitalize", "casefold", "center", "count", "endswith", "expandtabs", "find", "format",
        "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower",
        "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower",
        "lstrip", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust",
        "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
        "title", "upper", "zfill",
    }
)  # fmt: skip
_SAFE_METHODS: dict[type, frozenset[str]] = {
    str: _STR_METHODS,
    dict: frozenset({"get", "items", "keys", "values", "copy"}),
    list: frozenset({"index", "count", "copy"}),
    tuple: frozenset({"index", "count"}),
    set: frozenset({"union", "intersection", "difference", "issubset", "issuperset", "isdisjoint", "copy"}),
    frozenset: frozenset({"union", "intersection", "difference", "issubset", "issuperset", "isdisjoint"}),
    int: frozenset({"bit_length", "is_integer"}),
    float: frozenset({"is_integer"}),
    bool: frozenset(),
    bytes: frozenset({"decode"}),
}
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_PERCENT_NAME = re.compile(r"%\(([^)]*)\)")
_FIELD_NAME = re.compile(r"[^.\[]*")
_DIGITS = re.compile(r"\d+")
_CONTAINERS = (list, tuple, dict, set, frozenset)
# Values whose text form includes the text of what they hold: their size is measured in depth.
_DICT_ITEMS: type[Any] = type({}.items())
_NESTED: tuple[type[Any], ...] = (list, tuple, dict, set, frozenset, type({}.keys()), type({}.values()))
_NESTED += (_DICT_ITEMS, Namespace)
# Filters that walk their input item by item in Python: refuse inputs over the item limit.
_ITERATING_FILTERS = frozenset(
    {
        "batch", "dictsort", "groupby", "join", "list", "map", "max", "min", "pprint", "reject",
        "rejectattr", "select", "selectattr", "slice", "sort", "sum", "unique",
    }
)  # fmt: skip
# Text filters that do per-word work in Python; real templates never run them on large text.
_SLOW_TEXT_FILTERS = frozenset({"striptags", "title", "urlencode", "urlize", "wordcount", "wordwrap"})
# Filters that never turn their input into text; every other filter's input is size-checked first.
_STRUCTURAL_FILTERS = frozenset(
    {
        "abs", "attr", "batch", "count", "d", "default", "dictsort", "filesizeformat", "first", "float",
        "groupby", "int", "items", "join", "last", "length", "list", "map", "max", "min", "random",
        "reject", "rejectattr", "reverse", "round", "select", "selectattr", "slice", "sort", "sum",
        "unique",
    }
)  # fmt: skip


class TemplateError(LlamaDeskError):
    """The chat template could not be rendered; ``str()`` says why, for a dialog.

    ``reason`` is one of "syntax", "security", "rejected" (the template's own
    ``raise_exception``), "undefined" or "error".
    """

    def __init__(self, message: str, *, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


class _TemplateRaised(Exception):
    """``raise_exception()`` was called by the template."""


# --------------------------------------------------------------------------------------------- limits


class _Shape(NamedTuple):
    """How big a value is written out as text (``str()``, ``tojson``), repeats of a shared part included."""

    size: int
    """A lower bound on its length as text, in characters."""
    items: int
    """The values nested in it at any depth (each one is a line of ``tojson(indent=...)``)."""
    levels: int
    """The sum of those values' depths below it (how far ``tojson(indent=...)`` indents them)."""


@dataclass
class _Budget:
    """Time, step and size limits for one render, checked from the sandbox hooks."""

    deadline: float
    max_size: int
    max_items: int
    max_nested: int  # the size limit on lists and dicts, as written out (see _measure)
    steps: int = field(default=0)
    # Shapes of the lists and dicts measured so far, by id, each with the value itself so that its id
    # stays unique; they never change, since the sandbox lets a template mutate nothing but namespaces.
    # The weight (references and characters the cache alone may keep alive) is held under max_nested.
    shapes: dict[int, tuple[Any, _Shape]] = field(default_factory=dict)
    shapes_weight: int = field(default=0)

    def tick(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise SecurityError(f"it did more than {MAX_STEPS:,} steps")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"it ran longer than {MAX_RENDER_SECONDS:g} seconds")


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar(
    "llamadesk_template_budget", default=None
)


def _tick() -> None:
    budget = _budget.get()
    if budget is not None:
        budget.tick()


def _max_size() -> int:
    budget = _budget.get()
    return MAX_OUTPUT_CHARS if budget is None else budget.max_size


def _max_items() -> int:
    budget = _budget.get()
    return MAX_ITEMS if budget is None else budget.max_items


def _max_nested() -> int:
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


def _measure(value: Any) -> tuple[_Shape, bool]:
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
    bound = _max_nested()
    memo: dict[int, _Shape] = {}  # values holding a namespace, for this walk only
    active: set[int] = set()

    def visit(node: Any) -> tuple[_Shape, bool]:
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
            if isinstance(child, _NESTED):
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
            if isinstance(name, _NESTED):  # a tuple as a dict key
                shape, name_stable = visit(name)
                stable = stable and name_stable
                size += shape.size + 1
                nested += shape.size
            elif name is not None:
                size += _element_size(name) + 1
            if size > bound:
                raise _nested_too_large(bound)
        active.discard(key)
        result = _Shape(size, items, levels)
        if stable:
            _remember(node, result, budget, weight=size - nested)  # its references and own strings
        else:
            memo[key] = result
        return result, stable

    return visit(value)


def _remember(value: Any, shape: _Shape, budget: _Budget | None, weight: int) -> None:
    if budget is None:
        return
    if budget.shapes_weight + weight > budget.max_nested:
        budget.shapes.clear()  # let go of the values that are gone (a later check walks them again)
        budget.shapes_weight = 0
    budget.shapes[id(value)] = (value, shape)
    budget.shapes_weight += weight


def _shape(value: Any) -> _Shape:
    """The shape of any value; refuses one larger than this render may build."""
    return _measure(value)[0] if isinstance(value, _NESTED) else _Shape(_scalar_size(value), 0, 0)


def _text_size(value: Any) -> int:
    """A lower bound on the length of ``str(value)``; refuses a value larger than this render may build."""
    return _shape(value).size


def _check_size(value: Any) -> Any:
    """Refuse a string or container larger than this render may build."""
    if isinstance(value, (str, bytes)) and len(value) > _max_size():
        raise SecurityError(f"it built a text of {len(value):,} characters, more than allowed")
    if isinstance(value, _CONTAINERS) and len(value) > _max_items():
        raise SecurityError(f"it built a list of {len(value):,} items, more than allowed")
    if isinstance(value, _NESTED):
        _measure(value)
    return value


def _check_built(value: Any) -> Any:
    """The filter every list, tuple and dict literal of a template goes through (see ``_parse``)."""
    return _check_size(value)


def _check_repeat(seq: list[Any] | tuple[Any, ...], count: int) -> tuple[_Shape, bool]:
    """The shape of ``seq * count`` and whether it can change, refused before it is built if too large."""
    shape, stable = _measure(seq)
    count = max(count, 0)
    repeated = _Shape(1 + count * (shape.size - 1), count * shape.items, count * shape.levels)
    if repeated.size > _max_nested():
        raise _nested_too_large(_max_nested())
    return repeated, stable


def _check_concat(parts: Sequence[list[Any] | tuple[Any, ...]]) -> tuple[_Shape, bool]:
    """The shape of ``parts[0] + parts[1] + ...`` and whether it can change, refused before it is built."""
    _check_items(sum(len(part) for part in parts))
    measured = [_measure(part) for part in parts]
    joined = _Shape(
        1 + sum(shape.size - 1 for shape, _stable in measured),
        sum(shape.items for shape, _stable in measured),
        sum(shape.levels for shape, _stable in measured),
    )
    if joined.size > _max_nested():
        raise _nested_too_large(_max_nested())
    return joined, all(stable for _shape, stable in measured)


def _remember_built(value: Any, measured: tuple[_Shape, bool]) -> Any:
    """Caches the shape of a list just built from parts already measured, saving a walk of it."""
    shape, stable = measured
    if stable and isinstance(value, (list, tuple)):
        _remember(value, shape, _budget.get(), weight=1 + len(value))  # its parts hold the strings
    return value


def _check_items(count: int) -> None:
    if count > _max_items():
        limit = _max_items()
        raise SecurityError(f"it would build a list of {count:,} items, more than the {limit:,} allowed")


def _check_growth(expected: int) -> None:
    if expected > _max_size():
        limit = _max_size()
        raise SecurityError(
            f"it would build a value of {expected:,} characters, more than the {limit:,} allowed"
        )


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > _max_size():
        raise SecurityError(f"a width of {width:,} is too large")


def _check_format_output(size: int) -> None:
    """Refuse a format whose fields would write more than allowed (fields may repeat a value)."""
    if size > _max_nested():
        limit = _max_nested()
        raise SecurityError(f"it would build a value of {size:,} characters, more than the {limit:,} allowed")


def _check_percent_format(fmt: str, args: Any = ()) -> None:
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
    _check_format_output(len(fmt) + sum(_text_size(value) for value in values))


def _check_brace_format(fmt: str, args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None) -> None:
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
        if first.isdigit():
            value = args[int(first)] if int(first) < len(args) else None
        else:
            value = (kwargs or {}).get(first)
        size += _text_size(value)  # '{0[x]}' writes part of it: count all of it
    _check_format_output(size)


def _safe_range(*args: int) -> range:
    """``range()`` capped at :data:`MAX_RANGE` items."""
    rng = range(*args)
    if len(rng) > MAX_RANGE:
        raise SecurityError(f"range() of {len(rng):,} items is larger than the {MAX_RANGE:,} allowed")
    return rng


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """Wraps every ``{% for %}`` iterable so that each iteration counts against the budget."""
    for item in iterable:
        _tick()
        yield item


def _guarded_str_join(seq: Iterable[Any]) -> str:
    """Jinja's ``~`` operator, refusing results larger than allowed."""
    items = list(seq)
    _check_growth(sum(_text_size(item) for item in items))
    parts = [str(item) for item in items]
    _check_growth(sum(map(len, parts)))
    return "".join(parts)


def _finalize(value: Any) -> Any:
    """Applied to every ``{{ ... }}`` before it is written out: refuses a value too large to write."""
    if isinstance(value, _NESTED):
        _measure(value)
    return value


def _checked_items(name: str, items: Iterator[Any]) -> Iterator[Any]:
    """Wraps the generator a filter returns, so that what it yields counts against the size limit."""
    total = 0
    for item in items:
        total += _text_size(item)
        if total > _max_nested():
            limit = _max_nested()
            raise SecurityError(f"its {name} filter would yield more than {limit:,} characters as text")
        yield item


# ------------------------------------------------------------------------------------ template globals


def _raise_exception(message: Any = "") -> None:
    raise _TemplateRaised(str(message))


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(str(fmt))


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    """The ``tojson`` filter exactly as Hugging Face defines it: no HTML escaping, keys kept in order."""
    width = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    if width > _MAX_JSON_INDENT:
        raise SecurityError("the tojson indent is too large")
    gap = 0
    if isinstance(separators, (tuple, list)):
        if any(isinstance(sep, str) and len(sep) > _MAX_JSON_INDENT for sep in separators):
            raise SecurityError(f"tojson separators are limited to {_MAX_JSON_INDENT} characters")
        gap = max((len(sep) - 1 for sep in separators if isinstance(sep, str)), default=0)
    if indent is not None or gap > 0:
        # Each nested value goes on a line of its own, indented by its depth, after a separator.
        shape = _shape(value)
        lines = 0 if indent is None else shape.items + max(width, 0) * shape.levels
        if shape.size + lines + shape.items * gap > _max_nested():
            raise SecurityError(f"tojson would write more than {_max_nested():,} characters as text")
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a built-in filter with the step budget, size limits and a pre-check for growth filters."""
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        value, params = (args[offset] if len(args) > offset else None), args[offset + 1 :]
        if name not in _STRUCTURAL_FILTERS:
            _shape(value)  # it is about to be written out as text: refuse it first if that is too large
        if name == "pprint" and isinstance(value, _NESTED) and _shape(value).size > _MAX_PPRINT:
            raise SecurityError(f"the pprint filter is limited to values of {_MAX_PPRINT:,} characters")
        if name in _ITERATING_FILTERS and isinstance(value, Sized):
            _check_items(len(value))
        elif name in _SLOW_TEXT_FILTERS and len(str(value)) > _MAX_SLOW_TEXT:
            raise SecurityError(f"the {name} filter is limited to {_MAX_SLOW_TEXT:,} characters")
        if name == "center":
            _check_width(params[0] if params else kwargs.get("width"))
        elif name == "indent":
            width = params[0] if params else kwargs.get("width", 4)
            per_line = width if isinstance(width, int) else len(str(width))
            text = str(value)
            _check_growth(len(text) + (text.count("\n") + 1) * max(per_line, 0))
        elif name == "format":
            _check_percent_format(str(value), kwargs or params)
        elif name == "replace" and len(params) >= 2:
            text, old, new = str(value), str(params[0]), str(params[1])
            _check_growth(len(text) + (text.count(old) if old else len(text) + 1) * len(new))
        elif name in ("batch", "slice"):
            size = params[0] if params else kwargs.get("linecount" if name == "batch" else "slices")
            if isinstance(size, int) and size > MAX_RANGE:
                raise SecurityError(f"{name}({size:,}) is larger than the {MAX_RANGE:,} allowed")
        elif name == "join" and isinstance(value, Iterable) and not isinstance(value, (str, Mapping)):
            items = list(value)
            sep = str(params[0]) if params else str(kwargs.get("d", ""))
            _check_growth(sum(_text_size(item) for item in items) + len(sep) * len(items))
            args = (*args[:offset], items, *args[offset + 1 :])
        result = func(*args, **kwargs)
        if isinstance(result, types.GeneratorType):
            return _checked_items(name, result)
        return _check_size(result)

    return guarded


@pass_environment
def _sum(
    environment: jinja2.Environment,
    iterable: Iterable[Any],
    attribute: str | int | None = None,
    start: Any = 0,
) -> Any:
    """Jinja's ``sum`` filter, except that lists and tuples are joined in one go, their size checked first.

    ``sum(start=[])`` over lists would copy the growing total once per item, inside one C call.
    """
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    items = list(iterable)
    if not isinstance(start, (list, tuple)):
        return sum(items, start)  # numbers, or the same TypeError as before
    kind = list if isinstance(start, list) else tuple
    count = next((i for i, item in enumerate(items) if not isinstance(item, kind)), len(items))
    parts = [start, *items[:count]]
    measured = _check_concat(parts)
    total = _remember_built(kind(itertools.chain.from_iterable(parts)), measured)
    return sum(items[count:], total)  # the first of these, if any, is not a list: the same TypeError


class _ChatUndefined(Undefined):
    """Hugging Face's lenient undefined, except that escape-style names are refused outright."""

    __slots__ = ()

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        name = self._undefined_name
        missing = self._undefined_obj is jinja2.utils.missing
        if missing and isinstance(name, str) and (name.startswith("_") or name in _PYTHON_NAMES):
            raise SecurityError(f"{name!r} is not available to chat templates")
        return super()._fail_with_undefined_error(*args, **kwargs)

    # Undefined binds these methods once at class creation; rebind them to the override above.
    __add__ = __radd__ = __sub__ = __rsub__ = _fail_with_undefined_error
    __mul__ = __rmul__ = __div__ = __rdiv__ = _fail_with_undefined_error
    __truediv__ = __rtruediv__ = _fail_with_undefined_error
    __floordiv__ = __rfloordiv__ = _fail_with_undefined_error
    __mod__ = __rmod__ = _fail_with_undefined_error
    __pos__ = __neg__ = _fail_with_undefined_error
    __call__ = __getitem__ = _fail_with_undefined_error
    __lt__ = __le__ = __gt__ = __ge__ = _fail_with_undefined_error
    __int__ = __float__ = __complex__ = _fail_with_undefined_error
    __pow__ = __rpow__ = _fail_with_undefined_error


# --------------------------------------------------------------------------------------- environment


class _GuardedTemplate(jinja2.Template):
    """A template whose ``~`` concatenation goes through the size check."""

    @classmethod
    def from_code(
        cls,
        environment: jinja2.Environment,
        code: types.CodeType,
        globals: Any,
        uptodate: Callable[[], bool] | None = None,
    ) -> jinja2.Template:
        template = super().from_code(environment, code, globals, uptodate)
        namespace = template.root_render_func.__globals__
        namespace["str_join"] = _guarded_str_join
        namespace["markup_join"] = _guarded_str_join
        return template


class _CheckLiterals(NodeTransformer):
    """Sends every list, tuple and dict literal through the size check, as ``*`` and ``+`` results are.

    ``{% set ns.x = [ns.x, ns.x] %}`` in a loop doubles what ``ns.x`` writes out each time round.
    """

    def _check(self, node: nodes.Expr) -> nodes.Expr:
        self.generic_visit(node)
        return nodes.Filter(node, "llamadesk_built", [], [], None, None, lineno=node.lineno)

    def visit_List(self, node: nodes.List) -> nodes.Expr:
        return self._check(node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Expr:
        return self._check(node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Expr:
        if node.ctx != "load":  # an assignment target
            self.generic_visit(node)
            return node
        return self._check(node)


class ChatTemplateEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox, tightened for untrusted chat templates.

    On top of Jinja's checks it refuses every underscore attribute and every method on built-in
    values that is not on a short allow-list, forbids includes and imports, counts every loop
    iteration, call and attribute look-up against a time and step budget, and bounds the size of
    strings and lists the template builds.
    """

    template_class = _GuardedTemplate
    intercepted_binops = frozenset({"+", "*", "**", "%", "//"})

    def __init__(self) -> None:
        super().__init__(
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=[jinja2.ext.loopcontrols],
            undefined=_ChatUndefined,
            autoescape=False,
            optimized=False,  # the optimizer would run template code at compile time, outside the budget
            cache_size=0,
            finalize=_finalize,
        )
        # lipsum() can produce megabytes of text; cycler and joiner stay (harmless with no underscores).
        self.globals.pop("lipsum", None)
        self.globals["range"] = _safe_range
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.filters = {name: _guard_filter(name, func) for name, func in FILTERS.items()}
        self.filters["tojson"] = _guard_filter("tojson", _tojson)
        self.filters["sum"] = _guard_filter("sum", _sum)
        self.filters["llamadesk_loop_guard"] = _loop_guard
        self.filters["llamadesk_built"] = _check_built

    # -- parsing: forbid file access, guard loops
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
            raise SecurityError(f"line {node.lineno}: chat templates may not load other templates")
        _CheckLiterals().visit(tree)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Filter(
                loop.iter, "llamadesk_loop_guard", [], [], None, None, lineno=loop.lineno
            )
        return tree

    # -- attribute access
    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if attr.startswith("_") or isinstance(obj, type) or not super().is_safe_attribute(obj, attr, value):
            return False
        if callable(value):
            for base in type(obj).__mro__:
                if base in _SAFE_METHODS:
                    return attr in _SAFE_METHODS[base]
        return True

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        raise SecurityError(f"access to {attribute!r} on {type(obj).__name__} values is not allowed")

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        if isinstance(attribute, str) and attribute.startswith("_"):
            raise SecurityError(f"access to the attribute {attribute!r} is not allowed")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt = str(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_brace_format(fmt, args, kwargs)
            return str(_check_size(wrapper(*args, **kwargs)))

        return checked

    # -- operators and calls
    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        measured: tuple[_Shape, bool] | None = None
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and abs(left).bit_length() * right > _MAX_INT_BITS:
                raise SecurityError("a power is too large")
        elif operator == "*":
            measured = _check_multiply(left, right)
        elif operator == "+" and isinstance(left, str) and isinstance(right, str):
            _check_growth(len(left) + len(right))
        elif operator == "+" and isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            measured = _check_concat([left, right])
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left, right)
        result = super().call_binop(context, operator, left, right)
        if measured is not None:
            _remember_built(result, measured)
        return _check_size(result)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick()
        args = _check_method_call(obj, args, kwargs)
        _check_kept_arguments(obj, args, kwargs)
        return _check_size(super().call(context, obj, *args, **kwargs))


def _check_multiply(left: Any, right: Any) -> tuple[_Shape, bool] | None:
    """Refuse a product too large to build; for a repeated list or tuple, also return its shape."""
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > _MAX_INT_BITS:
            raise SecurityError("a product is too large")
        return None
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str) and isinstance(count, int):
            _check_growth(len(seq) * count)
        elif isinstance(seq, (list, tuple)) and isinstance(count, int):
            _check_items(len(seq) * count)
            return _check_repeat(seq, count)
    return None


def _check_kept_arguments(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Size-check the arguments a call keeps in a new tuple or dict that the template can read back.

    A macro's ``varargs`` and ``kwargs`` and a cycler's ``items`` are built by the call itself: a macro
    passing its ``varargs`` on several times over to itself would otherwise grow them unchecked.
    """
    if obj is Cycler:
        _check_size(args)
    elif isinstance(obj, Macro):
        if obj.catch_varargs:
            _check_size(args[len(obj.arguments) :])
        if obj.catch_kwargs:
            _check_size({name: value for name, value in kwargs.items() if name not in obj.arguments})


def _check_method_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Pre-check the string methods whose result can be far larger than their input."""
    owner = getattr(obj, "__self__", None)
    if not isinstance(owner, str):
        return args
    name = getattr(obj, "__name__", "")
    if name in ("center", "ljust", "rjust", "zfill"):
        _check_width(args[0] if args else kwargs.get("width"))
    elif name == "expandtabs":
        size = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(size, int):
            _check_growth(len(owner) + owner.count("\t") * size)
    elif name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        _check_growth(len(owner) + (owner.count(old) if old else len(owner) + 1) * len(new))
    elif name == "join" and args:
        items = list(args[0])
        _check_growth(
            sum(len(item) if isinstance(item, str) else 0 for item in items) + len(owner) * len(items)
        )
        return (items, *args[1:])
    return args


_ENVIRONMENT = ChatTemplateEnvironment()


# ------------------------------------------------------------------------------------------ rendering


def _template_error(error: BaseException) -> TemplateError:
    """The user-facing error for an exception raised while compiling or rendering a template."""
    refused = "The chat template was refused for security reasons"
    if isinstance(error, TemplateSyntaxError):
        message = f"The chat template has a syntax error on line {error.lineno}: {error.message}"
        return TemplateError(message, reason="syntax")
    if isinstance(error, SecurityError):
        return TemplateError(f"{refused}: {error}.", reason="security")
    if isinstance(error, RecursionError):
        return TemplateError(f"{refused}: it recursed too deeply.", reason="security")
    if isinstance(error, MemoryError):
        return TemplateError(f"{refused}: it ran out of memory.", reason="security")
    if isinstance(error, _TemplateRaised):
        return TemplateError(f"The chat template rejected the conversation: {error}", reason="rejected")
    if isinstance(error, UndefinedError):
        message = f"The chat template uses a value that is not defined: {error.message}."
        return TemplateError(message, reason="undefined")
    detail = str(error) or type(error).__name__
    return TemplateError(f"The chat template failed: {detail}")


@functools.lru_cache(maxsize=64)
def _compile(template: str) -> jinja2.Template:
    """Parse and compile a template once; raises :class:`TemplateError`."""
    try:
        return _ENVIRONMENT.from_string(template)
    except Exception as error:
        raise _template_error(error) from None


def _render(compiled: jinja2.Template, context: dict[str, Any], input_chars: int) -> str:
    messages = context.get("messages")
    budget = _Budget(
        deadline=time.monotonic() + MAX_RENDER_SECONDS,
        max_size=MAX_OUTPUT_CHARS + 2 * input_chars,
        max_items=MAX_ITEMS + 2 * (len(messages) if isinstance(messages, list) else 0),
        max_nested=sys.maxsize,
    )
    token = _budget.set(budget)
    try:
        # Whatever the caller passes in (tools, documents) always fits the limit on nested values.
        given = sum(_measure(value)[0].size for value in context.values() if isinstance(value, _NESTED))
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


def _input_chars(messages: Sequence[Mapping[str, Any]], variables: Mapping[str, Any]) -> int:
    total = 0
    for message in messages:
        content = message.get("content")
        total += len(content) if isinstance(content, str) else len(str(content or ""))
    for value in variables.values():
        if isinstance(value, str):
            total += len(value)
    return total


def _render_or_raise(template: str, messages: list[dict[str, Any]], variables: dict[str, Any]) -> str:
    compiled = _compile(template)
    try:
        return _render(compiled, {**variables, "messages": messages}, _input_chars(messages, variables))
    except TemplateError:
        raise
    except _TemplateRaised:
        raise
    except Exception as error:
        raise _template_error(error) from None


_SYSTEM_PROBE = "llamadesk-system-probe"


@functools.lru_cache(maxsize=64)
def supports_system_role(template: str) -> bool:
    """Whether the template renders a system message (it may refuse it, or silently drop it).

    Raises :class:`TemplateError` for a template that cannot be compiled or is refused for security.
    """
    probe = [{"role": "system", "content": _SYSTEM_PROBE}, {"role": "user", "content": "Hello"}]
    try:
        output = _render_or_raise(
            template, probe, {"bos_token": "", "eos_token": "", "add_generation_prompt": True}
        )
    except _TemplateRaised:
        return False
    except TemplateError as error:
        if error.reason in ("syntax", "security"):
            raise
        return False
    return _SYSTEM_PROBE in output


def _merge_system(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fold each system message into the next user turn as ``system + "\\n" + user``."""
    merged: list[dict[str, Any]] = []
    pending: list[str] = []
    for message in messages:
        if message.get("role") == "system":
            pending.append(_text(message))
            continue
        if pending and message.get("role") == "user":
            message = {**message, "content": "\n".join([*pending, _text(message)])}
            pending = []
        elif pending:
            merged.append({"role": "user", "content": "\n".join(pending)})
            pending = []
        merged.append(message)
    if pending:
        merged.append({"role": "user", "content": "\n".join(pending)})
    return merged


def _merge_consecutive(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Join back-to-back user (or assistant) turns so that strict templates see them alternate."""
    merged: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if merged and role in ("user", "assistant") and merged[-1].get("role") == role:
            merged[-1] = {**merged[-1], "content": _text(merged[-1]) + "\n\n" + _text(message)}
        else:
            merged.append(message)
    return merged


def _text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    return content if isinstance(content, str) else ("" if content is None else str(content))


def render_prompt(
    template: str,
    messages: Sequence[Mapping[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
    **variables: Any,
) -> str:
    """Render ``messages`` with a Hugging Face / GGUF chat template, as the model's authors meant.

    Templates that refuse (or drop) a system message get it merged into the first user turn; extra
    keyword arguments (``tools``, ``enable_thinking``, ...) reach the template as variables.
    Raises :class:`TemplateError` for every failure.
    """
    prepared = [dict(message) for message in messages]
    if any(m.get("role") == "system" for m in prepared) and not supports_system_role(template):
        prepared = _merge_system(prepared)
    context = {
        **variables,
        "bos_token": bos_token,
        "eos_token": eos_token,
        "add_generation_prompt": add_generation_prompt,
    }
    try:
        return _render_or_raise(template, prepared, context)
    except _TemplateRaised as error:
        alternating = _merge_consecutive(prepared)
        if len(alternating) != len(prepared):
            try:
                return _render_or_raise(template, alternating, context)
            except _TemplateRaised:
                pass
        raise _template_error(error) from None


# ----------------------------------------------------------------------------------------- ChatFormat


@dataclass
class ChatFormat:
    """How to turn a conversation into a prompt for one model, and which strings end a reply."""

    template: str
    is_fallback: bool
    bos_token: str
    eos_token: str
    stop_strings: list[str]

    def render(
        self, messages: Sequence[Mapping[str, Any]], add_generation_prompt: bool = True, **variables: Any
    ) -> str:
        """Render ``messages`` with this format's template and special tokens."""
        return render_prompt(
            self.template,
            messages,
            bos_token=self.bos_token,
            eos_token=self.eos_token,
            add_generation_prompt=add_generation_prompt,
            **variables,
        )


def _stop_strings(template: str, eos_token: str, *, fallback: bool) -> list[str]:
    stops = [marker for marker in _END_OF_TURN_MARKERS if marker in template]
    if eos_token and eos_token not in stops:
        stops.append(eos_token)
    if fallback and "<|im_start|>" not in stops:
        stops.append("<|im_start|>")  # a model not trained on ChatML may start the next turn itself
    return stops


def chat_format_for(
    chat_template: str | None,
    bos_token: str | None,
    eos_token: str | None,
    *,
    override: str | None = None,
) -> ChatFormat:
    """The chat format for a model: the user's override, else its own template, else ChatML."""
    if override and override.strip():
        template, fallback = override, False
    elif chat_template and chat_template.strip():
        template, fallback = chat_template, False
    else:
        template, fallback = CHATML_TEMPLATE, True
    eos = eos_token or ""
    return ChatFormat(
        template=template,
        is_fallback=fallback,
        bos_token=bos_token or "",
        eos_token=eos,
        stop_strings=_stop_strings(template, eos, fallback=fallback),
    )
