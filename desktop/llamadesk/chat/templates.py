"""Render a model's Jinja chat template safely, the way Hugging Face renders it.

A GGUF file's ``tokenizer.chat_template`` is code from the internet, so it runs in a locked-down
sandbox: no underscore attributes, a short list of methods on built-in types, no file includes, and
limits on time, loop steps and the size of anything it builds. Whatever goes wrong ends in
:class:`TemplateError` with a message a user can read.
"""

from __future__ import annotations

import contextvars
import functools
import json
import re
import string
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence, Sized
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import jinja2
import jinja2.ext
from jinja2 import nodes
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError
from jinja2.filters import FILTERS
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

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
"""Limit on the size of the output and of any string or list a template builds (plus 2x the input)."""
MAX_ITEMS = 100_000
"""Limit on the length of any list, tuple, dict or set a template builds (plus 2x the messages)."""
MAX_RANGE = 20_000
"""Largest ``range()`` a template may ask for (Jinja's own sandbox allows 100,000)."""
_MAX_SLOW_TEXT = 200_000
_MAX_INT_BITS = 65_536
_MAX_FORMAT_WIDTH = 10_000
_MAX_JSON_INDENT = 64

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
_DIGITS = re.compile(r"\d+")
_CONTAINERS = (list, tuple, dict, set, frozenset)
# Filters that walk their input item by item in Python: refuse inputs over the item limit.
_ITERATING_FILTERS = frozenset(
    {
        "batch", "dictsort", "groupby", "join", "list", "map", "max", "min", "pprint", "reject",
        "rejectattr", "select", "selectattr", "slice", "sort", "sum", "unique",
    }
)  # fmt: skip
# Text filters that do per-word work in Python; real templates never run them on large text.
_SLOW_TEXT_FILTERS = frozenset({"striptags", "title", "urlencode", "urlize", "wordcount", "wordwrap"})


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


@dataclass
class _Budget:
    """Time, step and size limits for one render, checked from the sandbox hooks."""

    deadline: float
    max_size: int
    max_items: int
    steps: int = field(default=0)

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


def _check_size(value: Any) -> Any:
    """Refuse a string or container larger than this render may build."""
    if isinstance(value, (str, bytes)) and len(value) > _max_size():
        raise SecurityError(f"it built a text of {len(value):,} characters, more than allowed")
    if isinstance(value, _CONTAINERS) and len(value) > _max_items():
        raise SecurityError(f"it built a list of {len(value):,} items, more than allowed")
    return value


def _check_items(count: int) -> None:
    if count > _max_items():
        raise SecurityError(f"it would build a list of {count:,} items, more than allowed")


def _check_growth(expected: int) -> None:
    if expected > _max_size():
        raise SecurityError(f"it would build a value of {expected:,} characters, more than allowed")


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > _max_size():
        raise SecurityError(f"a width of {width:,} is too large")


def _check_percent_format(fmt: str) -> None:
    """Refuse ``%``-format specs with huge widths or precisions (``'%999999999d' % 1``)."""
    for match in _PERCENT_SPEC.finditer(fmt):
        for part in match.groups():
            if part == "*" or (part is not None and int(part) > _MAX_FORMAT_WIDTH):
                raise SecurityError("a %-format width or precision is too large")


def _check_brace_format(fmt: str) -> None:
    """Refuse ``str.format`` specs with huge or nested widths (``'{:>999999999}'``)."""
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # format() itself reports the error
    for _literal, _name, spec, _conversion in fields:
        if not spec:
            continue
        if "{" in spec or any(int(d) > _MAX_FORMAT_WIDTH for d in _DIGITS.findall(spec)):
            raise SecurityError("a format width or precision is too large")


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
    parts = [str(item) for item in seq]
    _check_growth(sum(map(len, parts)))
    return "".join(parts)


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
    if (isinstance(indent, int) and indent > _MAX_JSON_INDENT) or (
        isinstance(indent, str) and len(indent) > _MAX_JSON_INDENT
    ):
        raise SecurityError("the tojson indent is too large")
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
            _check_percent_format(str(value))
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
            _check_growth(sum(len(str(item)) for item in items) + len(sep) * len(items))
            args = (*args[:offset], items, *args[offset + 1 :])
        return _check_size(func(*args, **kwargs))

    return guarded


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
        )
        # lipsum() can produce megabytes of text; cycler and joiner stay (harmless with no underscores).
        self.globals.pop("lipsum", None)
        self.globals["range"] = _safe_range
        self.globals["raise_exception"] = _raise_exception
        self.globals["strftime_now"] = _strftime_now
        self.filters = {name: _guard_filter(name, func) for name, func in FILTERS.items()}
        self.filters["tojson"] = _guard_filter("tojson", _tojson)
        self.filters["llamadesk_loop_guard"] = _loop_guard

    # -- parsing: forbid file access, guard loops
    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
            raise SecurityError(f"line {node.lineno}: chat templates may not load other templates")
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
            _check_brace_format(fmt)
            return str(_check_size(wrapper(*args, **kwargs)))

        return checked

    # -- operators and calls
    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0:
            if abs(left) > 1 and abs(left).bit_length() * right > _MAX_INT_BITS:
                raise SecurityError("a power is too large")
        elif operator == "*":
            _check_multiply(left, right)
        elif operator == "+" and isinstance(left, str) and isinstance(right, str):
            _check_growth(len(left) + len(right))
        elif operator == "+" and isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            _check_items(len(left) + len(right))
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        return _check_size(super().call_binop(context, operator, left, right))

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick()
        args = _check_method_call(obj, args, kwargs)
        return _check_size(super().call(context, obj, *args, **kwargs))


def _check_multiply(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > _MAX_INT_BITS:
            raise SecurityError("a product is too large")
        return
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str) and isinstance(count, int):
            _check_growth(len(seq) * count)
        elif isinstance(seq, (list, tuple)) and isinstance(count, int):
            _check_items(len(seq) * count)


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
    )
    token = _budget.set(budget)
    try:
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
