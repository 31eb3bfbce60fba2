"""The locked-down Jinja environment chat templates run in, and compiling a template once.

A GGUF file's ``tokenizer.chat_template`` is code from the internet, so it runs in Jinja's immutable
sandbox, tightened further: no underscore attributes, a short list of methods on built-in types, no file
includes, every loop step, call and look-up counted against the render's budget
(:mod:`llamadesk.chat.template_limits`), and a source too large or too complex to compile quickly refused
before Jinja parses it (:mod:`llamadesk.chat.template_source`). Whatever goes wrong ends in
:class:`TemplateError` with a message a user can read.
"""

from __future__ import annotations

import functools
import itertools
import json
import types
from collections.abc import Callable, Iterable, Mapping, Sized
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.filters import FILTERS, make_attrgetter
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import pass_environment
from jinja2.visitor import NodeTransformer

from llamadesk.errors import LlamaDeskError

from .template_limits import (
    MAX_INT_BITS,
    MAX_RANGE,
    NESTED,
    Shape,
    check_brace_format,
    check_built,
    check_concat,
    check_growth,
    check_items,
    check_kept_arguments,
    check_method_call,
    check_multiply,
    check_percent_format,
    check_size,
    check_width,
    checked_items,
    finalize,
    guarded_str_join,
    loop_guard,
    nested_limit,
    remember_built,
    safe_range,
    shape_of,
    text_size,
    tick,
)
from .template_source import check_source, check_tree

_REFUSED = "The chat template was refused for security reasons"
_MAX_SLOW_TEXT = 200_000
_MAX_JSON_INDENT = 64
_MAX_PPRINT = 2_000  # pprint indents nested values by their keys' width: its output grows with the square

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

    ``reason`` is one of "syntax", "security" (an escape attempt, or a template too large, too complex
    or too slow to run safely), "rejected" (the template's own ``raise_exception``), "undefined" or
    "error".
    """

    def __init__(self, message: str, *, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


class TemplateRaised(Exception):
    """``raise_exception()`` was called by the template."""


# ------------------------------------------------------------------------------------ template globals


def _raise_exception(message: Any = "") -> None:
    raise TemplateRaised(str(message))


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
        shape = shape_of(value)
        lines = 0 if indent is None else shape.items + max(width, 0) * shape.levels
        if shape.size + lines + shape.items * gap > nested_limit():
            raise SecurityError(f"tojson would write more than {nested_limit():,} characters as text")
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a built-in filter with the step budget, size limits and a pre-check for growth filters."""
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        tick()
        value, params = (args[offset] if len(args) > offset else None), args[offset + 1 :]
        if name not in _STRUCTURAL_FILTERS:
            shape_of(value)  # it is about to be written out as text: refuse it first if that is too large
        if name == "pprint" and isinstance(value, NESTED) and shape_of(value).size > _MAX_PPRINT:
            raise SecurityError(f"the pprint filter is limited to values of {_MAX_PPRINT:,} characters")
        if name in _ITERATING_FILTERS and isinstance(value, Sized):
            check_items(len(value))
        elif name in _SLOW_TEXT_FILTERS and len(str(value)) > _MAX_SLOW_TEXT:
            raise SecurityError(f"the {name} filter is limited to {_MAX_SLOW_TEXT:,} characters")
        if name == "center":
            check_width(params[0] if params else kwargs.get("width"))
        elif name == "indent":
            width = params[0] if params else kwargs.get("width", 4)
            per_line = width if isinstance(width, int) else len(str(width))
            text = str(value)
            check_growth(len(text) + (text.count("\n") + 1) * max(per_line, 0))
        elif name == "format":
            check_percent_format(str(value), kwargs or params)
        elif name == "replace" and len(params) >= 2:
            text, old, new = str(value), str(params[0]), str(params[1])
            check_growth(len(text) + (text.count(old) if old else len(text) + 1) * len(new))
        elif name in ("batch", "slice"):
            size = params[0] if params else kwargs.get("linecount" if name == "batch" else "slices")
            if isinstance(size, int) and size > MAX_RANGE:
                raise SecurityError(f"{name}({size:,}) is larger than the {MAX_RANGE:,} allowed")
        elif name == "join" and isinstance(value, Iterable) and not isinstance(value, (str, Mapping)):
            items = list(value)
            sep = str(params[0]) if params else str(kwargs.get("d", ""))
            check_growth(sum(text_size(item) for item in items) + len(sep) * len(items))
            args = (*args[:offset], items, *args[offset + 1 :])
        result = func(*args, **kwargs)
        if isinstance(result, types.GeneratorType):
            return checked_items(name, result)
        return check_size(result)

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
    measured = check_concat(parts)
    total = remember_built(kind(itertools.chain.from_iterable(parts)), measured)
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
        namespace["str_join"] = guarded_str_join
        namespace["markup_join"] = guarded_str_join
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
            finalize=finalize,
        )
        # lipsum() can produce megabytes of text; cycler and joiner stay (harmless with no underscores).
        self.globals.pop("lipsum", None)
        self.globals["range"] = safe_range
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.filters = {name: _guard_filter(name, func) for name, func in FILTERS.items()}
        self.filters["tojson"] = _guard_filter("tojson", _tojson)
        self.filters["sum"] = _guard_filter("sum", _sum)
        self.filters["llamadesk_loop_guard"] = loop_guard
        self.filters["llamadesk_built"] = check_built

    # -- parsing: bound the cost of compiling, forbid file access, guard loops
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        check_source(self.lexer, source, name)
        tree = super()._parse(source, name, filename)
        check_tree(tree)
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
        tick()
        if isinstance(attribute, str) and attribute.startswith("_"):
            raise SecurityError(f"access to the attribute {attribute!r} is not allowed")
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        tick()
        return super().getitem(obj, argument)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt = str(value.__self__)

        def checked(*args: Any, **kwargs: Any) -> str:
            check_brace_format(fmt, args, kwargs)
            return str(check_size(wrapper(*args, **kwargs)))

        return checked

    # -- operators and calls
    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        tick()
        measured: tuple[Shape, bool] | None = None
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and abs(left).bit_length() * right > MAX_INT_BITS:
                raise SecurityError("a power is too large")
        elif operator == "*":
            measured = check_multiply(left, right)
        elif operator == "+" and isinstance(left, str) and isinstance(right, str):
            check_growth(len(left) + len(right))
        elif operator == "+" and isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            measured = check_concat([left, right])
        elif operator == "%" and isinstance(left, str):
            check_percent_format(left, right)
        result = super().call_binop(context, operator, left, right)
        if measured is not None:
            remember_built(result, measured)
        return check_size(result)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        tick()
        args = check_method_call(obj, args, kwargs)
        check_kept_arguments(obj, args, kwargs)
        return check_size(super().call(context, obj, *args, **kwargs))


