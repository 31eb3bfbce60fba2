"""The local API server inside the app: started, restarted and stopped off the GUI thread.

The server serves the window's own :class:`~llamadesk.engine.service.InferenceService` (the model
loaded in the window, one copy in memory), so the window's chat and API requests take turns.
Binding, importing the web stack and waiting for connections to close all happen on a worker
thread; results come back as queued signals. The status bar shows the address and the number
of requests served.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from ..engine.service import InferenceService
from ..settings import API_KEY_SECRET, ServerSettings, Settings

log = logging.getLogger(__name__)

__all__ = ["ServerController"]


class ServerController(QObject):
    """Runs at most one :class:`~llamadesk.server.runner.LocalServer` for the window.

    Signals:
        started(str): serving at this base URL.
        stopped(): no longer serving.
        failed(str): could not start (the message says why: port in use, address needs a key...).
        requestsServed(int): requests answered so far by the running server.
        model_loaded(str): an API request loaded the model at this path (it replaced the window's):
            the window shows it as loaded (``service.loaded`` holds its details).
    """

    started = Signal(str)
    stopped = Signal()
    failed = Signal(str)
    requestsServed = Signal(int)
    model_loaded = Signal(str)

    # Emitted on worker and server threads; queued to this object on the GUI thread, re-emitted there.
    _started = Signal(str)
    _stopped = Signal()
    _failed = Signal(str)
    _served = Signal(int)
    _loaded = Signal(str)

    def __init__(
        self,
        service: InferenceService,
        settings: Callable[[], Settings],
        *,
        secrets: Any = None,
        library: Callable[[], Any] | None = None,
        database: Path | None = None,
        store: Any = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.service = service
        self._settings = settings
        self._secrets = secrets
        self._library = library
        self._database = database
        self._store = store
        self._server: Any = None
        self._applied: tuple[Any, ...] | None = None
        self._lock = threading.Lock()  # one start or stop at a time, in the order asked
        self._worker: threading.Thread | None = None
        self.url = ""
        self.served = 0
        self.error = ""
        self._started.connect(self._on_started)
        self._stopped.connect(self._on_stopped)
        self._failed.connect(self._on_failed)
        self._served.connect(self._on_served)
        self._loaded.connect(self._on_model_loaded)

    # -- what the window calls

    def api_key(self) -> str:
        if self._secrets is None:
            return ""
        try:
            return str(self._secrets.get(API_KEY_SECRET) or "")
        except Exception:
            log.exception("could not read the API key")
            return ""

    def set_api_key(self, key: str) -> None:
        if self._secrets is None:
            return
        if key:
            self._secrets.set(API_KEY_SECRET, key)
        else:
            self._secrets.delete(API_KEY_SECRET)

    def apply(self) -> None:
        """Start, restart or stop the server to match the settings (returns at once)."""
        wanted = self._settings().server
        key = self.api_key() if wanted.enabled else ""
        fingerprint = (wanted.model_dump_json(), key) if wanted.enabled else None
        if fingerprint == self._applied:
            return
        self._applied = fingerprint
        self._run(lambda: self._restart(wanted if wanted.enabled else None, key))

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the last start or stop to finish (tests, closing); True if it did."""
        worker = self._worker
        if worker is None:
            return True
        worker.join(timeout)
        return not worker.is_alive()

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop serving before the window closes; waits at most ``timeout_s`` seconds."""
        self._applied = None
        self._run(lambda: self._restart(None, "", timeout_s))
        self.wait(timeout_s + 0.5)

    @property
    def running(self) -> bool:
        return self._server is not None

    # -- the worker thread

    def _run(self, task: Callable[[], None]) -> None:
        previous = self._worker

        def run() -> None:
            if previous is not None:
                previous.join()
            task()

        self._worker = threading.Thread(target=run, name="llamadesk-api-control", daemon=True)
        self._worker.start()

    def _restart(self, wanted: ServerSettings | None, key: str, timeout_s: float = 5.0) -> None:
        with self._lock:
            server, self._server = self._server, None
            if server is not None:
                server.stop(timeout=timeout_s)
                self._stopped.emit()
            if wanted is None:
                return
            try:
                self._server = self._start(wanted, key)
            except Exception as exc:  # a ServerError says what to change; anything else is logged
                if not _is_server_error(exc):
                    log.exception("the API server could not start")
                self._failed.emit(str(exc))
                return
            self._started.emit(self._server.url)

    def _start(self, wanted: ServerSettings, key: str) -> Any:
        from ..server.config import ServerConfig
        from ..server.history import History
        from ..server.runner import LocalServer

        config = ServerConfig(
            host=wanted.host,
            port=wanted.port,
            api_key=key,
            allowed_origins=list(wanted.allowed_origins),
            load_on_request=wanted.load_on_request,
            store_requests=wanted.store_requests,
            embedding_model=wanted.embedding_model,
            max_queued=wanted.max_queued,
        )
        history = None
        if wanted.store_requests and (self._store is not None or self._database is not None):
            if self._store is not None:
                store = self._store
                history = History(lambda: store, owns_store=False)
            else:
                from ..chat.store import ConversationStore

                database: Path = self._database  # type: ignore[assignment]  # checked just above
                history = History(lambda: ConversationStore(database))
        server = LocalServer(
            self.service,
            config,
            settings=self._settings,
            library=self._library,
            history=history,
            on_request=self._count,
            on_model_loaded=lambda loaded: self._loaded.emit(str(loaded.path)),
        )
        server.start()
        return server

    def _count(self, served: int) -> None:
        self._served.emit(served)

    # -- back on the GUI thread

    def _on_started(self, url: str) -> None:
        self.url, self.error, self.served = url, "", 0
        self.started.emit(url)

    def _on_stopped(self) -> None:
        self.url = ""
        self.stopped.emit()

    def _on_failed(self, message: str) -> None:
        self.url, self.error = "", message
        self.failed.emit(message)

    def _on_served(self, served: int) -> None:
        self.served = served
        self.requestsServed.emit(served)

    def _on_model_loaded(self, path: str) -> None:
        self.model_loaded.emit(path)


def _is_server_error(exc: BaseException) -> bool:
    from ..server.config import ServerError

    return isinstance(exc, ServerError)


def wire_server(window: Any) -> ServerController:
    """The server controller of a main window: its service, settings, library and history, its
    status in the status bar; started now when the settings say so."""
    from ..hub.library import ModelLibrary

    def library() -> Any:
        folder = window.settings.app.models_dir
        return ModelLibrary(window.paths, models_dir=Path(folder).expanduser() if folder else None)

    controller = ServerController(
        window.controller.service,
        lambda: window.settings,
        secrets=window.secrets,
        library=library,
        store=window.store,
        parent=window,
    )
    status = window.status
    controller.started.connect(lambda url: status.set_server(url, controller.served))
    controller.stopped.connect(lambda: status.set_server(""))
    controller.failed.connect(lambda message: status.set_server("", error=message))
    controller.failed.connect(lambda message: window.show_error(f"The API server could not start: {message}"))
    controller.requestsServed.connect(lambda served: status.set_server(controller.url, served))
    controller.apply()
    return controller


def open_server_tab(window: Any, dialog: Any) -> None:
    """Add the Server tab to the window's Preferences dialog."""
    from .server_preferences import attach_server_tab

    controller: ServerController = window.api_server

    def on_apply(server: ServerSettings, key: str) -> None:
        window.settings = window.settings.model_copy(update={"server": server})
        window.save_settings()
        try:
            controller.set_api_key(key)
        except Exception as exc:  # a keyring that refuses: say so, keep the other settings
            window.show_error(f"The API key could not be saved: {exc}")
        controller.apply()

    attach_server_tab(dialog, window.settings.server, controller.api_key(), on_apply)
