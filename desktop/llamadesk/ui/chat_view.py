"""The conversation transcript: rendered Markdown messages, per-message actions and a streaming reply.

Design: a QScrollArea holding one lightweight card widget per *rendered* message. Cards give real
buttons, rounded bubbles and per-message layout that a single shared QTextDocument cannot, and the
cost stays bounded because rendering is lazy: ``set_messages`` keeps every message as plain data but
builds cards only for the newest ``INITIAL_CARDS``; older ones are built ``BATCH_CARDS`` at a time
when the user scrolls to the top (or presses "Show earlier messages"), keeping the scroll position.
While a reply streams, only its card is re-rendered, at most once per throttle interval, so the work
per token is O(1) and a whole-message render happens a few times a second regardless of token rate.

A reply to a question sent with documents carries that question's numbered sources (read through
``sources_provider``); its ``[n]`` citations and "Sources" line open the passage (``open_citation``).

The card lives in :mod:`llamadesk.ui.message_widget`, its body and the streaming renderer in
:mod:`llamadesk.ui.message_body`; this module holds the list of cards, scrolling and the stream throttle.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QFont, QTextDocument
from PySide6.QtWidgets import QFrame, QHBoxLayout, QPushButton, QScrollArea, QVBoxLayout, QWidget

from llamadesk.chat.sources import cited_claim
from llamadesk.chat.store import MessageSources, StoreError
from llamadesk.ui import markdown
from llamadesk.ui.citations import PassageDialog
from llamadesk.ui.message_widget import (
    INTERRUPTED_TEXT,
    NOT_IN_CONTEXT,
    MessageCard,
    MessageItem,
    MessageLike,
    format_stats,
    status_text,
)

log = logging.getLogger(__name__)

__all__ = [
    "BATCH_CARDS",
    "FOLLOW_SLACK_PX",
    "INITIAL_CARDS",
    "INTERRUPTED_TEXT",
    "MAX_STREAM_INTERVAL_MS",
    "MIN_STREAM_INTERVAL_MS",
    "NOT_IN_CONTEXT",
    "ChatView",
    "MessageLike",
    "format_stats",
    "status_text",
]

INITIAL_CARDS = 24
BATCH_CARDS = 24
MIN_STREAM_INTERVAL_MS = 70
MAX_STREAM_INTERVAL_MS = 300
FOLLOW_SLACK_PX = 24


def _stylesheet(dark: bool) -> str:
    """The transcript's Qt stylesheet for the light or dark theme."""
    if dark:
        bg, text, bubble, muted, hover, accent, warn, error = (
            "#1e1f22", "#e6edf3", "#2f3238", "#8d96a0", "#34373d", "#4493f8", "#d29922", "#f85149",
        )  # fmt: skip
    else:
        bg, text, bubble, muted, hover, accent, warn, error = (
            "#ffffff", "#1f2328", "#eef1f6", "#6e7781", "#eaeef2", "#0969da", "#9a6700", "#cf222e",
        )  # fmt: skip
    return f"""
#chatView, #chatScroll, #chatContainer {{ background: {bg}; border: none; }}
#chatView QLabel {{ color: {text}; }}
#messageBody {{ background: transparent; border: none; color: {text}; }}
QFrame#bubble[role="user"] {{ background: {bubble}; border-radius: 16px; }}
#messageRole {{ color: {muted}; font-weight: 600; }}
#chatView QLabel#messageStats, #chatView QLabel#branchLabel {{ color: {muted}; font-size: 11px; }}
#chatView QLabel#notInContext {{ color: {muted}; border: 1px solid {muted}; border-radius: 7px;
    padding: 0px 6px; font-size: 10px; }}
#chatView QLabel#messageSources {{ color: {muted}; font-size: 12px; }}
#chatView QLabel#messageStatus {{ color: {warn}; font-size: 12px; }}
#chatView QLabel#messageStatus[status="failed"] {{ color: {error}; }}
#chatView QLabel#messageStatus[status="streaming"] {{ color: {muted}; }}
#messageAction {{ color: {muted}; border: none; border-radius: 6px; padding: 2px 6px; font-size: 12px; }}
#messageAction:hover {{ background: {hover}; color: {text}; }}
#messageAction:disabled {{ color: {hover}; }}
#loadEarlier {{ color: {accent}; background: transparent; border: none; padding: 6px; }}
#thinkingToggle {{ color: {muted}; border: none; padding: 1px 2px; font-size: 12px; }}
#thinkingToggle[live="true"] {{ font-style: italic; }}
#chatView #thinkingBody {{ color: {muted}; border-left: 2px solid {hover}; padding-left: 6px; }}
"""


