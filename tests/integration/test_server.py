"""The OpenAI-compatible server over real HTTP on 127.0.0.1, the real `openai` client, the starter model."""

from __future__ import annotations

import base64
import http.client
import json
import struct
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from server_helpers import error_of, raw, running_server

from llamadesk.engine.service import InferenceService, Job
from llamadesk.server.runner import LocalServer
from llamadesk.settings import RuntimeSettings

pytestmark = pytest.mark.model

STORY = "Write a very long story about the sea and its sailors."


@pytest.fixture(scope="module")
def service(starter_model: Path) -> Iterator[InferenceService]:
    svc = InferenceService()
    job = svc.load(starter_model, RuntimeSettings(n_ctx=2048, n_threads=2), client="test")
    assert job.wait(120) and job.error is None, job.error
    yield svc
    assert svc.close(timeout=10)


@pytest.fixture(scope="module")
def server(service: InferenceService) -> Iterator[LocalServer]:
    with running_server(service, max_body_bytes=256 * 1024) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: LocalServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=120) as opened:
        yield opened


@pytest.fixture(scope="module")
def model_id(server: LocalServer) -> str:
    loaded = server.context.host.loaded_id()
    assert loaded is not None
    return loaded


def chat(client: openai.OpenAI, model: str, text: str, **options: Any) -> Any:
    return client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": text}], **options
    )


def test_models_lists_the_loaded_model_first_and_health_answers(
    client: openai.OpenAI, server: LocalServer, model_id: str
) -> None:
    models = client.models.list().data
    assert models[0].id == model_id
    assert models[0].model_extra == {"loaded": True}
    status, _, body = raw(server, "GET", "/health")
    assert status == 200 and json.loads(body) == {"status": "ok", "model_loaded": True}


def test_a_whole_reply_and_a_streamed_one_are_the_same_reply(client: openai.OpenAI, model_id: str) -> None:
    options: dict[str, Any] = {"max_tokens": 12, "seed": 7, "temperature": 0.8}
    whole = chat(client, model_id, "Name three colours.", **options)
    choice = whole.choices[0]
    assert whole.object == "chat.completion" and whole.model == model_id
    assert choice.message.role == "assistant" and choice.message.content
    assert choice.finish_reason in ("stop", "length")
    usage = whole.usage
    assert usage is not None and usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= 12
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens

    chunks = list(
        chat(
            client,
            model_id,
            "Name three colours.",
            stream=True,
            stream_options={"include_usage": True},
            **options,
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == choice.message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == [choice.finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == usage.completion_tokens


def test_the_stream_is_server_sent_events_ending_with_done(server: LocalServer, model_id: str) -> None:
    body = {
        "model": model_id,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 3,
        "stream": True,
    }
    status, headers, data = raw(server, "POST", "/v1/chat/completions", json.dumps(body).encode())
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    events = [e for e in data.decode().split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[0][6:])["object"] == "chat.completion.chunk"


SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 24},
        "population": {"type": "integer"},
        "continent": {"enum": ["Africa", "America", "Asia", "Europe", "Oceania"]},
        "capital": {"type": "boolean"},
    },
    "required": ["city", "population", "continent", "capital"],
    "additionalProperties": False,
}


def test_json_schema_output_parses_and_validates(client: openai.OpenAI, model_id: str) -> None:
    reply = chat(
        client,
        model_id,
        "Describe Paris as JSON.",
        max_tokens=80,
        seed=3,
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA}},
    )
    assert reply.choices[0].finish_reason == "stop"
    data = json.loads(reply.choices[0].message.content or "")
    assert set(data) == {"city", "population", "continent", "capital"}
    assert isinstance(data["city"], str) and len(data["city"]) <= 24
    assert isinstance(data["population"], int) and not isinstance(data["population"], bool)
    assert data["continent"] in SCHEMA["properties"]["continent"]["enum"]  # type: ignore[index]
    assert isinstance(data["capital"], bool)


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 20}},
            "required": ["city"],
        },
    },
}


