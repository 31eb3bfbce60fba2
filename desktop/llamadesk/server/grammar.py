"""llama.cpp grammars that make a reply parse: any JSON object, a JSON schema, or a forced tool call.

Built with llama-cpp-python's JSON-schema converter and remembered per schema, since converting a
large schema costs milliseconds every request would pay. The converter enforces types, required
and optional properties, ``enum``/``const``, ``anyOf``/``oneOf``, local ``$ref``s, string lengths,
patterns and formats, and array lengths; it does not enforce number ranges (``minimum``,
``maximum``), so a reply always parses and has the schema's shape, and :mod:`.schema_check` checks
the rest once the reply is complete.
Schemas that would make a huge grammar, or refer to schemas elsewhere, are refused with a 400.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import APIError

__all__ = ["json_object_grammar", "schema_grammar", "tool_call_grammar"]

_ROOT = re.compile(r"^root\s*::=", re.MULTILINE)

# An object at the top, like OpenAI's json_object mode (which also requires an object).
_OBJECT_SCHEMA = {"type": "object"}


def _llama_grammar() -> Any:
    from ..engine import runtime

    return runtime.llama_cpp().llama_grammar


# llama-cpp-python's converter lets a string hold raw control characters (a newline, say), which
# JSON forbids and json.loads refuses; llama.cpp's own converter excludes them, as this does.
_LOOSE_CHAR = r'char ::= [^"\\] |'
_JSON_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] |'


@functools.lru_cache(maxsize=64)
def _gbnf(schema_json: str) -> str:
    try:
        return str(_llama_grammar().json_schema_to_gbnf(schema_json)).replace(_LOOSE_CHAR, _JSON_CHAR)
    except (ValueError, KeyError, TypeError, RecursionError, NotImplementedError, AssertionError) as exc:
        raise APIError(
            400,
            f"The JSON schema cannot be turned into a grammar: {exc}",
            code="invalid_json_schema",
            param="response_format.json_schema.schema",
        ) from None


@functools.lru_cache(maxsize=64)
def _compile(gbnf: str) -> Any:
    return _llama_grammar().LlamaGrammar.from_string(gbnf, verbose=False)


def _canonical(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, sort_keys=True, ensure_ascii=False)


def json_object_grammar() -> Any:
    """Any JSON object."""
    return _compile(_gbnf(_canonical(_OBJECT_SCHEMA)))


def schema_grammar(schema: Mapping[str, Any]) -> Any:
    """JSON that validates against ``schema`` (the subset llama.cpp's converter supports)."""
    check_schema(schema)
    return _compile(_gbnf(_canonical(schema)))


MAX_SCHEMA_NODES = 5000
MAX_REPEAT = 1000  # minItems, maxLength, {n,m} in a pattern...: each writes grammar rules n times over
_COUNTS = ("minItems", "maxItems", "minLength", "maxLength", "minProperties", "maxProperties")
_QUANTIFIER = re.compile(r"\{(\d+)(?:,(\d*))?\}")


def _refuse(message: str) -> APIError:
    return APIError(400, message, code="invalid_json_schema", param="response_format.json_schema.schema")


def check_schema(schema: Any) -> None:
    """Refuse a schema whose grammar would be huge, or that refers to a schema elsewhere."""
    nodes = 0
    stack = [schema]
    while stack:
        node = stack.pop()
        nodes += 1
        if nodes > MAX_SCHEMA_NODES:
            raise _refuse(f"The JSON schema is too large (more than {MAX_SCHEMA_NODES} parts).")
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        ref = node.get("$ref")
        if isinstance(ref, str) and not ref.startswith("#"):
            raise _refuse(
                f"The JSON schema refers to {ref!r}: only references inside it (#/...) are supported."
            )
        for key in _COUNTS:
            value = node.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_REPEAT:
                raise _refuse(f"{key} {value} is more than this server supports ({MAX_REPEAT}).")
        pattern = node.get("pattern")
        if isinstance(pattern, str):
            numbers = [int(n) for match in _QUANTIFIER.findall(pattern) for n in match if n]
            if len(pattern) > MAX_REPEAT or any(n > MAX_REPEAT for n in numbers):
                raise _refuse(
                    f"The pattern {pattern[:40]!r} is longer or repeats more than this server supports."
                )
        stack.extend(node.values())


def _call_schema(tools: Sequence[Mapping[str, Any]], arguments_key: str) -> dict[str, Any]:
    options = []
    for tool in tools:
        parameters = tool.get("parameters") or {"type": "object"}
        options.append(
            {
                "type": "object",
                "properties": {"name": {"const": tool["name"]}, arguments_key: parameters},
                "required": ["name", arguments_key],
                "additionalProperties": False,
            }
        )
    return options[0] if len(options) == 1 else {"oneOf": options}


def tool_call_grammar(tools: Sequence[Mapping[str, Any]], style: str) -> Any:
    """One call of one of ``tools`` (function definitions) in the model's own format.

    ``style`` "hermes": ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``;
    "llama3": a bare ``{"name": ..., "parameters": {...}}`` object.
    """
    check_schema([tool.get("parameters") for tool in tools])
    key = "parameters" if style == "llama3" else "arguments"
    gbnf = _gbnf(_canonical(_call_schema(tools, key)))
    if style == "llama3":
        return _compile(gbnf)
    body = _ROOT.sub("tool-call-json ::=", gbnf, count=1)
    wrapped = 'root ::= "<tool_call>\\n" tool-call-json "\\n</tool_call>"\n' + body
    return _compile(wrapped)
