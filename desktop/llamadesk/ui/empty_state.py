"""The first-run page: shown when there is no conversation and no model loaded."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget


class EmptyState(QWidget):
    """A friendly start: use the starter model, open a .gguf file, or browse models.

    Signals:
        starterRequested: load the bundled starter model.
        openFileRequested: pick a .gguf file from disk.
        browseRequested: open the model browser.
    """

    starterRequested = Signal()
    openFileRequested = Signal()
    browseRequested = Signal()

    def __init__(self, *, has_starter: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("emptyState")
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        title = QLabel("Welcome to LlamaDesk", self)
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.6)
        font.setBold(True)
        title.setFont(font)
        layout.addWidget(title)
        text = QLabel(
            "Chat with language models on your own computer — nothing you type leaves it.\n"
            "Choose a model to begin.",
            self,
        )
        text.setAlignment(Qt.AlignmentFlag.AlignCenter)
        text.setWordWrap(True)
        layout.addWidget(text)
        layout.addSpacing(12)
        self.starter_button = self._button("Use the starter model", "useStarterButton", layout)
        self.starter_button.setToolTip("A tiny model that runs anywhere: good for trying things out")
        self.starter_button.setVisible(has_starter)
        self.starter_button.clicked.connect(self.starterRequested)
        self.open_button = self._button("Open a .gguf file…", "openGgufButton", layout)
        self.open_button.clicked.connect(self.openFileRequested)
        self.browse_button = self._button("Browse models…", "browseModelsButton", layout)
        self.browse_button.clicked.connect(self.browseRequested)
        layout.addStretch(2)

    def _button(self, text: str, name: str, layout: QVBoxLayout) -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        button.setAccessibleName(text.rstrip("…"))
        button.setMinimumWidth(240)
        layout.addWidget(button, 0, Qt.AlignmentFlag.AlignHCenter)
        return button
