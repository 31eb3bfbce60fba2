"""Remote servers that misbehave on purpose (real HTTP on 127.0.0.1): never a crash, a hang, a leak
of the API key, or memory spent on what a server piles up; always a specific message."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llamadesk.engine.engine import StopReason
from llamadesk.remote import client as client_module
from llamadesk.remote.client import MAX_LIST_BYTES, MAX_MODELS, RemoteClient, RemoteReply
from llamadesk.remote.errors import RemoteError
from llamadesk.remote.transport import MAX_BODY, MAX_EVENT
from llamadesk.settings import GenerationSettings
from remote_stub import RawRequest, RawState, head, running_raw, send

Answer = Callable[[socket.socket, RawRequest, RawState], None]
MB = 1 << 20
KEY = "sk-hostile-test-key-4711"
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def raw(request: pytest.FixtureRequest) -> Iterator[tuple[str, RawState]]:
    with running_raw(request.param) as running:
        yield running


def _json(conn: socket.socket, state: RawState, body: bytes, status: str = "200 OK", extra: str = "") -> None:
    send(conn, state, head(status, "application/json", extra, len(body)) + body)


def _models(ids: list[Any]) -> bytes:
    return json.dumps({"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}).encode()


def _flood(conn: socket.socket, state: RawState, start: bytes, filler: bytes) -> None:
    """``start`` then ``filler`` without end, until the client leaves (a write fails)."""
    send(conn, state, start)
    while not state.done.is_set():
        send(conn, state, filler)


def _chat(url: str, **kwargs: Any) -> tuple[RemoteReply, list[str]]:
    pieces: list[str] = []
    with RemoteClient(url, name="Hostile", api_key=KEY, **kwargs) as client:
        reply = client.chat("m", MESSAGES, GenerationSettings(), on_text=pieces.append)
    return reply, pieces


def _event_stream(conn: socket.socket, state: RawState, *events: bytes) -> None:
    send(conn, state, head("200 OK", "text/event-stream") + b"".join(events))


# --- the model list -------------------------------------------------------------------------------------


def _gigabyte(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _flood(conn, state, head("200 OK", "application/json", length=1 << 30) + b'{"data": [', b" " * MB)


@pytest.mark.parametrize("raw", [_gigabyte], indirect=True)
def test_a_model_list_of_a_gigabyte_is_cut_off_early(raw: tuple[str, RawState]) -> None:
    url, state = raw
    with RemoteClient(url, name="Hostile") as client, pytest.raises(RemoteError) as caught:
        client.list_models()
    assert caught.value.kind == "not_openai" and "more than 8 MB" in str(caught.value)
    assert state.sent < 64 * MB  # read in parts and dropped: not a gigabyte in memory


def _million(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _json(conn, state, _models([f"model-{n}" for n in range(1_000_000)]))


@pytest.mark.parametrize("raw", [_million], indirect=True)
def test_a_million_models_are_refused_as_too_large(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    with RemoteClient(url, name="Hostile") as client, pytest.raises(RemoteError, match="more than 8 MB"):
        client.list_models()


def _many(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _json(conn, state, _models([f"m{n}" for n in range(MAX_MODELS * 3)]))


@pytest.mark.parametrize("raw", [_many], indirect=True)
def test_a_long_model_list_offers_its_first_models(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    with RemoteClient(url, name="Hostile") as client:
        models = client.list_models()
    assert models == [f"m{n}" for n in range(MAX_MODELS)]


BAD_IDS: list[Any] = [
    "two\nlines",
    "bell\x07",
    "evil\u202etxt.exe",
    "zero\u200bwidth",
    "x" * 10_000,
    " padded ",
    "",
    7,
    None,
    ["list"],
    {"nested": "id"},
    True,
]


def _mixed(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _json(conn, state, _models(["good/model-7b", *BAD_IDS, "другая-модель"]))


@pytest.mark.parametrize("raw", [_mixed], indirect=True)
def test_model_ids_that_cannot_be_shown_are_left_out(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    with RemoteClient(url, name="Hostile") as client:
        assert client.list_models() == ["good/model-7b", "другая-модель"]


def _only_bad(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _json(conn, state, _models(BAD_IDS))


def _deep(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _json(conn, state, b'{"data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def _not_utf8(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _json(conn, state, b'{"data": [{"id": "\xff\xfe\xc3"}]}')


def _data_is_a_dict(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _json(conn, state, b'{"data": {"id": "m"}}')


@pytest.mark.parametrize("raw", [_only_bad, _deep, _not_utf8, _data_is_a_dict], indirect=True)
def test_a_model_list_of_nothing_usable_is_a_specific_error(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    with RemoteClient(url, name="Hostile") as client, pytest.raises(RemoteError) as caught:
        client.list_models()
    assert caught.value.kind == "not_openai" and "Hostile" in str(caught.value)


# --- silence and trickles -------------------------------------------------------------------------------


def _silent(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    state.done.wait()


@pytest.mark.parametrize("raw", [_silent], indirect=True)
def test_a_server_that_never_answers_times_out_with_a_clear_message(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    with (
        RemoteClient(url, name="Hostile", read_timeout_s=0.5) as client,
        pytest.raises(RemoteError, match="did not answer in time"),
    ):
        client.list_models()
    with pytest.raises(RemoteError, match="did not answer in time"):
        _chat(url, read_timeout_s=0.5)


def _trickle_list(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    send(conn, state, head("200 OK", "application/json", length=1 << 20))
    while not state.done.wait(0.05):  # a byte at a time, each well within the read timeout
        send(conn, state, b" ")


@pytest.mark.parametrize("raw", [_trickle_list], indirect=True)
def test_a_model_list_trickled_a_byte_at_a_time_still_ends_at_its_deadline(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    with (
        RemoteClient(url, name="Hostile", read_timeout_s=1.0) as client,
        pytest.raises(RemoteError, match="took too long"),
    ):
        client.list_models()


@pytest.mark.parametrize("raw", [_silent], indirect=True)
def test_stop_ends_a_request_still_waiting_for_the_first_byte(raw: tuple[str, RawState]) -> None:
    url, state = raw
    stop = threading.Event()
    outcome: list[object] = []
    client = RemoteClient(url, name="Hostile", read_timeout_s=600)

    def work() -> None:
        try:
            outcome.append(client.chat("m", MESSAGES, GenerationSettings(), on_text=print, stop=stop))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    assert state.received.wait(30)
    stop.set()
    client.abort()
    thread.join(60)  # without the fix: 600 s
    client.close()
    assert not thread.is_alive()
    reply = outcome[0]
    assert isinstance(reply, RemoteReply) and reply.stats.stop_reason is StopReason.USER


def _trickle_stream(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    piece = {"choices": [{"index": 0, "delta": {"content": "first"}, "finish_reason": None}]}
    _event_stream(conn, state, b"data: " + json.dumps(piece).encode() + b"\n\n")
    while not state.done.wait(0.2):
        send(conn, state, b"x")


@pytest.mark.parametrize("raw", [_trickle_stream], indirect=True)
def test_stop_ends_a_stream_that_trickles_one_byte_at_a_time(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    stop = threading.Event()
    client = RemoteClient(url, name="Hostile")

    def on_text(text: str) -> None:  # Stop as soon as the first piece is shown, from another thread
        threading.Thread(target=lambda: (stop.set(), client.abort()), daemon=True).start()

    with client:
        reply = client.chat("m", MESSAGES, GenerationSettings(), on_text=on_text, stop=stop)
    assert reply.text == "first" and reply.stats.stop_reason is StopReason.USER


# --- streams too big, and of the wrong shape ------------------------------------------------------------


def _endless_line(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _flood(conn, state, head("200 OK", "text/event-stream") + b"data: ", b"a" * MB)


def _huge_event(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    event = b'data: {"choices": [{"delta": {"content": "' + b"a" * (100 * MB) + b'"}}]}\n\n'
    _event_stream(conn, state, event)


def _huge_multiline_event(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _flood(conn, state, head("200 OK", "text/event-stream"), b"data: aaaaaaaa\n" * 65536)


@pytest.mark.parametrize("raw", [_endless_line, _huge_event, _huge_multiline_event], indirect=True)
def test_an_event_without_end_is_cut_at_its_limit(raw: tuple[str, RawState]) -> None:
    url, state = raw
    with pytest.raises(RemoteError) as caught:
        _chat(url)
    assert caught.value.kind == "not_openai" and f"more than {MAX_EVENT // MB} MB" in str(caught.value)
    assert state.sent < 64 * MB


def _chunks(*payloads: object) -> Answer:
    def answer(conn: socket.socket, _: RawRequest, state: RawState) -> None:
        events = [b"data: " + json.dumps(p).encode() + b"\n\n" for p in payloads]
        _event_stream(conn, state, *events, b"data: [DONE]\n\n")

    return answer


def _choice(delta: object, finish: object = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


@pytest.mark.parametrize(
    "raw",
    [
        _chunks({"id": "x"}),
        _chunks({"choices": "nope"}),
        _chunks(_choice({"content": ["a", "list"]})),
        _chunks(_choice({"content": 42})),
        _chunks(_choice({"content": {"text": "x"}})),
        _chunks(_choice({"reasoning_content": 3.5})),
        _chunks(["not", "an", "object"]),
        _chunks(None),
    ],
    indirect=True,
)
def test_chunks_of_another_shape_are_a_specific_error(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    with pytest.raises(RemoteError) as caught:
        _chat(url)
    assert "Hostile" in str(caught.value) and caught.value.kind in ("not_openai", "cut")


@pytest.mark.parametrize(
    "raw", [_chunks(_choice(None), _choice({"content": "ok"}), _choice({}, "stop"))], indirect=True
)
def test_a_null_delta_is_an_empty_piece(raw: tuple[str, RawState]) -> None:
    reply, pieces = _chat(raw[0])
    assert pieces == ["ok"] and reply.stats.stop_reason is StopReason.EOS


# --- redirects ------------------------------------------------------------------------------------------


def _ok_list(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _json(conn, state, _models(["elsewhere"]))


@pytest.mark.parametrize("status", ["301 Moved Permanently", "302 Found", "307 Temporary Redirect"])
def test_a_redirect_is_not_followed_so_the_key_stays_home(status: str) -> None:
    with running_raw(_ok_list) as (other_url, other):
        target = other_url.replace("127.0.0.1", "localhost") + "/v1/models"

        def redirect(conn: socket.socket, _: RawRequest, state: RawState) -> None:
            _json(conn, state, b"{}", status, f"Location: {target}\r\n")

        with running_raw(redirect) as (url, _):
            with (
                RemoteClient(url, name="Hostile", api_key=KEY) as client,
                pytest.raises(RemoteError) as caught,
            ):
                client.list_models()
            with pytest.raises(RemoteError) as chat_caught:
                _chat(url)
    assert other.requests == []  # neither the key nor the conversation went to the other host
    for error in (caught.value, chat_caught.value):
        assert "redirects to" in str(error) and KEY not in str(error)


@pytest.mark.parametrize("location", ["file:///etc/passwd", "gopher://x/", "http://user:pw@h/\x1b[31m"])
def test_a_redirect_to_another_scheme_is_a_clear_message(location: str) -> None:
    def redirect(conn: socket.socket, _: RawRequest, state: RawState) -> None:
        _json(conn, state, b"{}", "302 Found", f"Location: {location}\r\n")

    with (
        running_raw(redirect) as (url, _),
        RemoteClient(url, name="Hostile") as client,
        pytest.raises(RemoteError, match="redirects to") as caught,
    ):
        client.list_models()
    assert "pw" not in str(caught.value) and "\x1b" not in str(caught.value)


# --- errors with hostile bodies and headers -------------------------------------------------------------


def _unauthorized_flood(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    _flood(conn, state, head("401 Unauthorized", "text/plain", length=1 << 30), b"no " * (MB // 3))


@pytest.mark.parametrize("raw", [_unauthorized_flood], indirect=True)
def test_a_401_with_a_huge_body_is_not_read_whole(raw: tuple[str, RawState]) -> None:
    url, state = raw
    with pytest.raises(RemoteError, match=f"more than {MAX_BODY // MB} MB"):
        _chat(url)
    assert state.sent < 64 * MB


def _echo_key(conn: socket.socket, request: RawRequest, state: RawState) -> None:
    said = json.dumps({"error": {"message": f"bad key {request.headers.get('authorization')}"}})
    _json(conn, state, said.encode(), "401 Unauthorized")


def _echo_key_as_list(conn: socket.socket, request: RawRequest, state: RawState) -> None:
    _json(conn, state, json.dumps({"data": request.headers.get("authorization")}).encode())


@pytest.mark.parametrize("raw", [_echo_key, _echo_key_as_list], indirect=True)
def test_a_server_that_echoes_the_key_does_not_get_it_shown(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    with RemoteClient(url, name="Hostile", api_key=KEY) as client, pytest.raises(RemoteError) as caught:
        client.list_models()
    assert KEY not in str(caught.value) and "[API key]" in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        ("1e30", None),
        ("-5", None),
        ("inf", None),
        ("nan", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", None),  # in the past
        ("Fri, 31 Dec 9999 23:59:59 GMT", None),
        ("soon", None),
        ("9" * 400, None),
    ],
)
def test_retry_after_is_taken_only_when_it_makes_sense(value: str, expected: float | None) -> None:
    def busy(conn: socket.socket, _: RawRequest, state: RawState) -> None:
        _json(
            conn,
            state,
            b'{"error": {"message": "slow down"}}',
            "429 Too Many Requests",
            f"Retry-After: {value}\r\n",
        )

    with running_raw(busy) as (url, _), pytest.raises(RemoteError) as caught:
        _chat(url)
    assert caught.value.kind == "rate_limited" and caught.value.retry_after == expected
    assert len(str(caught.value)) < 300
    if expected is None:
        assert "try again in a moment" in str(caught.value)


def test_limits_are_above_what_real_answers_need() -> None:
    assert MAX_LIST_BYTES <= MAX_BODY and client_module.MAX_MODEL_ID >= 128


# --- the key and the address in the logs, errors and settings -------------------------------------------


def test_the_api_key_is_in_no_log_message_or_settings_file(
    llamadesk_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from llamadesk.cli import main

    with running_raw(_echo_key) as (url, _):
        status = main(["servers", "add", url, "--name", "Echo", "--api-key", KEY])
        assert status != 0
        main(["servers", "add", url, "--name", "Echo", "--api-key", KEY, "--no-check"])
        main(["servers", "list"])
        main(["chat", "--server", "Echo", "-m", "m", "Hi"])
    out, err = capsys.readouterr()
    assert "[API key]" in out + err
    assert KEY not in out + err
    checked = set()
    for path in llamadesk_home.rglob("*"):
        if path.is_file() and not path.name.startswith("remote_key."):  # the key's own secret file
            assert KEY.encode() not in path.read_bytes(), path
            checked.add(path.name)
    assert {"settings.json", "llamadesk.log"} <= checked


def test_a_password_in_the_address_is_refused_and_never_shown() -> None:
    from llamadesk.remote.registry import add_server

    with pytest.raises(RemoteError, match="no password") as caught:
        add_server([], "http://alice:hunter2secret@127.0.0.1:8080")
    assert "hunter2secret" not in str(caught.value)
    with pytest.raises(RemoteError) as caught:
        RemoteClient("http://alice:hunter2secret@[bad")
    assert "hunter2secret" not in str(caught.value)


def _shouting(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    said = {"error": {"message": "bad \x1b[2J\x1b]0;owned\x07 \u202eyek \u2028" + "z" * 10_000}}
    _json(conn, state, json.dumps(said).encode(), "500 Internal Server Error")


@pytest.mark.parametrize("raw", [_shouting], indirect=True)
def test_a_servers_words_cannot_hide_or_reorder_the_message(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    with pytest.raises(RemoteError) as caught:
        _chat(url)
    message = str(caught.value)
    assert message.startswith("Hostile answered 500") and "bad" in message
    assert not any(c in message for c in "\x1b\x07\u202e\u2028") and len(message) < 1000


def _trickle_head(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    send(conn, state, b"HTTP/1.1 200 OK\r\n")
    while not state.done.wait(0.05):  # a header that never ends, a byte at a time
        send(conn, state, b"X")


@pytest.mark.parametrize("raw", [_trickle_head], indirect=True)
def test_headers_trickled_a_byte_at_a_time_still_end_at_the_deadline(raw: tuple[str, RawState]) -> None:
    url, _ = raw
    with (
        RemoteClient(url, name="Hostile", connect_timeout_s=0.5, read_timeout_s=0.5) as client,
        pytest.raises(RemoteError, match="did not answer in time"),
    ):
        client.list_models()
    with pytest.raises(RemoteError, match="did not answer in time"):
        _chat(url, connect_timeout_s=0.5, read_timeout_s=0.5)


def _endless_reply(conn: socket.socket, _: RawRequest, state: RawState) -> None:
    piece = b"data: " + json.dumps(_choice({"content": "la "})).encode() + b"\n\n"
    _flood(conn, state, head("200 OK", "text/event-stream") + piece, piece * 100)


@pytest.mark.parametrize("raw", [_endless_reply], indirect=True)
def test_a_reply_that_never_ends_is_cut_and_its_text_kept(
    raw: tuple[str, RawState], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "MAX_REPLY_CHARS", 3000)
    reply, pieces = _chat(raw[0])
    assert reply.stats.interrupted and reply.stats.stop_reason is StopReason.ERROR
    assert "without ending the reply" in (reply.stats.error or "")
    assert reply.text == "".join(pieces) == "la " * 1000
