"""Render a model's Jinja chat template safely, the way Hugging Face renders it.

This module holds what is specific to chat models: the ChatML fallback for a model without a template,
merging the system prompt into the first user turn for templates that refuse a system role, joining
back-to-back turns for templates that insist on alternation, and the stop strings of each format. The
template itself runs in the locked-down sandbox of :mod:`llamadesk.chat.sandbox`, within the limits of
:mod:`llamadesk.chat.template_limits` and :mod:`llamadesk.chat.template_source`. Whatever goes wrong
ends in :class:`TemplateError` with a message a user can read.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .reasoning import EFFORTS, history_field, thinking_control, uses_channels
from .records import clean_text
from .sandbox import ChatTemplateEnvironment, TemplateError, TemplateRaised, compile_template, template_error
from .template_limits import (
    MAX_ITEMS,
    MAX_OUTPUT_CHARS,
    MAX_RANGE,
    MAX_RENDER_SECONDS,
    MAX_STEPS,
    render_with_budget,
)
from .template_source import (
    MAX_NESTING,
    MAX_TEMPLATE_CHARS,
    MAX_TEMPLATE_TAGS,
    MAX_TEMPLATE_TOKENS,
    MAX_TREE_DEPTH,
)

__all__ = [
    "CHATML_TEMPLATE",
    "MAX_ITEMS",
    "MAX_NESTING",
    "MAX_OUTPUT_CHARS",
    "MAX_RANGE",
    "MAX_RENDER_SECONDS",
    "MAX_STEPS",
    "MAX_TEMPLATE_CHARS",
    "MAX_TEMPLATE_TAGS",
    "MAX_TEMPLATE_TOKENS",
    "MAX_TREE_DEPTH",
    "ChatFormat",
    "ChatTemplateEnvironment",
    "TemplateError",
    "apply_thinking",
    "chat_format_for",
    "render_prompt",
    "supports_system_role",
]

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


def _input_chars(messages: Sequence[Mapping[str, Any]], variables: Mapping[str, Any]) -> int:
    """The characters of text passed in: the render's size limits grow with it."""
    total = 0
    for message in messages:
        content = message.get("content")
        total += len(content) if isinstance(content, str) else len(str(content or ""))
    for value in variables.values():
        if isinstance(value, str):
            total += len(value)
    return total


def _render_or_raise(template: str, messages: list[dict[str, Any]], variables: dict[str, Any]) -> str:
    compiled = compile_template(template)
    try:
        # A template can write a lone surrogate ('\ud800' in a string literal): as U+FFFD it
        # can still be encoded for the tokenizer.
        return clean_text(
            render_with_budget(
                compiled, {**variables, "messages": messages}, _input_chars(messages, variables)
            )
        )
    except TemplateError:
        raise
    except TemplateRaised:
        raise
    except Exception as error:
        raise template_error(error) from None


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
    except TemplateRaised:
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
    except TemplateRaised as error:
        alternating = _merge_consecutive(prepared)
        if len(alternating) != len(prepared):
            try:
                return _render_or_raise(template, alternating, context)
            except TemplateRaised:
                pass
        raise template_error(error) from None


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

    @property
    def thinking_control(self) -> str:
        """How thinking is switched for this model: "enable_thinking", "flag", "effort" or "" (it can't)."""
        return thinking_control(self.template)


def apply_thinking(
    template: str, messages: Sequence[Mapping[str, Any]], choice: str = ""
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The messages and template variables that render ``messages`` with thinking as ``choice``.

    ``choice``: "" (the template's default), "on", "off", or a reasoning effort ("low", "medium",
    "high"), applied the way the template expects: the ``enable_thinking`` variable (Qwen3),
    ``/think`` or ``/no_think`` in the system prompt (SmolLM3), ``reasoning_effort`` (gpt-oss).
    A message's ``thinking`` (an earlier reply's) reaches the template only under the field it
    reads (``reasoning_content``, ``thinking``); templates that never read it don't get it.
    """
    field = history_field(template)
    prepared: list[dict[str, Any]] = []
    for message in messages:
        copy = dict(message)
        thinking = copy.pop("thinking", None)
        if field and thinking and copy.get("role") == "assistant":
            copy[field] = thinking
        prepared.append(copy)
    control = thinking_control(template)
    variables: dict[str, Any] = {}
    if not choice or not control:
        return prepared, variables
    on = choice != "off"
    if control == "effort":
        variables["reasoning_effort"] = choice if choice in EFFORTS else ("low" if not on else "medium")
        return prepared, variables
    if "enable_thinking" in template:
        variables["enable_thinking"] = on
    if control == "flag":
        flag = "/think" if on else "/no_think"
        system = next((m for m in prepared if m.get("role") == "system"), None)
        if system is None:
            prepared.insert(0, {"role": "system", "content": flag})
        else:
            content = system.get("content")
            text = content if isinstance(content, str) else ""
            system["content"] = f"{text.rstrip()}\n\n{flag}" if text.strip() else flag
    return prepared, variables


def _stop_strings(template: str, eos_token: str, *, fallback: bool) -> list[str]:
    stops = [marker for marker in _END_OF_TURN_MARKERS if marker in template]
    if uses_channels(template):  # gpt-oss: <|end|> closes the thinking, not the reply
        stops = [marker for marker in stops if marker != "<|end|>"]
        stops += [marker for marker in ("<|return|>", "<|call|>") if marker in template]
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
