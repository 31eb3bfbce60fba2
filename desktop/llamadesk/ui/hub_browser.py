"""The "Discover models" window: search the Hub, read a model card, pick a file and download it.

Every Hub call runs on a background thread (``TaskRunner``); failures become a message at the
top of the window, never a traceback, and the rest of the app keeps working offline.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QModelIndex, Qt, QUrl, Signal
from PySide6.QtGui import (
    QCloseEvent,
    QDesktopServices,
    QGuiApplication,
    QPalette,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ..errors import LlamaDeskError
from .downloads_panel import DownloadsPanel
from .hub_tables import KIND_LABELS, TYPE_FILTERS, FilesModel, ResultsModel, make_table, short_number
from .hub_worker import DownloadManager
from .markdown import COPY_CODE_SCHEME, code_block_index, render_markdown
from .table_models import EMBEDDING_COLOUR, EMBEDDING_TIP
from .tasks import TaskRunner

if TYPE_CHECKING:
    from ..engine import Hardware
    from ..hub import HubCatalog, ModelFile, RepoFiles, RepoSummary, SearchPage

SORTS = (
    ("downloads", "Most downloads"),
    ("likes", "Most likes"),
    ("trending", "Trending"),
    ("recent", "Recent"),
)


def error_html(exc: LlamaDeskError, repo_id: str | None = None) -> str:
    """A Hub error as rich text for the message line, with the next step for gated repos."""
    kind = getattr(exc, "kind", "other")
    url = getattr(exc, "url", None)
    if kind == "gated" and url:
        link = f"<a href='{html.escape(url)}'>{html.escape(url)}</a>"
        name = html.escape(repo_id or "This model")
        if "does not give access" in str(exc):
            return f"{name} needs access: accept the license at {link}, then try again."
        return f"{name} needs a token: add it in Preferences → Hub, and accept the license at {link}."
    text = html.escape(str(exc))
    if kind == "offline":
        text += " The rest of LlamaDesk keeps working."
    return text


class HubBrowser(QDialog):
    """Search the Hub for GGUF models, see a repository's files and card, and download one.

    Signals:
        searchFinished(int): a search (or "Load more") answered; the number of results shown.
        filesLoaded(str): the file list of this repository is shown.
        cardLoaded(str): the model card of this repository is shown.
        errorShown(str): a message was shown (plain text).
        downloadStarted(object): a ``DownloadTask`` was queued.
        linkOpened(str): a link in the model card was opened in the web browser.
    """

    searchFinished = Signal(int)
    filesLoaded = Signal(str)
    cardLoaded = Signal(str)
    errorShown = Signal(str)
    downloadStarted = Signal(object)
    linkOpened = Signal(str)

    def __init__(
        self,
        downloads: DownloadManager,
        *,
        token: Callable[[], str],
        endpoint: str | None = None,
        hardware: Hardware | Callable[[], Hardware] | None = None,
        dark: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("hubBrowser")
        self.setAccessibleName("Discover models")
        self.setWindowTitle("Discover models")
        self.downloads = downloads
        self._token = token
        self._endpoint = endpoint
        self._hardware = hardware
        self._dark = dark
        self._cursor: str | None = None
        self._repo: RepoFiles | None = None
        self._repo_id: str | None = None
        self._repo_failed = False
        self._searched = False
        self.tasks = TaskRunner(self, name="hub-call")
        self._build()
        self.resize(1240, 820)

    # -- building ------------------------------------------------------------------------------

    def _build(self) -> None:
        self.search_edit = QLineEdit(self)
        self.search_edit.setObjectName("hubSearchEdit")
        self.search_edit.setAccessibleName("Search models")
        self.search_edit.setPlaceholderText("Search GGUF models on the Hugging Face Hub, e.g. llama 3.2 1b")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.returnPressed.connect(self.search)
        self.sort_combo = QComboBox(self)
        self.sort_combo.setObjectName("hubSortCombo")
        self.sort_combo.setAccessibleName("Sort by")
        for key, label in SORTS:
            self.sort_combo.addItem(label, key)
        self.sort_combo.activated.connect(lambda _i: self.search())
        self.type_combo = QComboBox(self)
        self.type_combo.setObjectName("hubTypeCombo")
        self.type_combo.setAccessibleName("Model type")
        for key, label in TYPE_FILTERS:
            self.type_combo.addItem(label, key)
        self.type_combo.setItemData(
            self.type_combo.findData("embedding"),
            "Embedding models turn text into vectors for document search; they can't chat.",
            Qt.ItemDataRole.ToolTipRole,
        )
        self.type_combo.setToolTip("Show chat models, embedding models (for document search), or both")
        self.type_combo.currentIndexChanged.connect(lambda _i: self._on_type_changed())
        self.search_button = QPushButton("Search", self)
        self.search_button.setObjectName("hubSearchButton")
        self.search_button.clicked.connect(self.search)
        top = QHBoxLayout()
        top.addWidget(self.search_edit, 1)
        top.addWidget(QLabel("Sort:", self))
        top.addWidget(self.sort_combo)
        top.addWidget(QLabel("Type:", self))
        top.addWidget(self.type_combo)
        top.addWidget(self.search_button)

        self.message = QLabel(self)
        self.message.setObjectName("hubMessage")
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.RichText)
        self.message.setOpenExternalLinks(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.message.hide()

        self.results = ResultsModel(self)
        self.results_view = make_table("hubResultsView", self)
        self.results_view.setAccessibleName("Search results")
        self.results_view.setModel(self.results)
        header = self.results_view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(0, 165)
        # The Type column is the filter's partner: show it next to the name, not scrolled off the right.
        header.moveSection(ResultsModel.TYPE_COLUMN, 1)
        self.results_view.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.results_view.selectionModel().currentRowChanged.connect(self._on_result_changed)
        self.results_view.clicked.connect(self._on_result_clicked)
        self.status_label = QLabel(self)
        self.status_label.setObjectName("hubStatus")
        self.load_more_button = QPushButton("Load more", self)
        self.load_more_button.setObjectName("hubLoadMoreButton")
        self.load_more_button.clicked.connect(self.load_more)
        self.load_more_button.setEnabled(False)
        left = QWidget(self)
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.results_view, 1)
        more = QHBoxLayout()
        more.addWidget(self.status_label, 1)
        more.addWidget(self.load_more_button)
        left_layout.addLayout(more)

        self.repo_label = QLabel("Choose a model on the left to see its files and model card.", self)
        self.repo_label.setObjectName("hubRepoLabel")
        self.repo_label.setWordWrap(True)
        self.repo_label.setTextFormat(Qt.TextFormat.RichText)
        self.repo_label.setOpenExternalLinks(True)
        self.files = FilesModel(self)
        self.files_view = make_table("hubFilesView", self)
        self.files_view.setAccessibleName("Model files")
        self.files_view.setModel(self.files)
        fheader = self.files_view.horizontalHeader()
        fheader.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        fheader.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.files_view.selectionModel().selectionChanged.connect(lambda *_: self._update_download_button())
        self.files_view.doubleClicked.connect(lambda _i: self.download_selected())
        self.download_button = QPushButton("Download", self)
        self.download_button.setObjectName("downloadButton")
        self.download_button.setEnabled(False)
        self.download_button.clicked.connect(self.download_selected)
        self.file_hint = QLabel(self)
        self.file_hint.setObjectName("hubFileHint")
        self.file_hint.setMinimumWidth(120)
        self.file_hint.setWordWrap(True)  # the fit summary is a sentence: wrap it rather than cut it off
        self.card = QTextBrowser(self)
        self.card.setObjectName("hubModelCard")
        self.card.setAccessibleName("Model card")
        # Links are handled here: relative ones point into the repo, "Copy" copies a code block,
        # and the card itself never navigates away (QTextBrowser would show a blank page).
        self.card.setOpenLinks(False)
        self.card.anchorClicked.connect(self._on_card_link)
        self._card_code: tuple[str, ...] = ()
        self.card.setPlaceholderText("The model card appears here.")

        files_box = QWidget(self)
        files_layout = QVBoxLayout(files_box)
        files_layout.setContentsMargins(0, 0, 0, 0)
        files_layout.addWidget(self.repo_label)
        files_layout.addWidget(self.files_view, 1)
        actions = QHBoxLayout()
        actions.addWidget(self.file_hint, 1)
        actions.addWidget(self.download_button)
        files_layout.addLayout(actions)
        right = QSplitter(Qt.Orientation.Vertical, self)
        right.addWidget(files_box)
        right.addWidget(self.card)
        right.setSizes([330, 300])

        main = QSplitter(Qt.Orientation.Horizontal, self)
        main.setObjectName("hubSplitter")
        main.addWidget(left)
        main.addWidget(right)
        main.setSizes([590, 650])

        self.downloads_panel = DownloadsPanel(self.downloads, self)
        self.downloads_panel.setMinimumHeight(90)
        outer = QSplitter(Qt.Orientation.Vertical, self)
        outer.addWidget(main)
        outer.addWidget(self.downloads_panel)
        outer.setStretchFactor(0, 1)
        outer.setSizes([700, 110])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.message)
        layout.addWidget(outer, 1)
        self.downloads.downloadFailed.connect(self._on_download_failed)

    # -- Hub calls -----------------------------------------------------------------------------

    def catalog(self) -> HubCatalog:
        """A catalog with the current token (read each time: Preferences may have changed it)."""
        from ..hub import HubCatalog

        hardware = self._hardware() if callable(self._hardware) else self._hardware
        return HubCatalog(self._endpoint, self._token() or None, hardware=hardware)

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        if not self._searched:
            self.search()

    def search(self) -> None:
        """Run a new search with the box's text and the chosen sort order."""
        self._searched = True
        self._cursor = None  # the next page belongs to this search; an earlier one's is gone
        catalog = self.catalog()
        query = self.search_edit.text()
        sort = str(self.sort_combo.currentData())
        self.status_label.setText("Searching…")
        self.load_more_button.setEnabled(False)
        self.tasks.run(
            lambda: catalog.search(query, sort=sort),  # type: ignore[arg-type]
            lambda page: self._on_page(page, append=False),
            self._on_search_failed,
            channel="search",
        )

    def load_more(self) -> None:
        """Fetch the next page of the current search."""
        cursor = self._cursor
        if cursor is None:
            return
        catalog = self.catalog()
        self.load_more_button.setEnabled(False)
        self.status_label.setText("Loading more…")
        self.tasks.run(
            lambda: catalog.search("", page_cursor=cursor),
            lambda page: self._on_page(page, append=True),
            self._on_search_failed,
            channel="search",
        )

    def _on_page(self, page: SearchPage, *, append: bool) -> None:
        self.clear_message()
        self.results.set_repos(page.results, append=append)
        self._cursor = page.next_cursor
        self.load_more_button.setEnabled(page.has_more)
        self._show_count()
        self.searchFinished.emit(self.results.rowCount())

    def _show_count(self) -> None:
        """The status line: how many results are shown, how many the type filter hides, and if more exist."""
        count, loaded = self.results.rowCount(), len(self.results.all_repos)
        more = " — more available" if self._cursor is not None else ""
        if loaded == 0:
            self.status_label.setText("No GGUF models match. Try fewer or other words.")
        elif count < loaded:
            label = self.type_combo.currentText().lower()
            self.status_label.setText(f"{count} of {loaded} models are {label} models{more}")
        else:
            self.status_label.setText(f"{count} model{'s' if count != 1 else ''}{more}")

    def _on_type_changed(self) -> None:
        """Show only the results of the chosen type (chat, embedding or all); no new search is needed."""
        self.results.set_type_filter(self.type_combo.currentData())
        self._show_count()

    def _on_search_failed(self, exc: LlamaDeskError) -> None:
        self.status_label.setText("")
        self.load_more_button.setEnabled(self._cursor is not None)
        self.show_error(exc)

    def select_repo(self, repo_id: str) -> None:
        """Show ``repo_id``'s files and model card (both fetched in the background)."""
        self._repo_id = repo_id
        self._repo = None
        self._repo_failed = False
        self.files.set_files(None)
        self._update_download_button()
        self.file_hint.setText("Loading the file list…")
        summary = next((r for r in self.results.repos if r.repo_id == repo_id), None)
        self._show_repo_header(repo_id, summary)
        self.card.setPlainText("Loading the model card…")
        catalog = self.catalog()
        self.tasks.run(
            lambda: catalog.files(repo_id),
            self._on_files,
            lambda exc: self._on_repo_failed(repo_id, exc),
            channel="files",
        )
        self.tasks.run(
            lambda: catalog.model_card(repo_id),
            lambda text: self._on_card(repo_id, text),
            lambda exc: self._on_card_failed(repo_id, exc),
            channel="card",
        )

    def _show_repo_header(self, repo_id: str, summary: RepoSummary | None) -> None:
        url = f"{self.catalog().endpoint}/{repo_id}"
        bits = [f"<b>{html.escape(repo_id)}</b>"]
        if summary is not None:
            facts = [
                summary.architecture or "",
                f"{short_number(summary.parameter_count)} parameters" if summary.parameter_count else "",
                f"{short_number(summary.context_length)} context" if summary.context_length else "",
            ]
            if any(facts):
                bits.append(" · ".join(f for f in facts if f))
            if summary.gated:
                bits.append("<span style='color:#bc4c00'><b>Gated</b>: needs an access token</span>")
            if summary.is_embedding:
                bits.append(
                    f"<span style='color:{EMBEDDING_COLOUR}'><b>Embedding</b>: {EMBEDDING_TIP}</span>"
                )
        bits.append(f"<a href='{html.escape(url)}'>Open on the Hub</a>")
        self.repo_label.setText(" — ".join(bits))

    def _on_files(self, repo: RepoFiles) -> None:
        if repo.repo_id != self._repo_id:
            return
        self._repo = repo
        self.files.set_files(repo)
        if repo.recommended is not None:
            self.files_view.selectRow(self.files.row_of(repo.recommended))
        elif self.files.rowCount():
            self.files_view.selectRow(0)
        self._update_download_button()
        self.filesLoaded.emit(repo.repo_id)

    def _on_repo_failed(self, repo_id: str, exc: LlamaDeskError) -> None:
        if repo_id == self._repo_id:
            self._repo_failed = True
            self.file_hint.setText("The file list could not be loaded; click the model again to retry.")
            self.show_error(exc, repo_id)

    def _on_card(self, repo_id: str, text: str) -> None:
        if repo_id != self._repo_id:
            return
        if not text.strip():
            self.card.setPlainText("This model has no model card.")
        else:
            rendered = render_markdown(text, dark=self._is_dark())
            self._card_code = rendered.code_blocks
            self.card.setHtml(rendered.html)
        self.cardLoaded.emit(repo_id)

    def _on_card_link(self, url: QUrl) -> None:
        if url.scheme() == COPY_CODE_SCHEME:
            index = code_block_index(url.path())
            if 0 <= index < len(self._card_code):
                QGuiApplication.clipboard().setText(self._card_code[index])
            return
        if not url.scheme() and not url.path() and url.hasFragment():
            self.card.scrollToAnchor(url.fragment())
            return
        if url.isRelative() and self._repo_id:
            revision = self._repo.revision if self._repo is not None else "main"
            base = QUrl(f"{self.catalog().endpoint}/{self._repo_id}/blob/{revision}/")
            url = base.resolved(url)
        if url.scheme() in ("http", "https"):
            QDesktopServices.openUrl(url)
            self.linkOpened.emit(url.toString())

    def _on_card_failed(self, repo_id: str, exc: LlamaDeskError) -> None:
        if repo_id != self._repo_id:
            return
        self.card.setPlainText("The model card could not be loaded.")
        self.show_error(exc, repo_id)

    def _is_dark(self) -> bool:
        return self._dark or self.palette().color(QPalette.ColorRole.Base).lightness() < 128

    # -- results and files -----------------------------------------------------------------------

    def _on_result_clicked(self, index: QModelIndex) -> None:
        """Clicking the model whose files failed to load tries again."""
        repo_id = self.results.data(index, ResultsModel.REPO_ROLE)
        if repo_id and repo_id == self._repo_id and self._repo_failed:
            self.clear_message()
            self.select_repo(str(repo_id))

    def _on_result_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if current.isValid():
            repo_id = self.results.data(current, ResultsModel.REPO_ROLE)
            if repo_id and repo_id != self._repo_id:
                self.select_repo(str(repo_id))

    def selected_file(self) -> ModelFile | None:
        rows = self.files_view.selectionModel().selectedRows()
        return self.files.file_at(rows[0].row()) if rows else None

    def _update_download_button(self) -> None:
        from ..hub import format_size

        file = self.selected_file()
        problem = ""
        if file is None:
            if self._repo is not None:
                problem = (
                    "Choose a file to download." if self._repo.files else "This repository has no GGUF files."
                )
        elif file.kind != "model":
            problem = f"{file.name} is a {KIND_LABELS.get(file.kind, file.kind)}: it can't be chatted with."
        elif not file.complete:
            problem = "Some parts of this split model are missing from the repository."
        self.download_button.setEnabled(file is not None and not problem)
        if file is not None and not problem:
            summary = file.fit.summary if file.fit is not None else ""
            from .lab_actions import measured_here  # "measured here: 41 tok/s" once the lab ran on it

            summary = f"{summary} {measured_here(file.path, file.size)}".strip()
            self.file_hint.setText(f"{file.name} · {format_size(file.size)}. {summary}".strip())
            self.file_hint.setToolTip(self.file_hint.text())
        elif self._repo is not None:
            self.file_hint.setText(problem)

    def download_selected(self) -> None:
        """Queue the chosen file (after asking, if it is too large for this computer)."""
        file = self.selected_file()
        repo = self._repo
        if file is None or repo is None or not self.download_button.isEnabled():
            return
        if file.verdict == "too_large" and not self.confirm_too_large(file):
            return
        try:
            task = self.downloads.add(repo.repo_id, file, revision=repo.revision)
        except LlamaDeskError as exc:
            self.show_error(exc, repo.repo_id)
            return
        self.downloadStarted.emit(task)

    def confirm_too_large(self, file: ModelFile) -> bool:
        summary = file.fit.summary if file.fit is not None else ""
        answer = QMessageBox.question(
            self,
            "This model is too large",
            f"{file.name} is probably too large for this computer. {summary}\n\nDownload it anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def _on_download_failed(self, _task_id: str, message: str) -> None:
        if self.isVisible():
            self.show_message(html.escape(message))

    # -- messages -------------------------------------------------------------------------------

    def show_error(self, exc: LlamaDeskError, repo_id: str | None = None) -> None:
        self.show_message(error_html(exc, repo_id))

    def show_message(self, rich_text: str) -> None:
        self.message.setText(rich_text)
        self.message.setStyleSheet(
            "#hubMessage { background: #ffebe9; color: #82071e; border: 1px solid #ff8182;"
            " border-radius: 4px; padding: 6px; }"
        )
        self.message.show()
        self.errorShown.emit(self.message_text())

    def message_text(self) -> str:
        """The message shown, as plain text ("" when none)."""
        if self.message.isHidden():
            return ""
        doc = QTextDocument()
        doc.setHtml(self.message.text())
        return doc.toPlainText()

    def clear_message(self) -> None:
        self.message.hide()
        self.message.clear()

    def shutdown(self) -> None:
        """At app exit: drop Hub calls (nothing to save; one waiting on a dead network is left behind)."""
        self.tasks.shutdown(0)

    def closeEvent(self, event: QCloseEvent) -> None:
        # A search still running finishes and fills the hidden window, so reopening shows its results.
        super().closeEvent(event)
