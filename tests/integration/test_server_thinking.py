"""Thinking through the API, on the starter model: a chat template override (Settings →
template_overrides, as the server applies it when a request loads a library model) whose generation
prompt opens ``<think>``, so the reply starts inside thinking; and special tokens reaching the text
when, and only when, a template marks thinking with them (gpt-oss channels)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from llamadesk.chat.reasoning import uses_channels
from llamadesk.engine.engine import Engine
from llamadesk.engine.service import InferenceService, LoadedModel
from llamadesk.hub.library import ModelLibrary
from llamadesk.paths import Paths
from llamadesk.server.config import ServerConfig
from llamadesk.server.runner import LocalServer
from llamadesk.settings import GenerationSettings, RuntimeSettings, Settings

pytestmark = pytest.mark.model

# ChatML like the starter model's own, but opening <think> in the generation prompt (as DeepSeek-R1
# and Qwen3 do), and closing it at once when the client turns thinking off (Qwen3's enable_thinking).
THINKING_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n"
    "{% else %}<think>\n{% endif %}{% endif %}"
)
GREEDY: dict[str, Any] = {"max_tokens": 8, "temperature": 0, "extra_body": {"repeat_penalty": 1.0}}


@pytest.fixture
def thinking_server(paths: Paths, starter_model: Path) -> Iterator[tuple[openai.OpenAI, list[LoadedModel]]]:
    """A server over an idle service whose first request loads the starter model with the override."""
    settings = Settings(template_overrides={"starter": THINKING_TEMPLATE})
    settings.runtime.n_ctx = 1024
    settings.runtime.n_threads = 2
    library = ModelLibrary(paths)
    service = InferenceService()
    loads: list[LoadedModel] = []
    server = LocalServer(
        service,
        ServerConfig(port=0, load_on_request=True),
        settings=lambda: settings,
        library=lambda: library,
        on_model_loaded=loads.append,
    )
    server.start()
    try:
        with openai.OpenAI(base_url=server.url, api_key="x", max_retries=0, timeout=120) as client:
            yield client, loads
    finally:
        assert server.stop(timeout=20)
        assert service.close(timeout=10)


def ask(client: openai.OpenAI, **options: Any) -> Any:
    messages: Any = [{"role": "user", "content": "Why is the sky blue?"}]
    return client.chat.completions.create(model="starter", messages=messages, **{**GREEDY, **options})


def test_a_reply_that_never_closes_its_thinking_is_all_reasoning_content(
    thinking_server: tuple[openai.OpenAI, list[LoadedModel]],
) -> None:
    client, loads = thinking_server
    whole = ask(client)
    (loaded,) = loads  # the request loaded the model, with the override, and said so
    assert loaded.chat_format.template == THINKING_TEMPLATE
    message = whole.choices[0].message
    reasoning = (message.model_extra or {}).get("reasoning_content")
    assert whole.choices[0].finish_reason == "length" and whole.usage.completion_tokens == 8
    assert message.content == "" and reasoning
    assert "<think>" not in reasoning and "</think>" not in reasoning

    chunks = list(ask(client, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    streamed = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    assert streamed.strip() == reasoning
    assert "".join(d.content or "" for d in deltas) == ""
    assert len(loads) == 1


def test_enable_thinking_false_reaches_the_template_and_the_reply_is_all_answer(
    thinking_server: tuple[openai.OpenAI, list[LoadedModel]],
) -> None:
    client, _loads = thinking_server
    whole = ask(
        client, extra_body={"repeat_penalty": 1.0, "chat_template_kwargs": {"enable_thinking": False}}
    )
    message = whole.choices[0].message
    assert message.content and "<think>" not in message.content
    assert (message.model_extra or {}).get("reasoning_content") is None


def test_special_tokens_reach_the_text_only_when_asked(starter_model: Path) -> None:
    engine = Engine()
    engine.load(starter_model, RuntimeSettings(n_ctx=512, n_threads=2))
    try:
        ids = engine.tokenize("<|im_start|>user\nhi<|im_end|>\n")
        assert engine.detokenize(ids) == "user\nhi\n"
        assert engine.detokenize(ids, special=True) == "<|im_start|>user\nhi<|im_end|>\n"
        # After a finished turn the model starts the next one: <|im_start|> (a control token, not an
        # end of generation) is written only when special tokens are asked for; nothing else changes.
        prompt = "<|im_start|>user\nhi<|im_end|>\n"
        greedy = GenerationSettings(temperature=0, max_tokens=3, repeat_penalty=1.0)
        plain, special = engine.generate(prompt, greedy), engine.generate(prompt, greedy, special=True)
        plain_text, special_text = "".join(plain), "".join(special)
        assert special_text.startswith("<|im_start|>")
        assert special_text == "<|im_start|>" + plain_text
    finally:
        engine.unload()


def test_the_service_writes_special_tokens_for_a_template_with_channels(starter_model: Path) -> None:
    # The starter model knows no channels; a template that names them is enough to switch the engine.
    channels = "{#- <|channel|>analysis<|message|> -#}" + (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
    )
    assert uses_channels(channels)
    service = InferenceService()
    try:
        replies = []
        for override in (channels, channels.replace("<|channel|>", "")):
            load = service.load(
                starter_model, RuntimeSettings(n_ctx=512, n_threads=2), template_override=override
            )
            assert load.wait(120) and load.error is None, load.error
            greedy = GenerationSettings(temperature=0, max_tokens=3, repeat_penalty=1.0)
            job = service.chat([{"role": "user", "content": "hi"}], greedy)
            assert job.wait(120) and job.error is None, job.error
            replies.append(job.result.text)
        with_channels, without = replies
        assert with_channels == "<|im_start|>" + without
    finally:
        assert service.close(timeout=10)
