"""The inference thread: one QThread whose worker owns the Engine.

Everything that touches llama.cpp (load, tokenize, generate, unload) runs on that
thread, one call at a time; commands arrive as queued signals and results leave as
signals. Stop and cancel are ``threading.Event``s set from the GUI thread, so they take
effect at once even while the worker is busy.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from ..chat import ChatFormat, ContextError, TemplateError, chat_format_for, fit_context
from ..engine import Engine, EngineError, GGUFInfo
from ..errors import LlamaDeskError
from ..settings import GenerationSettings, RuntimeSettings

log = logging.getLogger(__name__)

EMIT_INTERVAL_S = 0.02


@dataclass(frozen=True)
class LoadedModel:
    """The model the worker has loaded, as the UI shows it."""

    path: Path
    info: GGUFInfo
    n_ctx: int
    n_gpu_layers: int
    backend: str
    chat_format: ChatFormat
    ram_used: int = 0  # bytes of available RAM that loading took (given back when switching)


class _Worker(QObject):
    """Lives on the inference thread; never touches widgets."""

    loadProgress = Signal(float)
    modelLoaded = Signal(object)
    modelLoadFailed = Signal(str)
    modelUnloaded = Signal()
    contextPrepared = Signal(object)
    tokenReceived = Signal(str)
    generationFinished = Signal(object)
    generationFailed = Signal(str)
    promptTooLong = Signal(str)
    closed = Signal()

    def __init__(self, stop: threading.Event, cancel_load: threading.Event) -> None:
        super().__init__()
        self.engine = Engine()
        self._stop = stop
        self._cancel_load = cancel_load
        self._format: ChatFormat | None = None

    @Slot(object, object, object)
    def load(self, path: Path, runtime: RuntimeSettings, template_override: str | None) -> None:
        last = -1.0

        def progress(value: float) -> bool:
            nonlocal last
            if value - last >= 0.01 or value >= 1.0:
                last = value
                self.loadProgress.emit(value)
            return not self._cancel_load.is_set()

        try:
            self.engine.load(path, runtime, progress=progress)
            info = self.engine.info
            assert info is not None
            self._format = chat_format_for(
                info.chat_template, info.bos_token, info.eos_token, override=template_override or None
            )
        except LlamaDeskError as exc:
            self.engine.unload()
            self.modelLoadFailed.emit(str(exc))
            return
        except Exception as exc:  # a bug or an unexpected llama.cpp failure: still a message, never a crash
            log.exception("loading %s failed", path)
            self.engine.unload()
            self.modelLoadFailed.emit(f"Loading failed unexpectedly: {exc}")
            return
        self.modelLoaded.emit(
            LoadedModel(
                path=Path(path),
                info=info,
                n_ctx=self.engine.n_ctx,
                n_gpu_layers=self.engine.n_gpu_layers,
                backend=self.engine.backend,
                chat_format=self._format,
                ram_used=self.engine.ram_used,
            )
        )

    @Slot(object, object)
    def generate(self, messages: list[dict[str, Any]], settings: GenerationSettings) -> None:
        if not self.engine.is_loaded or self._format is None:
            self.generationFailed.emit("No model is loaded. Choose a model first.")
            return
        try:
            n_ctx = self.engine.n_ctx
            reserve = min(settings.max_tokens, n_ctx // 2)
            fit = fit_context(
                self._format, messages, self.engine.tokenize, n_ctx - reserve, n_ctx=n_ctx, max_tokens=reserve
            )
            self.contextPrepared.emit(fit)
            generation = self.engine.generate(
                fit.prompt_tokens, settings, stop_event=self._stop, extra_stop=self._format.stop_strings
            )
            # Coalesce pieces into one signal per frame (~20 ms): the GUI thread wakes less
            # often, which keeps it from preempting llama.cpp's compute threads on small CPUs.
            pending: list[str] = []
            last_emit = 0.0
            for piece in generation:
                pending.append(piece)
                now = time.monotonic()
                if now - last_emit >= EMIT_INTERVAL_S:
                    self.tokenReceived.emit("".join(pending))
                    pending.clear()
                    last_emit = now
            if pending:
                self.tokenReceived.emit("".join(pending))
        except ContextError as exc:  # nothing was generated: the newest message alone is too long
            self.promptTooLong.emit(str(exc))
            return
        except (LlamaDeskError, TemplateError, EngineError) as exc:
            self.generationFailed.emit(str(exc))
            return
        except Exception as exc:
            log.exception("generation failed")
            self.generationFailed.emit(f"Generation failed unexpectedly: {exc}")
            return
        self.generationFinished.emit(generation.stats)

    @Slot()
    def unload(self) -> None:
        self.engine.unload()
        self._format = None
        self.modelUnloaded.emit()

    @Slot()
    def close(self) -> None:
        self.engine.unload()
        self.closed.emit()
        thread = self.thread()
        thread.quit()


class InferenceController(QObject):
    """The GUI side of the inference thread. See /docs in the module docstring.

    A reply ends with exactly one of ``generationFinished(stats)``, ``generationFailed(str)`` or
    ``promptTooLong(str)``: the newest message does not fit in the context, nothing was generated.
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

    _loadRequested = Signal(object, object, object)
    _generateRequested = Signal(object, object)
    _unloadRequested = Signal()
    _closeRequested = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._stop = threading.Event()
        self._cancel_load = threading.Event()
        self._thread = QThread()
        self._thread.setObjectName("llamadesk-inference")
        self._worker = _Worker(self._stop, self._cancel_load)
        self._worker.moveToThread(self._thread)
        self.loaded: LoadedModel | None = None
        self._loading = False
        self._generating = False
        self._shut_down = False

        self._loadRequested.connect(self._worker.load)
        self._generateRequested.connect(self._worker.generate)
        self._unloadRequested.connect(self._worker.unload)
        self._closeRequested.connect(self._worker.close)

        w = self._worker
        w.loadProgress.connect(self.loadProgress)
        w.modelLoaded.connect(self._on_loaded)
        w.modelLoadFailed.connect(self._on_load_failed)
        w.modelUnloaded.connect(self._on_unloaded)
        w.contextPrepared.connect(self.contextPrepared)
        w.tokenReceived.connect(self.tokenReceived)
        w.generationFinished.connect(self._on_finished)
        w.generationFailed.connect(self._on_failed)
        w.promptTooLong.connect(self._on_too_long)
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self._loading or self._generating

    @property
    def loading(self) -> bool:
        return self._loading

    @property
    def generating(self) -> bool:
        return self._generating

    def load_model(
        self, path: Path, runtime: RuntimeSettings, *, template_override: str | None = None
    ) -> None:
        """Load ``path`` on the inference thread (replacing the current model)."""
        self._cancel_load.clear()
        self._loading = True
        self.modelLoading.emit(str(path))
        self._loadRequested.emit(Path(path), runtime, template_override)

    def cancel_load(self) -> None:
        self._cancel_load.set()

    def generate(self, messages: list[dict[str, Any]], settings: GenerationSettings) -> None:
        """Reply to ``messages`` (ending with the user's turn) with ``settings``."""
        self._stop.clear()
        self._generating = True
        self._generateRequested.emit([dict(m) for m in messages], settings)

    def stop(self) -> None:
        """Stop the running generation within a token; returns at once."""
        self._stop.set()

    def unload(self) -> None:
        self._unloadRequested.emit()

    def shutdown(self, timeout_ms: int = 30000) -> None:
        """Stop everything, close the model on its own thread, and join the thread."""
        if self._shut_down:
            return
        self._shut_down = True
        self._stop.set()
        self._cancel_load.set()
        if self._thread.isRunning():
            self._closeRequested.emit()
            if not self._thread.wait(timeout_ms):
                log.error("the inference thread did not stop in time")
        self._worker.deleteLater()
        self.loaded = None

    def _on_loaded(self, loaded: LoadedModel) -> None:
        self._loading = False
        self.loaded = loaded
        self.modelLoaded.emit(loaded)

    def _on_load_failed(self, message: str) -> None:
        self._loading = False
        self.loaded = None
        self.modelLoadFailed.emit(message)

    def _on_unloaded(self) -> None:
        self.loaded = None
        self.modelUnloaded.emit()

    def _on_finished(self, stats: object) -> None:
        self._generating = False
        self.generationFinished.emit(stats)

    def _on_failed(self, message: str) -> None:
        self._generating = False
        self.generationFailed.emit(message)

    def _on_too_long(self, message: str) -> None:
        self._generating = False
        self.promptTooLong.emit(message)
