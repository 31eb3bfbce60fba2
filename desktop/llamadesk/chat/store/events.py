"""Telling listeners what changed in the store, without Qt: windows refresh from these, never by hand.

Events are collected while a transaction runs and delivered after it commits, on the thread that
wrote (a GUI wraps its callback in a queued signal). A rolled-back write tells nobody anything.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

EVENT_KINDS = ("created", "changed", "deleted", "all")


@dataclass(frozen=True)
class StoreEvent:
    """What changed: ``kind`` is created, changed or deleted for ``conversation_id``, or "all".

    "all" (``conversation_id`` None) means the list as a whole changed: delete_all, an import.
    """

    conversation_id: int | None
    kind: str


Listener = Callable[[StoreEvent], None]


class Listeners:
    """The store's listener list and the events of the transaction in progress."""

    def __init__(self) -> None:
        self._callbacks: list[tuple[object, Listener]] = []
        self._lock = threading.Lock()
        self._pending: list[StoreEvent] = []

    def subscribe(self, callback: Listener) -> Callable[[], None]:
        """Call ``callback`` after every committed change; returns the function that stops it."""
        token = object()
        with self._lock:
            self._callbacks.append((token, callback))

        def unsubscribe() -> None:
            with self._lock:
                self._callbacks = [entry for entry in self._callbacks if entry[0] is not token]

        return unsubscribe

    def add(self, conversation_id: int | None, kind: str) -> None:
        """Remember a change of the transaction in progress (the caller holds the store's lock)."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown store event {kind!r}")
        self._pending.append(StoreEvent(None if kind == "all" else conversation_id, kind))

    def discard(self) -> None:
        """The transaction rolled back: nothing happened."""
        self._pending = []

    def take(self) -> list[StoreEvent]:
        """The committed transaction's events, coalesced: one per conversation, or a single "all"."""
        pending, self._pending = self._pending, []
        if not pending:
            return []
        if any(event.kind == "all" for event in pending):
            return [StoreEvent(None, "all")]
        state: dict[int | None, str | None] = {}
        for event in pending:
            before = state.get(event.conversation_id)
            if event.kind == "created":  # after "deleted": a new conversation that reuses the id
                after: str | None = "changed" if before == "deleted" else "created"
            elif event.kind == "deleted":  # created and deleted in one batch: nobody saw it
                after = None if before == "created" else "deleted"
            else:
                after = before if before in ("created", "deleted") else "changed"
            state[event.conversation_id] = after
        return [StoreEvent(key, kind) for key, kind in state.items() if kind is not None]

    def fire(self, events: list[StoreEvent]) -> None:
        """Deliver ``events`` to every listener; one that raises is logged and the others still run."""
        if not events:
            return
        with self._lock:
            callbacks = [callback for _, callback in self._callbacks]
        for event in events:
            for callback in callbacks:
                try:
                    callback(event)
                except Exception:
                    log.exception("a conversation store listener failed on %s", event)
