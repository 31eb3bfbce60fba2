"""The remote client against a stub server on 127.0.0.1: each way a server can fail gets its own message.

Real HTTP and real streaming (tests/remote_stub.py); nothing is faked inside the client.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from llamadesk.chat.reasoning import ReasoningSplitter
from llamadesk.engine.engine import StopReason
from llamadesk.remote.client import RemoteClient, RemoteReply
from llamadesk.remote.errors import RemoteError
from llamadesk.remote.registry import check_server
from llamadesk.settings import GenerationSettings, RemoteServer
from remote_stub import MODEL, StubState, free_port, running_stub

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def stub() -> Iterator[tuple[str, StubState]]:
    with running_stub() as running:
        yield running


@pytest.fixture
def client(stub: tuple[str, StubState]) -> Iterator[RemoteClient]:
    with RemoteClient(stub[0], name="Stub", api_key="k-123") as remote:
        yield remote


def _chat(client: RemoteClient, stop: threading.Event | None = None) -> tuple[list[str], RemoteReply]:
    pieces: list[str] = []
    reply = client.chat(MODEL, HI, GenerationSettings(), on_text=pieces.append, stop=stop)
    return pieces, reply


def test_models_are_listed_and_a_reply_streams_piece_by_piece(
    stub: tuple[str, StubState], client: RemoteClient
) -> None:
    _, state = stub
    assert client.list_models() == [MODEL]
    pieces, reply = _chat(client)
    assert pieces == state.pieces
    assert reply.text == "".join(state.pieces)
    stats = reply.stats
    assert stats.stop_reason is StopReason.EOS and stats.error is None
    assert (stats.prompt_tokens, stats.completion_tokens) == (11, len(state.pieces))  # the server's usage
    assert (stats.server, stats.model) == ("Stub", MODEL)
    request = state.requests[-1]
    assert request.headers["authorization"] == "Bearer k-123"
    assert request.body["messages"] == HI and request.body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize(
    ("mode", "kind", "words"),
    [
        ("401", "auth", "refused the request (401 Unauthorized): the API key is missing or wrong"),
        ("404", "not_found", f"Stub has no model {MODEL!r} (404 Not Found)"),
        ("429", "rate_limited", "Stub is busy (429 Too Many Requests): try again in 7 s"),
        ("html", "not_openai", "not an OpenAI-compatible chat reply (text/html"),
    ],
)
def test_a_refusal_before_any_text_is_a_specific_error(
    stub: tuple[str, StubState], client: RemoteClient, mode: str, kind: str, words: str
) -> None:
    stub[1].mode = mode
    with pytest.raises(RemoteError) as caught:
        _chat(client)
    assert caught.value.kind == kind and caught.value.server == "Stub"
    assert words in str(caught.value)
    if mode == "429":
        assert caught.value.retry_after == 7.0


def test_a_stream_cut_mid_reply_keeps_the_part_received(
    stub: tuple[str, StubState], client: RemoteClient
) -> None:
    _, state = stub
    state.mode = "cut"
    pieces, reply = _chat(client)
    assert pieces == state.pieces[:2]
    assert reply.text == "".join(state.pieces[:2])
    stats = reply.stats
    assert stats.stop_reason is StopReason.ERROR and stats.interrupted
    assert stats.error.startswith("The connection to Stub was cut during the reply")


def test_a_completion_sent_whole_instead_of_streamed_is_still_read(
    stub: tuple[str, StubState], client: RemoteClient
) -> None:
    stub[1].mode = "json"
    pieces, reply = _chat(client)
    assert pieces == ["whole"] and reply.stats.prompt_tokens == 3


def test_stop_closes_a_stream_that_is_waiting_for_the_server(
    stub: tuple[str, StubState], client: RemoteClient
) -> None:
    _, state = stub
    state.mode = "hold"
    stop = threading.Event()
    result: list[tuple[list[str], RemoteReply]] = []
    worker = threading.Thread(target=lambda: result.append(_chat(client, stop)))
    worker.start()
    assert state.holding.wait(10)
    stop.set()
    client.abort()
    worker.join(10)
    assert not worker.is_alive()
    assert state.left.wait(10)  # the server saw the connection close
    _pieces, reply = result[0]
    assert reply.stats.stop_reason is StopReason.USER and reply.text in ("", state.pieces[0])


def test_a_model_list_that_is_not_one_is_refused(stub: tuple[str, StubState], client: RemoteClient) -> None:
    stub[1].models_mode = "html"
    with pytest.raises(RemoteError) as caught:
        client.list_models()
    assert caught.value.kind == "not_openai" and "Router login" in str(caught.value)
    stub[1].models_mode = "401"
    status = check_server(RemoteServer(name="Stub", url=stub[0]), None)
    assert not status.reachable and status.kind == "auth"


def test_nothing_listening_and_a_tls_mismatch_are_told_apart(stub: tuple[str, StubState]) -> None:
    dead = check_server(RemoteServer(name="Dead", url=f"http://127.0.0.1:{free_port()}"), None)
    assert not dead.reachable and dead.kind == "unreachable"
    assert dead.error.startswith("Dead (http://127.0.0.1:") and "cannot be reached" in dead.error
    tls = check_server(RemoteServer(name="Plain", url=stub[0].replace("http:", "https:")), None)
    assert not tls.reachable and tls.kind == "tls"
    assert tls.error.startswith("The secure connection to Plain failed")


def test_a_reasoning_field_is_handed_on_as_thinking_the_splitter_separates(
    stub: tuple[str, StubState], client: RemoteClient
) -> None:
    _, state = stub
    state.mode = "think"
    pieces, reply = _chat(client)
    splitter = ReasoningSplitter()
    events = [event for piece in pieces for event in splitter.feed(piece)] + splitter.finish()
    assert splitter.thinking == "Plan it."
    assert "".join(text for kind, text in events if kind == "answer") == "".join(state.pieces)
    assert reply.stats.stop_reason is StopReason.EOS
