"""A non-blocking message strip above the chat: errors and notices with a next step.

Unlike a modal dialog it never interrupts typing; it stays until dismissed or replaced.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QToolButton, QWidget

_COLOURS = {
    "error": ("#fdecea", "#8a1c12", "#e0a39c"),
    "warning": ("#fff6e0", "#6b4a00", "#e6c77a"),
    "info": ("#e8f1fd", "#123d73", "#a7c4ec"),
}


class Banner(QFrame):
    """Shows one message at a time; ``kind`` is error, warning or info.

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

    def show_message(
        self,
        message: str,
        kind: str = "error",
        *,
        action_text: str = "",
        action: Callable[[], None] | None = None,
    ) -> None:
        """Show ``message``; an optional button runs ``action`` (the next step)."""
        self._kind = kind if kind in _COLOURS else "info"
        background, foreground, border = _COLOURS[self._kind]
        self.setStyleSheet(
            f"#banner {{ background: {background}; border: 1px solid {border}; border-radius: 4px; }}"
            f" #banner QLabel {{ color: {foreground}; }}"
        )
        self._label.setText(message)
        self._action = action
        self._action_button.setText(action_text)
        self._action_button.setVisible(bool(action_text and action))
        self.show()

    def dismiss(self) -> None:
        self.hide()
        self._action = None
        self.dismissed.emit()

    def _run_action(self) -> None:
        action = self._action
        self.dismiss()
        if action is not None:
            action()
