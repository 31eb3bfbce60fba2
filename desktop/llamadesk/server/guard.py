"""The door of the server: Host and Origin checks, the API key, CORS, body size, one log line per request.

A pure ASGI middleware (it never buffers a stream). In order:

- a ``Host`` header that names another site is refused (DNS rebinding: a web page on
  attacker.example whose name was re-pointed at 127.0.0.1; Jan's GHSA-x6p8-7cp8-c3p6);
- a browser request from an origin not in the allowed list is refused before it runs; allowed
  origins get CORS headers and their preflight answered (with no list, CORS is off);
- with an API key set, every endpoint but ``/health`` wants ``Authorization: Bearer KEY``;
- a body announced larger than the limit is refused unread.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import ServerConfig
from .errors import error_body

log = logging.getLogger("llamadesk.server.requests")

__all__ = ["Guard", "host_name"]

OPEN_PATHS = {"/health"}


def host_name(header: str) -> str:
    """The host in a ``Host`` header, without the port, lower case (``[::1]:8642`` → ``::1``)."""
    value = header.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value[1:]
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """Wraps the app; counts finished requests and tells ``on_request`` about each one."""

    def __init__(
        self, app: ASGIApp, config: ServerConfig, on_request: Callable[[int], None] | None = None
    ) -> None:
        self.app = app
        self.config = config
        self.on_request = on_request
        self.served = 0
        self._lock = threading.Lock()
        self._hosts = config.allowed_hosts()
        self._key = config.api_key.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        origin = headers.get("origin", "")
        cors = bool(origin) and self.config.allows_origin(origin)

        async def reply(
            code: int, message: str, kind: str, error: str, extra: list[tuple[bytes, bytes]]
        ) -> None:
            nonlocal status
            status = code
            body = error_body(message, kind, error)
            head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            await send(
                {"type": "http.response.start", "status": code, "headers": head + extra + cors_headers}
            )
            await send({"type": "http.response.body", "body": body})

        async def tracked(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if cors:
                    message = {**message, "headers": [*message.get("headers", []), *cors_headers]}
            await send(message)

        cors_headers: list[tuple[bytes, bytes]] = []
        if cors:
            cors_headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        try:
            host = host_name(headers.get("host", ""))
            if self._hosts is not None and host not in self._hosts:
                await reply(
                    403,
                    f"Requests for the host '{host or '(none)'}' are refused: this server answers only to "
                    "its own address (a web page may be trying to reach it through DNS rebinding).",
                    "permission_error",
                    "host_not_allowed",
                    [],
                )
            elif origin and not cors:
                await reply(
                    403,
                    f"Web pages from {origin} may not use this server. Add the origin to the allowed "
                    "origins in Preferences → Server (or --allow-origin) to let them.",
                    "permission_error",
                    "origin_not_allowed",
                    [],
                )
            elif cors and scope["method"] == "OPTIONS":
                status = 204
                wanted = headers.get("access-control-request-headers", "authorization, content-type")
                await send(
                    {
                        "type": "http.response.start",
                        "status": 204,
                        "headers": [
                            *cors_headers,
                            (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
                            (b"access-control-allow-headers", wanted.encode("latin-1")),
                            (b"access-control-max-age", b"600"),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": b""})
            elif self._key and scope["path"] not in OPEN_PATHS and not self._authorized(headers):
                await reply(
                    401,
                    "Missing or wrong API key: send it as 'Authorization: Bearer KEY'.",
                    "authentication_error",
                    "invalid_api_key",
                    [(b"www-authenticate", b'Bearer realm="LlamaDesk"')],
                )
            elif self._too_large(headers.get("content-length", "")):
                await reply(
                    413,
                    f"The request body is larger than {self.config.max_body_bytes:,} bytes.",
                    "invalid_request_error",
                    "request_too_large",
                    [(b"connection", b"close")],
                )
            else:
                await self.app(scope, receive, tracked)
        finally:
            self._finished(scope, status, time.perf_counter() - start)

    def _authorized(self, headers: dict[str, str]) -> bool:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        if scheme.lower() != "bearer":
            token = headers.get("x-api-key", "")
        return hmac.compare_digest(token.strip().encode("utf-8"), self._key)

    def _too_large(self, length: str) -> bool:
        try:
            return int(length) > self.config.max_body_bytes
        except ValueError:
            return False

    def _finished(self, scope: Scope, status: int, elapsed: float) -> None:
        with self._lock:
            self.served += 1
            served = self.served
        client = scope.get("client") or ("-", 0)
        log.info(
            '%s "%s %s" %s %.1f ms', client[0], scope["method"], scope["path"], status or "-", elapsed * 1000
        )
        if self.on_request is not None:
            try:
                self.on_request(served)
            except Exception:
                log.exception("the request counter's listener failed")
