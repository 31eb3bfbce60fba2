"""A message's rendered text, the incremental renderer that fills it while a reply streams, and the
collapsible block that holds a reasoning model's thinking.

``MessageBody`` is a read-only rich-text view exactly as tall as its content, so the transcript does all
the scrolling. ``StreamingRender`` keeps a growing reply cheap to show: finished Markdown blocks are
rendered once and appended to the body, and only the unfinished tail is re-rendered on each update.
``ThinkingBlock`` is the "Thought for N s" line above an answer, expanded to show the thinking.
"""

from __future__ import annotations

import re
import time

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QResizeEvent, QTextBlockFormat, QTextCharFormat, QTextCursor, QWheelEvent
from PySide6.QtWidgets import QFrame, QSizePolicy, QTextBrowser, QToolButton, QVBoxLayout, QWidget

from llamadesk.ui import markdown
from llamadesk.ui.markdown import document_stylesheet

_FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def strip_newline(code: str) -> str:
    """A code block's text without the newline Markdown ends it with (what "copy code" copies)."""
    return code[:-1] if code.endswith("\n") else code


class MessageBody(QTextBrowser):
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
        """Replace the content; ``measure_width`` records its one-line width so short bubbles can shrink."""
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


class StreamingRender:
    """Shows ever longer versions of a streaming reply in ``body`` and ``tail``, re-rendering only the tail.

    Text up to the last blank line outside a code fence is final: it is rendered once and appended to
    ``body``. The rest (usually one paragraph or one growing code block) is rendered into ``tail``, a
    small second document. The caller renders the whole message once more when the stream ends.
    """

    def __init__(self, body: MessageBody, tail: MessageBody, dark: bool) -> None:
        self.body = body
        self.tail = tail
        self._stable_len = self._scan_pos = self._split = 0
        self._fence = ""
        self._stable_blocks: list[str] = []
        body.set_html("", document_stylesheet(dark), False)

    def update(self, content: str, dark: bool, code_font: str) -> tuple[str, ...]:
        """Show ``content`` (the previous content plus more); returns the code blocks it now shows."""
        self._advance_split(content)
        if self._split > self._stable_len:
            chunk = content[self._stable_len : self._split]
            rendered = markdown.render_markdown(
                chunk, first_code_index=len(self._stable_blocks), dark=dark, code_font=code_font, breaks=True
            )
            self.body.append_html(rendered.html)
            self._stable_blocks += [strip_newline(b) for b in rendered.code_blocks]
            self._stable_len = self._split
        tail = content[self._stable_len :]
        rendered = markdown.render_markdown(
            tail, first_code_index=len(self._stable_blocks), dark=dark, code_font=code_font, breaks=True
        )
        self.tail.set_html(rendered.html, document_stylesheet(dark), False)
        self.tail.setVisible(bool(tail.strip()))
        return (*self._stable_blocks, *(strip_newline(b) for b in rendered.code_blocks))

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


def thought_label(seconds: float | None) -> str:
    """The collapsed thinking block's line: "Thought for N s" ("Thoughts" when the time is unknown)."""
    if seconds is None:
        return "Thoughts"
    return f"Thought for {max(1, round(seconds))} s"


class ThinkingBlock(QWidget):
    """A reply's thinking, collapsed to one line above the answer; click the line to expand it.

    While the model thinks (``set_live(True)``) the line reads "Thinking…" with a slowly moving
    ellipsis and the seconds so far, and new thinking is appended as plain text (O(piece)).
    """

    DOT_INTERVAL_MS = 450

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("thinkingBlock")
        self._seconds: float | None = None
        self._started: float | None = None
        self._dots = 0
        self.toggle = QToolButton(self)
        self.toggle.setObjectName("thinkingToggle")
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.setCursor(Qt.CursorShape.PointingHandCursor)
        self.toggle.setAccessibleName("Show the model's thinking")
        self.toggle.toggled.connect(self._on_toggled)
        self.body = MessageBody(self)
        self.body.setObjectName("thinkingBody")
        self.body.setAccessibleName("Thinking")
        self.body.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 2)
        layout.setSpacing(2)
        layout.addWidget(self.toggle, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.body)
        self._timer = QTimer(self)
        self._timer.setInterval(self.DOT_INTERVAL_MS)
        self._timer.timeout.connect(self._tick)
        self._update_label()

    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()

    @property
    def live(self) -> bool:
        """True while the thinking is still being written."""
        return self._started is not None

    def set_expanded(self, expanded: bool) -> None:
        """Show (True) or fold away (False) the thinking."""
        self.toggle.setChecked(expanded)

    def set_text(self, text: str) -> None:
        """Show ``text`` as the whole thinking."""
        self.body.setPlainText(text.strip())

    def append(self, text: str) -> None:
        """Add a streamed piece at the end (only the new text is laid out)."""
        cursor = QTextCursor(self.body.document())
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)

    def text(self) -> str:
        return self.body.toPlainText()

    def set_live(self, live: bool) -> None:
        """Start or end the "Thinking…" indicator; ending it keeps the time it took."""
        if live and self._started is None:
            self._started = time.monotonic()
            self._timer.start()
        elif not live and self._started is not None:
            self._seconds = time.monotonic() - self._started
            self._started = None
            self._timer.stop()
        self._update_label()

    def set_seconds(self, seconds: float | None) -> None:
        """The thinking time as stored with the reply (None when unknown)."""
        if seconds is not None or self._started is None:
            self._seconds = seconds if seconds is not None else self._seconds
        self._update_label()

    def label(self) -> str:
        return self.toggle.text()

    def _tick(self) -> None:
        self._dots = (self._dots + 1) % 4
        self._update_label()

    def _update_label(self) -> None:
        if self._started is not None:
            elapsed = int(time.monotonic() - self._started)
            text = (
                "Thinking" + "." * self._dots + " " * (3 - self._dots) + (f" {elapsed} s" if elapsed else "")
            )
        else:
            text = thought_label(self._seconds)
        self.toggle.setText(text)
        live = self._started is not None
        if self.toggle.property("live") != live:
            self.toggle.setProperty("live", live)
            self.toggle.style().unpolish(self.toggle)  # the stylesheet italicises a live line
            self.toggle.style().polish(self.toggle)

    def _on_toggled(self, expanded: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if expanded else Qt.ArrowType.RightArrow)
        self.toggle.setAccessibleName(
            "Hide the model's thinking" if expanded else "Show the model's thinking"
        )
        self.body.setVisible(expanded)
