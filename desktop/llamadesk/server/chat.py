"""What a chat or text completion request asks of the service: messages, sampling, grammar, tools.

OpenAI messages become the template's messages (text parts joined; images refused with a 400
that says so), tools are offered the way the model's template knows (or described in the system
message), and ``response_format`` and a forced ``tool_choice`` become llama.cpp grammars, so the
reply parses. Sampling starts from the user's settings for the model, then the request's own.
``chat_template_kwargs`` (``enable_thinking``) and ``reasoning_effort`` switch thinking the way the
template expects, as the window's Think toggle does, and reach the template as variables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..chat.reasoning import EFFORTS
from ..chat.templates import apply_thinking
from ..settings import GenerationSettings, SettingsError, validated_update
from . import grammar as grammars
from .errors import APIError
from .schemas import ChatCompletionRequest, CompletionRequest, Message, NamedToolChoice
from .tools import HERMES_CLOSE, HERMES_OPEN, template_knows_tools, tool_style, tools_prompt

__all__ = ["PreparedChat", "penalties", "prepare_chat", "sampling"]

SEED_RANGE = 2**31  # llama.cpp seeds are 32-bit; larger ones are folded into range
# Template variables the server sets itself: chat_template_kwargs cannot replace them.
RESERVED_VARIABLES = frozenset(
    {"messages", "template", "add_generation_prompt", "bos_token", "eos_token", "tools"}
)


@dataclass
class PreparedChat:
    """A chat request ready for ``InferenceService.chat``."""

    messages: list[dict[str, Any]]
    settings: GenerationSettings
    grammar: Any = None
    variables: dict[str, Any] = field(default_factory=dict)
    tool_names: list[str] = field(default_factory=list)
    penalties: tuple[float, float] = (0.0, 0.0)  # frequency, presence
    schema: dict[str, Any] | None = None  # response_format's JSON schema, checked after generation


def sampling(
    request: ChatCompletionRequest | CompletionRequest, base: GenerationSettings, max_tokens: int | None
) -> GenerationSettings:
    """``base`` with the request's sampling options; a 400 for the options this server cannot honour."""
    if request.n not in (None, 1):
        raise APIError(
            400, "Only n=1 is supported: one reply per request.", code="unsupported_value", param="n"
        )
    if request.logit_bias:
        raise APIError(400, "logit_bias is not supported.", code="unsupported_parameter", param="logit_bias")
    changes: dict[str, Any] = {}
    for name in ("temperature", "top_p", "top_k", "min_p", "repeat_penalty"):
        value = getattr(request, name)
        if value is not None:
            changes[name] = value
    if max_tokens is not None:
        changes["max_tokens"] = max_tokens
    if request.seed is not None:
        changes["seed"] = request.seed % SEED_RANGE
    if request.stop is not None:
        changes["stop"] = [request.stop] if isinstance(request.stop, str) else list(request.stop)
    try:
        settings: GenerationSettings = validated_update(base, **changes)
    except SettingsError as exc:
        raise APIError(400, f"Invalid sampling options: {exc}", code="invalid_value") from None
    return settings


def penalties(request: ChatCompletionRequest | CompletionRequest) -> tuple[float, float]:
    """The request's ``frequency_penalty`` and ``presence_penalty`` (0 when left out), for the engine."""
    return (request.frequency_penalty or 0.0, request.presence_penalty or 0.0)


