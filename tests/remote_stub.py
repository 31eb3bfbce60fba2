"""A small OpenAI-compatible server on 127.0.0.1 that misbehaves on request, for the remote-server tests.

``mode`` picks how ``POST /v1/chat/completions`` answers: "ok" (streams ``pieces`` then stops),
"cut" (streams two pieces, then the connection drops mid-body), "hold" (streams one piece, then
waits for ``release`` or the client to leave), "401", "404", "429" (with ``Retry-After: 7``),
"html" (200 with a web page), "json" (one non-streamed completion), "think" (``reasoning_content``
first, then the pieces). ``models_mode`` does the same
for ``GET /v1/models``: "ok", "html", "401". ``requests`` records each request's path, headers and
JSON body; ``key`` makes it require that API key.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODEL = "stub-model"
PIECES = ["Hello", " from", " the", " stub", "."]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StubState:
    mode: str = "ok"
    models_mode: str = "ok"
    key: str = ""  # when set, requests without "Authorization: Bearer KEY" get 401
    pieces: list[str] = field(default_factory=lambda: list(PIECES))
    requests: list[Recorded] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    holding: threading.Event = field(default_factory=threading.Event)  # set once "hold" sent its piece
    left: threading.Event = field(default_factory=threading.Event)  # a held client went away


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    state: StubState

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _record(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.state.requests.append(Recorded(self.command, self.path, headers, body))
        return body

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = json.dumps({"error": {"message": message, "type": "stub", "code": status}}).encode()
        self._send(status, body, "application/json", headers)

    def _refused(self) -> bool:
        if self.state.key and self.headers.get("Authorization") != f"Bearer {self.state.key}":
            self._error(401, "invalid api key")
            return True
        return False

    def do_GET(self) -> None:
        self._record()
        if self._refused():
            return
        mode = self.state.models_mode
        if self.path.rstrip("/") != "/v1/models":
            self._error(404, "no such path")
        elif mode == "html":
            self._send(200, b"<html><body>Router login</body></html>", "text/html")
        elif mode == "401":
            self._error(401, "invalid api key")
        else:
            data = {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "stub"}]}
            self._send(200, json.dumps(data).encode(), "application/json")

    def do_POST(self) -> None:
        body = self._record()
        if self._refused():
            return
        mode = self.state.mode
        if mode == "401":
            self._error(401, "invalid api key")
        elif mode == "404":
            self._error(404, f"model {body.get('model')!r} not found")
        elif mode == "429":
            self._error(429, "slow down", {"Retry-After": "7"})
        elif mode == "html":
            self._send(200, b"<html><body>Captive portal</body></html>", "text/html")
        elif mode == "json":
            data = {
                "id": "x",
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "whole"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            }
            self._send(200, json.dumps(data).encode(), "application/json")
        else:
            self._stream(mode)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: dict[str, Any] | str) -> None:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        self._chunk(f"data: {text}\n\n".encode())

    def _piece(self, text: str, finish: str | None = None, field: str = "content") -> None:
        delta = {field: text} if text else {}
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        self._event({"id": "c", "object": "chat.completion.chunk", "model": MODEL, "choices": [choice]})

    def _stream(self, mode: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if mode == "cut":
                for piece in self.state.pieces[:2]:
                    self._piece(piece)
                self.connection.shutdown(socket.SHUT_RDWR)  # the body never ends properly
                return
            if mode == "hold":
                self._piece(self.state.pieces[0])
                self.state.holding.set()
                while not self.state.release.wait(0.05):
                    if _gone(self.connection):
                        self.state.left.set()
                        return
                return
            if mode == "think":  # a reasoning model: its thinking in its own field first
                self._piece("Plan", field="reasoning_content")
                self._piece(" it.", field="reasoning_content")
            for piece in self.state.pieces:
                self._piece(piece)
            self._piece("", "stop")
            usage = {"prompt_tokens": 11, "completion_tokens": len(self.state.pieces), "total_tokens": 0}
            self._event({"id": "c", "object": "chat.completion.chunk", "choices": [], "usage": usage})
            self._event("[DONE]")
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError):
            self.state.left.set()


def _gone(connection: socket.socket) -> bool:
    """True when the client closed its end (a read would return nothing)."""
    import select

    readable, _, _ = select.select([connection], [], [], 0)
    if not readable:
        return False
    try:
        return connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


@contextmanager
def running_stub() -> Iterator[tuple[str, StubState]]:
    """The stub on a free port: its base URL (without /v1) and its state; stopped afterwards."""
    state = StubState()
    handler = type("Handler", (_Handler,), {"state": state})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="remote-stub", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", state
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(10)


def free_port() -> int:
    """A port of 127.0.0.1 with nothing listening on it (for "unreachable")."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- a raw server for hostile answers: each connection is handed to a test's own function --------------


@dataclass
class RawRequest:
    """One request a :func:`running_raw` server received: its request line, headers and body."""

    line: str
    headers: dict[str, str]
    body: bytes


@dataclass
class RawState:
    requests: list[RawRequest] = field(default_factory=list)
    accepted: threading.Event = field(default_factory=threading.Event)  # a connection came in
    received: threading.Event = field(default_factory=threading.Event)  # a whole request came in
    sent: int = 0  # bytes written by the answer functions (``send`` counts them)
    done: threading.Event = field(default_factory=threading.Event)  # the server is stopping


def read_request(conn: socket.socket) -> RawRequest | None:
    """The next HTTP request on ``conn`` (None when the client left first)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length") or 0)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        body += chunk
    return RawRequest(lines[0], headers, body)


@contextmanager
def running_raw(answer: Any) -> Iterator[tuple[str, RawState]]:
    """A server on a free port that reads each request and calls ``answer(conn, request, state)``
    to write whatever it likes; its base URL and state. ``answer`` should end when ``state.done``
    is set or the client leaves (a write then fails)."""
    state = RawState()
    listener = socket.create_server(("127.0.0.1", 0))
    threads: list[threading.Thread] = []

    def serve(conn: socket.socket) -> None:
        with conn:
            try:
                request = read_request(conn)
                if request is None:
                    return
                state.requests.append(request)
                state.received.set()
                answer(conn, request, state)
            except OSError:
                pass

    def accept() -> None:
        while not state.done.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            state.accepted.set()
            thread = threading.Thread(target=serve, args=(conn,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, name="raw-stub", daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", state
    finally:
        state.done.set()
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        listener.close()
        acceptor.join(10)
        for thread in threads:
            thread.join(10)


def send(conn: socket.socket, state: RawState, data: bytes) -> None:
    """Write ``data`` to the client, counting it in ``state.sent``."""
    conn.sendall(data)
    state.sent += len(data)


def head(status: str, content_type: str, extra: str = "", length: int | None = None) -> bytes:
    """An HTTP/1.1 response head; without ``length`` the body ends when the connection closes."""
    text = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nConnection: close\r\n{extra}"
    if length is not None:
        text += f"Content-Length: {length}\r\n"
    return (text + "\r\n").encode()
