"""The composition root: builds settings, store, library and inference, and wires the window.

Nothing heavy is imported here at module level (llama.cpp loads only with the first
model), so the window appears quickly.
"""

from __future__ import annotations

import atexit
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .paths import APP_NAME, get_paths

if TYPE_CHECKING:
    from .ui.main_window import Library, MainWindow

log = logging.getLogger(__name__)


def create_main_window(home: Path | None = None) -> MainWindow:
    """Build the fully wired window for ``home`` (default: LLAMADESK_HOME or the platform folders).

    Needs a QApplication already; the window is not shown. The model list is read in the
    background (what the header cache knows at once, new files after); then the last model
    starts loading.
    """
    from PySide6.QtCore import QTimer

    from .chat.store import ConversationStore, StoreError
    from .engine import header_cache
    from .secrets import SecretStore
    from .settings import SettingsStore
    from .ui.inference import InferenceController
    from .ui.main_window import MainWindow

    paths = get_paths(home).ensure()
    # Model header facts are remembered across runs: listing a big library reads no file again.
    header_cache.configure(paths.data_dir / header_cache.CACHE_FILE_NAME)
    settings_store = SettingsStore(paths.settings_file)
    settings = settings_store.load()
    warnings = [settings_store.warning] if settings_store.warning else []
    try:
        store = ConversationStore(paths.database_file)
    except StoreError as exc:  # e.g. a read-only folder: keep going with a throwaway database
        warnings.append(
            f"{exc}. Conversations of this session are kept only until LlamaDesk closes; "
            f"fix the problem with {paths.database_file} and restart to keep them."
        )
        # A fresh temporary folder: nothing from an earlier session, nothing left to mistake for saved.
        scratch = Path(tempfile.mkdtemp(prefix="llamadesk-unsaved-"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        store = ConversationStore(scratch / "conversations.sqlite3")
    if store.warning:
        warnings.append(store.warning)
    if store.interrupted_count:
        warnings.append(
            f"{store.interrupted_count} reply(ies) were cut short when LlamaDesk last closed; they are kept "
            "and marked as interrupted."
        )

    def make_library(models_dir: Path | None) -> Library:
        from .hub.library import ModelLibrary  # imports huggingface_hub: not before the window shows

        return ModelLibrary(paths, models_dir=models_dir)

    controller = InferenceController()
    try:
        window = MainWindow(
            paths=paths,
            settings_store=settings_store,
            settings=settings,
            store=store,
            library_factory=make_library,
            controller=controller,
            secrets=SecretStore(paths.config_dir),
        )
    except BaseException:
        controller.shutdown()
        store.close()
        raise
    controller.setParent(window)
    window.apply_appearance()
    if warnings:
        window.banner.show_message(" ".join(warnings), "warning")
    # Started from the event loop so the scan's imports don't compete with the first paint.
    QTimer.singleShot(0, window.models.start_library_scan)
    return window


def report_uncaught_errors(window: MainWindow) -> None:
    """Log an exception that escapes any thread (with its traceback) and show it in ``window``'s
    banner, instead of a silent failure or a lost traceback."""
    from .logs import install_excepthooks

    install_excepthooks(on_error=window.report_error)  # report_error is safe from any thread


def run_app(argv: list[str] | None = None) -> int:
    """Create the application, show the window and run until it closes."""
    from PySide6.QtWidgets import QApplication

    from .logs import close_logging, setup_logging, uninstall_excepthooks
    from .ui.resources import icon

    setup_logging(get_paths().log_dir)  # a folder that can't be written logs to stderr instead
    app = QApplication.instance() or QApplication(sys.argv if argv is None else argv)
    assert isinstance(app, QApplication)
    app.setApplicationName(APP_NAME)
    app.setOrganizationName(APP_NAME)
    app.setApplicationDisplayName(APP_NAME)
    app.setDesktopFileName("io.github.llamadesk.LlamaDesk")
    app.setWindowIcon(icon("llamadesk"))
    window = create_main_window()
    report_uncaught_errors(window)
    window.show()
    try:
        return app.exec()
    finally:
        uninstall_excepthooks()
        close_logging()
