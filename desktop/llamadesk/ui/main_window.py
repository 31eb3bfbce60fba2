"""The main window: wires the sidebar, chat view, composer, model picker and status bar.

Each part owns its behaviour; this class only connects them to the conversation store,
the settings and the inference controller, and keeps window state across restarts.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import shiboken6
from PySide6.QtCore import QByteArray, QMimeData, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import (
    QAction,
    QActionGroup,
    QCloseEvent,
    QDragEnterEvent,
    QDropEvent,
    QGuiApplication,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QInputDialog,
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

from ..chat.store import ConversationStore, Message, StoreError, StreamingReply, reply_status
from ..errors import LlamaDeskError
from ..paths import STARTER_MODEL_NAME, Paths, starter_model_path
from ..settings import (
    GenerationSettings,
    RuntimeSettings,
    Settings,
    SettingsError,
    SettingsStore,
    atomic_write_text,
    load_token,
    save_token,
    validated_update,
)
from .banner import Banner
from .chat_view import ChatView
from .composer import Composer, tidy_message
from .empty_state import EmptyState
from .inference import InferenceController, LoadedModel
from .model_picker import LoadProgress, ModelEntry, ModelPicker
from .resources import icon
from .sidebar import Sidebar
from .status_bar import StatusBar
from .theme import apply_theme

if TYPE_CHECKING:
    from ..engine import FitPlan, GGUFInfo, Hardware
    from .hub_browser import HubBrowser
    from .hub_worker import DownloadManager, HubTasks
    from .model_library import ModelLibraryPage
    from .preferences import PreferencesDialog

log = logging.getLogger(__name__)

GGUF_FILTER = "GGUF models (*.gguf);;All files (*)"


def _new_file_mode() -> int:
    """The permissions a file created the usual way gets (0o666 less the umask)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _local_files(mime: QMimeData) -> list[Path]:
    """Files on this computer in a drag-and-drop payload."""
    if not mime.hasUrls():
        return []
    return [Path(url.toLocalFile()) for url in mime.urls() if url.isLocalFile()]


class LibraryEntry(Protocol):
    """What the window reads from a library model (``hub.library.LibraryModel``)."""

    key: str
    name: str
    path: Path
    size: int
    source: str
    state: str
    info: Any
    message: str


class Library(Protocol):
    """The local model library (``hub.library.ModelLibrary``)."""

    models_dir: Path

    def list(self) -> list[Any]: ...

    def find(self, name_or_path: str) -> Any: ...

    def import_model(self, path: str | Path, *, copy: bool = False) -> Any: ...


@dataclasses.dataclass(frozen=True)
class _SentMessage:
    """A message sent from the composer, kept until its reply starts in case it must go back."""

    text: str
    message_id: int
    created_conversation: bool


