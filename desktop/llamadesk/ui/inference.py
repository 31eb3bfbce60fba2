"""The window's side of the inference service: jobs in, Qt signals out.

The Qt-free :class:`~llamadesk.engine.service.InferenceService` owns the model on its own
thread; this adapter submits the window's loads and replies as jobs and turns their callbacks
(which run on the service thread) into signals delivered on the GUI thread. Stop and cancel
stop the window's own job only; other clients of the same service are not touched.

A model of a remote OpenAI-compatible server (:meth:`InferenceController.use_remote`) answers
through the same signals: each reply streams on a thread of its own, and Stop ends it at once
(the stream is closed; nothing that arrives later is shown).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from ..engine.engine import GenerationStats, StopReason
from ..engine.service import ChatResult, InferenceService, Job, LoadedModel
from ..remote.errors import RemoteError
from ..remote.registry import RemoteModel
from ..settings import GenerationSettings, RuntimeSettings

log = logging.getLogger(__name__)

__all__ = ["EMIT_INTERVAL_S", "InferenceController", "LoadedModel", "remote_loaded"]

EMIT_INTERVAL_S = 0.02
REMOTE_N_CTX = 8192  # assumed for a remote model, whose server does not say: sizes document excerpts
CLIENT = "window"


class _Coalescer:
    """Joins pieces into one signal per frame (~20 ms): the GUI thread wakes less often, which
    keeps it from preempting llama.cpp's compute threads on small CPUs."""

    def __init__(self, emit: Any) -> None:
        self._emit = emit
        self._pending: list[str] = []
        self._last = 0.0
        self._lock = threading.Lock()

    def add(self, piece: str) -> None:
        with self._lock:
            self._pending.append(piece)
            now = time.monotonic()
            if now - self._last < EMIT_INTERVAL_S:
                return
            self._last = now
            text, self._pending = "".join(self._pending), []
        self._emit(text)

    def flush(self) -> None:
        with self._lock:
            text, self._pending = "".join(self._pending), []
        if text:
            self._emit(text)


