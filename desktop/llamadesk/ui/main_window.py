"""The main window: builds the sidebar, chat view, composer, model picker and status bar, and
wires the parts that do the work.

The parts (QObjects holding the window) are ``conversations`` (the open conversation, system
prompt, drafts, exports), ``replies`` (send, regenerate, edit, stream, stop), ``models`` (the
library, picker and loading), ``hub`` (Discover, My models, downloads, drops) and ``commands``
(actions, menus, toolbar). The window itself updates what is enabled, shows problems in the
banner, applies settings and the theme, keeps its state across restarts, and closes quickly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QByteArray, QSettings, Qt, QUrl, Signal
from PySide6.QtGui import QCloseEvent, QDesktopServices, QDragEnterEvent, QDropEvent, QGuiApplication
from PySide6.QtWidgets import (
    QApplication,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPlainTextEdit,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..chat.store import ConversationStore
from ..engine import load_policy, rpc
from ..paths import Paths, starter_model_path
from ..secrets import SecretStore
from ..settings import Settings, SettingsError, SettingsStore
from .banner import Banner
from .chat_view import ChatView
from .composer import Composer
from .conversation_session import ConversationSession
from .documents_session import DocumentsSession
from .empty_state import EmptyState
from .hub_windows import HubWindows
from .inference import InferenceController
from .model_picker import LoadProgress, ModelPicker
from .model_session import Library, ModelSession
from .remote_preferences import open_remote_tab
from .reply_session import ReplySession
from .resources import icon
from .server_controller import open_server_tab, wire_server
from .sidebar import Sidebar
from .status_bar import StatusBar
from .store_signals import StoreSignals
from .tasks import TaskRunner
from .theme import apply_theme
from .window_actions import WindowActions

if TYPE_CHECKING:
    from .preferences import PreferencesDialog

log = logging.getLogger(__name__)

__all__ = ["CLOSE_TIMEOUT_S", "Library", "MainWindow"]

CLOSE_TIMEOUT_S = 1.5  # the most closing waits for background work (the reply, downloads, Hub calls)


class MainWindow(QMainWindow):
    """LlamaDesk's one window.

    Signals:
        browseModelsRequested: the user asked for the Hub model browser.
    """

    browseModelsRequested = Signal()
    _errorReported = Signal(str)  # from any thread; shown on the GUI thread

    def __init__(
        self,
        *,
        paths: Paths,
        settings_store: SettingsStore,
        settings: Settings,
        store: ConversationStore,
        library_factory: Callable[[Path | None], Library],
        controller: InferenceController,
        secrets: SecretStore,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("mainWindow")
        self.setWindowTitle("LlamaDesk")
        self.setWindowIcon(icon("llamadesk"))
        self.paths = paths
        self.settings_store = settings_store
        self.settings = settings
        self.store = store
        self.controller = controller
        self.secrets = secrets  # the Hub token (system keyring, or a private file)
        self.window_state = QSettings(str(paths.config_dir / "window.ini"), QSettings.Format.IniFormat)
        self.preferences_dialog: PreferencesDialog | None = None
        self.setAcceptDrops(True)
        self.dark = False
        self.closed = False

        self.tasks = TaskRunner(self, on_error=self.show_error, name="window")
        self.store_signals = StoreSignals(store, self)
        self._build_ui()
        self.conversations = ConversationSession(self)
        self.replies = ReplySession(self)
        self.models = ModelSession(self, library_factory)
        self.hub = HubWindows(self)
        self.commands = WindowActions(self)
        self.documents = DocumentsSession(self)  # the Documents dock, a chat's collections, retrieval
        self.load_progress_action = self.commands.load_progress_action
        self._connect()
        self._restore_state()
        self.update_state()
        self.api_server = wire_server(self)  # the local API server, when Preferences → Server says so
        self.api_server.model_loaded.connect(
            lambda _path: self.controller.adopt_loaded(self.controller.service.loaded)
        )

    # ------------------------------------------------------------------ building

    def _build_ui(self) -> None:
        self.sidebar = Sidebar(self.store, self, store_signals=self.store_signals)
        self.banner = Banner(self)

        self.system_prompt_toggle = QToolButton(self)
        self.system_prompt_toggle.setObjectName("systemPromptToggle")
        self.system_prompt_toggle.setCheckable(True)
        self.system_prompt_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.system_prompt_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.system_prompt_toggle.setText("System prompt")
        self.system_prompt_toggle.setAutoRaise(True)
        self.system_prompt_edit = QPlainTextEdit(self)
        self.system_prompt_edit.setObjectName("systemPromptEdit")
        self.system_prompt_edit.setAccessibleName("systemPromptEdit")
        self.system_prompt_edit.setPlaceholderText("Instructions for the model in this conversation")
        self.system_prompt_edit.setMaximumHeight(90)
        self.system_prompt_edit.setTabChangesFocus(True)
        self.system_prompt_edit.hide()

        self.chat_view = ChatView(self)
        self.chat_view.setObjectName("chatView")
        self.chat_view.setAccessibleName("chatView")
        self.empty_state = EmptyState(has_starter=starter_model_path() is not None, parent=self)
        self.stack = QStackedWidget(self)
        self.stack.addWidget(self.empty_state)
        self.stack.addWidget(self.chat_view)
        self.composer = Composer(self)

        right = QWidget(self)
        layout = QVBoxLayout(right)
        layout.setContentsMargins(0, 6, 6, 0)
        layout.setSpacing(4)
        layout.addWidget(self.banner)
        layout.addWidget(self.system_prompt_toggle, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.system_prompt_edit)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.composer)

        self.splitter = QSplitter(Qt.Orientation.Horizontal, self)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([260, 740])
        self.setCentralWidget(self.splitter)

        self.toolbar = QToolBar("Main toolbar", self)
        self.toolbar.setObjectName("mainToolbar")
        self.toolbar.setMovable(False)
        self.model_picker = ModelPicker(self)
        self.load_progress = LoadProgress(self)
        self.addToolBar(self.toolbar)

        self.status = StatusBar(self)
        self.setStatusBar(self.status)
        self.workers_label = QLabel("", self)  # the llama.cpp RPC workers the loaded model is spread over
        self.workers_label.setObjectName("workersStatus")
        self.status.addPermanentWidget(self.workers_label)
        self.workers_label.hide()
        self.resize(1100, 720)

    def _connect(self) -> None:
        conversations, replies, models = self.conversations, self.replies, self.models
        self.sidebar.conversationSelected.connect(conversations.open_conversation)
        self.sidebar.newChatRequested.connect(conversations.new_chat)
        self.sidebar.conversationDeleted.connect(conversations.on_conversation_deleted)
        self.sidebar.storeFailed.connect(self.show_error)
        self.sidebar.notice.connect(self.show_info)
        self.store_signals.conversationChanged.connect(self._on_conversation_changed)

        self.system_prompt_toggle.toggled.connect(conversations.toggle_system_prompt)
        self.system_prompt_edit.textChanged.connect(conversations.system_prompt_timer.start)
        self.composer.sendRequested.connect(replies.send)
        self.composer.stopRequested.connect(replies.stop)
        self.composer.regenerateRequested.connect(replies.regenerate)
        self.composer.draftChanged.connect(conversations.draft_timer.start)

        self.chat_view.editRequested.connect(replies.ask_edit_message)
        self.chat_view.regenerateRequested.connect(replies.regenerate_message)
        self.chat_view.branchStepRequested.connect(replies.step_branch)

        self.empty_state.starterRequested.connect(models.use_starter_model)
        self.empty_state.openFileRequested.connect(models.ask_open_model_file)
        self.empty_state.browseRequested.connect(self.browseModelsRequested)
        self.browseModelsRequested.connect(self.hub.open_hub_browser)

        self.model_picker.modelChosen.connect(lambda path: models.load_model(Path(path)))
        self.model_picker.openFileRequested.connect(models.ask_open_model_file)
        self.load_progress.cancelRequested.connect(models.cancel_load)

        self._errorReported.connect(self._show_reported_error)
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._on_system_scheme_changed)

    # ------------------------------------------------------------------ state

    @property
    def conversation_id(self) -> int | None:
        """The open conversation (None: a new chat not sent yet)."""
        return self.conversations.conversation_id

    @property
    def generating(self) -> bool:
        """True while a reply is being written."""
        return self.replies.generating

    def update_state(self) -> None:
        """Enable what can be done now (a reply or a load in progress locks most of it)."""
        if self.closed:
            return
        commands = self.commands
        loaded = self.controller.loaded is not None
        loading = self.models.loading
        generating = self.generating
        busy = generating or loading
        last = self.conversations.last_assistant()
        self.composer.set_ready(loaded and not loading)
        self.composer.set_busy(generating)
        self.composer.set_can_regenerate(last is not None)
        self.model_picker.setEnabled(not busy)
        self.sidebar.locked_id = self.conversation_id if generating else None
        commands.stop_action.setEnabled(busy)
        commands.regenerate_action.setEnabled(loaded and not busy and last is not None)
        commands.reload_action.setEnabled(loaded and not busy)
        commands.unload_action.setEnabled(loaded and not busy)
        has_conversation = self.conversation_id is not None
        for action in (commands.rename_action, commands.pin_action, commands.delete_action):
            action.setEnabled(has_conversation)
        commands.export_action.setEnabled(has_conversation)
        workers = rpc.workers_in_use() if loaded else ()
        self.workers_label.setText("Workers: " + ", ".join(workers))
        self.workers_label.setVisible(bool(workers))
        show_empty = not has_conversation and not loaded and not loading
        self.stack.setCurrentWidget(self.empty_state if show_empty else self.chat_view)

    def _on_conversation_changed(self, conversation_id: int) -> None:
        # A change made elsewhere (a batch import, another front end): what can be done may differ.
        if conversation_id == self.conversation_id and not self.generating:
            self.update_state()

    def show_error(self, message: str, next_step: str = "", *, topic: str = "") -> None:
        """Show a problem in the banner (never a modal dialog), with what to do next.

        ``topic="model"`` marks a problem that a model loading afterwards solves."""
        text = f"{message.rstrip('.')}. {next_step}" if next_step else message
        self.banner.show_message(text, "error", topic=topic)

    def show_info(self, message: str, *, topic: str = "") -> None:
        self.banner.show_message(message, "info", topic=topic)

    def report_error(self, message: str) -> None:
        """Show an unexpected problem in the banner; safe to call from any thread."""
        if not self.closed:
            self._errorReported.emit(message)

    def _show_reported_error(self, message: str) -> None:
        if not self.closed:
            self.show_error(message, f"Details are in the log folder ({self.paths.log_dir}).")

    def focus_composer(self) -> None:
        self.composer.editor.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def copy_last_reply(self) -> None:
        text = self.chat_view.last_reply_text()
        if text:
            QGuiApplication.clipboard().setText(text)
            self.statusBar().showMessage("Copied the last reply", 3000)

    def toggle_sidebar(self) -> None:
        self.sidebar.setVisible(self.commands.sidebar_action.isChecked())

    def show_about(self) -> None:
        from .. import __version__ as version

        QMessageBox.about(
            self,
            "About LlamaDesk",
            f"<b>LlamaDesk {version}</b><p>Chat with language models on your own computer, offline.</p>"
            "<p>Runs GGUF models with llama.cpp.</p>",
        )

    def open_log_folder(self) -> None:
        """Show the folder with LlamaDesk's log files in the file manager."""
        folder = self.paths.log_dir
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))

    # ------------------------------------------------------------------ settings, theme, preferences

    def save_settings(self) -> None:
        try:
            self.settings_store.save(self.settings)
        except SettingsError as exc:
            self.show_error(str(exc), "Check that the settings folder is writable.")

    def apply_settings(self, settings: Settings, token: str | None = None) -> None:
        """Use and save new settings (from Preferences); generation changes apply to the next reply."""
        # Preferences edits a copy taken when it opened: only what it edits is taken from it, the rest
        # (changed meanwhile by its own tabs and controls) stays as it is now.
        from .preferences import EDITED

        settings = self.settings.model_copy(
            update={name: getattr(settings, name) for name in EDITED}, deep=True
        )
        settings.app.last_model = self.settings.app.last_model
        for key, preset in settings.presets.items():  # the Think switch may have changed it meanwhile
            if key in self.settings.presets:
                preset.thinking = self.settings.presets[key].thinking
        folder_changed = settings.app.models_dir != self.settings.app.models_dir
        old_default = self.settings.app.default_system_prompt
        self.settings = settings
        self.documents.settings_changed()  # a new documents embedding model is used from now on
        if self.conversation_id is None and self.system_prompt_edit.toPlainText() == old_default:
            self.conversations.load_system_prompt()  # a new chat not yet sent takes up the new default
        self.save_settings()
        if token is not None:
            self.hub.save_token(token)
        self.hub.settings_changed()
        if folder_changed:
            self.models.use_models_dir()
        self.apply_appearance()

    def apply_appearance(self) -> None:
        """Apply the theme and fonts from the settings."""
        app = QApplication.instance()
        if isinstance(app, QApplication):
            self.dark = apply_theme(app, self.settings.app.theme)
            family = app.font().family()
        else:
            family = self.font().family()
        self.chat_view.set_dark(self.dark)
        self.chat_view.set_font((family, self.settings.app.font_size, self.settings.app.code_font))
        action = self.commands.theme_actions.get(self.settings.app.theme)
        if action is not None:
            action.setChecked(True)

    def _on_system_scheme_changed(self) -> None:
        if not self.closed and self.settings.app.theme == "system":
            self.apply_appearance()

    def set_theme(self, theme: str) -> None:
        try:
            self.settings.app.theme = theme  # type: ignore[assignment]
        except ValueError as exc:
            self.show_error(str(exc))
            return
        self.save_settings()
        self.apply_appearance()

    def open_preferences(self) -> PreferencesDialog:
        """Open the Preferences dialog (non-blocking) and return it."""
        from .. import engine
        from .preferences import PreferencesDialog

        if self.preferences_dialog is not None and self.preferences_dialog.isVisible():
            self.preferences_dialog.raise_()
            self.preferences_dialog.activateWindow()
            return self.preferences_dialog
        loaded = self.controller.loaded
        auto_layers: int | None = None
        if loaded is not None and self.controller.remote is None:  # what "Auto" would choose for this model
            planning = self.models.planning_hardware()
            auto_layers = load_policy.auto_gpu_layers(loaded.info, planning, loaded.n_ctx)
        dialog = PreferencesDialog(
            self.settings,
            token=self.hub.token(),
            hardware_summary=engine.detect_hardware().describe(),
            auto_gpu_layers=auto_layers,
            model_layers=loaded.info.block_count if loaded is not None else None,
            models_dir_default=str(self.paths.models_dir),
            model_key=self.models.model_key() or None,
            model_name=self.models.model_name() or "",
            data_dir=self.paths.data_dir,
            parent=self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.settingsApplied.connect(self.apply_settings)
        dialog.reloadRequested.connect(self.models.reload_model)
        dialog.testTokenRequested.connect(lambda token: self.hub.test_hub_token(token, dialog))
        dialog.exportAllRequested.connect(self.conversations.ask_export_all)
        dialog.deleteAllRequested.connect(self.conversations.delete_all)
        dialog.destroyed.connect(lambda: setattr(self, "preferences_dialog", None))
        open_server_tab(self, dialog)
        open_remote_tab(self, dialog)
        self.preferences_dialog = dialog
        dialog.open()
        return dialog

    # ------------------------------------------------------------------ drops

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if not self.hub.accepts_drag(event):
            super().dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        if not self.hub.drop(event):
            super().dropEvent(event)

    # ------------------------------------------------------------------ window state and closing

    def _restore_state(self) -> None:
        state = self.window_state
        geometry = state.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        splitter = state.value("window/splitter")
        if isinstance(splitter, QByteArray):
            self.splitter.restoreState(splitter)
        shown = state.value("window/systemPromptShown", False)
        self.system_prompt_toggle.setChecked(shown in (True, "true"))
        current = state.value("conversation/current", 0)
        try:
            conversation_id = int(current or 0) or None  # type: ignore[call-overload]
        except (TypeError, ValueError):
            conversation_id = None
        # The empty box must not overwrite a saved draft.
        self.conversations.switch_to(conversation_id, save_draft=False)

    def save_window_state(self) -> None:
        state = self.window_state
        state.setValue("window/geometry", self.saveGeometry())
        state.setValue("window/splitter", self.splitter.saveState())
        state.setValue("window/systemPromptShown", self.system_prompt_toggle.isChecked())
        state.setValue("conversation/current", self.conversation_id or 0)
        self.conversations.save_draft()
        state.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Keep the partial reply (as "stopped"), pause downloads (their partial files stay), leave
        hung background calls behind, free the model, close the store, remember the window.

        Background work gets at most ``CLOSE_TIMEOUT_S`` seconds in all."""
        if self.closed:
            event.accept()
            return
        deadline = time.monotonic() + CLOSE_TIMEOUT_S
        self.conversations.flush_system_prompt()
        self.save_window_state()
        self.closed = True
        # Ask everything to stop first, so that the waits below overlap.
        self.replies.stop_for_close()
        self.controller.cancel_load()
        self.tasks.shutdown(0)  # a library scan or a Hub call that hangs is left behind
        if self.preferences_dialog is not None:
            self.preferences_dialog.close()
        self.hub.shutdown(deadline)
        self.api_server.shutdown(timeout_s=max(0.0, deadline - time.monotonic()) / 2)
        self.controller.shutdown(timeout_s=max(0.0, deadline - time.monotonic()))
        self.documents.shutdown()  # indexing stops after its file; what was indexed stays
        self.store_signals.close()
        self.store.close()
        event.accept()
