"""API chats in the conversation history, only when the user asked for it (off by default).

Each finished chat request becomes a conversation: its system prompt, its user and assistant
turns as sent, and the reply with the engine's stats. Written on a thread of its own, after the
response, so the history never slows a reply down; a failure is logged, never a failed request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import LlamaDeskError

log = logging.getLogger(__name__)

__all__ = ["History"]


class History:
    """Stores finished API chats through ``open_store()`` (a ``ConversationStore``), opened on first use."""

    def __init__(self, open_store: Callable[[], Any], *, owns_store: bool = True) -> None:
        self._open_store = open_store
        self._owns_store = owns_store
        self._store: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamadesk-api-history")

    def record(
        self, model: str, messages: Sequence[Mapping[str, Any]], reply: str, stats: dict[str, Any]
    ) -> None:
        """Queue one finished chat for storing."""
        copied = [dict(m) for m in messages]
        self._executor.submit(self._write, model, copied, reply, stats)

    def close(self) -> None:
        """Finish the writes queued so far; close the store when this object opened it."""
        self._executor.shutdown(wait=True)
        if self._store is not None and self._owns_store:
            self._store.close()
        self._store = None

    def _write(self, model: str, messages: list[dict[str, Any]], reply: str, stats: dict[str, Any]) -> None:
        try:
            if self._store is None:
                self._store = self._open_store()
            store = self._store
            system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m["content"])
            conversation = store.create_conversation(model=model, system_prompt=system or None)
            parent: int | None = None
            for message in messages:
                if message["role"] in ("user", "assistant") and message.get("content"):
                    parent = store.add_message(
                        conversation.id, message["role"], message["content"], parent_id=parent
                    ).id
            store.add_message(conversation.id, "assistant", reply, parent_id=parent, model=model, stats=stats)
        except (LlamaDeskError, OSError, ValueError):
            log.exception("could not keep an API chat in the history")
