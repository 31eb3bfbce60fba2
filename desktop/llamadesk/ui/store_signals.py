"""The conversation store's change events as Qt signals on the GUI thread.

The store calls its listeners after each commit, on the thread that wrote. This adapter
turns those calls into signals of an object that lives on the GUI thread: a write made on
the GUI thread is delivered at once, a write made on a worker thread is queued to the GUI
thread. Widgets listen here instead of being told to refresh after every write.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

import shiboken6
from PySide6.QtCore import QObject, Signal

log = logging.getLogger(__name__)

__all__ = ["StoreSignals"]


class StoreSignals(QObject):
    """Listens to a ``ConversationStore`` until ``close()``.

    Signals:
        conversationChanged(int): one conversation's row or messages changed.
        conversationsChanged(): conversations were created or deleted (or all of them went).
    """

    conversationChanged = Signal(int)
    conversationsChanged = Signal()
    _event = Signal(str, object)  # kind, conversation id

    def __init__(self, store: Any, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._event.connect(self._deliver)
        self._held = 0
        self._backlog: list[tuple[str, int | None]] = []
        self._unsubscribe: Callable[[], None] | None = store.subscribe(self._on_store_event)

    def hold(self) -> None:
        """Keep events back until :meth:`release` (while a long write, such as compacting the
        database, holds the store: listeners reading it then would block the GUI)."""
        self._held += 1

    def release(self) -> None:
        """Deliver the events kept back by :meth:`hold`, each change once."""
        self._held = max(0, self._held - 1)
        if self._held:
            return
        backlog, self._backlog = self._backlog, []
        for kind, conversation_id in dict.fromkeys(backlog):
            self._deliver(kind, conversation_id)

    def close(self) -> None:
        """Stop listening (before the store closes); safe to call twice."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()

    def _on_store_event(self, event: Any) -> None:
        """Called by the store on the writing thread."""
        if self._unsubscribe is None or not shiboken6.isValid(self):
            return
        with contextlib.suppress(RuntimeError):  # deleted just now with its window
            self._event.emit(str(event.kind), event.conversation_id)

    def _deliver(self, kind: str, conversation_id: int | None) -> None:
        if self._unsubscribe is None:
            return
        if self._held:
            self._backlog.append((kind, conversation_id))
            return
        if kind == "changed" and conversation_id is not None:
            self.conversationChanged.emit(int(conversation_id))
        else:
            self.conversationsChanged.emit()