def _thinking(
    request: ChatCompletionRequest, template: str, messages: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``messages`` and template variables with thinking switched as the request asks."""
    kwargs = dict(request.chat_template_kwargs or {})
    reserved = sorted(RESERVED_VARIABLES & set(kwargs))
    if reserved:
        raise APIError(
            400,
            f"chat_template_kwargs cannot set {', '.join(reserved)}: the server sets it from the request.",
            code="invalid_value",
            param="chat_template_kwargs",
        )
    enable = kwargs.get("enable_thinking")
    if enable is not None and not isinstance(enable, bool):
        raise APIError(
            400,
            "chat_template_kwargs.enable_thinking must be true or false.",
            code="invalid_type",
            param="chat_template_kwargs.enable_thinking",
        )
    # OpenAI's "none" and "minimal" are the nearest a template knows: thinking off, the lowest effort.
    effort = {"none": "off", "minimal": "low"}.get(request.reasoning_effort or "", request.reasoning_effort)
    choice = effort or ("" if enable is None else "on" if enable else "off")
    prepared, variables = apply_thinking(template, messages, choice)
    variables.update(kwargs)
    if choice in EFFORTS:
        variables["reasoning_effort"] = choice
    return prepared, variables


def _text(message: Message, index: int) -> str:
    content = message.content
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    parts = []
    for part in content:
        text = getattr(part, "text", None)
        if part.type != "text" or text is None:
            raise APIError(
                400,
                f"messages[{index}] has a '{part.type}' part: this server reads text only.",
                code="unsupported_content",
                param=f"messages[{index}].content",
            )
        parts.append(text)
    return "\n".join(parts)


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _messages(request: ChatCompletionRequest, template: str) -> list[dict[str, Any]]:
    knows_tools = template_knows_tools(template)
    knows_calls = "tool_calls" in template
    out: list[dict[str, Any]] = []
    for index, message in enumerate(request.messages):
        role = "system" if message.role == "developer" else message.role
        item: dict[str, Any] = {"role": role, "content": _text(message, index)}
        if message.name:
            item["name"] = message.name
        if message.reasoning_content and role == "assistant":
            item["thinking"] = message.reasoning_content  # reaches the template if it reads it
        if message.tool_calls:
            if knows_calls:
                item["tool_calls"] = [
                    {
                        "id": call.id,
                        "type": "function",
                        "function": {
                            "name": call.function.name,
                            "arguments": _arguments(call.function.arguments),
                        },
                    }
                    for call in message.tool_calls
                ]
            else:
                written = [
                    f'{HERMES_OPEN}\n{{"name": {json.dumps(call.function.name)}, "arguments": '
                    f"{call.function.arguments or '{}'}}}\n{HERMES_CLOSE}"
                    for call in message.tool_calls
                ]
                item["content"] = "\n".join(filter(None, [item["content"], *written]))
        if role == "tool":
            if knows_tools:
                item["tool_call_id"] = message.tool_call_id or ""
            else:  # a template without tools may refuse the role: the Hermes form, as a user turn
                item = {"role": "user", "content": f"<tool_response>\n{item['content']}\n</tool_response>"}
        out.append(item)
    return out


def _offer_in_system(messages: list[dict[str, Any]], functions: Sequence[Mapping[str, Any]]) -> None:
    text = tools_prompt(functions)
    if messages and messages[0]["role"] == "system":
        messages[0] = {**messages[0], "content": f"{messages[0]['content']}\n\n{text}".strip()}
    else:
        messages.insert(0, {"role": "system", "content": text})


def prepare_chat(request: ChatCompletionRequest, template: str, base: GenerationSettings) -> PreparedChat:
    """The service's view of ``request`` for a model whose chat template is ``template``."""
    if request.logprobs or request.top_logprobs is not None:
        raise APIError(
            400,
            "logprobs are not supported by this server: leave logprobs and top_logprobs out.",
            code="unsupported_parameter",
            param="logprobs",
        )
    if request.modalities and "audio" in request.modalities:
        raise APIError(400, "Audio output is not supported.", code="unsupported_value", param="modalities")
    settings = sampling(request, base, request.max_completion_tokens or request.max_tokens)
    functions = [tool.function.model_dump(exclude_none=True) for tool in request.tools or []]
    names = [f["name"] for f in functions]
    choice = request.tool_choice if functions else None
    if request.tool_choice not in (None, "none", "auto") and not functions:
        raise APIError(
            400, "tool_choice needs tools to choose from.", code="invalid_value", param="tool_choice"
        )
    offered = bool(functions) and choice != "none"
    messages, variables = _thinking(request, template, _messages(request, template))
    prepared = PreparedChat(
        messages=messages, settings=settings, variables=variables, penalties=penalties(request)
    )
    if offered:
        prepared.tool_names = names
        if template_knows_tools(template):
            prepared.variables["tools"] = [{"type": "function", "function": f} for f in functions]
        else:
            _offer_in_system(prepared.messages, functions)
    forced: Sequence[Mapping[str, Any]] = []
    if isinstance(choice, NamedToolChoice):
        forced = [f for f in functions if f["name"] == choice.function.name]
        if not forced:
            raise APIError(
                400,
                f"tool_choice names '{choice.function.name}', which is not one of the tools "
                f"({', '.join(names)}).",
                code="invalid_value",
                param="tool_choice",
            )
    elif choice == "required":
        forced = functions
    response_format = request.response_format
    wants_json = response_format is not None and response_format.type != "text"
    if forced and wants_json:
        raise APIError(
            400,
            "A forced tool_choice and a JSON response_format cannot both shape the reply: choose one.",
            code="invalid_value",
            param="response_format",
        )
    if forced:
        prepared.grammar = grammars.tool_call_grammar(forced, tool_style(template))
    elif response_format is not None and response_format.type == "json_object":
        prepared.grammar = grammars.json_object_grammar()
    elif response_format is not None and response_format.type == "json_schema":
        spec = response_format.json_schema
        if spec is None or spec.schema_ is None:
            raise APIError(
                400,
                "response_format json_schema needs json_schema.schema.",
                code="missing_required_parameter",
                param="response_format.json_schema.schema",
            )
        prepared.grammar = grammars.schema_grammar(spec.schema_)
        prepared.schema = spec.schema_
    return prepared
