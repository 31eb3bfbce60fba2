"""The toolbar's model chooser and the load progress shown next to it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QWheelEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from .resources import icon

OPEN_FILE_TEXT = "Open .gguf file…"
_PATH_ROLE = Qt.ItemDataRole.UserRole
_KIND_ROLE = Qt.ItemDataRole.UserRole + 1
_BROWSE_KEYS = {
    Qt.Key.Key_Up,
    Qt.Key.Key_Down,
    Qt.Key.Key_PageUp,
    Qt.Key.Key_PageDown,
    Qt.Key.Key_Home,
    Qt.Key.Key_End,
}


@dataclass(frozen=True)
class ModelEntry:
    """One choosable model, as the picker shows it."""

    key: str
    name: str
    path: Path
    size: int
    quantization: str
    fit_label: str
    ok: bool = True
    message: str = ""

    @property
    def text(self) -> str:
        parts = [self.name, _size(self.size)]
        if self.quantization:
            parts.append(self.quantization)
        if self.fit_label:
            parts.append(self.fit_label)
        if not self.ok:
            parts.append(self.message or "unusable")
        return " · ".join(parts)


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"


class ModelPicker(QComboBox):
    """Library models plus "Open .gguf file…"; choosing one asks the window to load it.

    Signals:
        modelChosen(str): path of the chosen model.
        openFileRequested: the user wants to pick a file from disk.
    """

    modelChosen = Signal(str)
    openFileRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelPicker")
        self.setAccessibleName("modelPicker")
        self.setToolTip("Choose the model to chat with")
        self.setMinimumContentsLength(52)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self._current: str = ""
        self._entries: list[ModelEntry] = []
        self.activated.connect(self._on_activated)
        self.set_models([])

    def entries(self) -> list[ModelEntry]:
        return list(self._entries)

    def set_models(self, entries: list[ModelEntry]) -> None:
        """Fill the list; keeps showing the current model. The same models again (with what was
        learnt about them meanwhile) are updated in place, so an open list stays open."""
        same = self.count() > 0 and [e.path for e in entries] == [e.path for e in self._entries]
        self._entries = list(entries)
        self.blockSignals(True)
        model_icon = icon("model")
        if not same:
            self.clear()
            self.addItem(model_icon, "Choose a model…")
            self.setItemData(0, "placeholder", _KIND_ROLE)
        for row, entry in enumerate(entries, start=1):
            if same:
                self.setItemText(row, entry.text)
            else:
                self.addItem(model_icon, entry.text)
                self.setItemData(row, str(entry.path), _PATH_ROLE)
                self.setItemData(row, "model", _KIND_ROLE)
            tip = str(entry.path) if entry.ok else f"{entry.message}\n{entry.path}"
            self.setItemData(row, tip, Qt.ItemDataRole.ToolTipRole)
            # A model that can't be used (or is still being checked) is listed but can't be chosen.
            self.model().item(row).setEnabled(entry.ok)  # type: ignore[attr-defined]
        if not same:
            self.insertSeparator(self.count())
            self.addItem(OPEN_FILE_TEXT)
            self.setItemData(self.count() - 1, "open", _KIND_ROLE)
        self.blockSignals(False)
        self.set_current_path(self._current)

    def set_current_path(self, path: str | Path | None) -> None:
        """Show ``path`` as the selected model without emitting anything."""
        self._current = str(path) if path else ""
        index = self.findData(self._current, _PATH_ROLE) if self._current else -1
        self.blockSignals(True)
        self.setCurrentIndex(index if index >= 0 else 0)
        self.blockSignals(False)

    def index_of(self, path: str | Path) -> int:
        return self.findData(str(path), _PATH_ROLE)

    def choose_index(self, index: int) -> None:
        """Select row ``index`` as a user would."""
        self.setCurrentIndex(index)
        self._on_activated(index)

    # Loading a model takes seconds and gigabytes: only a deliberate pick from the open list
    # loads one. The wheel scrolls past the toolbar; arrow keys open the list first.
    def wheelEvent(self, event: QWheelEvent) -> None:
        event.ignore()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() in _BROWSE_KEYS and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            self.showPopup()
            return
        super().keyPressEvent(event)

    def _on_activated(self, index: int) -> None:
        kind = self.itemData(index, _KIND_ROLE)
        if kind == "open":
            self.set_current_path(self._current)
            self.openFileRequested.emit()
        elif kind == "model":
            self.modelChosen.emit(str(self.itemData(index, _PATH_ROLE)))
        else:
            self.set_current_path(self._current)


class LoadProgress(QWidget):
    """A progress bar with Cancel, shown while a model loads.

    Signals:
        cancelRequested: the user cancelled the load.
    """

    cancelRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("loadProgressBox")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 0)
        self.label = QLabel("Loading…", self)
        layout.addWidget(self.label)
        self.bar = QProgressBar(self)
        self.bar.setObjectName("loadProgress")
        self.bar.setAccessibleName("loadProgress")
        self.bar.setRange(0, 100)
        self.bar.setMaximumWidth(160)
        layout.addWidget(self.bar)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setObjectName("cancelLoadButton")
        self.cancel_button.setAccessibleName("Cancel loading")
        self.cancel_button.clicked.connect(self.cancelRequested)
        layout.addWidget(self.cancel_button)

    def start(self, name: str) -> None:
        self.label.setText(f"Loading {name}…")
        self.bar.setValue(0)

    def set_progress(self, value: float) -> None:
        self.bar.setValue(round(max(0.0, min(1.0, value)) * 100))
