"""The "Discover models" window's tables: search results and a repository's files.

Table models only format what the Hub client returned (sizes, counts, fit verdicts); the
window fetches the data in the background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QAbstractItemView, QTableView, QWidget

if TYPE_CHECKING:
    from ..hub import ModelFile, RepoFiles, RepoSummary

_Index = QModelIndex | QPersistentModelIndex
VERDICT_COLOURS = {"gpu": "#1a7f37", "hybrid": "#0969da", "cpu": "#9a6700", "too_large": "#cf222e"}
KIND_LABELS = {"mmproj": "vision projector (not a model)", "imatrix": "importance matrix (not a model)"}
RECOMMENDED_BACKGROUND = "#fff8c5"


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


class ResultsModel(QAbstractTableModel):
    """Search results: one row per repository."""

    HEADERS = ("Model", "Downloads", "Likes", "Updated", "Params", "Arch", "Context", "Access")
    REPO_ROLE = Qt.ItemDataRole.UserRole

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.repos: list[RepoSummary] = []

    def set_repos(self, repos: list[RepoSummary], *, append: bool = False) -> None:
        if append:
            known = {r.repo_id for r in self.repos}
            new = [r for r in repos if r.repo_id not in known]
            if new:
                start = len(self.repos)
                self.beginInsertRows(QModelIndex(), start, start + len(new) - 1)
                self.repos.extend(new)
                self.endInsertRows()
            return
        self.beginResetModel()
        self.repos = list(repos)
        self.endResetModel()

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.repos)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        repo = self.repos[index.row()]
        column = index.column()
        if role == self.REPO_ROLE:
            return repo.repo_id
        if role == Qt.ItemDataRole.DisplayRole:
            return (
                repo.repo_id,
                short_number(repo.downloads),
                short_number(repo.likes),
                repo.last_modified.strftime("%Y-%m-%d") if repo.last_modified else "",
                short_number(repo.parameter_count),
                repo.architecture or "",
                short_number(repo.context_length),
                "Gated" if repo.gated else "",
            )[column]
        if role == Qt.ItemDataRole.ForegroundRole and column == 7 and repo.gated:
            return QBrush(QColor("#bc4c00"))
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == 7 and repo.gated:
                return "You must accept this model's license on the Hub and add an access token."
            return repo.repo_id
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (1, 2, 4, 6):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class FilesModel(QAbstractTableModel):
    """A repository's GGUF files with quantization, size and whether each fits this computer."""

    HEADERS = ("File", "Quant", "Bits/weight", "Size", "Fit")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.files: list[ModelFile] = []
        self.recommended: ModelFile | None = None

    def set_files(self, repo: RepoFiles | None) -> None:
        self.beginResetModel()
        self.files = list(repo.files) if repo is not None else []
        self.recommended = repo.recommended if repo is not None else None
        self.endResetModel()

    def file_at(self, row: int) -> ModelFile | None:
        return self.files[row] if 0 <= row < len(self.files) else None

    def row_of(self, file: ModelFile) -> int:
        return self.files.index(file) if file in self.files else -1

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.files)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return self.HEADERS[section]
        return None

    def fit_text(self, file: ModelFile) -> str:
        if file.kind != "model":
            return KIND_LABELS.get(file.kind, file.kind)
        if not file.complete:
            return "Incomplete: parts are missing"
        return file.fit.label if file.fit is not None else "Unknown"

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        from ..hub import format_size

        if not index.isValid():
            return None
        file = self.files[index.row()]
        column = index.column()
        recommended = file is self.recommended
        if role == Qt.ItemDataRole.DisplayRole:
            name = file.name + (f" ({len(file.parts)} parts)" if file.is_split else "")
            if recommended:
                name = f"★ {name} (recommended)"
            bits = f"{file.bits_per_weight:.2f}" if file.bits_per_weight else ""
            return (name, file.quantization or "", bits, format_size(file.size), self.fit_text(file))[column]
        if role == Qt.ItemDataRole.ForegroundRole:
            if file.kind != "model" or not file.complete:
                return QBrush(QColor("#6e7781"))
            if column == 4 and file.verdict:
                return QBrush(QColor(VERDICT_COLOURS.get(file.verdict, "#1f2328")))
            if recommended:
                return QBrush(QColor("#1f2328"))
        if role == Qt.ItemDataRole.BackgroundRole and recommended:
            return QBrush(QColor(RECOMMENDED_BACKGROUND))
        if role == Qt.ItemDataRole.FontRole and (recommended or column == 4):
            font = QFont()
            font.setBold(True)
            return font
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == 4 and file.fit is not None:
                return file.fit.summary
            if column in (1, 2) and file.quantization:
                from ..hub import describe_quantization

                return describe_quantization(file.quantization)
            return "\n".join(file.paths)
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (2, 3):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
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
