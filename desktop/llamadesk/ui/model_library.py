"""The "My models" window: every model on this computer, with load, import, delete and reveal.

Lists the starter, downloads, imports and the Hugging Face cache from ``hub.ModelLibrary``
through a :class:`LibraryListing` (in the main window, the one the model picker uses): every
model at once, new files "Checking…" until their header is read in the background. Broken,
unchecked and unfinished files are shown as such and can't be loaded; an unfinished download
can be resumed.
"""

from __future__ import annotations

import contextlib
import html
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QMimeData, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from ..engine.lab_results import RESULTS_FILE, LabResults
from ..errors import LlamaDeskError
from .downloads_panel import DownloadsPanel
from .hub_worker import DownloadManager
from .lab_actions import ModelLab, figures_text
from .library_listing import UNCHECKED, LibraryListing
from .library_table import SOURCE_TEXT, LibraryTableModel, state_text
from .table_models import EMBEDDING_TIP, make_table, short_number
from .tasks import TaskRunner

if TYPE_CHECKING:
    from ..engine.service import InferenceService
    from ..hub import DownloadTask, LibraryModel, ModelLibrary
    from .lab_compare import CompareWindow
    from .lab_dialog import LabDialog

__all__ = ["SOURCE_TEXT", "LibraryTableModel", "ModelLibraryPage", "gguf_paths", "state_text"]
GGUF_FILTER = "GGUF models (*.gguf);;All files (*)"


def gguf_paths(mime: QMimeData) -> list[Path]:
    """Local ``.gguf`` files in a drag-and-drop payload."""
    if not mime.hasUrls():
        return []
    found = []
    for url in mime.urls():
        if url.isLocalFile() and url.toLocalFile().lower().endswith(".gguf"):
            found.append(Path(url.toLocalFile()))
    return found


