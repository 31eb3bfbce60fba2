"""What the model tables share: a read-only table of rows with fixed headers, and the embedding mark.

"Discover models" (search results, a repository's files) and "My models" both show one row per
item with fixed columns; ``RowsModel`` holds the rows and answers Qt's counting and header calls,
so each table only says how a cell looks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QAbstractItemView, QTableView, QWidget

from ..engine.gguf_info import EMBEDDING_TIP

__all__ = [
    "EMBEDDING_COLOUR",
    "EMBEDDING_TEXT",
    "EMBEDDING_TIP",
    "RIGHT_ALIGNED",
    "Index",
    "RowsModel",
    "make_table",
    "short_number",
]

Index = QModelIndex | QPersistentModelIndex
Row = TypeVar("Row")
EMBEDDING_TEXT = "Embedding"  # the Type column's mark for a model that turns text into vectors
EMBEDDING_COLOUR = "#8250df"
RIGHT_ALIGNED = int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)


def short_number(value: int | None) -> str:
    """12345 -> "12.3k", 7_240_000_000 -> "7.2B"; empty for unknown."""
    if value is None:
        return ""
    number = float(value)
    for unit in ("", "k", "M", "B", "T"):
        if abs(number) < 1000 or unit == "T":
            return f"{number:.0f}{unit}" if unit == "" or number >= 100 else f"{number:.1f}{unit}"
        number /= 1000
    return str(value)  # pragma: no cover


class RowsModel(QAbstractTableModel, Generic[Row]):
    """A flat table: ``rows`` in order, one column per entry of ``HEADERS``."""

    HEADERS: tuple[str, ...] = ()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[Row] = []

    def reset_rows(self, rows: Sequence[Row]) -> None:
        """Show ``rows`` instead of what was shown (selection and scroll position start over)."""
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()

    def append_rows(self, rows: Sequence[Row]) -> None:
        """Add ``rows`` at the end, keeping the selection."""
        if rows:
            start = len(self.rows)
            self.beginInsertRows(QModelIndex(), start, start + len(rows) - 1)
            self.rows.extend(rows)
            self.endInsertRows()

    def row_at(self, row: int) -> Row | None:
        return self.rows[row] if 0 <= row < len(self.rows) else None

    def rowCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None


def make_table(name: str, parent: QWidget) -> QTableView:
    """A read-only table of whole rows, one selectable at a time."""
    view = QTableView(parent)
    view.setObjectName(name)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.verticalHeader().hide()
    view.setAlternatingRowColors(True)
    view.setShowGrid(False)
    view.setWordWrap(False)
    view.horizontalHeader().setHighlightSections(False)
    return view
