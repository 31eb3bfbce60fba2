"""The "Discover models" window's tables: search results and a repository's files.

Table models only format what the Hub client returned (sizes, counts, fit verdicts); the
window fetches the data in the background.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QColor, QFont
from PySide6.QtWidgets import QWidget

from .table_models import (
    EMBEDDING_COLOUR,
    EMBEDDING_TEXT,
    EMBEDDING_TIP,
    RIGHT_ALIGNED,
    Index,
    RowsModel,
    make_table,
    short_number,
)

if TYPE_CHECKING:
    from ..hub import ModelFile, RepoFiles, RepoSummary

__all__ = [
    "KIND_LABELS",
    "TYPE_FILTERS",
    "FilesModel",
    "ResultsModel",
    "TypeFilter",
    "make_table",
    "short_number",
]

VERDICT_COLOURS = {"gpu": "#1a7f37", "hybrid": "#0969da", "cpu": "#9a6700", "too_large": "#cf222e"}
KIND_LABELS = {"mmproj": "vision projector (not a model)", "imatrix": "importance matrix (not a model)"}
RECOMMENDED_BACKGROUND = "#fff8c5"
TypeFilter = Literal["all", "chat", "embedding"]
TYPE_FILTERS: tuple[tuple[TypeFilter, str], ...] = (
    ("all", "All"),
    ("chat", "Chat"),
    ("embedding", "Embedding"),
)


class ResultsModel(RowsModel["RepoSummary"]):
    """Search results: one row per repository, those of the chosen type (chat, embedding or all)."""

    HEADERS = ("Model", "Downloads", "Likes", "Updated", "Params", "Arch", "Context", "Access", "Type")
    REPO_ROLE = Qt.ItemDataRole.UserRole
    TYPE_COLUMN = 8

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.all_repos: list[RepoSummary] = []  # every result loaded, shown or not
        self.type_filter: TypeFilter = "all"

    @property
    def repos(self) -> list[RepoSummary]:
        """The repositories shown, in row order."""
        return self.rows

    def _shows(self, repo: RepoSummary) -> bool:
        if self.type_filter == "embedding":
            return repo.is_embedding
        return self.type_filter == "all" or not repo.is_embedding

    def set_repos(self, repos: list[RepoSummary], *, append: bool = False) -> None:
        if append:
            known = {r.repo_id for r in self.all_repos}
            new = [r for r in repos if r.repo_id not in known]
            self.all_repos.extend(new)
            self.append_rows([r for r in new if self._shows(r)])
            return
        self.all_repos = list(repos)
        self.reset_rows([r for r in self.all_repos if self._shows(r)])

    def set_type_filter(self, type_filter: TypeFilter) -> None:
        """Show only chat models, only embedding models, or all of the results loaded."""
        if type_filter not in ("all", "chat", "embedding"):
            raise ValueError(f"unknown model type {type_filter!r}")
        self.type_filter = type_filter
        self.reset_rows([r for r in self.all_repos if self._shows(r)])

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
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
                EMBEDDING_TEXT if repo.is_embedding else "",
            )[column]
        if role == Qt.ItemDataRole.ForegroundRole and column == 7 and repo.gated:
            return QBrush(QColor("#bc4c00"))
        if role == Qt.ItemDataRole.ForegroundRole and column == self.TYPE_COLUMN and repo.is_embedding:
            return QBrush(QColor(EMBEDDING_COLOUR))
        if role == Qt.ItemDataRole.ToolTipRole:
            if column == 7 and repo.gated:
                return "You must accept this model's license on the Hub and add an access token."
            if column == self.TYPE_COLUMN and repo.is_embedding:
                return EMBEDDING_TIP
            return repo.repo_id
        if role == Qt.ItemDataRole.TextAlignmentRole and column in (1, 2, 4, 6):
            return RIGHT_ALIGNED
        return None


class FilesModel(RowsModel["ModelFile"]):
    """A repository's GGUF files with quantization, size and whether each fits this computer."""

    HEADERS = ("File", "Quant", "Bits/weight", "Size", "Fit")

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.recommended: ModelFile | None = None

    @property
    def files(self) -> list[ModelFile]:
        """The files shown, in row order."""
        return self.rows

    def set_files(self, repo: RepoFiles | None) -> None:
        self.recommended = repo.recommended if repo is not None else None
        self.reset_rows(list(repo.files) if repo is not None else [])

    def file_at(self, row: int) -> ModelFile | None:
        return self.row_at(row)

    def row_of(self, file: ModelFile) -> int:
        return self.files.index(file) if file in self.files else -1

    def fit_text(self, file: ModelFile) -> str:
        if file.kind != "model":
            return KIND_LABELS.get(file.kind, file.kind)
        if not file.complete:
            return "Incomplete: parts are missing"
        return file.fit.label if file.fit is not None else "Unknown"

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
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
            return RIGHT_ALIGNED
        return None
