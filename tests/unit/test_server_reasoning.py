"""The API server's side of reasoning models and sampling: thinking switched from the request, thinking
returned as ``reasoning_content`` (whole and streamed, whatever the pieces), penalties passed on."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from llamadesk.chat.context import ContextFit
from llamadesk.chat.reasoning import ReasoningSplitter, uses_channels
from llamadesk.chat.templates import chat_format_for
from llamadesk.engine.engine import GenerationStats, StopReason
from llamadesk.engine.service import ChatResult, Job
from llamadesk.server.chat import prepare_chat
from llamadesk.server.errors import APIError
from llamadesk.server.generate import Answer, _stream
from llamadesk.server.schemas import ChatCompletionRequest
from llamadesk.server.streaming import Events
from llamadesk.settings import GenerationSettings

QWEN3 = (Path(__file__).resolve().parents[1] / "data" / "templates" / "qwen3.jinja").read_text("utf-8")
GPT_OSS = """{%- if not reasoning_effort is defined %}{%- set reasoning_effort = "medium" %}{%- endif %}
{{- "<|start|>system<|message|>Reasoning: " + reasoning_effort + "<|end|>" }}
{%- for message in messages -%}
  {%- if message.role == "assistant" and message.thinking and loop.last -%}
    {{- "<|start|>assistant<|channel|>analysis<|message|>" + message.thinking + "<|end|>" }}
  {%- endif -%}
  {{- "<|start|>" + message.role + "<|message|>" + message.content + "<|end|>" }}
{%- endfor -%}
{%- if add_generation_prompt -%}<|start|>assistant{%- endif -%}
"""
GPT_OSS_REPLY = (
    "<|channel|>analysis<|message|>The user greets; answer briefly.<|end|>"
    "<|start|>assistant<|channel|>final<|message|>Hello! How can I help?"
)


def request(**fields: Any) -> ChatCompletionRequest:
    body = {"messages": [{"role": "user", "content": "Hi"}], **fields}
    return ChatCompletionRequest.model_validate(json.loads(json.dumps(body)))


def rendered(template: str, **fields: Any) -> str:
    prepared = prepare_chat(request(**fields), template, GenerationSettings())
    fmt = chat_format_for(template, "", "")
    return fmt.render(prepared.messages, **prepared.variables)


def test_enable_thinking_in_chat_template_kwargs_switches_a_qwen3_template() -> None:
    assert rendered(QWEN3).endswith("<|im_start|>assistant\n")
    off = rendered(QWEN3, chat_template_kwargs={"enable_thinking": False})
    assert off.endswith("<|im_start|>assistant\n<think>\n\n</think>\n\n")
    assert rendered(QWEN3, chat_template_kwargs={"enable_thinking": True}) == rendered(QWEN3)


@pytest.mark.parametrize(
    ("asked", "effort"),
    [("low", "low"), ("medium", "medium"), ("high", "high"), ("minimal", "low"), ("none", "low")],
)
def test_reasoning_effort_reaches_a_gpt_oss_template(asked: str, effort: str) -> None:
    assert f"Reasoning: {effort}<|end|>" in rendered(GPT_OSS, reasoning_effort=asked)


def test_reasoning_effort_none_turns_a_qwen3_template_off() -> None:
    assert rendered(QWEN3, reasoning_effort="none").endswith("<think>\n\n</think>\n\n")
    assert rendered(QWEN3, reasoning_effort="high") == rendered(QWEN3)


def test_other_template_kwargs_reach_the_template_and_thinking_of_earlier_replies_too() -> None:
    template = "{{ greeting }}{% for m in messages %}[{{ m.thinking }}|{{ m.content }}]{% endfor %}"
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello", "reasoning_content": "Be kind."},
        {"role": "user", "content": "Bye"},
    ]
    assert rendered(template, messages=messages, chat_template_kwargs={"greeting": "Hey"}) == (
        "Hey[|Hi][|Hello][|Bye]"  # a template that does not read thinking never gets it
    )
    prepared = prepare_chat(request(messages=messages), GPT_OSS, GenerationSettings())
    assert prepared.messages[1]["thinking"] == "Be kind."


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"chat_template_kwargs": {"messages": []}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"add_generation_prompt": False}}, "chat_template_kwargs"),
        ({"chat_template_kwargs": {"enable_thinking": "yes"}}, "chat_template_kwargs.enable_thinking"),
    ],
)
def test_template_kwargs_that_would_break_the_prompt_are_refused(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(APIError) as refused:
        prepare_chat(request(**fields), QWEN3, GenerationSettings())
    assert refused.value.status == 400 and refused.value.param == param


@pytest.mark.parametrize(
    "fields",
    [
        {"reasoning_effort": "extreme"},
        {"chat_template_kwargs": {"not a name": 1}},
        {"frequency_penalty": 2.5},
        {"presence_penalty": -2.01},
    ],
)
def test_out_of_range_reasoning_and_penalty_fields_are_refused_by_the_schema(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        request(**fields)


def test_penalties_are_passed_on_and_leave_the_sampling_settings_alone() -> None:
    base = GenerationSettings()
    prepared = prepare_chat(request(frequency_penalty=0.5, presence_penalty=-1.25), QWEN3, base)
    assert prepared.penalties == (0.5, -1.25)
    assert prepared.settings == base
    assert prepare_chat(request(), QWEN3, base).penalties == (0.0, 0.0)


def stats(tokens: int = 5) -> GenerationStats:
    return GenerationStats(5, 0, tokens, 0.01, 10.0, 0.1, StopReason.MAX_TOKENS)


def message_of(answer: Answer, text: str, prompt: str) -> dict[str, Any]:
    body = answer.whole(text, stats(), prompt)
    message: dict[str, Any] = body["choices"][0]["message"]
    return message


def test_a_whole_reply_carries_thinking_as_reasoning_content() -> None:
    answer = Answer(chat=True, model="m", stream=False)
    message = message_of(answer, "<think>\nSky: Rayleigh.\n</think>\n\nBecause of Rayleigh.", "")
    assert message["reasoning_content"] == "Sky: Rayleigh."
    assert message["content"] == "Because of Rayleigh."
    # The template opened <think> and the reply ran out of tokens before closing it.
    message = message_of(answer, "Let me think about", "<|im_start|>assistant\n<think>\n")
    assert message == {**message, "content": "", "reasoning_content": "Let me think about"}
    assert "reasoning_content" not in message_of(answer, "Just an answer.", "user\n")


def test_a_gpt_oss_reply_is_split_on_its_channels() -> None:
    assert uses_channels(GPT_OSS)
    answer = Answer(chat=True, model="m", stream=False, channels=True)
    message = message_of(answer, GPT_OSS_REPLY, "<|start|>assistant")
    assert message["reasoning_content"] == "The user greets; answer briefly."
    assert message["content"] == "Hello! How can I help?"


def streamed(answer: Answer, pieces: list[str], prompt: str) -> list[dict[str, Any]]:
    """The chunks ``_stream`` sends for a reply that arrives in ``pieces``, each in its own batch."""

    async def run() -> list[dict[str, Any]]:
        events = Events(asyncio.get_running_loop())
        job = Job("chat", "api")
        fit = ContextFit(prompt=prompt, prompt_tokens=[1], kept=[], dropped=[])
        job._finish(ChatResult(fit=fit, text="".join(pieces), stats=stats(len(pieces))))
        batches: list[list[tuple[str, Any]]] = [[("fit", fit)], *[[("text", p)] for p in pieces]]
        batches.append([("done", job)])
        for batch in batches[1:]:
            for kind, value in batch:
                events.put(kind, value)
        chunks = []
        async for data in _stream(answer, job, events, batches[0], contextlib.AsyncExitStack()):
            if data != b"data: [DONE]\n\n":
                chunks.append(json.loads(data[len(b"data: ") :]))
        return chunks

    return asyncio.run(run())


def deltas(chunks: list[dict[str, Any]], field: str) -> str:
    return "".join(c["choices"][0]["delta"].get(field) or "" for c in chunks if c["choices"])


@pytest.mark.parametrize("cut", range(1, len(GPT_OSS_REPLY)))
def test_a_streamed_gpt_oss_reply_cut_anywhere_sends_no_marker(cut: int) -> None:
    answer = Answer(chat=True, model="m", stream=True, channels=True)
    chunks = streamed(answer, [GPT_OSS_REPLY[:cut], GPT_OSS_REPLY[cut:]], "<|start|>assistant")
    assert deltas(chunks, "reasoning_content") == "The user greets; answer briefly."
    assert deltas(chunks, "content") == "Hello! How can I help?"
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


def test_a_stream_that_starts_inside_thinking_and_never_closes_it_is_all_reasoning() -> None:
    answer = Answer(chat=True, model="m", stream=True)
    pieces = ["Hmm", ", the user", " says hi", " so I"]
    chunks = streamed(answer, pieces, "<|im_start|>assistant\n<think>\n")
    assert deltas(chunks, "reasoning_content") == "".join(pieces)
    assert deltas(chunks, "content") == ""
    assert all("<think>" not in json.dumps(c) for c in chunks)


def test_a_stream_without_thinking_sends_no_reasoning_content() -> None:
    answer = Answer(chat=True, model="m", stream=True)
    chunks = streamed(answer, ["Hello", " there", " <b>friend</b>"], "<|im_start|>assistant\n")
    assert deltas(chunks, "content") == "Hello there <b>friend</b>"
    assert not any("reasoning_content" in c["choices"][0]["delta"] for c in chunks if c["choices"])


def test_the_splitter_reads_gpt_oss_markers_token_by_token() -> None:
    # How the engine hands them over when it writes special tokens: one marker per piece.
    pieces = ["<|channel|>", "analysis", "<|message|>", "Think", "ing.", "<|end|>", "<|start|>", "assistant"]
    pieces += ["<|channel|>", "final", "<|message|>", "Done", "."]
    splitter = ReasoningSplitter(channels=True)
    events = [event for piece in pieces for event in splitter.feed(piece)] + splitter.finish()
    assert "".join(text for kind, text in events if kind == "thinking") == "Thinking."
    assert "".join(text for kind, text in events if kind == "answer") == "Done."