class MainWindow(QMainWindow):
    """LlamaDesk's one window.

    Signals:
        browseModelsRequested: the user asked for the Hub model browser.
    """

    browseModelsRequested = Signal()
    _libraryScanned = Signal(object, object)

    def __init__(
        self,
        *,
        paths: Paths,
        settings_store: SettingsStore,
        settings: Settings,
        store: ConversationStore,
        library_factory: Callable[[Path | None], Library],
        controller: InferenceController,
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
        self._library_factory = library_factory
        self._library: Library | None = None
        self._scan_thread: threading.Thread | None = None
        self.controller = controller
        self.window_state = QSettings(str(paths.config_dir / "window.ini"), QSettings.Format.IniFormat)
        self.preferences_dialog: PreferencesDialog | None = None
        self.hub_browser: HubBrowser | None = None
        self.model_library_page: ModelLibraryPage | None = None
        self._downloads: DownloadManager | None = None
        self._hub_tasks: HubTasks | None = None
        self.setAcceptDrops(True)
        self.dark = False

        self._conversation_id: int | None = None
        self._reply: StreamingReply | None = None
        self._reply_ids: list[int | None] = []
        self._reply_failed_store = False
        self._sent: _SentMessage | None = None  # the message the running reply answers, when just sent
        self._loading_path: Path | None = None
        self._load_cancelled = False
        self._loaded_identity: tuple[Path, tuple[str, str]] | None = None
        self.fit_warning: QMessageBox | None = None  # open while asking whether to load a too-large model
        self._closed = False

        self._build_ui()
        self._build_menus()
        self._connect()
        self._restore_state()
        self._update_state()

    # ------------------------------------------------------------------ building

    def _build_ui(self) -> None:
        self.sidebar = Sidebar(self.store, self)
        self.banner = Banner(self)

        self.system_prompt_toggle = QToolButton(self)
        self.system_prompt_toggle.setObjectName("systemPromptToggle")
        self.system_prompt_toggle.setCheckable(True)
        self.system_prompt_toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.system_prompt_toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.system_prompt_toggle.setText("System prompt")
        self.system_prompt_toggle.setAutoRaise(True)
        self.system_prompt_toggle.toggled.connect(self._toggle_system_prompt)
        self.system_prompt_edit = QPlainTextEdit(self)
        self.system_prompt_edit.setObjectName("systemPromptEdit")
        self.system_prompt_edit.setAccessibleName("systemPromptEdit")
        self.system_prompt_edit.setPlaceholderText("Instructions for the model in this conversation")
        self.system_prompt_edit.setMaximumHeight(90)
        self.system_prompt_edit.setTabChangesFocus(True)
        self.system_prompt_edit.hide()
        self._system_prompt_timer = QTimer(self)
        self._system_prompt_timer.setSingleShot(True)
        self._system_prompt_timer.setInterval(500)
        self._system_prompt_timer.timeout.connect(self.save_system_prompt)
        self._draft_timer = QTimer(self)  # drafts are saved after a pause in typing, not per keystroke
        self._draft_timer.setSingleShot(True)
        self._draft_timer.setInterval(500)
        self._draft_timer.timeout.connect(self._save_draft)

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
        self.resize(1100, 720)

    def _action(
        self, text: str, slot: Any, shortcuts: list[QKeySequence] | None = None, *, icon_name: str = ""
    ) -> QAction:
        action = QAction(text, self)
        if icon_name:
            action.setIcon(icon(icon_name))
        if shortcuts:
            unique: list[QKeySequence] = []
            for sequence in shortcuts:
                if not sequence.isEmpty() and sequence not in unique:
                    unique.append(sequence)
            action.setShortcuts(unique)
        action.triggered.connect(slot)
        self.addAction(action)
        return action

    def _build_menus(self) -> None:
        key = QKeySequence
        self.new_chat_action = self._action(
            "&New chat", self.new_chat, [key(key.StandardKey.New), key("Ctrl+N")], icon_name="new-chat"
        )
        self.open_model_action = self._action(
            "&Open model file…", self.ask_open_model_file, [key("Ctrl+O")], icon_name="model"
        )
        self.export_action = self._action("&Export conversation as Markdown…", self.ask_export_conversation)
        self.preferences_action = self._action(
            "&Preferences…",
            self.open_preferences,
            [key(key.StandardKey.Preferences), key("Ctrl+,")],
            icon_name="settings",
        )
        self.preferences_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.quit_action = self._action("&Quit", self.close, [key(key.StandardKey.Quit), key("Ctrl+Q")])
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)

        self.find_action = self._action(
            "&Search conversations", self.sidebar.focus_search, [key("Ctrl+F")], icon_name="search"
        )
        self.copy_reply_action = self._action(
            "&Copy last reply", self.copy_last_reply, [key("Ctrl+Shift+C")], icon_name="copy"
        )
        self.focus_composer_action = self._action("&Focus message box", self.focus_composer, [key("Ctrl+L")])
        self.rename_action = self._action(
            "&Rename conversation", self._rename_current, [key("F2")], icon_name="edit"
        )
        self.pin_action = self._action("&Pin or unpin conversation", self._toggle_pin_current)
        self.delete_action = self._action("&Delete conversation…", self._delete_current)

        self.sidebar_action = self._action("Show &sidebar", self._toggle_sidebar, [key("Ctrl+B")])
        self.sidebar_action.setCheckable(True)
        self.sidebar_action.setChecked(True)
        self.system_prompt_action = self._action(
            "Show system &prompt", lambda: self.system_prompt_toggle.toggle(), [key("Ctrl+Shift+P")]
        )
        self.theme_group = QActionGroup(self)
        self.theme_actions: dict[str, QAction] = {}
        for theme, label in (("system", "Follow the &system"), ("light", "&Light"), ("dark", "&Dark")):
            action = QAction(label, self)
            action.setCheckable(True)
            action.setData(theme)
            action.triggered.connect(lambda _checked=False, t=theme: self.set_theme(t))
            self.theme_group.addAction(action)
            self.theme_actions[theme] = action

        self.choose_model_action = self._action(
            "&Choose model…", self._show_model_list, [key("Ctrl+M")], icon_name="model"
        )
        self.reload_action = self._action("&Reload model", self.reload_model)
        self.template_action = self._action("Chat &template…", self.edit_chat_template)
        self.unload_action = self._action("&Unload model", self.unload_model)
        self.stop_action = self._action("&Stop generating", self.stop, [key("Esc")], icon_name="stop")
        self.regenerate_action = self._action(
            "Re&generate last reply", self.regenerate, [key("Ctrl+R")], icon_name="regenerate"
        )
        self.browse_action = self._action(
            "&Discover models…", self.open_hub_browser, [key("Ctrl+Shift+M")], icon_name="download"
        )
        self.my_models_action = self._action("&My models…", self.open_model_library, icon_name="model")
        self.about_action = self._action("&About LlamaDesk", self.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)

        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        for action in (self.new_chat_action, self.open_model_action, self.export_action):
            file_menu.addAction(action)
        file_menu.addSeparator()
        file_menu.addAction(self.preferences_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        edit_menu = bar.addMenu("&Edit")
        for action in (self.copy_reply_action, self.find_action, self.focus_composer_action):
            edit_menu.addAction(action)
        edit_menu.addSeparator()
        for action in (self.rename_action, self.pin_action, self.delete_action):
            edit_menu.addAction(action)
        view_menu = bar.addMenu("&View")
        view_menu.addAction(self.sidebar_action)
        view_menu.addAction(self.system_prompt_action)
        theme_menu = view_menu.addMenu("&Theme")
        for action in self.theme_actions.values():
            theme_menu.addAction(action)
        model_menu = bar.addMenu("&Model")
        for action in (
            self.choose_model_action,
            self.open_model_action,
            self.browse_action,
            self.my_models_action,
        ):
            model_menu.addAction(action)
        model_menu.addSeparator()
        for action in (self.reload_action, self.unload_action, self.template_action):
            model_menu.addAction(action)
        model_menu.addSeparator()
        model_menu.addAction(self.stop_action)
        model_menu.addAction(self.regenerate_action)
        help_menu = bar.addMenu("&Help")
        help_menu.addAction(self.about_action)

        self.toolbar.addAction(self.new_chat_action)
        self.toolbar.addSeparator()
        self.toolbar.addWidget(self.model_picker)
        # A toolbar shows or hides its widgets through their actions (QToolBar.addWidget's docs).
        self.load_progress_action = self.toolbar.addWidget(self.load_progress)
        self.load_progress_action.setVisible(False)
        self.toolbar.addAction(self.browse_action)
        self.toolbar.addSeparator()
        self.toolbar.addAction(self.preferences_action)

    def _connect(self) -> None:
        self.sidebar.conversationSelected.connect(self.open_conversation)
        self.sidebar.newChatRequested.connect(self.new_chat)
        self.sidebar.conversationDeleted.connect(self._on_conversation_deleted)
        self.sidebar.storeFailed.connect(self.show_error)
        self.sidebar.notice.connect(self.show_info)

        self.composer.sendRequested.connect(self.send)
        self.composer.stopRequested.connect(self.stop)
        self.composer.regenerateRequested.connect(self.regenerate)
        self.composer.draftChanged.connect(self._draft_timer.start)
        self.system_prompt_edit.textChanged.connect(self._system_prompt_timer.start)

        self.chat_view.editRequested.connect(self.ask_edit_message)
        self.chat_view.regenerateRequested.connect(self.regenerate_message)
        self.chat_view.branchStepRequested.connect(self.step_branch)

        self.empty_state.starterRequested.connect(self.use_starter_model)
        self.empty_state.openFileRequested.connect(self.ask_open_model_file)
        self.empty_state.browseRequested.connect(self.browseModelsRequested)
        self.browseModelsRequested.connect(self.open_hub_browser)

        self.model_picker.modelChosen.connect(lambda path: self.load_model(Path(path)))
        self.model_picker.openFileRequested.connect(self.ask_open_model_file)
        self.load_progress.cancelRequested.connect(self.cancel_load)

        self._libraryScanned.connect(self._on_library_scanned)
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._on_system_scheme_changed)

        c = self.controller
        c.modelLoading.connect(self._on_model_loading)
        c.loadProgress.connect(self.load_progress.set_progress)
        c.modelLoaded.connect(self._on_model_loaded)
        c.modelLoadFailed.connect(self._on_model_load_failed)
        c.modelUnloaded.connect(self._on_model_unloaded)
        c.contextPrepared.connect(self._on_context_prepared)
        c.tokenReceived.connect(self._on_token)
        c.generationFinished.connect(self._on_generation_finished)
        c.generationFailed.connect(self._on_generation_failed)
        c.promptTooLong.connect(self._on_prompt_too_long)

    # ------------------------------------------------------------------ state

    @property
    def conversation_id(self) -> int | None:
        return self._conversation_id

    @property
    def generating(self) -> bool:
        return self._reply is not None

    def _update_state(self) -> None:
        loaded = self.controller.loaded is not None
        loading = self._loading_path is not None
        busy = self.generating or loading
        self.composer.set_ready(loaded and not loading)
        self.composer.set_busy(self.generating)
        self.composer.set_can_regenerate(self._last_assistant() is not None)
        self.model_picker.setEnabled(not busy)
        self.sidebar.locked_id = self._conversation_id if self.generating else None
        self.stop_action.setEnabled(busy)
        self.regenerate_action.setEnabled(loaded and not busy and self._last_assistant() is not None)
        self.reload_action.setEnabled(loaded and not busy)
        self.unload_action.setEnabled(loaded and not busy)
        has_conversation = self._conversation_id is not None
        for action in (self.rename_action, self.pin_action, self.delete_action, self.export_action):
            action.setEnabled(has_conversation)
        show_empty = not has_conversation and not loaded and not loading
        self.stack.setCurrentWidget(self.empty_state if show_empty else self.chat_view)

    def _last_assistant(self) -> Message | None:
        if self._conversation_id is None:
            return None
        try:
            path = self.store.active_path(self._conversation_id)
        except StoreError:
            return None
        return next((m for m in reversed(path) if m.role == "assistant"), None)

    def show_error(self, message: str, next_step: str = "", *, topic: str = "") -> None:
        """Show a problem in the banner (never a modal dialog), with what to do next.

        ``topic="model"`` marks a problem that a model loading afterwards solves."""
        text = f"{message.rstrip('.')}. {next_step}" if next_step else message
        self.banner.show_message(text, "error", topic=topic)

    def show_info(self, message: str, *, topic: str = "") -> None:
        self.banner.show_message(message, "info", topic=topic)

    # ------------------------------------------------------------------ conversations

    def new_chat(self) -> None:
        """Start a new conversation (stored when the first message is sent)."""
        if self.generating:
            self.show_info("Wait for the reply to finish, or stop it, before starting a new chat.")
            return
        self._flush_system_prompt()
        self._switch_to(None)
        self.focus_composer()

    def open_conversation(self, conversation_id: int) -> None:
        """Show a stored conversation."""
        if conversation_id == self._conversation_id:
            return
        if self.generating:
            self.sidebar.select(self._conversation_id)
            self.show_info("Stop the reply being written before switching conversations.")
            return
        self._flush_system_prompt()
        self._switch_to(conversation_id)

    def _switch_to(self, conversation_id: int | None, *, save_draft: bool = True) -> None:
        if save_draft:
            self._save_draft()
        if conversation_id is not None:
            try:
                self.store.get_conversation(conversation_id)
            except StoreError as exc:
                self.show_error(str(exc))
                conversation_id = None
        self._conversation_id = conversation_id
        self.sidebar.select(conversation_id)
        self.window_state.setValue("conversation/current", conversation_id or 0)
        self._load_system_prompt()
        self.refresh_chat()
        self.composer.blockSignals(True)
        self.composer.set_text(str(self.window_state.value(self._draft_key(), "") or ""))
        self.composer.blockSignals(False)
        self._update_state()

    def refresh_chat(self) -> None:
        """Show the active branch of the open conversation."""
        messages: list[Message] = []
        if self._conversation_id is not None:
            try:
                messages = self.store.active_path(self._conversation_id)
            except StoreError as exc:
                self.show_error(str(exc))
        self.chat_view.set_messages(list(messages))
        self.chat_view.set_excluded(set())
        last = next((m for m in reversed(messages) if m.role == "assistant"), None)
        self.status.set_stats(last.stats if last is not None else None)

    def _on_conversation_deleted(self, conversation_id: int) -> None:
        self.window_state.remove(f"drafts/{conversation_id}")
        if conversation_id == self._conversation_id:
            self._switch_to(None, save_draft=False)  # its draft went with it; the new chat keeps its own

    def _current_title(self) -> str:
        if self._conversation_id is None:
            return ""
        try:
            return self.store.get_conversation(self._conversation_id).title
        except StoreError:
            return ""

    def _rename_current(self) -> None:
        if self._conversation_id is None:
            return
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=self._current_title())
        if ok:
            self.sidebar.rename(self._conversation_id, title)

    def _toggle_pin_current(self) -> None:
        if self._conversation_id is None:
            return
        try:
            pinned = self.store.get_conversation(self._conversation_id).pinned
        except StoreError as exc:
            self.show_error(str(exc))
            return
        self.sidebar.set_pinned(self._conversation_id, not pinned)

    def _delete_current(self) -> None:
        if self._conversation_id is not None and not self.generating:
            self.sidebar.confirm_delete(self._conversation_id)

    def ask_export_conversation(self) -> None:
        if self._conversation_id is None:
            return
        from ..chat.export import file_name

        name = file_name(self._current_title() or "conversation", ".md")  # valid on every system
        target, _ = QFileDialog.getSaveFileName(self, "Export conversation", name, "Markdown (*.md)")
        if target:
            self.export_conversation(self._conversation_id, Path(target))

    def export_conversation(self, conversation_id: int, target: Path) -> None:
        try:
            # Over an existing file: all of the new export or the old file, never half of one.
            atomic_write_text(target, self.store.export_markdown(conversation_id), mode=_new_file_mode())
        except (StoreError, SettingsError, OSError) as exc:
            self.show_error(
                f"Could not export the conversation: {exc}", "Choose another folder and try again."
            )
            return
        self.show_info(f"Saved {target.name}.")

    # ------------------------------------------------------------------ system prompt

    def _toggle_system_prompt(self, shown: bool) -> None:
        self.system_prompt_edit.setVisible(shown)
        self.system_prompt_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        if shown:
            self.system_prompt_edit.setFocus()

    def _load_system_prompt(self) -> None:
        prompt = self.settings.app.default_system_prompt
        if self._conversation_id is not None:
            try:
                prompt = self.store.get_conversation(self._conversation_id).system_prompt or ""
            except StoreError:
                pass
        self.system_prompt_edit.blockSignals(True)
        self.system_prompt_edit.setPlainText(prompt)
        self.system_prompt_edit.blockSignals(False)
        self._system_prompt_timer.stop()

    def _flush_system_prompt(self) -> None:
        if self._system_prompt_timer.isActive():
            self._system_prompt_timer.stop()
            self.save_system_prompt()

    def save_system_prompt(self) -> None:
        """Store the system prompt edit's text with the open conversation."""
        if self._conversation_id is None or self._closed:
            return
        try:
            self.store.update_conversation(
                self._conversation_id, system_prompt=self.system_prompt_edit.toPlainText()
            )
        except StoreError as exc:
            self.show_error(str(exc))

    # ------------------------------------------------------------------ drafts

    def _draft_key(self) -> str:
        return f"drafts/{self._conversation_id or 'new'}"

    def _save_draft(self) -> None:
        self._draft_timer.stop()
        if self._closed:
            return
        text = self.composer.text()
        if text:
            self.window_state.setValue(self._draft_key(), text)
        else:
            self.window_state.remove(self._draft_key())

    def focus_composer(self) -> None:
        self.composer.editor.setFocus(Qt.FocusReason.ShortcutFocusReason)

    # ------------------------------------------------------------------ sending and replies

    def send(self, text: str) -> None:
        """Store the user's message and ask the model for a reply."""
        text = tidy_message(text)
        if not text.strip() or self.generating:
            return
        if self._loading_path is not None:
            self.show_info(
                "The model is still loading; your message is kept. Send it once loading finishes.",
                topic="model",
            )
            return
        if self.controller.loaded is None:
            self.show_error(
                "No model is loaded",
                "Choose a model in the toolbar first; your message is kept.",
                topic="model",
            )
            return
        self._flush_system_prompt()
        created = False
        try:
            if self._conversation_id is None:
                conversation = self.store.create_conversation(
                    system_prompt=self.system_prompt_edit.toPlainText(), model=self._model_name()
                )
                self.window_state.remove(self._draft_key())
                self._conversation_id = conversation.id
                created = True
                self.window_state.setValue("conversation/current", conversation.id)
            user = self.store.add_message(self._conversation_id, "user", text)
        except StoreError as exc:
            self.show_error(str(exc), "Your message is still in the box.")
            return
        self.composer.clear()
        self._save_draft()
        self.sidebar.refresh()
        self.sidebar.select(self._conversation_id)
        self._start_reply(None, sent=_SentMessage(text, user.id, created))

    def _start_reply(self, parent_id: int | None, *, sent: _SentMessage | None = None) -> None:
        """Generate a reply to the active path (or to the path ending at ``parent_id``);
        ``sent`` is the message just sent from the composer, given back if it is too long."""
        assert self._conversation_id is not None
        try:
            conversation = self.store.get_conversation(self._conversation_id)
            if parent_id is not None:
                path = self._path_to(parent_id)
            else:
                path = self.store.active_path(self._conversation_id)
            reply = self.store.stream_reply(
                self._conversation_id, parent_id=path[-1].id if path else ..., model=self._model_name()
            )
            message = self.store.get_message(reply.message_id)
        except StoreError as exc:
            self.show_error(str(exc))
            return
        messages: list[dict[str, str]] = []
        ids: list[int | None] = []
        if conversation.system_prompt:
            messages.append({"role": "system", "content": conversation.system_prompt})
            ids.append(None)
        for item in path:
            if item.role in ("user", "assistant") and item.content and item.status != "failed":
                messages.append({"role": item.role, "content": item.content})
                ids.append(item.id)
        self._reply = reply
        self._sent = sent
        self._reply_ids = ids
        self._reply_failed_store = False
        self.chat_view.set_messages(list(path))
        self.chat_view.set_excluded(set())
        self.chat_view.begin_stream(message)
        self._update_state()
        self.controller.generate(messages, self.generation_settings(conversation.settings_overrides))

    def _path_to(self, message_id: int) -> list[Message]:
        assert self._conversation_id is not None
        path = self.store.active_path(self._conversation_id)
        for index, message in enumerate(path):
            if message.id == message_id:
                return path[: index + 1]
        return path

    def generation_settings(self, overrides: dict[str, Any] | None = None) -> GenerationSettings:
        """The loaded model's preset if it has one, else the global settings, plus conversation overrides."""
        generation = self.settings.generation
        key = self.model_key()
        if key and key in self.settings.presets:
            generation = self.settings.presets[key].generation
        fields = GenerationSettings.model_fields
        changes = {k: v for k, v in (overrides or {}).items() if k in fields}
        if changes:
            try:
                generation = validated_update(generation, **changes)
            except SettingsError as exc:
                self.show_error(f"This conversation's own settings were ignored: {exc}")
        return generation

    def stop(self) -> None:
        """Stop the reply being written (it is kept as "stopped"), or cancel a model load."""
        if self.generating:
            self.controller.stop()
        elif self._loading_path is not None:
            self.cancel_load()

    def cancel_load(self) -> None:
        self._load_cancelled = True
        self.controller.cancel_load()

    def regenerate(self) -> None:
        """Write the last reply again, as a new version next to the old one."""
        last = self._last_assistant()
        if last is not None:
            self.regenerate_message(last.id)

    def _refuse_while_busy(self, doing: str) -> bool:
        """True (and say why) when a reply is being written or a model is loading."""
        if self.generating:
            self.show_info(f"Stop the reply being written (Esc) before you {doing}.")
            return True
        if self._loading_path is not None:
            self.show_info(f"Wait for the model to finish loading before you {doing}.")
            return True
        return False

    def regenerate_message(self, message_id: int) -> None:
        if self._refuse_while_busy("regenerate a reply"):
            return
        if self.controller.loaded is None:
            self.show_info("Load a model first to write a new version of this reply.", topic="model")
            return
        try:
            message = self.store.get_message(message_id)
        except StoreError as exc:
            self.show_error(str(exc))
            return
        parent = message.parent_id if message.role == "assistant" else message.id
        if parent is None:
            return
        self._start_reply(parent)

    def ask_edit_message(self, message_id: int, draft: str | None = None) -> None:
        """Ask for the new text of a message (``draft``: text edited earlier), then branch from it."""
        if self._refuse_while_busy("edit a message"):
            return
        try:
            message = self.store.get_message(message_id)
        except StoreError as exc:
            self.show_error(str(exc))
            return
        start = message.content if draft is None else draft
        text, ok = QInputDialog.getMultiLineText(self, "Edit message", "Message:", start)
        text = tidy_message(text)
        if not ok or not text.strip() or text == message.content:
            return
        if self.generating or self._loading_path is not None:
            # Something started while the dialog was open (the start-up load, say): keep the edit.
            self.banner.show_message(
                "Your edit is kept: it can be sent once the model has finished.",
                "info",
                action_text="Edit again",
                action=lambda: self.ask_edit_message(message_id, text),
            )
            return
        self.edit_message(message_id, text)

    def edit_message(self, message_id: int, text: str) -> None:
        """Save an edited user message as a new branch and reply to it."""
        if self._refuse_while_busy("edit a message"):
            return
        try:
            edited = self.store.edit_message(message_id, text)
        except StoreError as exc:
            self.show_error(str(exc))
            return
        if edited.role == "user" and self.controller.loaded is not None:
            self._start_reply(None)
        else:
            self.refresh_chat()
            self._update_state()

    def step_branch(self, message_id: int, delta: int) -> None:
        """Show the previous/next version of a message (‹ 1/2 ›)."""
        if self._refuse_while_busy("switch versions"):
            return
        try:
            versions = self.store.siblings(message_id)
            ids = [m.id for m in versions]
            position = ids.index(message_id) + delta if message_id in ids else -1
            if not 0 <= position < len(ids):
                return
            self.store.switch_branch(ids[position])
        except StoreError as exc:
            self.show_error(str(exc))
            return
        self.refresh_chat()
        self._update_state()

    def copy_last_reply(self) -> None:
        text = self.chat_view.last_reply_text()
        if text:
            QGuiApplication.clipboard().setText(text)
            self.statusBar().showMessage("Copied the last reply", 3000)

    def _on_context_prepared(self, fit: Any) -> None:
        if self._closed or self._reply is None:
            return
        dropped = {self._reply_ids[i] for i in fit.dropped if 0 <= i < len(self._reply_ids)}
        dropped.discard(None)
        self.chat_view.set_excluded({i for i in dropped if i is not None})
        if dropped:
            self.show_info(
                f"{len(dropped)} older message(s) did not fit in the model's context and were left out of "
                "this reply. Start a new chat or choose a longer context in Preferences."
            )

    def _on_token(self, piece: str) -> None:
        if self._closed or self._reply is None:
            return
        try:
            self._reply.append(piece)
        except StoreError as exc:
            if not self._reply_failed_store:
                self._reply_failed_store = True
                self.show_error(str(exc), "The reply is shown but may not be saved; free some disk space.")
        self.chat_view.append_stream(piece)

    def _finish_reply(self, status: str, stats: dict[str, Any] | None) -> Message | None:
        reply, self._reply = self._reply, None
        self._sent = None
        if reply is None:
            return None
        try:
            return reply.finish(status, stats)
        except StoreError as exc:
            self.show_error(str(exc), "Free some disk space; the reply could not be saved.")
            return None

    def _on_generation_finished(self, stats: Any) -> None:
        if self._closed or self._reply is None:
            return
        data = stats.to_dict()
        message = self._finish_reply(reply_status(str(data.get("stop_reason"))), data)
        if message is not None:
            self.chat_view.end_stream(message)
        self.status.set_stats(data)
        if data.get("stop_reason") == "context_full":
            self.show_error(
                "The reply stopped because the model's context is full",
                "Start a new chat, or raise the context length in Preferences and reload the model.",
            )
        elif data.get("error"):  # llama.cpp failed mid-reply: the part written so far is kept, marked failed
            self.show_error(str(data["error"]), "Try again, or change the model or its settings.")
        self.sidebar.refresh()
        self._update_state()

    def _on_generation_failed(self, text: str) -> None:
        if self._closed or self._reply is None:
            return
        message = self._finish_reply("failed", {"error": text})
        if message is not None:
            self.chat_view.end_stream(message)
        self.show_error(text, "Your messages are kept; try again, or change the model or its settings.")
        self._update_state()

    def _on_prompt_too_long(self, text: str) -> None:
        """The newest message does not fit in the context: a message just sent goes back to the box."""
        if self._closed or self._reply is None:
            return
        sent, self._sent = self._sent, None
        if sent is None:  # a regenerate or an edit: the failed reply says why, next to the message
            self._on_generation_failed(text)
            return
        conversation_id = self._conversation_id
        assert conversation_id is not None
        try:
            if sent.created_conversation:
                self.store.delete_conversation(conversation_id)
            else:
                self.store.delete_message(sent.message_id)  # and the empty reply under it
        except StoreError as exc:  # the message stays where it is, its reply marked failed
            log.error("could not take back the message that did not fit: %s", exc)
            self._on_generation_failed(text)
            return
        self._reply = None
        typed = self.composer.text()  # anything written since it was sent stays after it
        if sent.created_conversation:
            self.window_state.remove(f"drafts/{conversation_id}")
            self._switch_to(None, save_draft=False)
            self.sidebar.refresh()
        else:
            self.refresh_chat()
        self.composer.set_text(sent.text + (f"\n\n{typed}" if typed.strip() else ""))
        self._save_draft()
        self.show_error(text, "Your message is back in the box.")
        self._update_state()

    # ------------------------------------------------------------------ models

    def model_key(self, path: Path | None = None) -> str:
        """The key presets are saved under for ``path`` (default: the loaded model)."""
        return self._identify(path)[0]

    def _model_name(self, path: Path | None = None) -> str | None:
        return self._identify(path)[1] or None

    def _identify(self, path: Path | None) -> tuple[str, str]:
        """(preset key, display name) of ``path`` or of the loaded model, which is remembered:
        replies ask for it on every send, and a library lookup reads the disk."""
        if path is None:
            loaded = self.controller.loaded
            if loaded is None:
                return "", ""
            if self._loaded_identity is not None and self._loaded_identity[0] == loaded.path:
                return self._loaded_identity[1]
            identity = self._identify(loaded.path)
            self._loaded_identity = (loaded.path, identity)
            return identity
        try:
            found = self.library.find(str(path))
        except LlamaDeskError:
            found = None
        if found is not None:
            return str(found.key), str(found.name)
        starter = starter_model_path()
        name = STARTER_MODEL_NAME if starter is not None and Path(path) == starter else Path(path).stem
        return str(path), name

    @property
    def library(self) -> Library:
        """The model library, created on first use (the start-up scan usually made it already)."""
        if self._library is None:
            self._library = self._library_factory(self._models_dir_setting())
        return self._library

    def start_library_scan(self, *, restore_last_model: bool = True) -> None:
        """List the models on a background thread (importing the library and reading GGUF headers
        takes a moment), then fill the picker and load the last model."""

        models_dir = self._models_dir_setting()

        def scan() -> None:
            library: Library | None = None
            models: list[Any] | BaseException = []
            try:
                from ..engine import detect_hardware

                library = self._library_factory(models_dir)
                models = library.list()
                detect_hardware()
            except Exception as exc:  # reported on the GUI thread
                log.exception("listing the models failed")
                models = exc
            if not self._closed:
                try:
                    self._libraryScanned.emit(library, (models, restore_last_model))
                except RuntimeError:  # the window is already gone
                    pass

        self._scan_thread = threading.Thread(target=scan, name="llamadesk-library-scan", daemon=True)
        self._scan_thread.start()

    def _models_dir_setting(self) -> Path | None:
        folder = self.settings.app.models_dir
        return Path(folder).expanduser() if folder else None

    @property
    def library_ready(self) -> bool:
        return self._library is not None and not (self._scan_thread and self._scan_thread.is_alive())

    def _on_library_scanned(self, library: Library | None, payload: tuple[Any, bool]) -> None:
        if self._closed:
            return
        models, restore = payload
        if self._library is None and library is not None:
            self._library = library
        if isinstance(models, BaseException):
            self.show_error(f"The model list could not be read: {models}")
            return
        self._fill_picker(models)
        if restore:
            self.restore_last_model()

    def refresh_models(self) -> None:
        """Fill the model picker from the library."""
        try:
            models = self.library.list()
        except LlamaDeskError as exc:
            self.show_error(str(exc))
            models = []
        self._fill_picker(models)

    def planning_hardware(self) -> Hardware:
        """This machine as a model about to load will find it: loading one frees the one loaded now."""
        from ..engine import detect_hardware

        hardware = detect_hardware()
        loaded = self.controller.loaded
        if loaded is not None and loaded.ram_used:
            available = min(hardware.available_ram + loaded.ram_used, hardware.total_ram)
            hardware = dataclasses.replace(hardware, available_ram=available)
        return hardware

    def _runtime_for(self, key: str) -> RuntimeSettings:
        """The runtime settings a model loads with: its preset's, or the general ones."""
        return self.settings.for_model(key)[1] if key in self.settings.presets else self.settings.runtime

    def _fill_picker(self, models: list[Any]) -> None:
        from ..engine import plan_fit

        models = [m for m in models if getattr(m, "kind", "model") == "model"]
        hardware = None
        entries = []
        for model in models:
            info = model.info
            fit = ""
            if info is not None and model.state == "ok":
                try:
                    hardware = hardware or self.planning_hardware()
                    runtime = self._runtime_for(model.key)
                    plan = plan_fit(info, hardware, n_ctx=runtime.n_ctx, n_gpu_layers=runtime.n_gpu_layers)
                    fit = plan.label
                    if plan.verdict != "too_large" and runtime.n_ctx and plan.n_ctx < runtime.n_ctx:
                        # loading warns and offers this context; say so before the user picks it
                        fit = f"Fits with ≤ {plan.max_ctx:,} tokens of context"
                except Exception:  # a planner problem must not hide the model
                    log.exception("planning %s failed", model.path)
            entries.append(
                ModelEntry(
                    key=model.key,
                    name=model.name,
                    path=Path(model.path),
                    size=int(model.size),
                    quantization=getattr(model, "quantization", None) or (info.file_type if info else ""),
                    fit_label=fit,
                    ok=model.state == "ok",
                    message=model.message or "",
                )
            )
        self.model_picker.set_models(entries)
        loaded = self.controller.loaded
        self.model_picker.set_current_path(loaded.path if loaded else None)

    def _show_model_list(self) -> None:
        if not self.model_picker.isEnabled():
            self.show_info("Wait for the current reply or load to finish before choosing another model.")
            return
        self.model_picker.setFocus()
        self.model_picker.showPopup()

    def use_starter_model(self) -> None:
        path = starter_model_path()
        if path is None:
            self.show_error(
                "The starter model is not installed",
                "Open a .gguf file or browse models instead.",
                topic="model",
            )
            return
        self.load_model(path)

    def ask_open_model_file(self) -> None:
        start = str(self.paths.models_dir)
        path, _ = QFileDialog.getOpenFileName(self, "Open a GGUF model", start, GGUF_FILTER)
        if path:
            self.open_model_file(Path(path))

    def open_model_file(self, path: Path) -> None:
        """Add a file from disk to the library (without copying it) and load it."""
        try:
            self.library.import_model(path, copy=False)
        except LlamaDeskError as exc:
            self.show_error(str(exc), "Choose another .gguf file.", topic="model")
            return
        self.refresh_models()
        self.load_model(path)

    def load_model(self, path: Path, *, confirm: bool = True) -> bool:
        """Check that the model can work here, then load it on the inference thread."""
        from ..engine import EngineError, inspect_gguf, plan_fit

        if self.controller.busy:
            self.show_info("Wait for the current reply or load to finish first.")
            self._reset_picker()
            return False
        try:
            info = inspect_gguf(path)
        except EngineError as exc:
            self._reset_picker()
            self.show_error(str(exc), "Choose another model file.", topic="model")
            return False
        runtime = self._runtime_for(self.model_key(path))
        try:
            hardware = self.planning_hardware()
            plan = plan_fit(info, hardware, n_ctx=runtime.n_ctx, n_gpu_layers=runtime.n_gpu_layers)
        except Exception:  # the plan is advice; never block a load on it
            log.exception("planning %s failed", path)
            plan = None
        too_large = plan is not None and (plan.verdict == "too_large" or plan.n_ctx < runtime.n_ctx)
        if confirm and plan is not None and too_large:
            self._warn_too_large(Path(path), info, runtime, plan)
            return False
        self._start_load(Path(path), runtime)
        return True

    def _start_load(self, path: Path, runtime: RuntimeSettings) -> None:
        if self.controller.busy:  # e.g. another load began while the fit warning was open
            self.show_info("Wait for the current reply or load to finish first.")
            self._reset_picker()
            return
        key = self.model_key(path)
        self.controller.load_model(path, runtime, template_override=self.settings.template_overrides.get(key))

    def _warn_too_large(self, path: Path, info: GGUFInfo, runtime: RuntimeSettings, plan: FitPlan) -> None:
        """Say why the model won't fit and offer the largest context that does (non-blocking)."""
        from ..engine import estimate_memory

        wanted = runtime.n_ctx or plan.n_ctx
        if plan.verdict == "too_large":
            text = plan.summary
        else:
            need = estimate_memory(info, wanted).total
            text = (
                f"With a context of {wanted:,} tokens it needs about {need / 1e9:.1f} GB, "
                "more memory than this machine has free."
            )
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "This model may not fit",
            text,
            QMessageBox.StandardButton.NoButton,
            self,
        )
        box.setObjectName("fitWarning")
        smaller = None
        if plan.max_ctx:
            box.setInformativeText(
                f"It fits with a context of up to {plan.max_ctx:,} tokens (set now: {wanted:,}). "
                "Loading it as it is may make your computer very slow or fail."
            )
            smaller = box.addButton(f"Load with {plan.max_ctx:,} tokens", QMessageBox.ButtonRole.AcceptRole)
            smaller.setObjectName("loadSmallerContextButton")
        else:
            box.setInformativeText("Loading it anyway may make your computer very slow or fail.")
        anyway = box.addButton("Load anyway", QMessageBox.ButtonRole.DestructiveRole)
        anyway.setObjectName("loadAnywayButton")
        cancel = box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(smaller or cancel)
        box.setEscapeButton(cancel)

        def answered() -> None:
            self.fit_warning = None
            clicked = box.clickedButton()
            if smaller is not None and clicked is smaller:
                self._start_load(path, runtime.model_copy(update={"n_ctx": plan.max_ctx}))
            elif clicked is anyway:
                self._start_load(path, runtime)
            else:
                self._reset_picker()

        box.finished.connect(answered)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.fit_warning = box
        box.open()

    def edit_chat_template(self) -> None:
        """Show the loaded model's chat template; a saved override reloads the model with it."""
        from .template_dialog import TemplateDialog

        loaded = self.controller.loaded
        if loaded is None:
            self.show_info("Load a model first to see or change its chat template.", topic="model")
            return
        key = self.model_key()
        dialog = TemplateDialog(
            self._model_name() or loaded.path.stem,
            loaded.info.chat_template,
            self.settings.template_overrides.get(key, ""),
            bos_token=loaded.info.bos_token or "",
            eos_token=loaded.info.eos_token or "",
            parent=self,
        )
        if dialog.exec() != TemplateDialog.DialogCode.Accepted:
            return
        override = dialog.result_override()
        overrides = dict(self.settings.template_overrides)
        if override:
            overrides[key] = override
        else:
            overrides.pop(key, None)
        if overrides == self.settings.template_overrides:
            return
        self.settings = self.settings.model_copy(update={"template_overrides": overrides})
        self._save_settings()
        self.reload_model()

    def reload_model(self) -> None:
        """Load the current model again (after runtime settings changed)."""
        loaded = self.controller.loaded
        if loaded is not None:
            self.load_model(loaded.path, confirm=False)

    def unload_model(self) -> None:
        if self.controller.loaded is not None and not self.controller.busy:
            self.controller.unload()

    def restore_last_model(self) -> None:
        """Load the model used last time, if it is still there and usable."""
        last = self.settings.app.last_model
        if not last or not Path(last).is_file():
            return
        try:
            found = self.library.find(last)
        except LlamaDeskError:
            found = None
        if found is not None and found.state != "ok":
            return
        self.load_model(Path(last), confirm=False)

    def _reset_picker(self) -> None:
        """Show the model being loaded, else the loaded one, after a choice that was not taken."""
        loaded = self.controller.loaded
        self.model_picker.set_current_path(self._loading_path or (loaded.path if loaded else None))

    def _on_model_loading(self, path: str) -> None:
        self._loading_path = Path(path)
        self._load_cancelled = False
        self.load_progress.start(self._model_name(Path(path)) or Path(path).name)
        self.load_progress_action.setVisible(True)
        self.model_picker.set_current_path(path)
        self._update_state()

    def _on_model_loaded(self, loaded: LoadedModel) -> None:
        if self._closed:
            return
        self._loading_path = None
        self.load_progress_action.setVisible(False)
        name = self._model_name(loaded.path) or loaded.path.name
        self.status.set_model(
            name,
            backend=loaded.backend,
            n_gpu_layers=loaded.n_gpu_layers,
            n_ctx=loaded.n_ctx,
            fallback_template=loaded.chat_format.is_fallback,
            block_count=loaded.info.block_count or 0,
        )
        self.model_picker.set_current_path(loaded.path)
        self.banner.retract("model")  # earlier load problems are solved now
        if loaded.chat_format.is_fallback:
            self.show_info(
                f"{name} has no chat template; the common ChatML format is used. "
                "If replies look odd, choose another model."
            )
        if self.settings.app.last_model != str(loaded.path):
            self.settings.app.last_model = str(loaded.path)
            self._save_settings()
        self.refresh_chat()
        self._update_state()

    def _on_model_load_failed(self, message: str) -> None:
        if self._closed:
            return
        self._loading_path = None
        self.load_progress_action.setVisible(False)
        self.status.set_model(None)
        self._reset_picker()
        if self._load_cancelled:
            self.show_info("Loading was cancelled. Choose a model to load when you are ready.", topic="model")
        else:
            self.show_error(
                message, "Choose another model, or lower the context length in Preferences.", topic="model"
            )
        self._load_cancelled = False
        self._update_state()

    def _on_model_unloaded(self) -> None:
        if self._closed:
            return
        self.status.set_model(None)
        self._reset_picker()
        self._update_state()

    # ------------------------------------------------------------------ Hub: discover, my models, drops

    def test_hub_token(self, token: str, dialog: PreferencesDialog) -> None:
        """Ask the Hub who the token belongs to, off the GUI thread; the answer goes to ``dialog``."""
        from ..hub import HubCatalog
        from .hub_worker import HubTasks

        if self._hub_tasks is None:
            self._hub_tasks = HubTasks(self)
        catalog = HubCatalog(token=token or None)

        def answer(ok: bool, text: str) -> None:
            if shiboken6.isValid(dialog):  # Preferences may have been closed while the Hub answered
                dialog.show_token_result(ok, text)

        self._hub_tasks.run(
            catalog.whoami,
            lambda name: answer(True, f"The token works: signed in as {name}."),
            lambda error: answer(False, str(error)),
            channel="token",
        )

    def download_manager(self) -> DownloadManager:
        """The app's download queue, created on first use; takes up token and settings changes."""
        from .hub_worker import DownloadManager

        if self._downloads is None:
            self._downloads = DownloadManager(
                self.library.models_dir,
                token=load_token(self.paths.token_file) or None,
                max_parallel=self.settings.app.max_parallel_downloads,
                parent=self,
            )
            self._downloads.downloadFinished.connect(self._on_download_finished)
            self._downloads.downloadFailed.connect(self._on_download_failed)
        self._downloads.set_token(load_token(self.paths.token_file) or None)
        self._downloads.set_max_parallel(self.settings.app.max_parallel_downloads)
        return self._downloads

    def open_hub_browser(self) -> HubBrowser:
        """Show the "Discover models" window (one per app; it keeps its results when closed)."""
        from .hub_browser import HubBrowser

        if self.hub_browser is None:
            self.hub_browser = HubBrowser(
                self.download_manager(),
                token=lambda: load_token(self.paths.token_file),
                hardware=self.planning_hardware,  # fit verdicts as if the loaded model made room
                dark=self.dark,
                parent=self,
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

        if self.model_library_page is None:
            page = ModelLibraryPage(
                self.library,  # type: ignore[arg-type]
                downloads=self.download_manager(),
                loaded_path=lambda: self.controller.loaded.path if self.controller.loaded else None,
                parent=self,
            )
            page.setWindowFlag(Qt.WindowType.Window)
            page.loadRequested.connect(lambda path: self.load_model(Path(path)))
            page.modelsChanged.connect(self.refresh_models)
            self.model_library_page = page
        else:
            self.model_library_page.refresh()
        self.model_library_page.show()
        self.model_library_page.raise_()
        return self.model_library_page

    def _on_download_finished(self, path: Path) -> None:
        if self._closed:
            return
        self.refresh_models()
        self._offer_load(f"{Path(path).name} is downloaded and in your model list.", Path(path))

    def _on_download_failed(self, _task_id: str, message: str) -> None:
        # Discover and My models show failures in their downloads panel while open; otherwise say it here.
        if self._closed or any(
            w is not None and w.isVisible() for w in (self.hub_browser, self.model_library_page)
        ):
            return
        self.show_error(f"Download failed: {message}", "Retry it from My models (the download resumes).")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        # Any local file is taken, so that dropping the wrong kind says why instead of nothing.
        if _local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dropEvent(self, event: QDropEvent) -> None:
        from .model_library import gguf_paths

        mime = event.mimeData()
        paths = gguf_paths(mime)
        if not paths:
            files = _local_files(mime)
            if not files:
                super().dropEvent(event)
                return
            event.acceptProposedAction()
            self.show_error(
                f"{files[0].name} is not a GGUF model file",
                "LlamaDesk runs .gguf models: drop one of those, or find one in Discover models.",
            )
            return
        event.acceptProposedAction()
        self.import_dropped_model(paths[0])

    def import_dropped_model(self, path: Path) -> None:
        """Register a dropped .gguf file in the library where it is, and offer to load it."""
        try:
            model = self.library.import_model(path, copy=False)
        except LlamaDeskError as exc:
            self.show_error(str(exc), "Drop a .gguf model file.")
            return
        self.refresh_models()
        if self.model_library_page is not None:
            self.model_library_page.refresh()
        self._offer_load(f"Added {model.name} to My models.", path)

    def _offer_load(self, message: str, path: Path) -> None:
        def load() -> None:
            self.load_model(path)

        self.banner.show_message(message, "info", action_text="Load it", action=load)

    def _shutdown_hub(self) -> None:
        """Stop Hub calls and pause downloads (their partial files are kept) before the window goes."""
        for window in (self.hub_browser, self.model_library_page):
            if window is not None:
                window.close()
                window.shutdown()
        if self._downloads is not None:
            self._downloads.shutdown()
        if self._hub_tasks is not None:
            self._hub_tasks.shutdown(0)

    # ------------------------------------------------------------------ settings, theme, preferences

    def _save_settings(self) -> None:
        try:
            self.settings_store.save(self.settings)
        except SettingsError as exc:
            self.show_error(str(exc), "Check that the settings folder is writable.")

    def apply_settings(self, settings: Settings, token: str | None = None) -> None:
        """Use and save new settings (from Preferences); generation changes apply to the next reply."""
        # Preferences edits a copy taken when it opened: keep what changed elsewhere meanwhile.
        settings = settings.model_copy(update={"template_overrides": dict(self.settings.template_overrides)})
        settings.app.last_model = self.settings.app.last_model
        folder_changed = settings.app.models_dir != self.settings.app.models_dir
        old_default = self.settings.app.default_system_prompt
        self.settings = settings
        if self._conversation_id is None and self.system_prompt_edit.toPlainText() == old_default:
            self._load_system_prompt()  # a new chat not yet sent takes up the new default
        self._save_settings()
        if token is not None:
            try:
                save_token(self.paths.token_file, token)
            except OSError as exc:
                self.show_error(f"Could not save the access token: {exc}")
        if self._downloads is not None:
            self.download_manager()  # takes up the new token and parallel-download count
        if folder_changed:
            self._use_models_dir()
        self.apply_appearance()

    def _use_models_dir(self) -> None:
        """Point the library and new downloads at the models folder from the settings."""
        folder = self._models_dir_setting() or self.paths.models_dir
        if self._library is not None:
            self._library.models_dir = folder
        if self._downloads is not None:
            self._downloads.set_models_dir(folder)  # running downloads finish where they started
        if self._library is not None:
            self.refresh_models()
            if self.model_library_page is not None:
                self.model_library_page.refresh()

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
        action = self.theme_actions.get(self.settings.app.theme)
        if action is not None:
            action.setChecked(True)

    def _on_system_scheme_changed(self) -> None:
        if not self._closed and self.settings.app.theme == "system":
            self.apply_appearance()

    def set_theme(self, theme: str) -> None:
        try:
            self.settings.app.theme = theme  # type: ignore[assignment]
        except ValueError as exc:
            self.show_error(str(exc))
            return
        self._save_settings()
        self.apply_appearance()

    def open_preferences(self) -> PreferencesDialog:
        """Open the Preferences dialog (non-blocking) and return it."""
        from ..engine import detect_hardware, plan_fit
        from .preferences import PreferencesDialog

        if self.preferences_dialog is not None and self.preferences_dialog.isVisible():
            self.preferences_dialog.raise_()
            self.preferences_dialog.activateWindow()
            return self.preferences_dialog
        loaded = self.controller.loaded
        hardware = detect_hardware()
        auto_layers: int | None = None
        if loaded is not None:  # what "Auto" would choose for this model, whatever it was loaded with
            try:
                auto_layers = plan_fit(loaded.info, self.planning_hardware(), n_ctx=loaded.n_ctx).n_gpu_layers
            except Exception:  # the label is advice
                log.exception("planning %s failed", loaded.path)
        dialog = PreferencesDialog(
            self.settings,
            token=load_token(self.paths.token_file),
            hardware_summary=hardware.describe(),
            auto_gpu_layers=auto_layers,
            model_layers=loaded.info.block_count if loaded is not None else None,
            models_dir_default=str(self.paths.models_dir),
            model_key=self.model_key() or None,
            model_name=self._model_name() or "",
            parent=self,
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.settingsApplied.connect(self.apply_settings)
        dialog.reloadRequested.connect(self.reload_model)
        dialog.testTokenRequested.connect(lambda token: self.test_hub_token(token, dialog))
        dialog.exportAllRequested.connect(self.ask_export_all)
        dialog.deleteAllRequested.connect(self.delete_all_conversations)
        dialog.destroyed.connect(lambda: setattr(self, "preferences_dialog", None))
        self.preferences_dialog = dialog
        dialog.open()
        return dialog

    def ask_export_all(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export all conversations to")
        if folder:
            self.export_all(Path(folder))

    def export_all(self, folder: Path) -> int:
        """Write every conversation as a Markdown file into ``folder``; returns how many."""
        from ..chat.export import file_name

        count = 0
        try:
            for conversation in self.store.list_conversations():
                # The id keeps names unique; the title part is valid on Windows, macOS and Linux.
                target = folder / file_name(
                    f"{conversation.id:05d} {conversation.title}", ".md", max_length=66
                )
                target.write_text(self.store.export_markdown(conversation.id), encoding="utf-8")
                count += 1
        except (StoreError, SettingsError, OSError) as exc:
            self.show_error(f"Export stopped after {count} conversation(s): {exc}")
            return count
        self.show_info(f"Exported {count} conversation(s) to {folder}.")
        return count

    def delete_all_conversations(self) -> None:
        if self.generating:
            self.show_info("Stop the reply being written first.")
            return
        try:
            self.store.delete_all()
        except StoreError as exc:
            self.show_error(str(exc))
            return
        for key in self.window_state.allKeys():
            if key.startswith("drafts/"):
                self.window_state.remove(key)
        self._conversation_id = None
        self.sidebar.refresh()
        self._switch_to(None)

    def _toggle_sidebar(self) -> None:
        self.sidebar.setVisible(self.sidebar_action.isChecked())

    def show_about(self) -> None:
        from .. import __version__ as version

        QMessageBox.about(
            self,
            "About LlamaDesk",
            f"<b>LlamaDesk {version}</b><p>Chat with language models on your own computer, offline.</p>"
            "<p>Runs GGUF models with llama.cpp.</p>",
        )

    # ------------------------------------------------------------------ window state

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
        self._switch_to(conversation_id, save_draft=False)  # the empty box must not overwrite a saved draft

    def save_window_state(self) -> None:
        state = self.window_state
        state.setValue("window/geometry", self.saveGeometry())
        state.setValue("window/splitter", self.splitter.saveState())
        state.setValue("window/systemPromptShown", self.system_prompt_toggle.isChecked())
        state.setValue("conversation/current", self._conversation_id or 0)
        self._save_draft()
        state.sync()

    def closeEvent(self, event: QCloseEvent) -> None:
        """Stop generating, keep the partial reply, close the model and the store, remember the window."""
        if self._closed:
            event.accept()
            return
        self._flush_system_prompt()
        self.save_window_state()
        self._closed = True
        if self._reply is not None:
            self.controller.stop()
            reply, self._reply = self._reply, None
            try:
                reply.finish("stopped", None)
            except StoreError as exc:
                log.error("could not save the last reply: %s", exc)
        if self.preferences_dialog is not None:
            self.preferences_dialog.close()
        self._shutdown_hub()
        if self._scan_thread is not None:
            self._scan_thread.join(5)  # a daemon thread; it never touches the store
        self.controller.shutdown()
        self.store.close()
        event.accept()
