"""A non-blocking message strip above the chat: errors and notices with a next step.

Unlike a modal dialog it never interrupts typing; it stays until dismissed or replaced. The
newest message is shown; an error or warning it replaced comes back when it is dismissed, so a
passing notice never hides a problem the user has not read yet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

_COLOURS = {
    "error": ("#fdecea", "#8a1c12", "#e0a39c"),
    "warning": ("#fff6e0", "#6b4a00", "#e6c77a"),
    "info": ("#e8f1fd", "#123d73", "#a7c4ec"),
}
MAX_HELD = 5


@dataclass(frozen=True)
class _Message:
    text: str
    kind: str
    action_text: str
    action: Callable[[], None] | None
    topic: str


class Banner(QFrame):
    """Shows one message at a time; ``kind`` is error, warning or info.

    A ``topic`` names what a message is about, so that :meth:`retract` can take back the
    messages a later success made obsolete (a load error once a model loads).

    Signals:
        dismissed: the user closed the banner.
    """

    dismissed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("banner")
        self.setAccessibleName("banner")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._kind = "info"
        self._action: Callable[[], None] | None = None
        self._current: _Message | None = None
        self._held: list[_Message] = []  # unread errors and warnings a newer message covers, oldest first
        layout = QHBoxLayout(self)
        layout.setContentsMargins(10, 6, 6, 6)
        self._label = QLabel(self)
        self._label.setObjectName("bannerText")
        self._label.setWordWrap(True)
        self._label.setTextFormat(self._label.textFormat().PlainText)
        layout.addWidget(self._label, 1)
        self._action_button = QPushButton(self)
        self._action_button.setObjectName("bannerAction")
        self._action_button.clicked.connect(self._run_action)
        layout.addWidget(self._action_button)
        close = QToolButton(self)
        close.setObjectName("bannerClose")
        close.setText("✕")
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss message")
        close.clicked.connect(self.dismiss)
        layout.addWidget(close)
        self.hide()

    @property
    def kind(self) -> str:
        return self._kind

    def text(self) -> str:
        return self._label.text()

    def held_count(self) -> int:
        """Errors and warnings waiting under the message shown."""
        return len(self._held)

    def show_message(
        self,
        message: str,
        kind: str = "error",
        *,
        action_text: str = "",
        action: Callable[[], None] | None = None,
        topic: str = "",
    ) -> None:
        """Show ``message``; an optional button runs ``action`` (the next step)."""
        new = _Message(message, kind if kind in _COLOURS else "info", action_text, action, topic)
        self._held = [m for m in self._held if m.text != message]
        current = self._current
        if current is not None and not self.isHidden() and current.kind != "info" and current.text != message:
            self._held = [*self._held, current][-MAX_HELD:]
        self._display(new)

    def dismiss(self) -> None:
        """Close the message shown; an error or warning it covered comes back."""
        self._next()
        self.dismissed.emit()

    def retract(self, topic: str) -> None:
        """Take back every message about ``topic``, shown or waiting (it no longer applies)."""
        self._held = [m for m in self._held if m.topic != topic]
        if self._current is not None and self._current.topic == topic and not self.isHidden():
            self._next()

    def _next(self) -> None:
        if self._held:
            self._display(self._held.pop())
            return
        self.hide()
        self._current = None
        self._action = None

    def _display(self, message: _Message) -> None:
        self._current = message
        self._kind = message.kind
        background, foreground, border = _COLOURS[self._kind]
        self.setStyleSheet(
            f"#banner {{ background: {background}; border: 1px solid {border}; border-radius: 4px; }}"
            f" #banner QLabel {{ color: {foreground}; }}"
        )
        self._label.setText(message.text)
        self._action = message.action
        self._action_button.setText(message.action_text)
        self._action_button.setVisible(bool(message.action_text and message.action))
        self.show()

    def _run_action(self) -> None:
        action = self._action
        self.dismiss()
        if action is not None:
            action()
