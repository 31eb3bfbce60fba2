"""The message box under the chat, with Send, Stop and Regenerate.

Enter sends, Shift+Enter starts a new line, Esc stops. Send and Stop are never both enabled. For a
reasoning model whose template can switch thinking, a "Think" toggle (or, for gpt-oss, a reasoning
effort) chooses whether the next reply thinks first; it is hidden for every other model.

"Documents" chooses the collections the chat searches before each answer; "Attach" (or files dropped
on the box) hands files to the window, which puts a small text file into the message whole and
indexes anything else into a collection for the chat.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QMimeData, Qt, Signal
from PySide6.QtGui import QAction, QDragEnterEvent, QDragMoveEvent, QDropEvent, QKeyEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..chat.reasoning import EFFORTS
from .resources import icon

_LEADING_BLANK_LINES = re.compile(r"\A(?:[ \t]*\r?\n)+")


def dropped_files(mime: QMimeData) -> list[str]:
    """Local files (not models: a .gguf dropped goes to the model library) carried by a drag."""
    if not mime.hasUrls():
        return []
    paths = [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]
    if not paths or any(p.lower().endswith(".gguf") for p in paths):
        return []
    return paths


def tidy_message(text: str) -> str:
    """A message as sent: blank lines around it dropped, the first line's indentation kept
    (pasted code or a Markdown code block starts indented)."""
    return _LEADING_BLANK_LINES.sub("", text.rstrip())


class _Editor(QPlainTextEdit):
    """Plain text editor that turns Enter into "send" and Esc into "stop"."""

    submitted = Signal()
    escapePressed = Signal()
    filesDropped = Signal(list)

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if dropped_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dragMoveEvent(self, event: QDragMoveEvent) -> None:
        if dropped_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragMoveEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        files = dropped_files(event.mimeData())
        if files:
            event.acceptProposedAction()
            self.filesDropped.emit(files)
        else:
            super().dropEvent(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        mods = event.modifiers()
        if key in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and not (
            mods & (Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.AltModifier)
        ):
            self.submitted.emit()
            return
        if key == Qt.Key.Key_Escape:
            self.escapePressed.emit()
            return
        super().keyPressEvent(event)


class Composer(QWidget):
    """Where the user writes.

    Signals:
        sendRequested(str): the user sent this text (the box is cleared by the window once stored).
        stopRequested: stop the reply being generated.
        regenerateRequested: write the last reply again.
        draftChanged: the text changed (the window saves drafts).
        thinkingChanged(str): the user switched thinking ("on", "off", or an effort: "low"...).
        filesAttached(list): files to attach to the message (paths, from Attach or a drop).
        collectionToggled(str, bool): the user chose (True) or dropped a collection for this chat.
        documentsRequested: the user asked for the Documents panel.
    """

    sendRequested = Signal(str)
    stopRequested = Signal()
    regenerateRequested = Signal()
    draftChanged = Signal()
    thinkingChanged = Signal(str)
    filesAttached = Signal(list)
    collectionToggled = Signal(str, bool)
    documentsRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._busy = False
        self._ready = False
        self._can_regenerate = False
        self.editor = _Editor(self)
        self.editor.setObjectName("composer")
        self.editor.setAccessibleName("composer")
        self.editor.setAccessibleDescription("Write a message. Enter sends, Shift+Enter starts a new line.")
        self.editor.setPlaceholderText("Message the model — Enter to send, Shift+Enter for a new line")
        self.editor.setTabChangesFocus(True)
        self.editor.setMinimumHeight(56)
        self.editor.setMaximumHeight(110)
        self.editor.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Maximum)
        self.editor.submitted.connect(self.submit)
        self.editor.escapePressed.connect(self._escape)
        self.editor.textChanged.connect(self._update)
        self.editor.textChanged.connect(self.draftChanged)

        self.send_button = self._button("Send", "send", "sendButton", "Send the message (Enter)")
        self.send_button.clicked.connect(self.submit)
        self.stop_button = self._button("Stop", "stop", "stopButton", "Stop the reply (Esc)")
        self.stop_button.clicked.connect(self.stopRequested)
        self.regenerate_button = self._button(
            "Regenerate", "regenerate", "regenerateButton", "Write the last reply again"
        )
        self.regenerate_button.clicked.connect(self.regenerateRequested)
        self._thinking_control = ""
        self.think_button = QToolButton(self)
        self.think_button.setObjectName("thinkButton")
        self.think_button.setCheckable(True)
        # As wide as the buttons above, and saying its state in words like "Think: medium" does.
        self.think_button.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.think_button.toggled.connect(self._show_think_state)
        self.think_button.setAccessibleName("Think before answering")
        self.think_button.setToolTip("Let the model think before it answers (slower, often better)")
        self.think_button.toggled.connect(lambda on: self.thinkingChanged.emit("on" if on else "off"))
        self._show_think_state(False)
        self.think_button.hide()
        self.effort_combo = QComboBox(self)
        self.effort_combo.setObjectName("effortCombo")
        self.effort_combo.setAccessibleName("Reasoning effort")
        self.effort_combo.setToolTip("How long the model thinks before it answers")
        for effort in EFFORTS:
            self.effort_combo.addItem(f"Think: {effort}", effort)
        self.effort_combo.currentIndexChanged.connect(
            lambda _index: self.thinkingChanged.emit(str(self.effort_combo.currentData()))
        )
        self.effort_combo.hide()
        self.editor.filesDropped.connect(self.filesAttached)
        self.attach_button = QToolButton(self)
        self.attach_button.setObjectName("attachButton")
        self.attach_button.setText("Attach")
        self.attach_button.setAccessibleName("Attach files")
        self.attach_button.setToolTip(
            "Attach files: a small text file goes into the message, others are indexed"
        )
        self.attach_button.clicked.connect(self.ask_attach)
        self.documents_button = QToolButton(self)
        self.documents_button.setObjectName("documentsButton")
        self.documents_button.setAccessibleName("Documents this chat searches")
        self.documents_button.setToolTip("Collections this chat searches before each answer")
        self.documents_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.documents_menu = QMenu(self.documents_button)
        self.documents_button.setMenu(self.documents_menu)
        self._collections: list[str] = []
        self._chosen: list[str] = []
        self.set_documents([], [])

        buttons = QVBoxLayout()
        buttons.setSpacing(4)
        buttons.addWidget(self.send_button)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.regenerate_button)
        buttons.addWidget(self.think_button)
        buttons.addWidget(self.effort_combo)
        buttons.addStretch(1)
        tools = QHBoxLayout()
        tools.setSpacing(2)
        tools.addWidget(self.attach_button)
        tools.addWidget(self.documents_button)
        buttons.addLayout(tools)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        layout.addWidget(self.editor, 1)
        layout.addLayout(buttons)
        self._update()

    def _button(self, text: str, icon_name: str, name: str, tip: str) -> QPushButton:
        button = QPushButton(icon(icon_name), text, self)
        button.setObjectName(name)
        button.setAccessibleName(name)
        button.setToolTip(tip)
        return button

    # -- state

    def text(self) -> str:
        return self.editor.toPlainText()

    def set_text(self, text: str) -> None:
        if text != self.editor.toPlainText():
            self.editor.setPlainText(text)
            cursor = self.editor.textCursor()
            cursor.movePosition(cursor.MoveOperation.End)
            self.editor.setTextCursor(cursor)

    def clear(self) -> None:
        self.editor.clear()

    def set_busy(self, busy: bool) -> None:
        """A reply is being generated (or a model loading): Stop instead of Send."""
        self._busy = busy
        self._update()

    def set_ready(self, ready: bool) -> None:
        """A model is loaded, so sending makes sense."""
        self._ready = ready
        self._update()

    def set_thinking_control(self, control: str, choice: str = "") -> None:
        """Offer the switch a template has ("enable_thinking" or "flag": Think on/off; "effort": low,
        medium, high; "": none, hidden) set to ``choice`` ("" is the template's default: thinking on)."""
        self._thinking_control = control
        toggle = control in ("enable_thinking", "flag")
        self.think_button.blockSignals(True)
        self.think_button.setChecked(choice != "off")
        self.think_button.blockSignals(False)
        self._show_think_state(self.think_button.isChecked())
        self.effort_combo.blockSignals(True)
        index = self.effort_combo.findData(choice if choice in EFFORTS else "medium")
        self.effort_combo.setCurrentIndex(max(0, index))
        self.effort_combo.blockSignals(False)
        self.think_button.setVisible(toggle)
        self.effort_combo.setVisible(control == "effort")

    def _show_think_state(self, on: bool) -> None:
        self.think_button.setText("Think: on" if on else "Think: off")

    def thinking_choice(self) -> str:
        """What the next reply is rendered with: "on", "off", an effort, or "" (no switch offered)."""
        if self._thinking_control in ("enable_thinking", "flag"):
            return "on" if self.think_button.isChecked() else "off"
        if self._thinking_control == "effort":
            return str(self.effort_combo.currentData())
        return ""

    def set_documents(self, collections: list[str], chosen: list[str]) -> None:
        """Offer ``collections`` in the Documents menu, ``chosen`` ticked (the ones this chat searches)."""
        self._collections = list(collections)
        self._chosen = [name for name in chosen]
        menu = self.documents_menu
        menu.clear()
        for name in self._collections:
            action = QAction(name, menu)
            action.setCheckable(True)
            action.setChecked(name in self._chosen)
            action.toggled.connect(lambda on, n=name: self.collectionToggled.emit(n, on))
            menu.addAction(action)
        if self._collections:
            menu.addSeparator()
        manage = QAction("Manage documents…", menu)
        manage.triggered.connect(self.documentsRequested)
        menu.addAction(manage)
        count = len(self._chosen)
        self.documents_button.setText(f"Docs: {count}" if count else "Docs")
        self.documents_button.setToolTip(
            "This chat searches: " + ", ".join(self._chosen)
            if count
            else "Collections this chat searches before each answer (none)"
        )

    def chosen_documents(self) -> list[str]:
        """The collections ticked in the Documents menu."""
        return list(self._chosen)

    def ask_attach(self) -> None:
        """Choose files to attach to the message."""
        paths, _filter = QFileDialog.getOpenFileNames(self, "Attach files")
        if paths:
            self.filesAttached.emit(list(paths))

    def insert_text(self, text: str) -> None:
        """Add ``text`` (an attached file) at the end of the message, after a blank line."""
        current = self.editor.toPlainText()
        self.set_text(f"{current.rstrip()}\n\n{text}" if current.strip() else text)

    def set_can_regenerate(self, can: bool) -> None:
        self._can_regenerate = can
        self._update()

    def _update(self) -> None:
        has_text = bool(self.editor.toPlainText().strip())
        self.send_button.setEnabled(self._ready and not self._busy and has_text)
        self.stop_button.setEnabled(self._busy)
        self.regenerate_button.setEnabled(self._ready and not self._busy and self._can_regenerate)

    # -- actions

    def submit(self) -> None:
        # Without a model Send is disabled, yet Enter still asks, so the window can say what to do.
        text = tidy_message(self.editor.toPlainText())
        if text.strip() and not self._busy:
            self.sendRequested.emit(text)

    def _escape(self) -> None:
        if self._busy:
            self.stopRequested.emit()
