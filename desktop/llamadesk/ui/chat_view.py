"""The conversation transcript: rendered Markdown messages, per-message actions and a streaming reply.

Design: a QScrollArea holding one lightweight card widget per *rendered* message. Cards give real
buttons, rounded bubbles and per-message layout that a single shared QTextDocument cannot, and the
cost stays bounded because rendering is lazy: ``set_messages`` keeps every message as plain data but
builds cards only for the newest ``INITIAL_CARDS``; older ones are built ``BATCH_CARDS`` at a time
when the user scrolls to the top (or presses "Show earlier messages"), keeping the scroll position.
While a reply streams, only its card is re-rendered, at most once per throttle interval, so the work
per token is O(1) and a whole-message render happens a few times a second regardless of token rate.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PySide6.QtCore import QSize, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import (
    QDesktopServices,
    QFont,
    QGuiApplication,
    QResizeEvent,
    QTextBlockFormat,
    QTextCharFormat,
    QTextCursor,
    QTextDocument,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsOpacityEffect,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llamadesk.ui import markdown
from llamadesk.ui.markdown import COPY_CODE_SCHEME, document_stylesheet

INITIAL_CARDS = 24
BATCH_CARDS = 24
MIN_STREAM_INTERVAL_MS = 70
MAX_STREAM_INTERVAL_MS = 300
FOLLOW_SLACK_PX = 24
NOT_IN_CONTEXT = "not in context"
INTERRUPTED_TEXT = "Interrupted — the app closed while this reply was being written"

_STOP_LABELS = {
    "eos": "finished",
    "stop_string": "finished",
    "max_tokens": "max tokens",
    "context_full": "context full",
    "user_stop": "stopped",
    "error": "failed",
}
_OPEN_SCHEMES = {"http", "https", "mailto"}
_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


class MessageLike(Protocol):
    """What the view reads from ``llamadesk.chat.store.Message`` (duck-typed to keep the UI decoupled)."""

    id: int
    conversation_id: int
    role: str
    content: str
    status: str
    model: str | None
    stats: dict[str, Any] | None
    sibling_index: int
    sibling_count: int


@dataclass
class _Item:
    """The view's own copy of a message, so streaming never mutates the caller's objects."""

    id: int
    conversation_id: int
    role: str
    content: str
    status: str
    model: str | None
    stats: dict[str, Any] | None
    sibling_index: int
    sibling_count: int

    @classmethod
    def from_message(cls, m: MessageLike) -> _Item:
        return cls(
            id=m.id,
            conversation_id=m.conversation_id,
            role=m.role,
            content=m.content,
            status=m.status,
            model=m.model,
            stats=dict(m.stats) if m.stats else None,
            sibling_index=m.sibling_index,
            sibling_count=m.sibling_count,
        )


def format_stats(stats: dict[str, Any] | None) -> str:
    """The line under a reply: "N tokens · X tok/s · first token Y s · finished"."""
    if not stats:
        return ""
    parts: list[str] = []
    tokens = stats.get("completion_tokens")
    if tokens is not None:
        parts.append(f"{tokens} token" + ("" if tokens == 1 else "s"))
    tps = stats.get("tokens_per_s")
    if tps:
        parts.append(f"{float(tps):.1f} tok/s")
    ttft = stats.get("ttft_s")
    if ttft is not None and tokens != 0:  # stopped or failed before any token: there was no first token
        parts.append(f"first token {float(ttft):.2f} s")
    reason = stats.get("stop_reason")
    if reason is not None:
        value = str(getattr(reason, "value", reason))
        parts.append(_STOP_LABELS.get(value, value.replace("_", " ")))
    return " · ".join(parts)


def status_text(status: str, stats: dict[str, Any] | None) -> str:
    """A visible marker for replies that did not complete normally ("" for complete ones)."""
    if status == "streaming":
        return "Writing…"
    if status == "stopped":
        return "Stopped"
    if status == "failed":
        error = (stats or {}).get("error")
        return f"Failed: {error}" if error else "Failed"
    if status == "interrupted":
        return INTERRUPTED_TEXT
    return ""


def _role_label(item: _Item) -> str:
    if item.role == "user":
        return "You"
    if item.model:
        return item.model.replace("\\", "/").rsplit("/", 1)[-1]
    return "Assistant"


class _MessageBody(QTextBrowser):
    """Read-only rich text that is exactly as tall as its content, so the outer area does all scrolling."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("messageBody")
        self.setOpenLinks(False)
        self.setOpenExternalLinks(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.viewport().setAutoFillBackground(False)
        self.document().setDocumentMargin(2)
        self.natural_width = 0
        self.document().documentLayout().documentSizeChanged.connect(self._fit_height)
        self.setFixedHeight(8)

    def set_html(self, html: str, stylesheet: str, measure_width: bool) -> None:
        doc = self.document()
        doc.setDefaultStyleSheet(stylesheet)
        self.setHtml(html)
        if measure_width:
            # Natural single-line width lets short user bubbles shrink to their text.
            probe = doc.clone()
            probe.setTextWidth(-1)
            self.natural_width = int(probe.idealWidth()) + 4
            self.updateGeometry()
        self._fit_height()

    def append_html(self, html: str) -> None:
        """Append blocks at the end; Qt lays out only the new blocks, so the cost is the fragment's size."""
        doc = self.document()
        cursor = QTextCursor(doc)
        cursor.movePosition(QTextCursor.MoveOperation.End)
        if not doc.isEmpty():
            cursor.insertBlock(QTextBlockFormat(), QTextCharFormat())
        cursor.insertHtml(html)

    def sizeHint(self) -> QSize:
        return QSize(self.natural_width or 400, self.height())

    def _fit_height(self) -> None:
        # Text wraps to the width; only what cannot wrap (a wide table) gets a horizontal scroll bar,
        # and the height makes room for it so no line is cut off.
        size = self.document().size()
        wide = size.width() > self.viewport().width() + 1
        policy = Qt.ScrollBarPolicy.ScrollBarAlwaysOn if wide else Qt.ScrollBarPolicy.ScrollBarAlwaysOff
        if self.horizontalScrollBarPolicy() != policy:
            self.setHorizontalScrollBarPolicy(policy)
        bar = self.horizontalScrollBar().sizeHint().height() if wide else 0
        height = int(size.height() + 0.999) + 2 + bar
        if height != self.height():
            self.setFixedHeight(height)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_height()

    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta()
        if abs(delta.x()) > abs(delta.y()) and self.horizontalScrollBar().isVisible():
            super().wheelEvent(event)  # sideways through a wide table
        else:
            event.ignore()  # let the transcript scroll


class _MessageCard(QFrame):
    """One message: role header, rendered body, status/stats lines and action buttons."""

    def __init__(self, view: ChatView, item: _Item, parent: QWidget) -> None:
        super().__init__(parent)
        self.setObjectName("messageCard")
        self._view = view
        self.item = item
        self.code_blocks: tuple[str, ...] = ()
        is_user = item.role == "user"
        self.setProperty("role", item.role)
        self.setProperty("messageId", item.id)
        # Widgets that most messages never need (branch switcher, "not in context" tag) are built on demand.
        outer = QHBoxLayout(self)
        outer.setContentsMargins(0, 6, 0, 6)
        self._column = QWidget(self)
        col = QVBoxLayout(self._column)
        col.setContentsMargins(0, 0, 0, 0)
        col.setSpacing(3)
        if is_user:
            outer.addStretch(1)
        outer.addWidget(self._column, 0 if is_user else 1)
        self._align = Qt.AlignmentFlag.AlignRight if is_user else Qt.AlignmentFlag.AlignLeft

        self._header = QHBoxLayout()
        self._header.setSpacing(6)
        self.name_label = QLabel(_role_label(item), self._column)
        self.name_label.setObjectName("messageRole")
        if is_user:
            self._header.addStretch(1)
        self._header.addWidget(self.name_label)
        if not is_user:
            self._header.addStretch(1)
        col.addLayout(self._header)
        self.excluded_label: QLabel | None = None

        self.bubble = QFrame(self._column)
        self.bubble.setObjectName("bubble")
        self.bubble.setProperty("role", item.role)
        bubble_layout = self._bubble_layout = QVBoxLayout(self.bubble)
        bubble_layout.setContentsMargins(*((14, 9, 14, 9) if is_user else (0, 0, 0, 0)))
        self.body = _MessageBody(self.bubble)
        self.body.setAccessibleName("Your message" if is_user else "Reply")
        self.body.anchorClicked.connect(self._on_anchor)
        bubble_layout.addWidget(self.body)
        if is_user:
            self.bubble.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)
            col.addWidget(self.bubble, 0, self._align)
        else:
            col.addWidget(self.bubble)

        self.status_label: QLabel | None = None
        self.stats_label: QLabel | None = None
        if not is_user:
            self.status_label = QLabel(self._column)
            self.status_label.setObjectName("messageStatus")
            self.status_label.setWordWrap(True)
            self.stats_label = QLabel(self._column)
            self.stats_label.setObjectName("messageStats")
            col.addWidget(self.status_label)
            col.addWidget(self.stats_label)

        self._actions = QHBoxLayout()
        self._actions.setSpacing(2)
        if is_user:
            self._actions.addStretch(1)
        self._branch: tuple[QToolButton, QLabel, QToolButton] | None = None
        self.copy_button = self._action("Copy", "Copy message", self._copy_message)
        self._actions.addWidget(self.copy_button)
        self.edit_button: QToolButton | None = None
        self.regenerate_button: QToolButton | None = None
        if is_user:
            self.edit_button = self._action(
                "Edit", "Edit message", lambda: view.editRequested.emit(self.item.id)
            )
            self._actions.addWidget(self.edit_button)
        else:
            self.regenerate_button = self._action(
                "Regenerate", "Regenerate reply", lambda: view.regenerateRequested.emit(self.item.id)
            )
            self._actions.addWidget(self.regenerate_button)
            self._actions.addStretch(1)
        col.addLayout(self._actions)

        self.excluded = False
        self.can_regenerate = False
        self.tail: _MessageBody | None = None
        self._incremental = False
        self.render_body()
        self._update_meta()

    def _action(self, text: str, accessible: str, slot: Any) -> QToolButton:
        button = QToolButton(self._column)
        button.setObjectName("messageAction")
        button.setText(text)
        button.setAccessibleName(accessible)
        button.setToolTip(accessible)
        button.setAutoRaise(True)
        button.setCursor(Qt.CursorShape.PointingHandCursor)
        button.clicked.connect(slot)
        return button

    def render_body(self) -> None:
        """Render the whole message body from its Markdown (O(message size): never per streamed token)."""
        self._end_incremental()
        rendered = markdown.render_markdown(
            self.item.content, dark=self._view.dark, code_font=self._view.code_font, breaks=True
        )
        self.code_blocks = tuple(_strip_newline(b) for b in rendered.code_blocks)
        self.body.set_html(rendered.html, document_stylesheet(self._view.dark), self.item.role == "user")
        self._show_bubble()

    def _show_bubble(self) -> None:
        """The bubble is hidden for a reply that ended with no text (its status line says why)."""
        self.bubble.setVisible(bool(self.item.content) or self.item.status == "streaming")

    def stream_update(self, content: str) -> None:
        """Show a longer version of a streaming reply, re-rendering only its unfinished tail.

        Text up to the last blank line outside a code fence is final: it is rendered once and appended
        to the body document. The rest (usually one paragraph or one growing code block) is rendered
        into a small second document. ``render_body()`` at the end of the stream gives the exact result.
        """
        if not self._incremental:
            self._incremental = True
            self._stable_len = self._scan_pos = self._split = 0
            self._fence = ""
            self._stable_blocks: list[str] = []
            self.body.set_html("", document_stylesheet(self._view.dark), False)
            self.tail = _MessageBody(self.bubble)
            self.tail.anchorClicked.connect(self._on_anchor)
            self._bubble_layout.addWidget(self.tail)
            self.tail.show()
        assert self.tail is not None
        self.bubble.setVisible(True)
        self._advance_split(content)
        dark, font = self._view.dark, self._view.code_font
        if self._split > self._stable_len:
            chunk = content[self._stable_len : self._split]
            rendered = markdown.render_markdown(
                chunk, first_code_index=len(self._stable_blocks), dark=dark, code_font=font, breaks=True
            )
            self.body.append_html(rendered.html)
            self._stable_blocks += [_strip_newline(b) for b in rendered.code_blocks]
            self._stable_len = self._split
        tail = content[self._stable_len :]
        rendered = markdown.render_markdown(
            tail, first_code_index=len(self._stable_blocks), dark=dark, code_font=font, breaks=True
        )
        self.tail.set_html(rendered.html, document_stylesheet(self._view.dark), False)
        self.tail.setVisible(bool(tail.strip()))
        self.code_blocks = (*self._stable_blocks, *(_strip_newline(b) for b in rendered.code_blocks))

    def _advance_split(self, content: str) -> None:
        """Scan the newly completed lines for the last blank line that is not inside a code fence."""
        pos = self._scan_pos
        while (end := content.find("\n", pos)) >= 0:
            line = content[pos:end]
            match = _FENCE_RE.match(line)
            if self._fence:
                marker = match.group(1) if match else ""
                if marker.startswith(self._fence) and not line.strip()[len(marker) :]:
                    self._fence = ""
            elif match:
                self._fence = match.group(1)
            elif not line.strip():
                self._split = end + 1
            pos = end + 1
        self._scan_pos = pos

    def _end_incremental(self) -> None:
        if self._incremental:
            self._incremental = False
            if self.tail is not None:
                self.tail.hide()
                self.tail.deleteLater()
                self.tail = None

    def set_item(self, item: _Item) -> None:
        content_changed = item.content != self.item.content
        self.item = item
        if content_changed or self._incremental:
            self.render_body()
        self._update_meta()

    def _update_meta(self) -> None:
        item = self.item
        self.name_label.setText(_role_label(item))
        self._show_bubble()
        if self.status_label is not None and self.stats_label is not None:
            status = status_text(item.status, item.stats)
            self.status_label.setText(status)
            self.status_label.setProperty("status", item.status)
            self.status_label.setVisible(bool(status))
            self._repolish(self.status_label)
            stats = format_stats(item.stats)
            self.stats_label.setText(stats)
            self.stats_label.setVisible(bool(stats))
        if item.sibling_count > 1 and self._branch is None:
            prev_button = self._action("‹", "Previous version", lambda: self._step(-1))
            label = QLabel(self._column)
            label.setObjectName("branchLabel")
            next_button = self._action("›", "Next version", lambda: self._step(+1))
            first = 1 if item.role == "user" else 0
            for offset, widget in enumerate((prev_button, label, next_button)):
                self._actions.insertWidget(first + offset, widget)
            self._branch = (prev_button, label, next_button)
        if self._branch is not None:
            prev_button, label, next_button = self._branch
            label.setText(f"{item.sibling_index}/{item.sibling_count}")
            for widget in self._branch:
                widget.setVisible(item.sibling_count > 1)
            prev_button.setEnabled(item.sibling_index > 1)
            next_button.setEnabled(item.sibling_index < item.sibling_count)
        streaming = item.status == "streaming"
        self.copy_button.setEnabled(not streaming)
        if self.regenerate_button is not None:
            self.regenerate_button.setVisible(self.can_regenerate and not streaming)

    def set_can_regenerate(self, value: bool) -> None:
        if value != self.can_regenerate:
            self.can_regenerate = value
            self._update_meta()

    def set_excluded(self, value: bool) -> None:
        if value == self.excluded:
            return
        self.excluded = value
        if self.excluded_label is None:
            self.excluded_label = QLabel(NOT_IN_CONTEXT, self._column)
            self.excluded_label.setObjectName("notInContext")
            self.excluded_label.setToolTip("This message was left out of the model's context window.")
            self._header.insertWidget(2 if self.item.role == "user" else 1, self.excluded_label)
        self.excluded_label.setVisible(value)
        if value:
            effect = QGraphicsOpacityEffect(self._column)
            effect.setOpacity(0.5)
            self._column.setGraphicsEffect(effect)
        else:
            self._column.setGraphicsEffect(None)  # type: ignore[arg-type]

    def plain_text(self) -> str:
        text = self.body.toPlainText()
        if self.tail is not None and self.tail.isVisibleTo(self):
            text = f"{text}\n{self.tail.toPlainText()}" if text else self.tail.toPlainText()
        lines = [text.rstrip()]
        lines += [label.text() for label in (self.status_label, self.stats_label) if label and label.text()]
        return "\n".join(lines)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        if self.item.role == "user":
            self.bubble.setMaximumWidth(max(120, int(event.size().width() * 0.8)))

    @staticmethod
    def _repolish(widget: QWidget) -> None:
        style = widget.style()
        style.unpolish(widget)
        style.polish(widget)

    def _step(self, delta: int) -> None:
        self._view.branchStepRequested.emit(self.item.id, delta)

    def _copy_message(self) -> None:
        QGuiApplication.clipboard().setText(self.item.content)
        self._flash(self.copy_button)

    def _flash(self, button: QToolButton) -> None:
        button.setText("Copied")
        QTimer.singleShot(1200, button, lambda: button.setText("Copy"))

    def _on_anchor(self, url: QUrl) -> None:
        if url.scheme() == COPY_CODE_SCHEME:
            index = int(url.path()) if url.path().isdigit() else -1
            if 0 <= index < len(self.code_blocks):
                QGuiApplication.clipboard().setText(self.code_blocks[index])
        elif url.scheme() in _OPEN_SCHEMES:
            QDesktopServices.openUrl(url)


