"""The Hub side of the main window: Discover, My models, the download queue, the token check
and model files dropped on the window.

Part of the main window: it holds the window and reaches the other parts through it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import shiboken6
from PySide6.QtCore import QMimeData, QObject, Qt
from PySide6.QtGui import QDragEnterEvent, QDropEvent

from ..errors import LlamaDeskError
from ..secrets import HF_TOKEN

if TYPE_CHECKING:
    from .hub_browser import HubBrowser
    from .hub_worker import DownloadManager
    from .main_window import MainWindow
    from .model_library import ModelLibraryPage
    from .preferences import PreferencesDialog

__all__ = ["HubWindows", "local_files"]


def local_files(mime: QMimeData) -> list[Path]:
    """Files on this computer in a drag-and-drop payload."""
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


class HubWindows(QObject):
    """Opens the Hub windows (one of each per app) and owns the app's download queue."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.hub_browser: HubBrowser | None = None
        self.model_library_page: ModelLibraryPage | None = None
        self._downloads: DownloadManager | None = None
        self._token: str | None = None  # read from the secret store on first use

    def token(self) -> str:
        """The Hub access token ("" for none), read once from the window's secret store."""
        if self._token is None:
            self._token = self.window.secrets.get(HF_TOKEN) or ""
        return self._token

    def save_token(self, token: str) -> None:
        """Use ``token`` from now on and keep it in the secret store ("" forgets it)."""
        self._token = token.strip()
        try:
            self.window.secrets.set(HF_TOKEN, self._token)
        except OSError as exc:
            self.window.show_error(
                f"Could not save the access token: {exc.strerror or exc}",
                "It is used until LlamaDesk closes; check that the settings folder is writable.",
            )

    def test_hub_token(self, token: str, dialog: PreferencesDialog) -> None:
        """Ask the Hub who the token belongs to, off the GUI thread; the answer goes to ``dialog``."""
        from ..hub import HubCatalog

        catalog = HubCatalog(token=token or None)

        def answer(ok: bool, text: str) -> None:
            if shiboken6.isValid(dialog):  # Preferences may have been closed while the Hub answered
                dialog.show_token_result(ok, text)

        self.window.tasks.run(
            catalog.whoami,
            lambda name: answer(True, f"The token works: signed in as {name}."),
            lambda error: answer(False, str(error)),
            channel="token",
        )

    def download_manager(self) -> DownloadManager:
        """The app's download queue, created on first use; takes up token and settings changes."""
        from .hub_worker import DownloadManager

        window = self.window
        if self._downloads is None:
            self._downloads = DownloadManager(
                window.models.library.models_dir,
                token=self.token() or None,
                max_parallel=window.settings.app.max_parallel_downloads,
                parent=self,
            )
            self._downloads.downloadFinished.connect(self._on_download_finished)
            self._downloads.downloadFailed.connect(self._on_download_failed)
        self._downloads.set_token(self.token() or None)
        self._downloads.set_max_parallel(window.settings.app.max_parallel_downloads)
        return self._downloads

    def settings_changed(self) -> None:
        """Take up a new token and parallel-download count (when the queue exists)."""
        if self._downloads is not None:
            self.download_manager()

    def set_models_dir(self, folder: Path) -> None:
        """New downloads go to ``folder``; My models shows the library's new folder."""
        if self._downloads is not None:
            self._downloads.set_models_dir(folder)
        if self.model_library_page is not None:
            self.model_library_page.refresh()

    def open_hub_browser(self) -> HubBrowser:
        """Show the "Discover models" window (one per app; it keeps its results when closed)."""
        from .hub_browser import HubBrowser

        window = self.window
        if self.hub_browser is None:
            self.hub_browser = HubBrowser(
                self.download_manager(),
                token=self.token,
                hardware=window.models.planning_hardware,  # fit verdicts as if the loaded model made room
                dark=window.dark,
                parent=window,
            )
            self.hub_browser.setWindowFlag(Qt.WindowType.Window)
        else:
            self.download_manager()
        self.hub_browser.show()
        self.hub_browser.raise_()
        self.hub_browser.activateWindow()
        return self.hub_browser

    def open_model_library(self) -> ModelLibraryPage:
        """Show the "My models" window: load, import, delete, reveal and resume downloads."""
        from .model_library import ModelLibraryPage

        window = self.window
        if self.model_library_page is None:
            page = ModelLibraryPage(
                window.models.library,  # type: ignore[arg-type]
                listing=window.models.listing,  # one listing for the picker and My models
                downloads=self.download_manager(),
                loaded_path=lambda: window.controller.loaded.path if window.controller.loaded else None,
                parent=window,
            )
            page.setWindowFlag(Qt.WindowType.Window)
            page.loadRequested.connect(lambda path: window.models.load_model(Path(path)))
            page.modelsChanged.connect(window.models.refresh_models)
            self.model_library_page = page
        else:
            self.model_library_page.refresh()
        self.model_library_page.show()
        self.model_library_page.raise_()
        return self.model_library_page

    def _on_download_finished(self, path: Path) -> None:
        if self.window.closed:
            return
        self.window.models.refresh_models()
        self.offer_load(f"{Path(path).name} is downloaded and in your model list.", Path(path))

    def _on_download_failed(self, _task_id: str, message: str) -> None:
        # Discover and My models show failures in their downloads panel while open; otherwise say it here.
        if self.window.closed or any(
            w is not None and w.isVisible() for w in (self.hub_browser, self.model_library_page)
        ):
            return
        self.window.show_error(
            f"Download failed: {message}", "Retry it from My models (the download resumes)."
        )

    # -- files dropped on the window

    def accepts_drag(self, event: QDragEnterEvent) -> bool:
        """Any local file is taken, so that dropping the wrong kind says why instead of nothing."""
        if local_files(event.mimeData()):
            event.acceptProposedAction()
            return True
        return False

    def drop(self, event: QDropEvent) -> bool:
        """Import a dropped .gguf file, or say why a dropped file is not one; False if no file."""
        from .model_library import gguf_paths

        mime = event.mimeData()
        paths = gguf_paths(mime)
        if not paths:
            files = local_files(mime)
            if not files:
                return False
            event.acceptProposedAction()
            self.window.show_error(
                f"{files[0].name} is not a GGUF model file",
                "LlamaDesk runs .gguf models: drop one of those, or find one in Discover models.",
            )
            return True
        event.acceptProposedAction()
        self.import_dropped_model(paths[0])
        return True

    def import_dropped_model(self, path: Path) -> None:
        """Register a dropped .gguf file in the library where it is (in the background: its header
        is read), and offer to load it."""
        window = self.window
        library = window.models.library

        def imported(model: Any) -> None:
            window.models.listing.update(model)
            window.models.refresh_models()  # My models, when open, shows the same listing
            self.offer_load(f"Added {model.name} to My models.", path)

        def failed(error: LlamaDeskError) -> None:
            window.show_error(str(error), "Drop a .gguf model file.")

        window.tasks.run(lambda: library.import_model(path, copy=False), imported, failed)

    def offer_load(self, message: str, path: Path) -> None:
        """Say ``message`` in the banner with a "Load it" button for ``path``."""

        def load() -> None:
            self.window.models.load_model(path)

        self.window.banner.show_message(message, "info", action_text="Load it", action=load)

    # -- closing

    def shutdown(self, deadline: float) -> None:
        """Stop Hub calls and pause downloads (their partial files are kept), waiting for them at
        most until ``deadline`` (a ``time.monotonic()`` value); a call that hangs is left behind."""

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        for page in (self.hub_browser, self.model_library_page):
            if page is not None:
                page.close()
        if self.hub_browser is not None:
            self.hub_browser.shutdown()
        if self.model_library_page is not None:
            self.model_library_page.shutdown(0)  # a running copy stops; its partial file is removed
        if self._downloads is not None:
            self._downloads.shutdown(left())
        if self.model_library_page is not None:
            self.model_library_page.tasks.shutdown(left())  # time for that clean-up