def test_a_forced_tool_call_comes_back_as_tool_calls(client: openai.OpenAI, model_id: str) -> None:
    reply = chat(
        client,
        model_id,
        "What is the weather in Paris?",
        max_tokens=64,
        seed=1,
        tools=[WEATHER],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].type == "function" and calls[0].id.startswith("call_")
    assert calls[0].function.name == "get_weather"
    arguments = json.loads(calls[0].function.arguments)
    assert isinstance(arguments["city"], str)


def test_embeddings_have_the_models_dimension_and_are_deterministic(
    client: openai.OpenAI, service: InferenceService, model_id: str
) -> None:
    loaded = service.loaded
    assert loaded is not None
    first = client.embeddings.create(model=model_id, input=["the sea", "a mountain"])
    again = client.embeddings.create(model=model_id, input="the sea")
    encoded = client.embeddings.create(model=model_id, input="the sea", encoding_format="base64")
    assert [d.index for d in first.data] == [0, 1]
    vector = first.data[0].embedding
    assert len(vector) == loaded.info.embedding_length
    assert again.data[0].embedding == vector
    assert first.data[1].embedding != vector
    assert abs(sum(x * x for x in vector) - 1.0) < 1e-3
    raw_vector = encoded.data[0].embedding
    if isinstance(raw_vector, str):  # the client hands base64 back as sent
        raw_vector = list(struct.unpack(f"<{len(vector)}f", base64.b64decode(raw_vector)))
    assert raw_vector == pytest.approx(vector, rel=1e-6)
    assert first.usage.prompt_tokens > 0


