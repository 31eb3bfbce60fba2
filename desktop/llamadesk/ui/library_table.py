"""The rows of the "My models" window: one per model, with its size, source and state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor

from .library_listing import CHECKING_TEXT, UNCHECKED
from .table_models import EMBEDDING_COLOUR, EMBEDDING_TEXT, EMBEDDING_TIP, RIGHT_ALIGNED, Index, RowsModel

if TYPE_CHECKING:
    from ..hub import LibraryModel

__all__ = ["SOURCE_TEXT", "LibraryTableModel", "state_text", "type_text"]

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


def type_text(model: LibraryModel) -> str:
    """The Type column: "Embedding" for a model that turns text into vectors, "Chat" for a chat model."""
    if model.is_embedding:
        return EMBEDDING_TEXT
    return "Chat" if model.kind == "model" and model.info is not None else ""


class LibraryTableModel(RowsModel["LibraryModel"]):
    """The library's models as rows."""

    HEADERS = ("Name", "Size", "Quantization", "Source", "Repository", "Added", "State", "Type")
    TYPE_COLUMN = 7

    @property
    def models(self) -> list[LibraryModel]:
        """The models shown, in row order."""
        return self.rows

    def set_models(self, models: list[LibraryModel]) -> None:
        """Show ``models``; the same models again (with facts read meanwhile) are updated in place,
        keeping the selection and the scroll position."""
        if self.models and [m.key for m in models] == [m.key for m in self.models]:
            self.rows = list(models)
            last = self.index(len(models) - 1, len(self.HEADERS) - 1)
            self.dataChanged.emit(self.index(0, 0), last)
            return
        self.reset_rows(models)

    def model_at(self, row: int) -> LibraryModel | None:
        return self.row_at(row)

    def row_of(self, key: str) -> int:
        return next((i for i, m in enumerate(self.models) if m.key == key), -1)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
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
                type_text(model),
            )[column]
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == self.TYPE_COLUMN and model.is_embedding:
                return QBrush(QColor(EMBEDDING_COLOUR))
            if model.state == "broken":
                return QBrush(QColor("#cf222e"))
            if model.state == "partial" or model.kind != "model":
                return QBrush(QColor("#9a6700"))
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == self.TYPE_COLUMN and model.is_embedding:
                return EMBEDDING_TIP
            if column == 2 and model.quantization:
                from ..hub import describe_quantization

                return describe_quantization(model.quantization)
            return f"{model.message}\n{model.path}" if model.message else str(model.path)
        if role == Qt.ItemDataRole.TextAlignmentRole and column == 1:
            return RIGHT_ALIGNED
        return None
