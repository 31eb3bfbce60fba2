"""The main window's commands: actions with their shortcuts, the menu bar and the toolbar.

Part of the main window: each action calls the part of the window that does the work.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence

from .resources import icon

if TYPE_CHECKING:
    from .main_window import MainWindow

__all__ = ["WindowActions"]

THEMES = (("system", "Follow the &system"), ("light", "&Light"), ("dark", "&Dark"))


class WindowActions(QObject):
    """Every command of the window, as ``QAction`` attributes, placed in the menus and toolbar."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self._create()
        self._build_menus()
        self._build_toolbar()

    def _action(
        self,
        text: str,
        slot: Callable[..., Any],
        shortcuts: list[QKeySequence] | None = None,
        *,
        icon_name: str = "",
    ) -> QAction:
        action = QAction(text, self.window)
        if icon_name:
            action.setIcon(icon(icon_name))
        if shortcuts:
            unique: list[QKeySequence] = []
            for sequence in shortcuts:
                if not sequence.isEmpty() and sequence not in unique:
                    unique.append(sequence)
            action.setShortcuts(unique)
        action.triggered.connect(lambda _checked=False: slot())
        self.window.addAction(action)
        return action

    def _create(self) -> None:
        key = QKeySequence
        w = self.window
        conversations, replies, models, hub = w.conversations, w.replies, w.models, w.hub
        self.new_chat_action = self._action(
            "&New chat",
            conversations.new_chat,
            [key(key.StandardKey.New), key("Ctrl+N")],
            icon_name="new-chat",
        )
        self.open_model_action = self._action(
            "&Open model file…", models.ask_open_model_file, [key("Ctrl+O")], icon_name="model"
        )
        self.export_action = self._action(
            "&Export conversation as Markdown…", conversations.ask_export_conversation
        )
        self.preferences_action = self._action(
            "&Preferences…",
            w.open_preferences,
            [key(key.StandardKey.Preferences), key("Ctrl+,")],
            icon_name="settings",
        )
        self.preferences_action.setMenuRole(QAction.MenuRole.PreferencesRole)
        self.quit_action = self._action("&Quit", w.close, [key(key.StandardKey.Quit), key("Ctrl+Q")])
        self.quit_action.setMenuRole(QAction.MenuRole.QuitRole)

        self.find_action = self._action(
            "&Search conversations", w.sidebar.focus_search, [key("Ctrl+F")], icon_name="search"
        )
        self.copy_reply_action = self._action(
            "&Copy last reply", w.copy_last_reply, [key("Ctrl+Shift+C")], icon_name="copy"
        )
        self.focus_composer_action = self._action("&Focus message box", w.focus_composer, [key("Ctrl+L")])
        self.rename_action = self._action(
            "&Rename conversation", conversations.rename_current, [key("F2")], icon_name="edit"
        )
        self.pin_action = self._action("&Pin or unpin conversation", conversations.toggle_pin_current)
        self.delete_action = self._action("&Delete conversation…", conversations.delete_current)

        self.sidebar_action = self._action("Show &sidebar", w.toggle_sidebar, [key("Ctrl+B")])
        self.sidebar_action.setCheckable(True)
        self.sidebar_action.setChecked(True)
        self.system_prompt_action = self._action(
            "Show system &prompt", w.system_prompt_toggle.toggle, [key("Ctrl+Shift+P")]
        )
        self.theme_group = QActionGroup(self)
        self.theme_actions: dict[str, QAction] = {}
        for theme, label in THEMES:
            action = QAction(label, w)
            action.setCheckable(True)
            action.setData(theme)
            action.triggered.connect(lambda _checked=False, t=theme: w.set_theme(t))
            self.theme_group.addAction(action)
            self.theme_actions[theme] = action

        self.choose_model_action = self._action(
            "&Choose model…", models.show_model_list, [key("Ctrl+M")], icon_name="model"
        )
        self.reload_action = self._action("&Reload model", models.reload_model)
        self.template_action = self._action("Chat &template…", models.edit_chat_template)
        self.unload_action = self._action("&Unload model", models.unload_model)
        self.stop_action = self._action("&Stop generating", replies.stop, [key("Esc")], icon_name="stop")
        self.regenerate_action = self._action(
            "Re&generate last reply", replies.regenerate, [key("Ctrl+R")], icon_name="regenerate"
        )
        self.browse_action = self._action(
            "&Discover models…", hub.open_hub_browser, [key("Ctrl+Shift+M")], icon_name="download"
        )
        self.my_models_action = self._action("&My models…", hub.open_model_library, icon_name="model")
        self.log_folder_action = self._action("Open &log folder", w.open_log_folder)
        self.about_action = self._action("&About LlamaDesk", w.show_about)
        self.about_action.setMenuRole(QAction.MenuRole.AboutRole)

    def _build_menus(self) -> None:
        bar = self.window.menuBar()
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
        help_menu.addAction(self.log_folder_action)
        help_menu.addSeparator()
        help_menu.addAction(self.about_action)

    def _build_toolbar(self) -> None:
        w = self.window
        toolbar = w.toolbar
        toolbar.addAction(self.new_chat_action)
        toolbar.addSeparator()
        toolbar.addWidget(w.model_picker)
        # A toolbar shows or hides its widgets through their actions (QToolBar.addWidget's docs).
        self.load_progress_action = toolbar.addWidget(w.load_progress)
        self.load_progress_action.setVisible(False)
        toolbar.addAction(self.browse_action)
        toolbar.addSeparator()
        toolbar.addAction(self.preferences_action)