class ChatView(QWidget):
    """The conversation transcript with Markdown rendering, per-message actions and a streaming reply.

    Signals:
        editRequested(int): the user wants to edit this user message.
        regenerateRequested(int): the user wants a new version of this (last) assistant reply.
        branchStepRequested(int, int): show the previous (-1) or next (+1) version of this message.
        citationOpened(int, int): the passage of source N of this reply was opened.
    """

    editRequested = Signal(int)
    regenerateRequested = Signal(int)
    branchStepRequested = Signal(int, int)
    citationOpened = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatView")
        self.setAccessibleName("Conversation")
        self.dark = False
        self.code_font = ""
        self._items: list[MessageItem] = []
        self._cards: dict[int, MessageCard] = {}
        self._first = 0  # index into _items of the oldest rendered message
        self._excluded: set[int] = set()
        self._stream_item: MessageItem | None = None
        self._stream_parts: list[str] = []
        self._follow = True
        self._anchor_from_bottom: int | None = None
        self._programmatic = False
        # Reads the stored sources of user messages (by id); set by the window, None shows no sources.
        self.sources_provider: Callable[[Iterable[int]], Mapping[int, MessageSources]] | None = None
        self.passage_dialog: PassageDialog | None = None

        self._scroll = QScrollArea(self)
        self._scroll.setObjectName("chatScroll")
        self._scroll.setWidgetResizable(True)
        self._scroll.setFrameShape(QFrame.Shape.NoFrame)
        self._scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        container = QWidget()
        container.setObjectName("chatContainer")
        outer = QHBoxLayout(container)
        outer.setContentsMargins(16, 8, 16, 8)
        self._column = QWidget(container)
        self._column.setMaximumWidth(900)
        outer.addWidget(self._column)
        self._layout = QVBoxLayout(self._column)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self._load_button = QPushButton("Show earlier messages")
        self._load_button.setObjectName("loadEarlier")
        self._load_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self._load_button.clicked.connect(self.load_earlier)
        self._load_button.hide()
        self._layout.addWidget(self._load_button, 0, Qt.AlignmentFlag.AlignHCenter)
        self._layout.addStretch(1)
        self._scroll.setWidget(container)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self._scroll)

        bar = self._scroll.verticalScrollBar()
        bar.rangeChanged.connect(self._on_range_changed)
        bar.valueChanged.connect(self._on_value_changed)

        self._stream_timer = QTimer(self)
        self._stream_timer.setSingleShot(True)
        self._stream_timer.setInterval(MIN_STREAM_INTERVAL_MS)
        self._stream_timer.timeout.connect(self._flush_stream)
        self.setStyleSheet(_stylesheet(self.dark))

    # ----- public API -------------------------------------------------------------------------

    def set_messages(self, messages: Sequence[MessageLike]) -> None:
        """Show the active branch (root..leaf); system messages are skipped; only the newest are built."""
        items = [MessageItem.from_message(m) for m in messages if m.role != "system"]
        self._attach_sources(items)
        same_conversation = bool(items and self._items) and (
            items[0].conversation_id == self._items[0].conversation_id
        )
        if self._stream_item is not None:
            live = next((i for i in items if i.id == self._stream_item.id), None)
            if live is None:
                self._stop_stream()
            else:
                live.content = self._stream_content()
                live.thinking = self._stream_item.thinking
                live.status = "streaming"
                self._stream_item = live
        keep = len(self._cards) if same_conversation else 0
        self._items = items
        self._first = max(0, len(items) - max(INITIAL_CARDS, keep))
        if not same_conversation:
            self._follow = True
            self._anchor_from_bottom = None
        old = self._cards
        self._cards = {}
        for stale in old.values():
            self._layout.removeWidget(stale)
        for item in items[self._first :]:
            card = old.pop(item.id) if item.id in old else MessageCard(self, item, self._column)
            if card.item != item:
                card.set_item(item)
            self._cards[item.id] = card
            self._layout.insertWidget(self._layout.count() - 1, card)
            card.show()
            card.set_excluded(item.id in self._excluded)
        for card in old.values():
            card.hide()
            card.deleteLater()
        self._refresh_regenerate()
        self._load_button.setVisible(self._first > 0)

    def _attach_sources(self, items: list[MessageItem]) -> None:
        """Give each reply the sources of the question before it (the branch runs root to leaf)."""
        found = self._sources_of([i.id for i in items if i.role == "user"])
        if not found:
            return
        question: MessageItem | None = None
        for item in items:
            if item.role == "user":
                question = item
            elif item.role == "assistant" and question is not None and question.id in found:
                item.sources = found[question.id].sources

    def _sources_of(self, message_ids: list[int]) -> Mapping[int, MessageSources]:
        """The stored sources of these questions; none when there is no provider or the store fails
        (the transcript is still shown, without its sources)."""
        if self.sources_provider is None or not message_ids:
            return {}
        try:
            return self.sources_provider(message_ids)
        except StoreError as exc:
            log.warning("could not read the sources of the shown messages: %s", exc)
            return {}

    def open_citation(self, message_id: int, number: int) -> PassageDialog | None:
        """Open the passage of source ``number`` of the reply ``message_id`` (None when it has none)."""
        item = next((i for i in self._items if i.id == message_id), None)
        source = next((s for s in item.sources if s.number == number), None) if item else None
        if source is None:
            return None
        if self.passage_dialog is not None:
            self.passage_dialog.close()
        claim = cited_claim(item.content, number) if item is not None else ""
        dialog = PassageDialog(source, self, claim=claim, dark=self.dark)
        self.passage_dialog = dialog
        dialog.finished.connect(lambda _result: setattr(self, "passage_dialog", None))
        dialog.show()
        self.citationOpened.emit(message_id, number)
        return dialog

    def set_excluded(self, message_ids: set[int]) -> None:
        """Grey out and label the messages that were left out of the model's context window."""
        self._excluded = set(message_ids)
        for message_id, card in self._cards.items():
            card.set_excluded(message_id in self._excluded)

    def begin_stream(self, message: MessageLike) -> None:
        """Append an (empty) assistant reply that will be filled by append_stream."""
        self._stop_stream()
        item = MessageItem.from_message(message)
        item.status = "streaming"
        question = next((i for i in reversed(self._items) if i.role == "user"), None)
        if question is not None:
            found = self._sources_of([question.id]).get(question.id)
            item.sources = found.sources if found is not None else ()
        self._stream_item = item
        self._stream_parts = [item.content] if item.content else []
        self._items.append(item)
        card = MessageCard(self, item, self._column)
        self._cards[item.id] = card
        self._layout.insertWidget(self._layout.count() - 1, card)
        card.show()
        self._follow = True
        self._refresh_regenerate()

    def append_stream(self, text: str) -> None:
        """Add a piece of the streaming reply; the card re-renders on a throttle timer, not per piece."""
        if self._stream_item is None or not text:
            return
        self._stream_parts.append(text)
        if not self._stream_timer.isActive():
            self._stream_timer.start()

    def append_thinking(self, text: str) -> None:
        """Add a piece of the streaming reply's thinking, shown live in its collapsed "Thinking…" block."""
        item = self._stream_item
        if item is None or not text:
            return
        item.thinking += text
        card = self._cards.get(item.id)
        if card is not None:
            card.stream_thinking(text)

    def end_stream(self, message: MessageLike) -> None:
        """Show the final content, status and stats of a reply (normally the one being streamed)."""
        final = MessageItem.from_message(message)
        shown = next((i for i in reversed(self._items) if i.id == final.id), None)
        if shown is not None:
            final.sources = shown.sources
        if self._stream_item is not None and self._stream_item.id == final.id:
            # No partial flush: the card is about to get its one exact render of the final text.
            self._stream_timer.stop()
            self._stream_item = None
            self._stream_parts = []
        for index in range(len(self._items) - 1, -1, -1):
            if self._items[index].id == final.id:
                self._items[index] = final
                break
        card = self._cards.get(final.id)
        if card is not None:
            card.set_item(final)
        self._refresh_regenerate()

    def last_reply_text(self) -> str:
        """Raw Markdown of the newest assistant message, "" when there is none."""
        for item in reversed(self._items):
            if item.role == "assistant":
                return self._stream_content() if item is self._stream_item else item.content
        return ""

    def shown_leaf_id(self) -> int | None:
        """The newest message shown: the one a message typed now answers (None: an empty chat)."""
        return self._items[-1].id if self._items else None

    def message_count(self) -> int:
        """Messages in the transcript (rendered or not), system messages excluded."""
        return len(self._items)

    def rendered_message_count(self) -> int:
        """Messages that currently have a built widget (lazy rendering keeps this bounded)."""
        return len(self._cards)

    def rendered_text(self, message_id: int) -> str:
        """Plain text as displayed: the body, then the status and stats lines when present."""
        self._flush_stream()
        card = self._cards.get(message_id)
        if card is not None:
            return card.plain_text()
        item = next((i for i in self._items if i.id == message_id), None)
        if item is None:
            raise KeyError(message_id)
        doc = QTextDocument()
        doc.setHtml(markdown.render_markdown(item.content, breaks=True).html)
        lines = [doc.toPlainText().rstrip()]
        if item.role == "assistant":
            lines += [t for t in (status_text(item.status, item.stats), format_stats(item.stats)) if t]
        return "\n".join(lines)

    def set_font(self, family_size: tuple[str, int, str]) -> None:
        """Apply (text family or "", point size, code font family) and re-render the built messages."""
        family, size, code_family = family_size
        font = QFont(self.font())
        if family:
            font.setFamily(family)
        if size > 0:
            font.setPointSize(size)
        self.setFont(font)
        self.code_font = code_family
        self._rerender_all()

    def set_dark(self, dark: bool) -> None:
        """Switch colours and the code highlighting style between light and dark themes."""
        if dark == self.dark:
            return
        self.dark = dark
        self.setStyleSheet(_stylesheet(dark))
        self._rerender_all()

    def load_earlier(self) -> None:
        """Build the next batch of older messages above the current ones, keeping what is on screen."""
        if self._first == 0:
            return
        bar = self._scroll.verticalScrollBar()
        self._anchor_from_bottom = bar.maximum() - bar.value()
        self._follow = False
        start = max(0, self._first - BATCH_CARDS)
        for offset, item in enumerate(self._items[start : self._first]):
            card = MessageCard(self, item, self._column)
            card.set_excluded(item.id in self._excluded)
            self._cards[item.id] = card
            self._layout.insertWidget(1 + offset, card)
            card.show()
        self._first = start
        self._load_button.setVisible(self._first > 0)
        self._refresh_regenerate()

    # ----- internals --------------------------------------------------------------------------

    def _stream_content(self) -> str:
        if len(self._stream_parts) > 1:
            self._stream_parts[:] = ["".join(self._stream_parts)]
        return self._stream_parts[0] if self._stream_parts else ""

    def _flush_stream(self) -> None:
        item = self._stream_item
        if item is None:
            return
        self._stream_timer.stop()
        content = self._stream_content()
        card = self._cards.get(item.id)
        if content == item.content or card is None:
            item.content = content
            return
        item.content = content
        started = time.perf_counter()
        card.stream_update(content)
        elapsed_ms = (time.perf_counter() - started) * 1000
        # Long replies render slower: space renders out so the GUI thread stays mostly idle.
        interval = min(MAX_STREAM_INTERVAL_MS, max(MIN_STREAM_INTERVAL_MS, int(elapsed_ms * 4)))
        self._stream_timer.setInterval(interval)

    def _stop_stream(self) -> None:
        self._flush_stream()
        self._stream_timer.stop()
        self._stream_item = None
        self._stream_parts = []

    def _refresh_regenerate(self) -> None:
        last = next((i.id for i in reversed(self._items) if i.role == "assistant"), None)
        for message_id, card in self._cards.items():
            card.set_can_regenerate(message_id == last)

    def _rerender_all(self) -> None:
        self._flush_stream()
        for card in self._cards.values():
            card.render_body()

    def _set_value(self, value: int) -> None:
        self._programmatic = True
        try:
            self._scroll.verticalScrollBar().setValue(value)
        finally:
            self._programmatic = False

    def _on_range_changed(self, _minimum: int, maximum: int) -> None:
        if self._anchor_from_bottom is not None:
            self._set_value(maximum - self._anchor_from_bottom)
        elif self._follow:
            self._set_value(maximum)

    def _on_value_changed(self, value: int) -> None:
        if self._programmatic:
            return
        bar = self._scroll.verticalScrollBar()
        self._anchor_from_bottom = None
        self._follow = value >= bar.maximum() - FOLLOW_SLACK_PX
        if value <= bar.minimum() and self._first > 0 and bar.maximum() > 0:
            self.load_earlier()