def _strip_newline(code: str) -> str:
    return code[:-1] if code.endswith("\n") else code


def _stylesheet(dark: bool) -> str:
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
#chatView QLabel#messageStatus {{ color: {warn}; font-size: 12px; }}
#chatView QLabel#messageStatus[status="failed"] {{ color: {error}; }}
#chatView QLabel#messageStatus[status="streaming"] {{ color: {muted}; }}
#messageAction {{ color: {muted}; border: none; border-radius: 6px; padding: 2px 6px; font-size: 12px; }}
#messageAction:hover {{ background: {hover}; color: {text}; }}
#messageAction:disabled {{ color: {hover}; }}
#loadEarlier {{ color: {accent}; background: transparent; border: none; padding: 6px; }}
"""


class ChatView(QWidget):
    """The conversation transcript with Markdown rendering, per-message actions and a streaming reply.

    Signals:
        editRequested(int): the user wants to edit this user message.
        regenerateRequested(int): the user wants a new version of this (last) assistant reply.
        branchStepRequested(int, int): show the previous (-1) or next (+1) version of this message.
    """

    editRequested = Signal(int)
    regenerateRequested = Signal(int)
    branchStepRequested = Signal(int, int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("chatView")
        self.setAccessibleName("Conversation")
        self.dark = False
        self.code_font = ""
        self._items: list[_Item] = []
        self._cards: dict[int, _MessageCard] = {}
        self._first = 0  # index into _items of the oldest rendered message
        self._excluded: set[int] = set()
        self._stream_item: _Item | None = None
        self._stream_parts: list[str] = []
        self._follow = True
        self._anchor_from_bottom: int | None = None
        self._programmatic = False

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
        items = [_Item.from_message(m) for m in messages if m.role != "system"]
        same_conversation = bool(items and self._items) and (
            items[0].conversation_id == self._items[0].conversation_id
        )
        if self._stream_item is not None:
            live = next((i for i in items if i.id == self._stream_item.id), None)
            if live is None:
                self._stop_stream()
            else:
                live.content = self._stream_content()
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
            card = old.pop(item.id) if item.id in old else _MessageCard(self, item, self._column)
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

    def set_excluded(self, message_ids: set[int]) -> None:
        """Grey out and label the messages that were left out of the model's context window."""
        self._excluded = set(message_ids)
        for message_id, card in self._cards.items():
            card.set_excluded(message_id in self._excluded)

    def begin_stream(self, message: MessageLike) -> None:
        """Append an (empty) assistant reply that will be filled by append_stream."""
        self._stop_stream()
        item = _Item.from_message(message)
        item.status = "streaming"
        self._stream_item = item
        self._stream_parts = [item.content] if item.content else []
        self._items.append(item)
        card = _MessageCard(self, item, self._column)
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

    def end_stream(self, message: MessageLike) -> None:
        """Show the final content, status and stats of a reply (normally the one being streamed)."""
        final = _Item.from_message(message)
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
            card = _MessageCard(self, item, self._column)
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
