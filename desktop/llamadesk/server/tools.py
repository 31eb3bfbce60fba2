"""Tool calling: tools into the prompt, the model's tool calls out of its reply.

A template that knows tools (Qwen, Hermes, Llama 3.x) gets them as its ``tools`` variable and renders
them its own way. A template that does not gets them described in the system message, asking for
the Hermes form, which is what the forced-call grammar writes too. Replies are parsed in both forms
models use: Hermes/Qwen ``<tool_call>{...}</tool_call>`` blocks and Llama 3.x bare JSON objects
(``{"name": ..., "parameters": {...}}``, optionally after ``<|python_tag|>``).
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import safejson

__all__ = ["ParsedReply", "ToolStream", "parse_tool_calls", "tool_style", "tools_prompt"]

HERMES_OPEN = "<tool_call>"
HERMES_CLOSE = "</tool_call>"
PYTHON_TAG = "<|python_tag|>"
_HERMES = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.DOTALL)


def tool_style(template: str) -> str:
    """ "llama3" for templates that write Llama 3.x JSON calls, else "hermes"."""
    if HERMES_OPEN in template:
        return "hermes"
    if PYTHON_TAG in template or ("<|eot_id|>" in template and "parameters" in template):
        return "llama3"
    return "hermes"


def template_knows_tools(template: str) -> bool:
    """Whether the chat template renders a ``tools`` list itself."""
    return "tools" in template


def tools_prompt(functions: Sequence[Mapping[str, Any]]) -> str:
    """The system-message text that offers ``functions`` to a model whose template has no tools."""
    lines = [json.dumps({"type": "function", "function": dict(f)}, ensure_ascii=False) for f in functions]
    return (
        "You can call functions to help answer. The functions you can call are:\n<tools>\n"
        + "\n".join(lines)
        + "\n</tools>\nTo call a function, reply with exactly this and nothing else:\n"
        '<tool_call>\n{"name": "<function name>", "arguments": {<the arguments as JSON>}}\n</tool_call>'
    )


def new_call_id() -> str:
    return "call_" + secrets.token_hex(12)


@dataclass
class ParsedReply:
    """A reply split into its text and the tool calls it made (OpenAI ``tool_calls`` items)."""

    content: str | None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def _call(data: Any, names: set[str]) -> dict[str, Any] | None:
    if not isinstance(data, dict):
        return None
    name = data.get("name")
    arguments = data.get("arguments", data.get("parameters", {}))
    if not isinstance(name, str) or (names and name not in names):
        return None
    if isinstance(arguments, str):  # some models write the arguments already encoded
        text = arguments
    else:
        text = json.dumps(arguments if arguments is not None else {}, ensure_ascii=False)
    return {"id": new_call_id(), "type": "function", "function": {"name": name, "arguments": text}}


def _loads(text: str) -> Any:
    try:
        return safejson.loads(text)
    except ValueError:
        return None


def parse_tool_calls(text: str, names: Sequence[str] = ()) -> ParsedReply:
    """The tool calls in ``text`` (only of ``names`` when given) and the text around them."""
    wanted = set(names)
    if HERMES_OPEN in text:
        calls = [c for c in (_call(_loads(body), wanted) for body in _HERMES.findall(text)) if c]
        if calls:
            before = text[: text.index(HERMES_OPEN)].strip()
            return ParsedReply(before or None, calls)
    stripped = text.strip()
    if stripped.startswith(PYTHON_TAG):
        stripped = stripped[len(PYTHON_TAG) :].strip()
    if stripped.startswith("{"):
        parts = [p for p in (s.strip() for s in stripped.split(";")) if p] if ";" in stripped else [stripped]
        found = [_call(_loads(p), wanted) for p in parts]
        calls = [c for c in found if c is not None]
        if calls and len(calls) == len(found):
            return ParsedReply(None, calls)
    return ParsedReply(text, [])


class ToolStream:
    """Streams a reply's text while holding back anything that may be a tool call.

    ``feed`` returns the text that is safe to send as content now; from the point where a tool
    call may begin (``<tool_call>``, or a reply that opens with ``{`` or ``<|python_tag|>``) it
    holds everything back for :func:`parse_tool_calls` at the end.
    """

    def __init__(self) -> None:
        self.text = ""
        self._sent = 0
        self._holding = False

    def feed(self, piece: str) -> str:
        self.text += piece
        if self._holding:
            return ""
        unsent = self.text[self._sent :]
        if self._sent == 0:
            lead = unsent.lstrip()
            if not lead:
                return ""
            for marker in ("{", PYTHON_TAG, HERMES_OPEN):
                if lead.startswith(marker):
                    self._holding = True
                    return ""
                if marker.startswith(lead):  # may still become the marker
                    return ""
        at = unsent.find(HERMES_OPEN)
        if at >= 0:
            self._holding = True
            self._sent += at
            return unsent[:at]
        keep = 0  # a tail that could be the start of "<tool_call>" waits for the next piece
        for size in range(min(len(HERMES_OPEN) - 1, len(unsent)), 0, -1):
            if HERMES_OPEN.startswith(unsent[-size:]):
                keep = size
                break
        release = unsent[: len(unsent) - keep]
        self._sent += len(release)
        return release

    def finish(self, names: Sequence[str]) -> tuple[str, list[dict[str, Any]]]:
        """The text still to send as content, and the tool calls, once the reply has ended."""
        rest = self.text[self._sent :]
        parsed = parse_tool_calls(rest, names)
        if parsed.tool_calls:
            return parsed.content or "", parsed.tool_calls
        return rest, []