BAD_REQUESTS = [
    ("malformed JSON", b'{"messages": [', 400, "invalid_json"),
    ("not an object", b"[1, 2]", 400, "invalid_json"),
    ("an empty body", b"", 400, "invalid_json"),
    (
        "an unknown field",
        {"messages": [{"role": "user", "content": "x"}], "temperatur": 1},
        400,
        "unknown_parameter",
    ),
    (
        "a wrong type",
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": "ten"},
        400,
        "invalid_value",
    ),
    (
        "a negative max_tokens",
        {"messages": [{"role": "user", "content": "x"}], "max_tokens": -5},
        400,
        "invalid_value",
    ),
    ("no messages", {"model": "x"}, 400, "missing_required_parameter"),
    ("an unknown role", {"messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_value"),
    ("n=2", {"messages": [{"role": "user", "content": "x"}], "n": 2}, 400, "unsupported_value"),
    (
        "logprobs",
        {"messages": [{"role": "user", "content": "x"}], "logprobs": True},
        400,
        "unsupported_parameter",
    ),
    (
        "an image",
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
        400,
        "unsupported_content",
    ),
    ("a nested bomb", b'{"messages": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400, "invalid_json"),
    (
        "an unknown model",
        {"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]},
        404,
        "model_not_found",
    ),
    ("a huge body", {"messages": [{"role": "user", "content": "x" * 300_000}]}, 413, "request_too_large"),
]


@pytest.mark.parametrize(("what", "body", "status", "code"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_requests_get_openai_errors_and_the_server_keeps_serving(
    server: LocalServer, what: str, body: Any, status: int, code: str
) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    got, headers, answer = raw(server, "POST", "/v1/chat/completions", data)
    assert got == status, answer
    assert headers["content-type"] == "application/json"
    assert error_of(answer)["code"] == code
    after, _, _ = raw(server, "GET", "/v1/models")
    assert after == 200


def test_the_openai_client_sees_errors_as_its_own_exceptions(client: openai.OpenAI, model_id: str) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        chat(client, "no-such-model", "Hi", max_tokens=2)
    assert model_id in str(missing.value)
    with pytest.raises(openai.BadRequestError) as out_of_range:
        chat(client, model_id, "Hi", max_tokens=2, frequency_penalty=2.5)
    assert "frequency_penalty" in str(out_of_range.value)
    assert chat(client, model_id, "Hi", max_tokens=2).choices[0].message.content is not None


def test_unknown_endpoints_and_methods_answer_in_json(server: LocalServer) -> None:
    status, _, body = raw(server, "GET", "/v1/nothing")
    assert status == 404 and error_of(body)["code"] == "unknown_url"
    status, _, body = raw(server, "GET", "/v1/chat/completions")
    assert status == 405 and error_of(body)["code"] == "method_not_allowed"


def _capturing(service: InferenceService, monkeypatch: pytest.MonkeyPatch) -> list[Job]:
    jobs: list[Job] = []
    original = service.chat

    def chat_and_keep(*args: Any, **kwargs: Any) -> Job:
        job = original(*args, **kwargs)
        jobs.append(job)
        return job

    monkeypatch.setattr(service, "chat", chat_and_keep)
    return jobs


def test_a_client_that_disconnects_mid_stream_stops_its_generation(
    server: LocalServer, service: InferenceService, model_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = _capturing(service, monkeypatch)
    body = {
        "model": model_id,
        "messages": [{"role": "user", "content": STORY}],
        "max_tokens": 1500,
        "stream": True,
    }
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    first = response.readline()
    assert first.startswith(b"data: ")
    connection.sock.close()  # the client goes away mid-stream
    connection.close()
    assert len(jobs) == 1 and jobs[0].wait(60)
    stats = jobs[0].result.stats
    assert stats.stop_reason.value == "user_stop"
    assert stats.completion_tokens < 1500


def test_two_concurrent_clients_both_get_their_own_complete_answers(
    client: openai.OpenAI, model_id: str
) -> None:
    prompts = {"sea": "Tell me about the sea.", "bread": "How is bread made?"}
    alone = {
        name: chat(client, model_id, text, max_tokens=16, seed=5).choices[0].message.content
        for name, text in prompts.items()
    }
    together: dict[str, str] = {}

    def ask(name: str, stream: bool) -> None:
        if stream:
            chunks = chat(client, model_id, prompts[name], max_tokens=16, seed=5, stream=True)
            together[name] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        else:
            together[name] = (
                chat(client, model_id, prompts[name], max_tokens=16, seed=5).choices[0].message.content
            )

    threads = [
        threading.Thread(target=ask, args=("sea", True)),
        threading.Thread(target=ask, args=("bread", False)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert together == alone
    assert alone["sea"] != alone["bread"]


def test_a_raw_completion_and_tokenize_detokenize(
    server: LocalServer, client: openai.OpenAI, model_id: str
) -> None:
    completion = client.completions.create(
        model=model_id, prompt="The capital of France is", max_tokens=4, seed=2
    )
    assert completion.object == "text_completion" and completion.choices[0].text
    assert completion.usage is not None and completion.usage.completion_tokens <= 4
    status, _, body = raw(server, "POST", "/tokenize", json.dumps({"content": "Hello world"}).encode())
    assert status == 200
    tokens = json.loads(body)["tokens"]
    assert tokens and all(isinstance(t, int) for t in tokens)
    status, _, body = raw(server, "POST", "/detokenize", json.dumps({"tokens": tokens}).encode())
    assert status == 200 and json.loads(body)["content"] == "Hello world"
    status, _, body = raw(server, "POST", "/detokenize", json.dumps({"tokens": [10**9]}).encode())
    assert status == 400 and "vocabulary" in error_of(body)["message"]


def test_a_full_queue_answers_429_with_retry_after(service: InferenceService, model_id: str) -> None:
    started, release = threading.Event(), threading.Event()

    def hold(_piece: str) -> None:
        started.set()
        release.wait(60)

    from llamadesk.settings import GenerationSettings

    busy = service.chat(
        [{"role": "user", "content": "Hi"}], GenerationSettings(max_tokens=2), on_text=hold, client="window"
    )
    assert started.wait(60)
    body = json.dumps(
        {"model": model_id, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
    ).encode()
    with running_server(service, max_queued=1) as small:
        admitted = threading.Event()
        admit = small.context.host.admit

        def admit_and_tell() -> None:
            admit()
            admitted.set()

        small.context.host.admit = admit_and_tell  # type: ignore[method-assign]
        waiting: list[int] = []
        first = threading.Thread(
            target=lambda: waiting.append(raw(small, "POST", "/v1/chat/completions", body)[0])
        )
        first.start()
        assert admitted.wait(60)  # the first request holds the only place
        status, headers, answer = raw(small, "POST", "/v1/chat/completions", body)
        release.set()
        first.join(60)
    assert busy.wait(60)
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert error_of(answer)["type"] == "rate_limit_error"
    assert waiting == [200]


def test_a_conversation_with_a_tool_result_is_answered(client: openai.OpenAI, model_id: str) -> None:
    messages: list[Any] = [
        {"role": "developer", "content": "Answer in one sentence."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21 degrees."},
    ]
    chunks = list(
        client.chat.completions.create(
            model=model_id, messages=messages, tools=[WEATHER], max_tokens=8, seed=4, stream=True
        )
    )
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(finishes) == 1 and finishes[0] in ("stop", "length", "tool_calls")
    said = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    called = [t for c in chunks if c.choices for t in (c.choices[0].delta.tool_calls or [])]
    assert said or called


DAYS = "List the days of the week, one per line."
GREEDY: dict[str, Any] = {"max_tokens": 40, "temperature": 0, "extra_body": {"repeat_penalty": 1.0}}


def test_frequency_and_presence_penalties_reach_the_sampler(client: openai.OpenAI, model_id: str) -> None:
    plain = chat(client, model_id, DAYS, **GREEDY).choices[0].message.content
    # Accepted, and 0 is "off": the same greedy reply as leaving them out.
    zero = chat(client, model_id, DAYS, frequency_penalty=0, presence_penalty=0, **GREEDY)
    assert zero.choices[0].message.content == plain
    # A greedy list of days repeats itself; penalising repeats changes what comes out.
    penalised = chat(client, model_id, DAYS, frequency_penalty=1.5, **GREEDY).choices[0].message.content
    assert penalised and penalised != plain
    present = chat(client, model_id, DAYS, presence_penalty=-2.0, frequency_penalty=-2.0, **GREEDY)
    assert present.choices[0].message.content != plain
    stream = chat(client, model_id, DAYS, frequency_penalty=1.5, stream=True, **GREEDY)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == penalised
    with pytest.raises(openai.BadRequestError) as refused:
        chat(client, model_id, DAYS, presence_penalty=-2.5, **GREEDY)
    assert "presence_penalty" in str(refused.value)
    raw_options: dict[str, Any] = {"prompt": "Monday, Tuesday,", "max_tokens": 24, "temperature": 0}
    plain_raw = client.completions.create(model=model_id, **raw_options).choices[0].text
    penalised_raw = client.completions.create(model=model_id, frequency_penalty=2.0, **raw_options)
    assert penalised_raw.choices[0].text != plain_raw


def test_a_model_that_does_not_think_sends_no_reasoning_content(client: openai.OpenAI, model_id: str) -> None:
    reply = chat(client, model_id, "Name three colours.", max_tokens=12, seed=3)
    message = reply.choices[0].message
    assert message.content and "reasoning_content" not in (message.model_extra or {})
    chunks = list(chat(client, model_id, "Name three colours.", max_tokens=12, seed=3, stream=True))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert not any("reasoning_content" in (d.model_extra or {}) for d in deltas)
    assert "".join(d.content or "" for d in deltas) == message.content


def _number_format(low: int, high: int) -> Any:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": low, "maximum": high}},
        "required": ["n"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "number", "schema": schema}}


def test_a_json_schema_reply_out_of_range_is_an_error_not_silently_invalid(
    client: openai.OpenAI, model_id: str
) -> None:
    # No integer is >= 2 and <= 1: whatever the model writes, the range check must catch it.
    options: dict[str, Any] = {"response_format": _number_format(2, 1), "max_tokens": 40, "seed": 1}
    with pytest.raises(openai.UnprocessableEntityError) as whole:
        chat(client, model_id, "Pick a number.", **options)
    assert "$.n" in str(whole.value) and whole.value.code == "json_schema_violation"
    with pytest.raises(openai.APIError) as streamed:
        list(chat(client, model_id, "Pick a number.", stream=True, **options))
    assert "$.n" in str(streamed.value)
    # Any integer the grammar allows lies within +-10**17: such a range never refuses a reply.
    wide = {**options, "response_format": _number_format(-(10**17), 10**17)}
    content = chat(client, model_id, "Pick a number.", **wide).choices[0].message.content
    assert isinstance(json.loads(content)["n"], int)