_ENVIRONMENT = ChatTemplateEnvironment()


# ------------------------------------------------------------------------------------------ compiling


def template_error(error: BaseException) -> TemplateError:
    """The user-facing error for an exception raised while compiling or rendering a template."""
    if isinstance(error, TemplateSyntaxError):
        message = f"The chat template has a syntax error on line {error.lineno}: {error.message}"
        return TemplateError(message, reason="syntax")
    if isinstance(error, SecurityError):
        return TemplateError(f"{_REFUSED}: {error}.", reason="security")
    if isinstance(error, RecursionError):
        return TemplateError(f"{_REFUSED}: it recursed too deeply.", reason="security")
    if isinstance(error, MemoryError):
        return TemplateError(f"{_REFUSED}: it ran out of memory.", reason="security")
    if isinstance(error, TemplateRaised):
        return TemplateError(f"The chat template rejected the conversation: {error}", reason="rejected")
    if isinstance(error, UndefinedError):
        message = f"The chat template uses a value that is not defined: {error.message}."
        return TemplateError(message, reason="undefined")
    detail = str(error) or type(error).__name__
    return TemplateError(f"The chat template failed: {detail}")


@functools.lru_cache(maxsize=64)
def compile_template(template: str) -> jinja2.Template:
    """Parse and compile a template once; raises :class:`TemplateError`.

    The source is checked first (:func:`check_source`), so that compiling anything accepted is quick.
    """
    try:
        return _ENVIRONMENT.from_string(template)
    except (RecursionError, SyntaxError):
        # Python's own limits on nesting, when compiling the code Jinja generates: refused as too deep.
        message = f"{_REFUSED}: it is nested too deeply to compile safely."
        raise TemplateError(message, reason="security") from None
    except Exception as error:
        raise template_error(error) from None