class InferenceController(QObject):
    """Signals for one window over a shared :class:`InferenceService`.

    A reply ends with exactly one of ``generationFinished(stats)``, ``generationFailed(str)`` or
    ``promptTooLong(str)``: the newest message does not fit in the context, nothing was generated.
    A reply stopped before it began finishes like any stopped reply: no tokens, ``StopReason.USER``.
    """

    modelLoading = Signal(str)
    loadProgress = Signal(float)
    modelLoaded = Signal(object)
    modelLoadFailed = Signal(str)
    modelUnloaded = Signal()
    contextPrepared = Signal(object)
    tokenReceived = Signal(str)
    generationFinished = Signal(object)
    generationFailed = Signal(str)
    promptTooLong = Signal(str)

    # Emitted on the service thread; being queued, they reach this object on the GUI thread.
    _loadDone = Signal(object)
    _chatDone = Signal(object)
    _unloadDone = Signal(object)
    # A remote reply's pieces and end, tagged with its request number (later ones are dropped).
    _remoteText = Signal(int, str)
    _remoteDone = Signal(int, object)

    def __init__(self, service: InferenceService | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._owns_service = service is None
        self.service = service or InferenceService()
        self.loaded: LoadedModel | None = None
        self._load_job: Job | None = None
        self._chat_job: Job | None = None
        self._chat_stopped = False  # this window stopped the reply (maybe before it began)
        self._shut_down = False
        self._loadDone.connect(self._on_load_done)
        self._chatDone.connect(self._on_chat_done)
        self._unloadDone.connect(self._on_unloaded)
        self.remote: RemoteModel | None = None  # the remote model in use instead of a local one
        self._remote_key: str | None = None
        self._remote_run: _RemoteRun | None = None
        self._remote_count = 0
        queued = Qt.ConnectionType.QueuedConnection  # also when emitted here, on Stop
        self._remoteText.connect(self._on_remote_text, queued)
        self._remoteDone.connect(self._on_remote_done, queued)

    @property
    def busy(self) -> bool:
        return self.loading or self.generating

    @property
    def loading(self) -> bool:
        return self._load_job is not None

    @property
    def generating(self) -> bool:
        return self._chat_job is not None or self._remote_run is not None

    def load_model(
        self, path: Path, runtime: RuntimeSettings, *, template_override: str | None = None
    ) -> None:
        """Load ``path`` on the service thread (replacing the current model)."""
        self.remote = None
        self.modelLoading.emit(str(path))
        job = self.service.load(
            Path(path),
            runtime,
            template_override=template_override,
            on_progress=self.loadProgress.emit,
            client=CLIENT,
        )
        self._load_job = job
        job.add_done_callback(self._loadDone.emit)

    def cancel_load(self) -> None:
        if self._load_job is not None:
            self._load_job.stop()

    def generate(
        self,
        messages: list[dict[str, Any]],
        settings: GenerationSettings,
        *,
        variables: dict[str, Any] | None = None,
    ) -> None:
        """Reply to ``messages`` (ending with the user's turn) with ``settings``; ``variables`` reach
        the chat template (e.g. ``enable_thinking``; a remote server applies its own template)."""
        if self.remote is not None:
            self._generate_remote(self.remote, messages, settings)
            return
        coalescer = _Coalescer(self.tokenReceived.emit)
        job = self.service.chat(
            messages,
            settings,
            on_fit=self.contextPrepared.emit,
            on_text=coalescer.add,
            client=CLIENT,
            variables=variables,
        )
        self._chat_job = job
        self._chat_stopped = False

        def done(finished: Job) -> None:
            coalescer.flush()  # queued before the end, so the last piece arrives first
            self._chatDone.emit(finished)

        job.add_done_callback(done)

    def stop(self) -> None:
        """Stop this window's reply within a token; returns at once."""
        if self._remote_run is not None:
            self._stop_remote(self._remote_run)
        if self._chat_job is not None:
            self._chat_stopped = True
            self._chat_job.stop()

    def unload(self) -> None:
        if self.remote is not None:  # nothing to free here: just stop using the server's model
            self.remote = None
            self.loaded = None
            self.modelUnloaded.emit()
            return
        self.service.unload(client=CLIENT).add_done_callback(self._unloadDone.emit)

    def adopt_loaded(self, loaded: LoadedModel | None) -> None:
        """A model another front end (the API server) loaded on the shared service: show it, unless
        the window is loading its own or chatting with a remote model."""
        if loaded is None or self._shut_down or self._load_job is not None or self.remote is not None:
            return
        if self.loaded is not None and self.loaded.path == loaded.path and self.loaded.n_ctx == loaded.n_ctx:
            return
        self.loaded = loaded
        self.modelLoaded.emit(loaded)

    # -- remote models

    def use_remote(self, model: RemoteModel, api_key: str | None = None) -> None:
        """Chat with ``model`` of a remote server from now on (until another model loads).

        Nothing is loaded here: ``modelLoaded`` follows at once with a stand-in :class:`LoadedModel`
        (see :func:`remote_loaded`). The local model, if any, stays loaded for the API server.
        """
        self.remote = model
        self._remote_key = api_key
        self.loaded = remote_loaded(model)
        self.modelLoaded.emit(self.loaded)

    def _generate_remote(
        self, model: RemoteModel, messages: list[dict[str, Any]], settings: GenerationSettings
    ) -> None:
        from ..remote.client import RemoteClient

        self._remote_count += 1
        number = self._remote_count
        run = _RemoteRun(number, RemoteClient(model.url, name=model.server, api_key=self._remote_key))
        run.coalescer = _Coalescer(lambda text: self._remoteText.emit(number, text))
        self._remote_run = run
        self._chat_stopped = False

        def on_text(piece: str) -> None:
            run.received(piece)
            run.coalescer.add(piece)

        def work() -> None:
            outcome: object
            try:
                outcome = run.client.chat(
                    model.model, messages, settings, on_text=on_text, stop=run.stop
                ).stats
            except RemoteError as exc:
                outcome = exc
            except Exception as exc:  # a bug: the reply fails with a message instead of hanging
                log.exception("the reply from %s failed", model.server)
                outcome = RemoteError(f"The reply from {model.server} failed: {exc}", "server")
            finally:
                run.client.close()
            run.coalescer.flush()  # queued before the end, so the last piece arrives first
            self._remoteDone.emit(number, outcome)

        run.thread = threading.Thread(target=work, name=f"remote-reply-{number}", daemon=True)
        run.thread.start()

    def _stop_remote(self, run: _RemoteRun) -> None:
        """End the remote reply now: close its stream; the text received so far is what it wrote."""
        self._chat_stopped = True
        run.stop.set()
        run.client.abort()
        run.coalescer.flush()
        self._remoteDone.emit(run.number, run.stopped_stats(self.remote))

    def _on_remote_text(self, number: int, text: str) -> None:
        if self._remote_run is not None and number == self._remote_run.number and not self._shut_down:
            self.tokenReceived.emit(text)

    def _on_remote_done(self, number: int, outcome: object) -> None:
        if self._remote_run is None or number != self._remote_run.number:
            return  # a reply already ended by Stop: its late end is dropped
        self._remote_run = None
        if self._shut_down:
            return
        if isinstance(outcome, RemoteError):
            self.generationFailed.emit(str(outcome))
        else:
            self.generationFinished.emit(outcome)

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop this window's jobs; close the service (freeing the model) when this window owns it."""
        if self._shut_down:
            return
        self._shut_down = True
        if self._remote_run is not None:
            self._remote_run.stop.set()
            self._remote_run.client.abort()
        self.service.stop_all(CLIENT)
        if self._owns_service:
            self.service.close(timeout_s)
        self.loaded = None

    def _on_load_done(self, job: Job) -> None:
        if job is not self._load_job:
            return
        self._load_job = None
        if self._shut_down:
            return
        if job.error is not None:
            self.loaded = None
            self.modelLoadFailed.emit(str(job.error))
            return
        self.loaded = job.result
        self.modelLoaded.emit(job.result)

    def _on_chat_done(self, job: Job) -> None:
        if job is not self._chat_job:
            return
        self._chat_job = None
        if self._shut_down:
            return
        if job.error is not None:
            if job.error.kind == "too_long":
                self.promptTooLong.emit(str(job.error))
            elif job.error.kind == "cancelled" and self._chat_stopped:
                # Stopped before the service began it: a stopped reply with nothing written.
                self.generationFinished.emit(_not_started())
            else:
                self.generationFailed.emit(str(job.error))
            return
        result: ChatResult = job.result
        self.generationFinished.emit(result.stats)

    def _on_unloaded(self, _job: Job) -> None:
        if self._shut_down:
            return
        self.loaded = None
        self.modelUnloaded.emit()


class _RemoteRun:
    """One remote reply in progress: its client, its stop flag, and what has arrived so far."""

    def __init__(self, number: int, client: Any) -> None:
        self.number = number
        self.client = client
        self.stop = threading.Event()
        self.coalescer = _Coalescer(lambda _text: None)
        self.thread: threading.Thread | None = None
        self.started = time.monotonic()
        self.first: float | None = None
        self.pieces = 0

    def received(self, _piece: str) -> None:
        if self.first is None:
            self.first = time.monotonic()
        self.pieces += 1

    def stopped_stats(self, model: RemoteModel | None) -> GenerationStats:
        """The stats of a reply the user stopped: what arrived until then."""
        from ..remote.client import RemoteStats

        now = time.monotonic()
        first = self.first if self.first is not None else now
        return RemoteStats(
            prompt_tokens=0,
            cached_tokens=0,
            completion_tokens=self.pieces,
            ttft_s=first - self.started if self.first is not None else 0.0,
            tokens_per_s=self.pieces / max(now - first, 1e-6) if self.pieces > 1 else 0.0,
            total_s=now - self.started,
            stop_reason=StopReason.USER,
            server=model.server if model else "",
            model=model.model if model else "",
        )


def remote_loaded(model: RemoteModel) -> LoadedModel:
    """A stand-in :class:`LoadedModel` for a remote model: no file, no template (the server applies
    its own), an assumed context (``REMOTE_N_CTX``), so the window's parts treat it like any loaded model."""
    from ..chat.templates import ChatFormat
    from ..engine.gguf_info import GGUFInfo

    path = Path(model.key)
    info = GGUFInfo(
        path=path,
        file_size=0,
        version=0,
        architecture="remote",
        name=model.display_name,
        parameter_count=None,
        file_type="",
        context_length=None,
        block_count=None,
        embedding_length=None,
        head_count=None,
        head_count_kv=None,
        chat_template=None,
        bos_token=None,
        eos_token=None,
    )
    chat_format = ChatFormat(template="", is_fallback=False, bos_token="", eos_token="", stop_strings=[])
    return LoadedModel(
        path=path, info=info, n_ctx=REMOTE_N_CTX, n_gpu_layers=0, backend="remote", chat_format=chat_format
    )


def _not_started() -> GenerationStats:
    """The stats of a reply stopped before it began: nothing evaluated, nothing written."""
    return GenerationStats(
        prompt_tokens=0,
        cached_tokens=0,
        completion_tokens=0,
        ttft_s=0.0,
        tokens_per_s=0.0,
        total_s=0.0,
        stop_reason=StopReason.USER,
    )