class ModelLibraryPage(QDialog):
    """Every local model, with Load, Import…, Delete, Reveal and Resume download.

    Signals:
        loadRequested(object): the ``Path`` of the model to load.
        modelsChanged: a model was imported, deleted or finished downloading.
        importFinished(object): the ``LibraryModel`` just imported.
        messageShown(str): a message was shown (plain text).
        importProgress(int, int): bytes copied so far and in all, about 10 times a second.
    """

    loadRequested = Signal(object)
    modelsChanged = Signal()
    importFinished = Signal(object)
    messageShown = Signal(str)
    importProgress = Signal(int, int)  # bytes copied, bytes in all (from the copying thread)

    def __init__(
        self,
        library: ModelLibrary,
        *,
        listing: LibraryListing | None = None,
        downloads: DownloadManager | None = None,
        loaded_path: Callable[[], Path | None] = lambda: None,
        parent: QWidget | None = None,
        service: InferenceService | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("modelLibrary")
        self.setAccessibleName("My models")
        self.setWindowTitle("My models")
        self.library = library
        self.downloads = downloads
        self._loaded_path = loaded_path
        self.tasks = TaskRunner(self, max_threads=2, name="library")  # an import, and listing when alone
        # Without a listing to share (the window's), this window lists the library itself.
        self.listing = listing or LibraryListing(self.tasks, lambda: library, self)
        self._import_cancel = threading.Event()
        self._importing = ""
        # The model lab runs on the window's inference service (the parent's), else on one of its own.
        service = service or getattr(getattr(parent, "controller", None), "service", None)
        self.lab = ModelLab(self, LabResults(library.paths.data_dir / RESULTS_FILE), service=service)
        self.lab.measured.connect(lambda _record: self._update_buttons())
        self._build()
        self.resize(1100, 620)
        # Downloads that start, pause, fail or finish change what is listed (partial files).
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(300)
        self._refresh_timer.timeout.connect(self._refresh_if_shown)
        if downloads is not None:
            downloads.taskAdded.connect(self._refresh_timer.start)
            downloads.taskFinished.connect(self._refresh_timer.start)
        self.listing.changed.connect(self._show_models)
        self.listing.failed.connect(lambda message: self.show_message(message, error=True))
        if self.listing.models is not None:
            self._show_models(self.listing.models)  # what is known now; the refresh brings the rest
        self.refresh()

    def _build(self) -> None:
        self.message = QLabel(self)
        self.message.setObjectName("libraryMessage")
        self.message.setWordWrap(True)
        self.message.hide()
        self.table = LibraryTableModel(self)
        self.view = make_table("libraryView", self)
        self.view.setAccessibleName("Models on this computer")
        self.view.setModel(self.table)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(6, QHeaderView.ResizeMode.Interactive)
        header.resizeSection(6, 220)
        self.view.selectionModel().selectionChanged.connect(lambda *_: self._update_buttons())
        self.view.doubleClicked.connect(lambda _i: self.load_selected())

        self.load_button = QPushButton("Load", self)
        self.load_button.setObjectName("libraryLoadButton")
        self.load_button.clicked.connect(self.load_selected)
        self.import_button = QPushButton("Import…", self)
        self.import_button.setObjectName("libraryImportButton")
        self.import_button.clicked.connect(self.ask_import)
        self.delete_button = QPushButton("Delete…", self)
        self.delete_button.setObjectName("libraryDeleteButton")
        self.delete_button.clicked.connect(lambda: self.delete_selected())
        self.reveal_button = QPushButton("Show in folder", self)
        self.reveal_button.setObjectName("libraryRevealButton")
        self.reveal_button.clicked.connect(self.reveal_selected)
        self.resume_button = QPushButton("Resume download", self)
        self.resume_button.setObjectName("libraryResumeButton")
        self.resume_button.clicked.connect(self.resume_selected)
        self.speed_button = QPushButton("Measure speed", self)
        self.speed_button.setObjectName("librarySpeedButton")
        self.speed_button.setToolTip("Prompt and generation tokens/s on this computer, like llama-bench")
        self.speed_button.clicked.connect(self.measure_speed_selected)
        self.quality_button = QPushButton("Measure quality…", self)
        self.quality_button.setObjectName("libraryQualityButton")
        self.quality_button.setToolTip("Perplexity on a text file you choose: lower is better")
        self.quality_button.clicked.connect(self.measure_quality_selected)
        self.compare_button = QPushButton("Compare…", self)
        self.compare_button.setObjectName("libraryCompareButton")
        self.compare_button.setToolTip("One prompt to several models side by side, and quantizations")
        self.compare_button.clicked.connect(self.open_compare)
        self.details = QLabel(self)
        self.details.setObjectName("libraryDetails")
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A copy into the models folder can take minutes for a large model: show it and let it stop.
        self.import_progress = QProgressBar(self)
        self.import_progress.setObjectName("importProgress")
        self.import_progress.setAccessibleName("Import progress")
        self.import_progress.setRange(0, 1000)
        self.import_progress.setTextVisible(True)
        self.cancel_import_button = QPushButton("Cancel import", self)
        self.cancel_import_button.setObjectName("cancelImportButton")
        self.cancel_import_button.clicked.connect(self.cancel_import)
        self.import_row = QWidget(self)
        import_layout = QHBoxLayout(self.import_row)
        import_layout.setContentsMargins(0, 0, 0, 0)
        import_layout.addWidget(self.import_progress, 1)
        import_layout.addWidget(self.cancel_import_button)
        self.import_row.hide()
        self.importProgress.connect(self._on_import_progress)
        buttons = QHBoxLayout()
        for button in (self.load_button, self.import_button, self.delete_button, self.reveal_button):
            buttons.addWidget(button)
        buttons.addWidget(self.resume_button)
        buttons.addStretch(1)
        buttons.addWidget(self.speed_button)
        buttons.addWidget(self.quality_button)
        buttons.addWidget(self.compare_button)

        top = QWidget(self)
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(0, 0, 0, 0)
        top_layout.addWidget(self.view, 1)
        top_layout.addWidget(self.details)
        top_layout.addWidget(self.import_row)
        top_layout.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message)
        if self.downloads is not None:
            self.downloads_panel: DownloadsPanel | None = DownloadsPanel(self.downloads, self)
            split = QSplitter(Qt.Orientation.Vertical, self)
            split.addWidget(top)
            split.addWidget(self.downloads_panel)
            split.setStretchFactor(0, 1)
            split.setSizes([520, 90])
            layout.addWidget(split, 1)
        else:
            self.downloads_panel = None
            layout.addWidget(top, 1)

    # -- listing -------------------------------------------------------------------------------

    def refresh(self) -> None:
        """List the library again in the background (the list shown stays until then)."""
        self.listing.refresh()

    def _show_models(self, models: list[LibraryModel]) -> None:
        """Show ``models``, keeping the selection."""
        current = self.selected()
        self.table.set_models(models)
        if self.library.warning:
            self.show_message(self.library.warning, error=True)
        row = self.table.row_of(current.key) if current is not None else -1
        self.view.selectRow(row if row >= 0 else 0)
        self._update_buttons()

    def _refresh_if_shown(self) -> None:
        if self.isVisible():  # opening the window refreshes it anyway
            self.refresh()

    def _download_of(self, model: LibraryModel) -> DownloadTask | None:
        """The queued, running, paused or failed download writing ``model``'s partial files."""
        from ..hub import DownloadState

        if self.downloads is None or not model.repo_id or model.state != "partial":
            return None
        files, over = set(model.repo_files), (DownloadState.DONE, DownloadState.CANCELLED)
        return next(
            (
                task
                for task in self.downloads.tasks
                if task.repo_id == model.repo_id and set(task.filenames) == files and task.state not in over
            ),
            None,
        )

    def models(self) -> list[LibraryModel]:
        return list(self.table.models)

    def select(self, key: str) -> bool:
        row = self.table.row_of(key)
        if row >= 0:
            self.view.selectRow(row)
        return row >= 0

    def selected(self) -> LibraryModel | None:
        rows = self.view.selectionModel().selectedRows()
        return self.table.model_at(rows[0].row()) if rows else None

    def _update_buttons(self) -> None:
        model = self.selected()
        # An embedding model turns text into vectors for document search: it is not loaded for chat.
        self.load_button.setEnabled(model is not None and model.loadable and not model.is_embedding)
        removable = model is not None and model.source not in ("starter", "hf-cache")
        self.delete_button.setEnabled(removable)
        self.reveal_button.setEnabled(model is not None)
        for button in (self.speed_button, self.quality_button):
            button.setEnabled(model is not None and model.loadable and not model.is_embedding)
        resumable = (
            model is not None
            and model.state == "partial"
            and bool(model.repo_id and model.repo_files)
            and self.downloads is not None
        )
        if resumable and model is not None:
            task = self._download_of(model)
            resumable = task is None or task.state.value in ("paused", "failed")  # not while it runs
        self.resume_button.setVisible(resumable)
        if model is None:
            self.details.setText("")
            return
        facts = []
        info = model.info
        if info is not None:
            if info.architecture:
                facts.append(info.architecture)
            if info.parameter_count:
                facts.append(f"{short_number(info.parameter_count)} parameters")
            if info.context_length:
                facts.append(f"{info.context_length} tokens of context")
            if info.block_count:
                facts.append(f"{info.block_count} layers")
            if info.is_embedding:
                facts.append(f"embedding model: {EMBEDDING_TIP[0].lower()}{EMBEDDING_TIP[1:]}")
            else:  # the model's own chat template decides how well it follows a conversation
                facts.append(
                    "own chat template" if info.has_chat_template else "no chat template (ChatML is used)"
                )
        if model.message:
            facts.append(model.message)
        measured = figures_text(self.lab.results, model.path)
        if measured:
            facts.append(measured)
        self.details.setText(" · ".join([str(model.path), *facts]))

    # -- actions -------------------------------------------------------------------------------

    def load_selected(self) -> None:
        model = self.selected()
        if model is None:
            return
        if model.state == UNCHECKED:
            self.show_message(f"{model.name} is being checked: load it in a moment.")
            return
        if not model.loadable:
            self.show_message(f"{model.name} can't be loaded: {state_text(model)}.", error=True)
            return
        if model.is_embedding:
            self.show_message(
                f"{model.name} is an embedding model: it turns text into vectors for document search "
                "and can't chat. Choose a chat model to talk to."
            )
            return
        self.loadRequested.emit(model.path)

    def ask_import(self) -> None:
        """Choose a .gguf file, then whether to use it where it is or copy it into the models folder."""
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", str(Path.home()), GGUF_FILTER)
        if not path:
            return
        box = QMessageBox(self)
        box.setWindowTitle("Import model")
        box.setText(f"Import {Path(path).name}?")
        box.setInformativeText(
            "Use it where it is (no extra disk space; keep the file there), or copy it into "
            f"LlamaDesk's models folder ({self.library.models_dir})."
        )
        in_place = box.addButton("Use where it is", QMessageBox.ButtonRole.AcceptRole)
        copy = box.addButton("Copy", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        clicked = box.clickedButton()
        if clicked in (in_place, copy):
            self.import_file(Path(path), copy=clicked is copy)

    def import_file(self, path: Path, *, copy: bool = False) -> None:
        """Import ``path`` in the background (a copy can take a while); emits ``importFinished``."""
        self.import_button.setEnabled(False)
        self.show_message(f"{'Copying' if copy else 'Adding'} {path.name}…")
        library = self.library
        cancel = self._import_cancel = threading.Event()
        progress = None
        if copy:
            self._importing = path.name
            self.import_progress.setValue(0)
            self.import_progress.setFormat(f"Copying {path.name}…")
            self.cancel_import_button.setEnabled(True)
            self.import_row.show()
            progress = self._progress_reporter()
        self.tasks.run(
            lambda: library.import_model(path, copy=copy, progress=progress, cancel=cancel),
            self._on_imported,
            self._on_import_failed,
        )

    def _progress_reporter(self) -> Callable[[int, int], None]:
        """A callback for the copying thread: forwards progress at most 10 times a second."""
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] < 0.1 and done < total:
                return
            last[0] = now
            with contextlib.suppress(RuntimeError):  # the window is gone (quitting)
                self.importProgress.emit(done, total)

        return report

    def _on_import_progress(self, done: int, total: int) -> None:
        from ..hub import format_size

        if self.import_row.isHidden():
            return
        self.import_progress.setValue(int(1000 * done / total) if total else 0)
        self.import_progress.setFormat(
            f"Copying {self._importing}: {format_size(done)} of {format_size(total)} (%p%)"
        )

    def cancel_import(self) -> None:
        """Stop the copy now running; its partial files are removed."""
        self._import_cancel.set()
        self.cancel_import_button.setEnabled(False)
        self.import_progress.setFormat(f"Cancelling the copy of {self._importing}…")

    def _import_ended(self) -> None:
        self.import_button.setEnabled(True)
        self.import_row.hide()

    def _on_imported(self, model: LibraryModel) -> None:
        self._import_ended()
        self.listing.update(model)
        self.refresh()
        self.select(model.key)
        self.show_message(f"Added {model.name}.")
        self.modelsChanged.emit()
        self.importFinished.emit(model)

    def _on_import_failed(self, exc: LlamaDeskError) -> None:
        self._import_ended()
        if getattr(exc, "kind", "") == "cancelled":
            self.show_message(f"Import cancelled: {self._importing} was not copied.")
        else:
            self.show_message(str(exc), error=True)

    def confirm(self, title: str, text: str) -> bool:
        answer = QMessageBox.question(
            self,
            title,
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def delete_selected(self, *, confirm: bool = True) -> bool:
        """Delete the chosen model (after asking); True if it was removed."""
        from ..hub import format_size

        model = self.selected()
        if model is None:
            return False
        if model.source in ("starter", "hf-cache"):
            reason = (
                "The starter model comes with LlamaDesk and can't be deleted."
                if model.source == "starter"
                else "Models in the Hugging Face cache are shared with other tools: remove them with "
                "`hf cache delete`."
            )
            self.show_message(reason, error=True)
            return False
        loaded = self._loaded_path()
        if loaded is not None and _same_file(Path(loaded), Path(model.path)):
            self.show_message(f"{model.name} is loaded: unload it (Model → Unload) first.", error=True)
            return False
        task = self._download_of(model)
        if task is not None and self.downloads is not None:
            # Its download still owns the partial files: cancelling it deletes them.
            question = (
                f"Cancel the download of {model.name} and delete the {format_size(model.size)} downloaded?"
            )
            if confirm and not self.confirm("Delete model", question):
                return False
            self.downloads.cancel(task)
            self.show_message(f"Cancelled the download of {model.name}; its partial file is deleted.")
            self._refresh_timer.start()
            self.modelsChanged.emit()
            return True
        if model.deletable:
            question = f"Delete {model.name}? This frees {format_size(model.size)} of disk space."
        else:
            question = f"Remove {model.name} from the list? The file itself is kept at {model.path}."
        if confirm and not self.confirm("Delete model", question):
            return False
        try:
            self.library.remove(model.key)
        except LlamaDeskError as exc:
            self.show_message(str(exc), error=True)
            return False
        self.listing.discard(model.key)
        self.refresh()
        self.show_message(f"Removed {model.name}.")
        self.modelsChanged.emit()
        return True

    def measure_speed_selected(self) -> LabDialog | None:
        """Measure the chosen model's speed (a dialog shows progress, time left and Cancel)."""
        model = self.selected()
        return self.lab.measure_speed(Path(model.path), model.name) if model and model.loadable else None

    def measure_quality_selected(self) -> LabDialog | None:
        """Ask for a text file and measure the chosen model's perplexity on it."""
        model = self.selected()
        return self.lab.ask_quality(Path(model.path), model.name) if model and model.loadable else None

    def open_compare(self) -> CompareWindow:
        """The Compare window, with the chosen model ticked and its quantizations in the table."""
        from .lab_compare import CompareWindow

        lab = self.lab
        window = CompareWindow(
            self.models(), lab.results, service=lab.runner.service, chosen=self.selected(), parent=self
        )
        window.setWindowFlag(Qt.WindowType.Window)
        window.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        window.show()
        return window

    def reveal_selected(self) -> None:
        """Open the folder holding the chosen model in the file manager."""
        model = self.selected()
        if model is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(model.path).parent)))

    def resume_selected(self) -> None:
        """Continue an unfinished download from the bytes already on disk."""
        model = self.selected()
        if model is None or self.downloads is None or not model.repo_id or not model.repo_files:
            return
        try:
            self.downloads.add(model.repo_id, list(model.repo_files), revision=model.revision or "main")
        except LlamaDeskError as exc:
            self.show_message(str(exc), error=True)
            return
        self.show_message(f"Resuming the download of {model.name}.")

    # -- messages -------------------------------------------------------------------------------

    def show_message(self, text: str, *, error: bool = False) -> None:
        colours = ("#ffebe9", "#82071e", "#ff8182") if error else ("#ddf4ff", "#0a3069", "#54aeff")
        self.message.setStyleSheet(
            f"#libraryMessage {{ background: {colours[0]}; color: {colours[1]};"
            f" border: 1px solid {colours[2]}; border-radius: 4px; padding: 6px; }}"
        )
        self.message.setText(text)
        self.message.show()
        self.messageShown.emit(text)

    def message_text(self) -> str:
        return "" if self.message.isHidden() else html.unescape(self.message.text())

    def shutdown(self, timeout_s: float = 1.0) -> None:
        """At app exit: stop a running copy and give it ``timeout_s`` to remove its partial file."""
        self._import_cancel.set()  # a running copy stops within a chunk: quitting is quick
        self.lab.shutdown()
        self.listing.stop()
        self.tasks.shutdown(timeout_s)


def _same_file(a: Path, b: Path) -> bool:
    """True when both name one file (symlinks, "..", a different spelling of the folder)."""
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
