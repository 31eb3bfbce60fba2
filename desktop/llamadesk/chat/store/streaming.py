"""A reply being generated: committed at least once a second, indexed for search once it ends."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any, Protocol

from ..records import FINAL_STATUSES, Message
from .errors import StoreError


class ReplyWriter(Protocol):
    """What a streaming reply needs from the store (``ConversationStore`` provides it)."""

    def _save_streamed(self, message_id: int, content: str, thinking: str = "") -> None: ...

    def _finish_streamed(
        self, message_id: int, content: str, status: str, stats: dict[str, Any] | None, thinking: str = ""
    ) -> Message: ...


class StreamingReply:
    """A reply being generated: ``append`` pieces (``append_thinking`` for a reasoning model's
    thinking), ``finish`` at the end.

    The text is committed when ``flush_interval`` seconds have passed since the last commit
    (1 s by default), so a crash loses at most that much; the row stays 'streaming' until
    ``finish`` and is marked 'interrupted' when the store is next opened. Flushes tell no
    listener and leave the search index alone; ``finish`` does both.
    """

    def __init__(self, store: ReplyWriter, message: Message, *, flush_interval: float = 1.0) -> None:
        self.message_id = message.id
        self.conversation_id = message.conversation_id
        self.flush_interval = flush_interval
        self.committed_length = 0
        self.status = message.status
        self._store = store
        self._parts: list[str] = [message.content] if message.content else []
        self._thinking: list[str] = [message.thinking] if message.thinking else []
        self._last_commit = time.monotonic()

    @property
    def content(self) -> str:
        """The whole text so far, committed or not."""
        if len(self._parts) > 1:
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def thinking(self) -> str:
        """The thinking so far, committed or not."""
        if len(self._thinking) > 1:
            self._thinking = ["".join(self._thinking)]
        return self._thinking[0] if self._thinking else ""

    def append_thinking(self, text: str) -> bool:
        """Add a piece of the thinking; commits (and returns True) when the flush interval has passed."""
        if self.finished:
            raise StoreError("this reply is already finished")
        if text:
            self._thinking.append(text)
        return self._maybe_flush()

    def set_thinking(self, text: str) -> None:
        """Replace the thinking with its final form (trimmed); saved at the next commit."""
        self._thinking = [text] if text else []

    @property
    def finished(self) -> bool:
        """True once ``finish`` has committed the final text."""
        return self.status != "streaming"

    def append(self, text: str) -> bool:
        """Add a piece of text; commits (and returns True) when the flush interval has passed."""
        if self.finished:
            raise StoreError("this reply is already finished")
        if text:
            self._parts.append(text)
        return self._maybe_flush()

    def _maybe_flush(self) -> bool:
        if time.monotonic() - self._last_commit >= self.flush_interval:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        """Commit the text so far now."""
        self._last_commit = time.monotonic()  # a failing disk is retried once per interval, not per token
        content = self.content
        self._store._save_streamed(self.message_id, content, self.thinking)
        self.committed_length = len(content)

    def finish(self, status: str = "complete", stats: dict[str, Any] | None = None) -> Message:
        """Commit the final text with ``status`` (complete, stopped or failed) and the generation stats."""
        if status not in FINAL_STATUSES:
            raise ValueError(f"a reply finishes as one of {', '.join(FINAL_STATUSES)}, not {status!r}")
        content = self.content
        message = self._store._finish_streamed(self.message_id, content, status, stats, self.thinking)
        self.committed_length = len(content)
        self.status = status
        return message

    def __enter__(self) -> StreamingReply:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if not self.finished:
            if exc is None:
                self.finish("complete")
            else:
                self.finish("failed", {"error": str(exc)})
