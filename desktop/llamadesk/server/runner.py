"""Run the API server with uvicorn on a thread of its own, for the window, the CLI and the tests.

The socket is bound before the thread starts, so a port in use or an address this computer does
not have is a :class:`~.config.ServerError` at once, and ``port=0`` gives a free port
(``server.port`` tells which). ``stop()`` stops the server's own jobs (their streams end within a
token), lets uvicorn close its connections and joins the thread.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
from collections.abc import Callable
from typing import Any

from ..engine.service import InferenceService, LoadedModel
from ..settings import Settings
from .app import ServerContext, build_app
from .config import ServerConfig, ServerError, is_wildcard
from .history import History

log = logging.getLogger(__name__)

__all__ = ["LocalServer"]

GRACE_S = 2


def _bind(host: str, port: int) -> socket.socket:
    name = host.strip().strip("[]")
    try:
        infos = socket.getaddrinfo(name or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServerError(
            f"The address {host!r} is not one this computer can listen on ({exc.strerror})."
        ) from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6 and is_wildcard(host):
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServerError(
                f"Port {port} on {host} is already in use by another program: choose another port."
            ) from None
        raise ServerError(f"Cannot listen on {host}:{port}: {exc.strerror or exc}.") from None
    sock.setblocking(False)
    return sock


class LocalServer:
    """One running API server over ``service``; ``start()`` then ``stop()``."""

    def __init__(
        self,
        service: InferenceService,
        config: ServerConfig,
        *,
        settings: Callable[[], Settings] = Settings,
        library: Callable[[], Any] | None = None,
        history: History | None = None,
        on_request: Callable[[int], None] | None = None,
        on_model_loaded: Callable[[LoadedModel], None] | None = None,
    ) -> None:
        """``on_request(served)`` after each request; ``on_model_loaded(model)`` when a request loaded a
        model (both on the server's thread)."""
        config.check()
        self.config = config
        self.service = service
        self.context = ServerContext(
            service,
            config,
            settings=settings,
            library=library,
            history=history,
            on_model_loaded=on_model_loaded,
        )
        self.app = build_app(self.context, on_request)
        self.port = config.port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.error: BaseException | None = None

    @property
    def served(self) -> int:
        """Requests answered so far."""
        return self.app.served

    @property
    def url(self) -> str:
        """The base URL clients use (``http://127.0.0.1:8642/v1``)."""
        host = self.config.host.strip()
        if is_wildcard(host):
            host = "127.0.0.1"
        elif ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Bind and serve on a background thread; :class:`ServerError` when the address can't be used."""
        import uvicorn

        self._socket = _bind(self.config.host, self.config.port)
        self.port = int(self._socket.getsockname()[1])
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=GRACE_S,
            server_header=False,
            date_header=False,
            loop="asyncio",
            http="h11",
            ws="none",
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="llamadesk-api-server", daemon=True)
        self._thread.start()
        log.info("API server listening on %s", self.url)

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None
        try:
            asyncio.run(self._server.serve(sockets=[self._socket]))
        except BaseException as exc:  # reported by stop() and the log, never a crash of the app
            self.error = exc
            log.exception("the API server stopped with an error")
        finally:
            self._socket.close()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop serving; True when the thread ended within ``timeout`` seconds."""
        if self._server is None or self._thread is None:
            self.context.close()
            return True
        self._server.should_exit = True
        self.service.stop_all(self.config.client)
        self._thread.join(timeout)
        ended = not self._thread.is_alive()
        if not ended:
            self._server.force_exit = True
            self._thread.join(1.0)
            ended = not self._thread.is_alive()
        self.context.close()
        log.info("API server on port %s stopped after %s requests", self.port, self.served)
        return ended
