"""One message of the transcript: the view's copy of a message, its status lines and its card widget.

A card shows the role, a reasoning model's thinking (collapsed), the rendered Markdown body (in a bubble
for the user's messages), the status and stats lines of a reply and the per-message actions (copy, edit,
regenerate, switch version). Widgets most messages never need (thinking block, version switcher,
"not in context" tag, "Sources" line) are built on demand. Copy copies the answer only, never the thinking.
A reply to a question sent with documents shows its ``[n]`` citations as links and a "Sources" line;
both open the cited passage (``ChatView.open_citation``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication, QResizeEvent
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsOpacityEffect,
    QHBoxLayout,
    QLabel,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from llamadesk.chat.records import stat_number
from llamadesk.chat.sources import link_citations
from llamadesk.chat.store import SourceRef
from llamadesk.ui import markdown
from llamadesk.ui.citations import cite_number, sources_html
from llamadesk.ui.markdown import COPY_CODE_SCHEME, code_block_index, document_stylesheet
from llamadesk.ui.message_body import MessageBody, StreamingRender, ThinkingBlock, strip_newline

if TYPE_CHECKING:
    from llamadesk.ui.chat_view import ChatView

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
class MessageItem:
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
    thinking: str = ""
    sources: tuple[SourceRef, ...] = ()  # a reply's: the numbered sources its question was sent with

    @classmethod
    def from_message(cls, m: MessageLike) -> MessageItem:
        """A copy of ``m`` (its stats dict copied too)."""
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
            thinking=getattr(m, "thinking", "") or "",
        )


def format_stats(stats: dict[str, Any] | None) -> str:
    """The line under a reply: "N tokens · X tok/s · first token Y s · finished"."""
    if not stats:
        return ""
    parts: list[str] = []
    tokens = stat_number(stats, "completion_tokens")
    if tokens is not None:
        parts.append(f"{int(tokens)} token" + ("" if tokens == 1 else "s"))
    tps = stat_number(stats, "tokens_per_s")
    if tps:
        parts.append(f"{tps:.1f} tok/s")
    ttft = stat_number(stats, "ttft_s")
    if ttft is not None and tokens != 0:  # stopped or failed before any token: there was no first token
        parts.append(f"first token {ttft:.2f} s")
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


def role_label(item: MessageItem) -> str:
    """The name above a message: "You", or the model file's name for a reply."""
    if item.role == "user":
        return "You"
    if item.model:
        return item.model.replace("\\", "/").rsplit("/", 1)[-1]
    return "Assistant"


