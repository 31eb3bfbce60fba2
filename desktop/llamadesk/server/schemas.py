"""The request bodies the server accepts, as OpenAI documents them (plus llama.cpp's sampling extras).

Strict on purpose: an unknown field, a string where a number belongs or a value out of range is a
400 naming the field, never silently ignored or coerced. Fields OpenAI accepts that change nothing
here (``user``, ``store``, ``metadata``, ...) are accepted and ignored.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .config import MAX_EMBEDDING_INPUTS, MAX_MESSAGES, MAX_STOP, MAX_TOOLS

__all__ = [
    "ChatCompletionRequest",
    "CompletionRequest",
    "DetokenizeRequest",
    "EmbeddingRequest",
    "Message",
    "TokenizeRequest",
    "ToolDefinition",
]

MAX_TEXT = 4 << 20  # characters in one string; the body limit bounds the total
TokenCount = Annotated[int, Field(ge=1, le=131072)]
Name = Annotated[str, Field(min_length=1, max_length=256)]
TemplateVariable = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class TextPart(_Strict):
    type: Literal["text"]
    text: Annotated[str, Field(max_length=MAX_TEXT)]


class OtherPart(BaseModel):
    """An image, audio or file part: recognised so the refusal can say what is not supported."""

    model_config = ConfigDict(extra="allow")
    type: Literal["image_url", "input_audio", "file", "refusal"]


Part = Annotated[TextPart | OtherPart, Field(discriminator="type")]


class FunctionCall(_Strict):
    name: Name
    arguments: Annotated[str, Field(max_length=MAX_TEXT)]


class ToolCall(_Strict):
    id: Annotated[str, Field(max_length=256)]
    type: Literal["function"] = "function"
    function: FunctionCall


class Message(_Strict):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: Annotated[str, Field(max_length=MAX_TEXT)] | list[Part] | None = None
    name: Name | None = None
    tool_calls: Annotated[list[ToolCall], Field(max_length=MAX_TOOLS)] | None = None
    tool_call_id: Annotated[str, Field(max_length=256)] | None = None
    refusal: str | None = None
    reasoning_content: Annotated[str, Field(max_length=MAX_TEXT)] | None = None  # an earlier reply's thinking


class FunctionDefinition(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    description: Annotated[str, Field(max_length=65536)] | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinition(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(_Strict):
    name: Name


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: NamedFunction


class JSONSchemaFormat(_Strict):
    name: Annotated[str, Field(max_length=64)] = "response"
    description: str | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    strict: bool | None = None


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JSONSchemaFormat | None = None


class StreamOptions(_Strict):
    include_usage: bool | None = None
    include_obfuscation: bool | None = None


Stop = (
    Annotated[str, Field(max_length=1024)]
    | Annotated[list[Annotated[str, Field(max_length=1024)]], Field(max_length=MAX_STOP)]
)


class _Sampling(_Strict):
    """Sampling options shared by chat and text completions."""

    model: Annotated[str, Field(max_length=4096)] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: TokenCount | None = None
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=0, le=1000)] | None = None
    min_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    repeat_penalty: Annotated[float, Field(ge=0.5, le=2.0)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2.0, le=2.0)] | None = None
    seed: Annotated[int, Field(ge=-(2**63), le=2**64 - 1)] | None = None
    stop: Stop | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    logit_bias: dict[str, float] | None = None
    user: Annotated[str, Field(max_length=4096)] | None = None


class ChatCompletionRequest(_Sampling):
    """POST /v1/chat/completions."""

    messages: Annotated[list[Message], Field(min_length=1, max_length=MAX_MESSAGES)]
    max_completion_tokens: TokenCount | None = None
    response_format: ResponseFormat | None = None
    tools: Annotated[list[ToolDefinition], Field(max_length=MAX_TOOLS)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    modalities: list[Literal["text", "audio"]] | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high"] | None = None
    chat_template_kwargs: Annotated[dict[TemplateVariable, Any], Field(max_length=32)] | None = None


class CompletionRequest(_Sampling):
    """POST /v1/completions (a raw prompt, no chat template)."""

    prompt: (
        Annotated[str, Field(max_length=MAX_TEXT)]
        | Annotated[list[str], Field(min_length=1, max_length=1)]
        | Annotated[list[int], Field(min_length=1, max_length=131072)]
    )
    echo: bool = False
    suffix: str | None = None
    best_of: Annotated[int, Field(ge=1, le=128)] | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None


class EmbeddingRequest(_Strict):
    """POST /v1/embeddings."""

    input: (
        Annotated[str, Field(max_length=MAX_TEXT)]
        | Annotated[
            list[Annotated[str, Field(max_length=MAX_TEXT)]],
            Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS),
        ]
        | Annotated[list[int], Field(min_length=1, max_length=131072)]
        | Annotated[list[list[int]], Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)]
    )
    model: Annotated[str, Field(max_length=4096)] | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[int, Field(ge=1)] | None = None
    user: str | None = None


class TokenizeRequest(_Strict):
    """POST /tokenize (llama.cpp server's shape): text in, token ids out."""

    content: Annotated[str, Field(max_length=MAX_TEXT)]
    add_special: bool = False
    model: str | None = None


class DetokenizeRequest(_Strict):
    """POST /detokenize: token ids in, text out."""

    tokens: Annotated[list[int], Field(max_length=131072)]
    model: str | None = None
