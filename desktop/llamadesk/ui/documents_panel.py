"""The Documents panel: collections of files to chat with, their files and skipped files, indexing.

Lists the collections (files, chunks, skipped), creates and removes them, adds files or a folder,
refreshes one (only changed files are read again), and shows a collection's files with the reason
each skipped one was left out. Indexing runs on :class:`IndexJob`'s thread with a progress bar and
Cancel; listing runs on the panel's task runner: the GUI thread never reads a file or the index.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..docs import CollectionInfo, DocumentIndex, FileInfo, IndexProgress, IndexReport
from .documents_embedding import EmbeddingChoice
from .documents_worker import IndexJob
from .tasks import TaskRunner

log = logging.getLogger(__name__)

__all__ = ["DocumentsPanel", "report_text"]

_FILE_FILTER = "Documents (*.txt *.md *.markdown *.pdf *.docx *.html *.htm);;All files (*)"


def plain_tip(text: str) -> str:
    """``text`` as a tooltip that shows it literally (Qt reads a tooltip with ``<tag>`` as rich text)."""
    return f"<span>{html.escape(text)}</span>" if text else ""


EMPTY_HINT = "No collections yet. Press New… to make one, then add files or a folder to chat with them."


def report_text(name: str, report: IndexReport) -> str:
    """One line saying what indexing changed in ``name``."""
    parts = [f"{report.added} added", f"{report.updated} updated", f"{report.unchanged} unchanged"]
    if report.removed:
        parts.append(f"{report.removed} removed")
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped")
    head = "Cancelled" if report.cancelled else "Indexed"
    return f"{head} “{name}”: " + ", ".join(parts)


class DocumentsPanel(QWidget):
    """Collections and their files, with indexing progress.

    Signals:
        collectionsChanged(list): the collection names, after every listing.
        useInChatRequested(str): the user wants the open chat to search this collection.
        collectionRemoved(str): a collection was removed (chats stop searching it).
        indexingFinished(str, object): indexing of a collection ended (an ``IndexReport``).
        problem(str): something failed; the message is for the user.
    """

    collectionsChanged = Signal(list)
    useInChatRequested = Signal(str)
    collectionRemoved = Signal(str)
    indexingFinished = Signal(str, object)
    problem = Signal(str)

    def __init__(self, data_dir: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("documentsPanel")
        self.data_dir = data_dir
        # One thread: listing, creating and removing happen in the order asked (a collection created
        # is listed by the reload that follows), and two first opens never race to create the index.
        self.tasks = TaskRunner(self, max_threads=1, on_error=self._show_problem, name="documents")
        self.job = IndexJob(data_dir, self)
        self.job.progress.connect(self._on_progress)
        self.job.finished.connect(self._on_indexed)
        self.job.failed.connect(self._on_index_failed)
        self.job.warning.connect(self._show_problem)
        # The embedding model new indexing uses (the window sets it from the settings): None = words only.
        self.embedding: Callable[[], EmbeddingChoice | Path | None] = lambda: None
        self.collections: list[CollectionInfo] = []
        self.files: list[FileInfo] = []
        self._selected = ""

        self.collection_tree = QTreeWidget(self)
        self.collection_tree.setObjectName("collectionTree")
        self.collection_tree.setAccessibleName("Collections")
        self.collection_tree.setHeaderLabels(["Collection", "Files", "Chunks", "Skipped"])
        self.collection_tree.setRootIsDecorated(False)
        self.collection_tree.currentItemChanged.connect(self._on_current_changed)
        self.file_tree = QTreeWidget(self)
        self.file_tree.setObjectName("fileTree")
        self.file_tree.setAccessibleName("Files of the collection")
        self.file_tree.setHeaderLabels(["File", "Status", "Chunks", "Reason"])
        self.file_tree.setRootIsDecorated(False)

        self.new_button = self._button("New…", "newCollection", "Create a collection", self.ask_create)
        self.remove_button = self._button(
            "Remove", "removeCollection", "Remove the collection", self.ask_remove
        )
        self.add_files_button = self._button("Add files…", "addFiles", "Add files", self.ask_add_files)
        self.add_folder_button = self._button("Add folder…", "addFolder", "Add a folder", self.ask_add_folder)
        self.refresh_button = self._button(
            "Refresh", "refreshCollection", "Read changed files again", self.refresh_selected
        )
        self.use_button = self._button(
            "Use in this chat", "useInChat", "Let the open chat search this collection", self._use_in_chat
        )
        self.progress = QProgressBar(self)
        self.progress.setObjectName("indexProgress")
        self.progress.hide()
        self.cancel_button = self._button("Cancel", "cancelIndexing", "Stop indexing", self.cancel)
        self.cancel_button.hide()
        self.status_label = QLabel(self)
        self.status_label.setObjectName("documentsStatus")
        self.status_label.setTextFormat(Qt.TextFormat.PlainText)  # it shows file and collection names
        self.status_label.setWordWrap(True)

        row1 = QHBoxLayout()
        for button in (self.new_button, self.remove_button, self.use_button):
            row1.addWidget(button)
        row1.addStretch(1)
        row2 = QHBoxLayout()
        for button in (self.add_files_button, self.add_folder_button, self.refresh_button):
            row2.addWidget(button)
        row2.addStretch(1)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.cancel_button)
        splitter = QSplitter(Qt.Orientation.Vertical, self)
        splitter.addWidget(self.collection_tree)
        splitter.addWidget(self.file_tree)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(row1)
        layout.addLayout(row2)
        layout.addWidget(splitter, 1)
        layout.addLayout(progress_row)
        layout.addWidget(self.status_label)
        self._update_buttons()

    def _button(self, text: str, name: str, tip: str, slot: object) -> QPushButton:
        button = QPushButton(text, self)
        button.setObjectName(name)
        button.setAccessibleName(tip)
        button.setToolTip(tip)
        button.clicked.connect(slot)
        return button

    # -- state

    @property
    def indexing(self) -> bool:
        return self.job.running

    def selected(self) -> str:
        """The collection chosen in the list ("" when none)."""
        return self._selected

    def select(self, name: str) -> None:
        """Choose ``name`` in the list (when listed) and show its files."""
        for row in range(self.collection_tree.topLevelItemCount()):
            item = self.collection_tree.topLevelItem(row)
            if item is not None and item.data(0, Qt.ItemDataRole.UserRole) == name:
                self.collection_tree.setCurrentItem(item)
                return
        self._selected = name
        self.show_files(name)

    def _update_buttons(self) -> None:
        busy = self.indexing
        has = bool(self._selected)
        self.remove_button.setEnabled(has and not busy)
        self.add_files_button.setEnabled(has and not busy)
        self.add_folder_button.setEnabled(has and not busy)
        self.refresh_button.setEnabled(has and not busy)
        self.use_button.setEnabled(has)

    def _show_problem(self, message: str) -> None:
        self.status_label.setText(message)
        self.problem.emit(message)

    # -- listing

    def reload(self) -> None:
        """List the collections again (and the files of the chosen one)."""
        data_dir = self.data_dir

        def listing() -> list[CollectionInfo]:
            index = DocumentIndex.in_folder(data_dir)
            try:
                return index.collections()
            finally:
                index.close()

        self.tasks.run(listing, self._show_collections, channel="collections")

    def _show_collections(self, collections: list[CollectionInfo]) -> None:
        self.collections = list(collections)
        tree = self.collection_tree
        tree.blockSignals(True)
        tree.clear()
        current: QTreeWidgetItem | None = None
        for info in collections:
            item = QTreeWidgetItem([info.name, str(info.files), str(info.chunks), str(info.skipped)])
            item.setData(0, Qt.ItemDataRole.UserRole, info.name)
            tree.addTopLevelItem(item)
            if info.name == self._selected:
                current = item
        if current is None and collections and not self._selected:
            current = tree.topLevelItem(0)
        if current is not None:
            tree.setCurrentItem(current)
        tree.blockSignals(False)
        name = current.data(0, Qt.ItemDataRole.UserRole) if current is not None else ""
        self._selected = str(name or "")
        for column in range(4):
            tree.resizeColumnToContents(column)
        self.show_files(self._selected)
        self._update_buttons()
        if not collections and not self.status_label.text():
            self.status_label.setText(EMPTY_HINT)
        self.collectionsChanged.emit([info.name for info in collections])

    def _on_current_changed(self, current: QTreeWidgetItem | None, _previous: QTreeWidgetItem | None) -> None:
        name = current.data(0, Qt.ItemDataRole.UserRole) if current is not None else ""
        self._selected = str(name or "")
        self.show_files(self._selected)
        self._update_buttons()

    def show_files(self, name: str) -> None:
        """Show the files of ``name``: indexed ones with their chunks, skipped ones with the reason."""
        if not name:
            self._show_files([])
            return
        data_dir = self.data_dir

        def listing() -> list[FileInfo]:
            index = DocumentIndex.in_folder(data_dir)
            try:
                return index.files(name)
            finally:
                index.close()

        self.tasks.run(listing, self._show_files, channel="files")

    def _show_files(self, files: list[FileInfo]) -> None:
        self.files = list(files)
        self.file_tree.clear()
        for info in files:
            chunks = str(info.chunks) if info.status == "indexed" else ""
            item = QTreeWidgetItem([Path(info.path).name, info.status, chunks, info.reason])
            item.setToolTip(0, plain_tip(info.path))
            item.setToolTip(3, plain_tip(info.reason))
            if info.reason:  # the Reason column is often cut off in the narrow dock: the status says it too
                item.setToolTip(1, plain_tip(f"{info.status.capitalize()}: {info.reason}"))
            self.file_tree.addTopLevelItem(item)
        for column in range(3):
            self.file_tree.resizeColumnToContents(column)

    # -- changes

    def ask_create(self) -> None:
        name, ok = QInputDialog.getText(self, "New collection", "Name of the collection:")
        if ok and name.strip():
            self.create_collection(name.strip())

    def create_collection(self, name: str) -> None:
        """Create the collection ``name`` and choose it."""
        data_dir = self.data_dir

        def create() -> str:
            index = DocumentIndex.in_folder(data_dir)
            try:
                index.create(name)
            finally:
                index.close()
            return name

        def created(created_name: str) -> None:
            self._selected = created_name
            self.status_label.setText(f"Created “{created_name}”. Add files or a folder to it.")
            self.reload()

        self.tasks.run(create, created)

    def ask_remove(self) -> None:
        name = self._selected
        if not name:
            return
        answer = QMessageBox.question(
            self,
            "Remove collection",
            f"Remove the collection “{name}” from LlamaDesk? Your files stay where they are.",
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.remove_collection(name)

    def remove_collection(self, name: str) -> None:
        """Remove the collection ``name`` from the index (the files themselves are not touched)."""
        data_dir = self.data_dir

        def remove() -> str:
            index = DocumentIndex.in_folder(data_dir)
            try:
                index.remove(name)
            finally:
                index.close()
            return name

        def removed(removed_name: str) -> None:
            if self._selected == removed_name:
                self._selected = ""
            self.status_label.setText(f"Removed “{removed_name}”.")
            self.collectionRemoved.emit(removed_name)
            self.reload()

        self.tasks.run(remove, removed)

    def ask_add_files(self) -> None:
        paths, _filter = QFileDialog.getOpenFileNames(self, "Add files to the collection", "", _FILE_FILTER)
        if paths and self._selected:
            self.add_paths(self._selected, [Path(p) for p in paths])

    def ask_add_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder to the collection")
        if folder and self._selected:
            self.add_paths(self._selected, [Path(folder)])

    def add_paths(self, name: str, paths: Sequence[Path]) -> bool:
        """Index ``paths`` (files or folders) into ``name`` in the background; False when busy."""
        return self._start(name, list(paths))

    def refresh_selected(self) -> None:
        if self._selected:
            self.refresh_collection(self._selected)

    def refresh_collection(self, name: str) -> bool:
        """Read changed files of ``name`` again and drop deleted ones; False when busy."""
        return self._start(name, None)

    def _start(self, name: str, paths: list[Path] | None) -> bool:
        if self.job.running:
            self._show_problem("Wait for the indexing under way to finish, or cancel it.")
            return False
        self.progress.setRange(0, 0)
        self.progress.setFormat("%v / %m files")
        self.progress.show()
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        self.status_label.setText(f"Indexing “{name}”…")
        self.job.start(name, paths, self.embedding())
        self._update_buttons()
        return True

    def cancel(self) -> None:
        """Stop indexing after the file being read; what was indexed stays."""
        if self.job.running:
            self.job.cancel()
            self.cancel_button.setEnabled(False)
            self.status_label.setText("Cancelling…")

    def _on_progress(self, update: IndexProgress) -> None:
        total = max(1, update.total_files)
        self.progress.setRange(0, total)
        self.progress.setValue(min(update.done_files, total))
        self.status_label.setText(f"Reading {Path(update.path).name}" if update.path else "Indexing…")

    def _finish(self) -> None:
        self.progress.hide()
        self.cancel_button.hide()
        self._update_buttons()

    def _on_indexed(self, name: str, report: IndexReport) -> None:
        self._finish()
        self.status_label.setText(report_text(name, report))
        self._selected = name
        self.reload()
        self.indexingFinished.emit(name, report)

    def _on_index_failed(self, name: str, message: str) -> None:
        self._finish()
        self._show_problem(f"Indexing “{name}” failed: {message}")
        self.reload()

    def _use_in_chat(self) -> None:
        if self._selected:
            self.useInChatRequested.emit(self._selected)

    def shutdown(self, timeout_s: float = 0.0) -> bool:
        """At close: cancel indexing (the index keeps what was written) and stop listing."""
        self.job.cancel()
        self.tasks.shutdown(0)
        return self.job.wait(timeout_s)
