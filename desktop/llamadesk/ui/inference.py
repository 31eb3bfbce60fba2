"""The window's side of the inference service: jobs in, Qt signals out.

The Qt-free :class:`~llamadesk.engine.service.InferenceService` owns the model on its own
thread; this adapter submits the window's loads and replies as jobs and turns their callbacks
(which run on the service thread) into signals delivered on the GUI thread. Stop and cancel
stop the window's own job only; other clients of the same service are not touched.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal

from ..engine.engine import GenerationStats, StopReason
from ..engine.service import ChatResult, InferenceService, Job, LoadedModel
from ..settings import GenerationSettings, RuntimeSettings

log = logging.getLogger(__name__)

__all__ = ["EMIT_INTERVAL_S", "InferenceController", "LoadedModel"]

EMIT_INTERVAL_S = 0.02
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

    @property
    def busy(self) -> bool:
        return self.loading or self.generating

    @property
    def loading(self) -> bool:
        return self._load_job is not None

    @property
    def generating(self) -> bool:
        return self._chat_job is not None

    def load_model(
        self, path: Path, runtime: RuntimeSettings, *, template_override: str | None = None
    ) -> None:
        """Load ``path`` on the service thread (replacing the current model)."""
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
        the chat template (e.g. ``enable_thinking``)."""
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
        if self._chat_job is not None:
            self._chat_stopped = True
            self._chat_job.stop()

    def unload(self) -> None:
        self.service.unload(client=CLIENT).add_done_callback(self._unloadDone.emit)

    def shutdown(self, timeout_s: float = 2.0) -> None:
        """Stop this window's jobs; close the service (freeing the model) when this window owns it."""
        if self._shut_down:
            return
        self._shut_down = True
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