class MessageCard(QFrame):
    """One message: role header, rendered body, status/stats lines and action buttons."""

    def __init__(self, view: ChatView, item: MessageItem, parent: QWidget) -> None:
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
        self.name_label = QLabel(role_label(item), self._column)
        self.name_label.setObjectName("messageRole")
        if is_user:
            self._header.addStretch(1)
        self._header.addWidget(self.name_label)
        if not is_user:
            self._header.addStretch(1)
        col.addLayout(self._header)
        self.excluded_label: QLabel | None = None
        self.thinking_block: ThinkingBlock | None = None  # built when the reply has thinking

        self.bubble = QFrame(self._column)
        self.bubble.setObjectName("bubble")
        self.bubble.setProperty("role", item.role)
        bubble_layout = self._bubble_layout = QVBoxLayout(self.bubble)
        bubble_layout.setContentsMargins(*((14, 9, 14, 9) if is_user else (0, 0, 0, 0)))
        self.body = MessageBody(self.bubble)
        self.body.setAccessibleName("Your message" if is_user else "Reply")
        self.body.anchorClicked.connect(self._on_anchor)
        bubble_layout.addWidget(self.body)
        if is_user:
            self.bubble.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)
            col.addWidget(self.bubble, 0, self._align)
        else:
            col.addWidget(self.bubble)

        self.sources_label: QLabel | None = None  # built when the reply has sources
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
        self.tail: MessageBody | None = None
        self._stream: StreamingRender | None = None  # while a reply streams
        self.render_body()
        self._update_meta()
        self._update_thinking()
        self._update_sources()

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
        content = self.item.content
        if self.item.sources and self.item.role == "assistant":
            content = link_citations(content, [source.number for source in self.item.sources])
        rendered = markdown.render_markdown(
            content, dark=self._view.dark, code_font=self._view.code_font, breaks=True
        )
        self.code_blocks = tuple(strip_newline(b) for b in rendered.code_blocks)
        self.body.set_html(rendered.html, document_stylesheet(self._view.dark), self.item.role == "user")
        self._show_bubble()

    def _show_bubble(self) -> None:
        """The bubble is hidden for a reply that ended with no text (its status line says why)."""
        self.bubble.setVisible(bool(self.item.content) or self.item.status == "streaming")

    def stream_update(self, content: str) -> None:
        """Show a longer version of a streaming reply, re-rendering only its unfinished tail.

        See :class:`StreamingRender`; ``render_body()`` at the end of the stream gives the exact result.
        """
        if self._stream is None:
            tail = MessageBody(self.bubble)
            self._stream = StreamingRender(self.body, tail, self._view.dark)
            self.tail = tail
            tail.anchorClicked.connect(self._on_anchor)
            self._bubble_layout.addWidget(tail)
            tail.show()
        self.bubble.setVisible(True)
        if self.thinking_block is not None and content.strip():
            self.thinking_block.set_live(False)  # the answer has begun
        self.code_blocks = self._stream.update(content, self._view.dark, self._view.code_font)

    def stream_thinking(self, text: str) -> None:
        """Add a piece of the thinking of a streaming reply (shown live, folded unless expanded)."""
        block = self._thinking_block()
        block.set_live(True)
        block.append(text)

    def _thinking_block(self) -> ThinkingBlock:
        if self.thinking_block is None:
            self.thinking_block = ThinkingBlock(self._column)
            column = self._column.layout()
            assert isinstance(column, QVBoxLayout)
            column.insertWidget(column.indexOf(self.bubble), self.thinking_block)
            self.thinking_block.show()
        return self.thinking_block

    def _update_thinking(self) -> None:
        """Show the stored thinking (and its time) of a finished message."""
        item = self.item
        if not item.thinking.strip() and self.thinking_block is None:
            return
        block = self._thinking_block()
        block.setVisible(bool(item.thinking.strip()))
        if item.status != "streaming":
            block.set_live(False)
            block.set_seconds(stat_number(item.stats, "thinking_s"))
        if block.text() != item.thinking.strip():
            block.set_text(item.thinking)

    def _end_incremental(self) -> None:
        if self._stream is not None:
            self._stream = None
            if self.tail is not None:
                self.tail.hide()
                self.tail.deleteLater()
                self.tail = None

    def set_item(self, item: MessageItem) -> None:
        """Show a new version of the message; the body is re-rendered only when its text changed."""
        content_changed = item.content != self.item.content or item.sources != self.item.sources
        self.item = item
        if content_changed or self._stream is not None:
            self.render_body()
        self._update_meta()
        self._update_thinking()
        self._update_sources()

    def _update_sources(self) -> None:
        """The "Sources" line under a reply whose question was sent with documents."""
        item = self.item
        if item.role != "assistant" or (not item.sources and self.sources_label is None):
            return
        if self.sources_label is None:
            self.sources_label = QLabel(self._column)
            self.sources_label.setObjectName("messageSources")
            self.sources_label.setWordWrap(True)
            self.sources_label.setTextFormat(Qt.TextFormat.RichText)
            self.sources_label.setAccessibleName("Sources")
            self.sources_label.linkActivated.connect(lambda link: self._on_anchor(QUrl(link)))
            column = self._column.layout()
            assert isinstance(column, QVBoxLayout)
            column.insertWidget(column.indexOf(self.bubble) + 1, self.sources_label)
        self.sources_label.setText(sources_html(item.sources) if item.sources else "")
        self.sources_label.setVisible(bool(item.sources) and item.status != "streaming")

    def _update_meta(self) -> None:
        item = self.item
        self.name_label.setText(role_label(item))
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
        """Offer "Regenerate" on this card (only the newest reply has it)."""
        if value != self.can_regenerate:
            self.can_regenerate = value
            self._update_meta()

    def set_excluded(self, value: bool) -> None:
        """Grey the message out and tag it when it was left out of the model's context window."""
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
        """The text as displayed: the thinking line (and the thinking when expanded), the body (and
        streaming tail), then the status and stats lines."""
        text = self.body.toPlainText()
        if self.tail is not None and self.tail.isVisibleTo(self):
            text = f"{text}\n{self.tail.toPlainText()}" if text else self.tail.toPlainText()
        lines = [text.rstrip()]
        block = self.thinking_block
        if block is not None and block.isVisibleTo(self):
            lines[:0] = [block.label().strip(), *([block.text()] if block.expanded else [])]
        if self.sources_label is not None and self.sources_label.isVisibleTo(self):
            lines.append("Sources: " + " · ".join(f"[{s.number}] {s.label()}" for s in self.item.sources))
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
        number = cite_number(url)
        if number is not None:
            self._view.open_citation(self.item.id, number)
        elif url.scheme() == COPY_CODE_SCHEME:
            index = code_block_index(url.path())
            if 0 <= index < len(self.code_blocks):
                QGuiApplication.clipboard().setText(self.code_blocks[index])
        elif url.scheme() in _OPEN_SCHEMES:
            QDesktopServices.openUrl(url)
