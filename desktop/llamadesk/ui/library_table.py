"""The rows of the "My models" window: one per model, with its size, source and state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QWidget

from .library_listing import CHECKING_TEXT, UNCHECKED

if TYPE_CHECKING:
    from ..hub import LibraryModel

__all__ = ["SOURCE_TEXT", "LibraryTableModel", "state_text"]

_Index = QModelIndex | QPersistentModelIndex
SOURCE_TEXT = {
    "starter": "Starter (built in)",
    "downloaded": "Downloaded",
    "imported": "Imported",
    "hf-cache": "Hugging Face cache",
}


def state_text(model: LibraryModel) -> str:
    """The State column: ready, broken (and why), partial, being checked, or not a chat model."""
    if model.state == UNCHECKED:
        return CHECKING_TEXT
    if model.state == "broken":
        return f"Broken: {model.message}" if model.message else "Broken"
    if model.state == "partial":
        return "Partial download (resume it to finish)"
    if model.kind != "model":
        return "Not a chat model (vision projector)" if model.kind == "mmproj" else "Not a chat model"
    return "Ready"


class LibraryTableModel(QAbstractTableModel):
    """The library's models as rows."""

    HEADERS = ("Name", "Size", "Quantization", "Source", "Repository", "Added", "State")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.models: list[LibraryModel] = []

    def set_models(self, models: list[LibraryModel]) -> None:
        """Show ``models``; the same models again (with facts read meanwhile) are updated in place,
        keeping the selection and the scroll position."""
        if self.models and [m.key for m in models] == [m.key for m in self.models]:
            self.models = list(models)
            last = self.index(len(models) - 1, len(self.HEADERS) - 1)
            self.dataChanged.emit(self.index(0, 0), last)
            return
        self.beginResetModel()
        self.models = list(models)
        self.endResetModel()

    def model_at(self, row: int) -> LibraryModel | None:
        return self.models[row] if 0 <= row < len(self.models) else None

    def row_of(self, key: str) -> int:
        return next((i for i, m in enumerate(self.models) if m.key == key), -1)

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.models)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        from ..hub import format_size

        if not index.isValid():
            return None
        model = self.models[index.row()]
        column = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            source = SOURCE_TEXT.get(model.source, model.source)
            if model.source == "imported":
                source += " (in place)" if model.in_place else " (copied)"
            return (
                model.name,
                format_size(model.size),
                model.quantization or "",
                source,
                model.repo_id or "",
                model.added.astimezone().strftime("%Y-%m-%d") if model.added else "",
                state_text(model),
            )[column]
        if role == Qt.ItemDataRole.ForegroundRole:
            if model.state == "broken":
                return QBrush(QColor("#cf222e"))
            if model.state == "partial" or model.kind != "model":
                return QBrush(QColor("#9a6700"))
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == 2 and model.quantization:
                from ..hub import describe_quantization

                return describe_quantization(model.quantization)
            return f"{model.message}\n{model.path}" if model.message else str(model.path)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == 1:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None
