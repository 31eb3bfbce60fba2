"""The toolbar's model chooser and the load progress shown next to it.

Local models come first; each remote server follows under its name, with whether it answers and its
models (see :mod:`llamadesk.remote`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent, QWheelEvent
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QProgressBar, QPushButton, QWidget

from .resources import icon

if TYPE_CHECKING:
    from ..remote.registry import ServerStatus

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
class _Row:
    """One line of the list: what it is, what it stands for, and how it shows."""

    kind: str  # placeholder, model, server (a remote server's heading), remote, separator, open
    data: str  # a model's path, a remote model's key, a server's name
    text: str = ""
    tip: str = ""
    enabled: bool = True


def remote_key(server: str, model: str) -> str:
    """The picker's key of a remote model (the same as ``RemoteModel.key``)."""
    return f"remote:{server}/{model}"


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
        remoteChosen(str, str): server name and model id of the chosen remote model.
        openFileRequested: the user wants to pick a file from disk.
        listOpening: the list is about to show (a chance to check the remote servers again).
    """

    modelChosen = Signal(str)
    remoteChosen = Signal(str, str)
    openFileRequested = Signal()
    listOpening = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelPicker")
        self.setAccessibleName("modelPicker")
        self.setToolTip("Choose the model to chat with")
        self.setMinimumContentsLength(52)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self._current: str = ""
        self._entries: list[ModelEntry] = []
        self._remote: list[ServerStatus] = []
        self._remote_models: dict[str, tuple[str, str]] = {}  # key -> (server, model)
        self._shape: list[tuple[str, str]] = []  # (kind, data) of each row, to update in place
        self.activated.connect(self._on_activated)
        self.set_models([])

    def entries(self) -> list[ModelEntry]:
        return list(self._entries)

    def set_models(self, entries: list[ModelEntry]) -> None:
        """Fill the list; keeps showing the current model. The same models again (with what was
        learnt about them meanwhile) are updated in place, so an open list stays open."""
        self._entries = list(entries)
        self._fill()

    def set_remote(self, statuses: Sequence[ServerStatus]) -> None:
        """Show each remote server under its name: whether it answers, and its models."""
        self._remote = list(statuses)
        self._fill()

    def remote_entries(self) -> list[tuple[str, str]]:
        """(server, model) of every remote model listed, in order."""
        return list(self._remote_models.values())

    def _rows(self) -> list[_Row]:
        rows = [_Row("placeholder", "", "Choose a model…")]
        for entry in self._entries:
            tip = str(entry.path) if entry.ok else f"{entry.message}\n{entry.path}"
            rows.append(_Row("model", str(entry.path), entry.text, tip, entry.ok))
        for status in self._remote:
            server = status.server
            if status.kind == "checking":
                state = "checking…"
            elif status.reachable:
                count = len(status.models)
                state = f"{count} model{'s' if count != 1 else ''}" if count else "no models"
            else:
                state = "not reachable"
            tip = (
                f"{server.url}\n{status.error}" if status.error and status.kind != "checking" else server.url
            )
            rows.append(_Row("server", server.name, f"{server.name} — {state}", tip, False))
            for model in status.models:
                key = remote_key(server.name, model)
                rows.append(_Row("remote", key, f"    {model}", f"{model} on {server.name} ({server.url})"))
        rows.append(_Row("separator", ""))
        rows.append(_Row("open", "", OPEN_FILE_TEXT))
        return rows

    def _fill(self) -> None:
        rows = self._rows()
        shape = [(row.kind, row.data) for row in rows]
        same = self.count() > 0 and shape == self._shape
        self._shape = shape
        self._remote_models = {
            remote_key(status.server.name, model): (status.server.name, model)
            for status in self._remote
            for model in status.models
        }
        self.blockSignals(True)
        model_icon = icon("model")
        if not same:
            self.clear()
        for index, row in enumerate(rows):
            if row.kind == "separator":
                if not same:
                    self.insertSeparator(self.count())
                continue
            if same:
                self.setItemText(index, row.text)
            else:
                with_icon = row.kind in ("placeholder", "model", "remote")
                if with_icon:
                    self.addItem(model_icon, row.text)
                else:
                    self.addItem(row.text)
                self.setItemData(index, row.kind, _KIND_ROLE)
                if row.data and row.kind in ("model", "remote"):
                    self.setItemData(index, row.data, _PATH_ROLE)
            if row.tip:
                self.setItemData(index, row.tip, Qt.ItemDataRole.ToolTipRole)
            if row.kind in ("model", "remote", "server"):
                # A model that can't be used (or is still being checked) is listed but can't be chosen;
                # a server's name is a heading.
                self.model().item(index).setEnabled(row.enabled)  # type: ignore[attr-defined]
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

    def showPopup(self) -> None:
        self.listOpening.emit()
        super().showPopup()

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
        elif kind == "remote":
            chosen = self._remote_models.get(str(self.itemData(index, _PATH_ROLE)))
            if chosen is not None:
                self.remoteChosen.emit(*chosen)
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
