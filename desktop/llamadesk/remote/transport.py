"""The HTTP transport of remote servers: limits on what a server may send, and sockets Stop can close.

A hostile or broken server must not exhaust memory or hold a reply forever: a response body that is
not an event stream is cut at :data:`MAX_BODY` bytes (and at its deadline), a server-sent event at
:data:`MAX_EVENT` bytes. Every connection is new (no keep-alive) and remembered while it is open, so
:meth:`GuardedTransport.abort` can end a request that is still waiting for the server's first byte.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2

__all__ = ["MAX_BODY", "MAX_EVENT", "GuardedTransport", "ResponseLimitError"]

MAX_BODY = 16 << 20  # a model list or a whole completion is far smaller
MAX_EVENT = 8 << 20  # one server-sent event (one token, usually a few dozen bytes)

log = logging.getLogger(__name__)


class ResponseLimitError(httpx2.TransportError):
    """A server sent more than a response of its kind can hold, or took longer than allowed to send it."""


class _GuardedStream(httpx2.SyncByteStream):
    """A response body that raises :class:`ResponseLimitError` past its limits."""

    def __init__(self, inner: httpx2.SyncByteStream, events: bool, deadline: float | None) -> None:
        self._inner = inner
        self._events = events
        self._deadline = deadline

    def __iter__(self) -> Iterator[bytes]:
        total = 0  # bytes since the body began (or, in an event stream, since the last event ended)
        tail = b""
        for chunk in self._inner:
            if self._events:
                seen = tail + chunk
                end = max(seen.rfind(b"\n\n"), seen.rfind(b"\r\n\r\n"), seen.rfind(b"\r\r"))
                total = len(seen) - end if end >= 0 else total + len(chunk)
                tail = seen[-3:]
                if total > MAX_EVENT:
                    raise ResponseLimitError(f"a reply event of more than {MAX_EVENT >> 20} MB")
            else:
                total += len(chunk)
                if total > MAX_BODY:
                    raise ResponseLimitError(f"a response of more than {MAX_BODY >> 20} MB")
                if self._deadline is not None and time.monotonic() > self._deadline:
                    raise ResponseLimitError("a response that took too long to arrive")
            yield chunk

    def close(self) -> None:
        self._inner.close()


class GuardedTransport(httpx2.BaseTransport):
    """httpx's transport with the limits above. ``head_timeout_s`` bounds the wait for a response's
    status and headers, ``body_timeout_s`` the reading of a whole non-event body (httpx's own timeouts
    bound each read, which a server sending a byte at a time never exceeds)."""

    def __init__(self, *, head_timeout_s: float | None = None, body_timeout_s: float | None = None) -> None:
        self._inner = httpx2.HTTPTransport(limits=httpx2.Limits(max_keepalive_connections=0), retries=0)
        self._head_timeout_s = head_timeout_s
        self._body_timeout_s = body_timeout_s
        self._lock = threading.Lock()
        self._sockets: list[Any] = []
        self._aborted = False

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        mine: list[socket.socket] = []
        expired = threading.Event()

        def trace(name: str, info: dict[str, Any]) -> None:
            if name != "connection.connect_tcp.complete":
                return
            network = info.get("return_value")
            sock = network.get_extra_info("socket") if network is not None else None
            if sock is None:
                return
            with self._lock:
                self._sockets.append(sock)
                mine.append(sock)
                shut = self._aborted or expired.is_set()
            if shut:
                _shut(sock)

        def expire() -> None:
            with self._lock:
                expired.set()
                sockets = list(mine)
            for sock in sockets:
                _shut(sock)

        request.extensions["trace"] = trace
        timer = None
        if self._head_timeout_s is not None:
            timer = threading.Timer(self._head_timeout_s, expire)
            timer.daemon = True
            timer.start()
        try:
            response = self._inner.handle_request(request)
        except httpx2.TransportError as exc:
            if expired.is_set():
                raise httpx2.ReadTimeout("no complete answer in time", request=request) from exc
            raise
        finally:
            if timer is not None:
                timer.cancel()
        events = "text/event-stream" in response.headers.get("content-type", "")
        deadline = None if self._body_timeout_s is None else time.monotonic() + self._body_timeout_s
        assert isinstance(response.stream, httpx2.SyncByteStream)
        response.stream = _GuardedStream(response.stream, events, deadline)
        return response

    def abort(self) -> None:
        """Shut down every connection opened so far (a request waiting on one ends at once), and any
        opened from now on."""
        with self._lock:
            sockets, self._sockets = list(self._sockets), []
            self._aborted = True
        for sock in sockets:
            _shut(sock)

    def reopen(self) -> None:
        """Let new connections live again after :meth:`abort` (the next request of the same client)."""
        with self._lock:
            self._aborted = False

    def close(self) -> None:
        self._inner.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed
        log.debug("shutting down a closed connection", exc_info=True)
