"""The Preferences dialog, generated from the pydantic settings models.

It edits a copy: nothing changes until OK or Apply, which emit a new validated ``Settings``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from PySide6.QtCore import QUrl, Signal
from PySide6.QtGui import QDesktopServices, QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from ..paths import get_paths
from ..settings import AppSettings, GenerationSettings, ModelPreset, RuntimeSettings, Settings
from .resources import icon
from .settings_form import FieldSpec, SettingsForm, SpecialSpinBox, error_color, field_specs

SECTIONS: tuple[tuple[str, type[BaseModel], str], ...] = (
    ("generation", GenerationSettings, "generation"),
    ("runtime", RuntimeSettings, "model"),
    ("app", AppSettings, "appearance"),
)
EDITED = ("generation", "runtime", "app", "presets")
"""The parts of Settings this dialog edits; the rest (server, remote servers, template overrides, the
Think switch's choices) have their own tabs or controls, which apply them themselves."""
TABS = (
    ("generation", "Generation"),
    ("model", "Model && hardware"),
    ("appearance", "Appearance"),
    ("hub", "Hub"),
    ("storage", "Storage"),
)
RELOAD_NOTICE = "These changes take effect when the model is reloaded."
NEXT_LOAD_NOTICE = "These changes take effect when a model is loaded."
TOKEN_HELP = (
    "Needed only for gated or private models (for example Llama or Gemma). Create a token with read "
    "access at huggingface.co/settings/tokens. It is kept in your system's keyring or, where there is "
    "none, in a file only you can read."
)


def _name(widget: QWidget, name: str) -> None:
    widget.setObjectName(name)
    widget.setAccessibleName(name)


def _help(text: str, parent: QWidget) -> QLabel:
    label = QLabel(text, parent)
    label.setWordWrap(True)
    label.setProperty("role", "help")
    label.setForegroundRole(QPalette.ColorRole.PlaceholderText)
    return label


def gpu_auto_text(auto_gpu_layers: int | None, model_layers: int | None = None) -> str:
    """What "Auto" GPU layers means on this machine, e.g. "Auto (all 31 layers on GPU)"."""
    if auto_gpu_layers is None:
        return "Auto"
    if auto_gpu_layers == 0:
        return "Auto (CPU only)"
    if auto_gpu_layers < 0 or (model_layers is not None and auto_gpu_layers >= model_layers):
        return f"Auto (all {model_layers} layers on GPU)" if model_layers else "Auto (all layers on GPU)"
    of = f" of {model_layers}" if model_layers else ""
    return f"Auto ({auto_gpu_layers}{of} layers on GPU)"


class PreferencesDialog(QDialog):
    """Tabs for generation, model & hardware, appearance, Hub token and storage.

    Signals:
        settingsApplied(Settings, str): OK or Apply with a new validated Settings and the token.
        testTokenRequested(str): the user wants the token checked; answer with show_token_result().
        exportAllRequested(): "Export all conversations…" was pressed.
        deleteAllRequested(): the user confirmed "Delete all conversations…".
        reloadRequested(): "Reload now" was pressed (after the settings were applied).
    """

    settingsApplied = Signal(object, str)
    testTokenRequested = Signal(str)
    exportAllRequested = Signal()
    deleteAllRequested = Signal()
    reloadRequested = Signal()

    def __init__(
        self,
        settings: Settings,
        *,
        token: str = "",
        hardware_summary: str = "",
        auto_gpu_layers: int | None = None,
        models_dir_default: str = "",
        model_key: str | None = None,
        model_name: str = "",
        model_layers: int | None = None,
        data_dir: str | Path | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        _name(self, "preferencesDialog")
        self.setAccessibleName("Preferences")
        self.setWindowTitle("Preferences")
        self.setWindowIcon(icon("settings"))
        self._result = settings.model_copy(deep=True)
        self._token = token.strip()
        self._model_key = model_key
        self._model_name = model_name or model_key or ""
        self._preset_mode = model_key is not None and model_key in settings.presets
        self._data_dir = Path(data_dir) if data_dir is not None else get_paths().data_dir
        self._valid = True

        specs = [spec for section, model, tab in SECTIONS for spec in field_specs(model, section, tab)]
        self.forms: dict[str, SettingsForm] = {}
        self.tabs = QTabWidget(self)
        _name(self.tabs, "preferencesTabs")
        pages = {
            "generation": self._generation_page,
            "model": lambda form: self._model_page(form, hardware_summary),
            "appearance": self._plain_page,
            "hub": self._hub_page,
            "storage": self._storage_page,
        }
        for tab, title in TABS:
            form = SettingsForm([s for s in specs if s.tab == tab], self)
            form.changed.connect(self._revalidate)
            self.forms[tab] = form
            self.tabs.addTab(self._scrolled(pages[tab](form)), title)
        self.tabs.setTabToolTip(0, "How replies are written: applies to the next reply")
        self.tabs.setTabToolTip(1, "How the model is loaded: takes effect when it is reloaded")

        gpu = self.editor_widget("runtime.n_gpu_layers")
        assert isinstance(gpu, SpecialSpinBox)
        gpu.set_special_text(-2, gpu_auto_text(auto_gpu_layers, model_layers))
        models_dir = self.editor_widget("app.models_dir")
        if isinstance(models_dir, QLineEdit) and models_dir_default:
            models_dir.setPlaceholderText(f"Default: {models_dir_default}")

        layout = QVBoxLayout(self)
        layout.setSpacing(10)
        if model_key is not None:
            layout.addWidget(self._preset_bar())
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self._reload_notice())
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Apply
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults,
            self,
        )
        self.ok_button = self.buttons.button(QDialogButtonBox.StandardButton.Ok)
        self.apply_button = self.buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.cancel_button = self.buttons.button(QDialogButtonBox.StandardButton.Cancel)
        self.reset_button = self.buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        for button, name in (
            (self.ok_button, "okButton"),
            (self.apply_button, "applyButton"),
            (self.cancel_button, "cancelButton"),
            (self.reset_button, "resetDefaultsButton"),
        ):
            _name(button, name)
        self.reset_button.setText("Reset to Defaults")
        self.reset_button.setToolTip(
            "Put every setting in this dialog back to its default (saved on OK or Apply)"
        )
        self.ok_button.clicked.connect(self._ok)
        self.apply_button.clicked.connect(self.apply)
        self.cancel_button.clicked.connect(self.reject)
        self.reset_button.clicked.connect(self.reset_to_defaults)
        layout.addWidget(self.buttons)

        self._load(settings)
        self._runtime_baseline = self._form_values()[0].get("runtime", {})
        self._revalidate()
        self.resize(720, 720)

    # --- pages ------------------------------------------------------------------------------

    @staticmethod
    def _scrolled(page: QWidget) -> QScrollArea:
        area = QScrollArea()
        area.setWidgetResizable(True)
        area.setFrameShape(QFrame.Shape.NoFrame)
        area.setWidget(page)
        return area

    @staticmethod
    def _column() -> tuple[QWidget, QVBoxLayout]:
        """An empty tab page and the column its parts go in."""
        page = QWidget()
        column = QVBoxLayout(page)
        column.setContentsMargins(16, 14, 16, 14)
        column.setSpacing(12)
        return page, column

    def _page(self, form: SettingsForm, intro: str = "") -> tuple[QWidget, QVBoxLayout]:
        page, column = self._column()
        if intro:
            column.addWidget(_help(intro, page))
        column.addWidget(form)
        return page, column

    def _plain_page(self, form: SettingsForm) -> QWidget:
        page, column = self._page(form)
        column.addStretch(1)
        return page

    def _generation_page(self, form: SettingsForm) -> QWidget:
        page, column = self._page(form, "How replies are written. Changes apply to the next reply.")
        column.addStretch(1)
        return page

    def _model_page(self, form: SettingsForm, hardware_summary: str) -> QWidget:
        page, column = self._page(form, "How the model is loaded. Changes take effect when it is reloaded.")
        if hardware_summary:
            summary = QLabel(hardware_summary, page)
            _name(summary, "hardwareSummaryLabel")
            summary.setWordWrap(True)
            summary.setProperty("role", "summary")
            column.insertWidget(0, summary)
        column.addStretch(1)
        return page

    def _hub_page(self, form: SettingsForm) -> QWidget:
        page, column = self._column()
        box = QGroupBox("Hugging Face access token", page)
        inner = QVBoxLayout(box)
        inner.addWidget(_help(TOKEN_HELP, box))
        row = QHBoxLayout()
        self.token_edit = QLineEdit(self._token, box)
        _name(self.token_edit, "hubTokenEdit")
        self.token_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.token_edit.setPlaceholderText("hf_…")
        self.token_edit.setToolTip(
            "Your Hugging Face access token; leave empty to download public models only."
        )
        self.token_edit.textChanged.connect(self._token_edited)
        self.show_token = QCheckBox("Show", box)
        _name(self.show_token, "showTokenCheck")
        self.show_token.setToolTip("Show the token as plain text")
        self.show_token.toggled.connect(
            lambda shown: self.token_edit.setEchoMode(
                QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password
            )
        )
        self.test_token_button = QPushButton("Test token", box)
        _name(self.test_token_button, "testTokenButton")
        self.test_token_button.setToolTip("Ask Hugging Face whether this token is valid")
        self.test_token_button.clicked.connect(self._test_token)
        row.addWidget(self.token_edit, 1)
        row.addWidget(self.show_token)
        row.addWidget(self.test_token_button)
        inner.addLayout(row)
        self.token_error = QLabel(box)
        _name(self.token_error, "hubTokenEditError")
        self.token_error.setVisible(False)
        self.token_error.setWordWrap(True)
        inner.addWidget(self.token_error)
        self.token_result = QLabel(box)
        _name(self.token_result, "tokenResultLabel")
        self.token_result.setWordWrap(True)
        self.token_result.setVisible(False)
        inner.addWidget(self.token_result)
        column.addWidget(box)
        downloads = QGroupBox("Downloads", page)
        QVBoxLayout(downloads).addWidget(form)
        column.addWidget(downloads)
        column.addStretch(1)
        return page

    def _storage_page(self, form: SettingsForm) -> QWidget:
        page, column = self._column()
        if form.editors:  # storage settings (e.g. the disk budget for saved conversation states)
            column.addWidget(form)
        folder = QGroupBox("Data folder", page)
        inner = QVBoxLayout(folder)
        inner.addWidget(_help("Conversations, the model library and logs are kept here.", folder))
        row = QHBoxLayout()
        self.data_dir_edit = QLineEdit(str(self._data_dir), folder)
        _name(self.data_dir_edit, "dataDirEdit")
        self.data_dir_edit.setReadOnly(True)
        self.data_dir_edit.setToolTip("Where LlamaDesk keeps its data")
        open_button = QPushButton("Open Folder", folder)
        _name(open_button, "openDataDirButton")
        open_button.setToolTip("Show the data folder in your file manager")
        open_button.clicked.connect(self._open_data_dir)
        row.addWidget(self.data_dir_edit, 1)
        row.addWidget(open_button)
        inner.addLayout(row)
        column.addWidget(folder)

        chats = QGroupBox("Conversations", page)
        grid = QVBoxLayout(chats)
        export = QPushButton("Export All Conversations…", chats)
        _name(export, "exportAllButton")
        export.setToolTip("Save every conversation to files you can keep or move to another computer")
        export.clicked.connect(self.exportAllRequested.emit)
        delete = QPushButton("Delete All Conversations…", chats)
        _name(delete, "deleteAllButton")
        delete.setToolTip("Permanently delete every conversation (asks first)")
        delete.clicked.connect(self._confirm_delete_all)
        for button, text in (
            (export, "Save every conversation as a Markdown file in a folder you choose."),
            (delete, "Permanently remove every conversation from this computer. This cannot be undone."),
        ):
            line = QHBoxLayout()
            button.setMinimumWidth(220)
            line.addWidget(button)
            line.addWidget(_help(text, chats), 1)
            grid.addLayout(line)
        column.addWidget(chats)
        column.addStretch(1)
        self.delete_confirm: QMessageBox | None = None
        return page

    def _preset_bar(self) -> QFrame:
        bar = QFrame(self)
        _name(bar, "presetBar")
        bar.setFrameShape(QFrame.Shape.StyledPanel)
        # The status (with the model's name, which can be long) gets the bar's full width and
        # wraps; the buttons stay short so the dialog fits small screens and large fonts.
        column = QVBoxLayout(bar)
        column.setContentsMargins(10, 6, 10, 6)
        column.setSpacing(4)
        row = QHBoxLayout()
        self.preset_label = QLabel(bar)
        _name(self.preset_label, "presetStatusLabel")
        self.preset_label.setWordWrap(True)
        self.save_preset_button = QPushButton("Save as Preset", bar)
        _name(self.save_preset_button, "savePresetButton")
        self.save_preset_button.setToolTip(
            f"Use the Generation and Model settings shown here whenever {self._model_name} is loaded"
        )
        self.save_preset_button.clicked.connect(self.save_preset)
        self.remove_preset_button = QPushButton("Remove Preset", bar)
        _name(self.remove_preset_button, "removePresetButton")
        self.remove_preset_button.setToolTip(f"Use the global settings for {self._model_name} again")
        self.remove_preset_button.clicked.connect(self.remove_preset)
        column.addWidget(self.preset_label)
        row.addStretch(1)
        row.addWidget(self.save_preset_button)
        row.addWidget(self.remove_preset_button)
        column.addLayout(row)
        return bar

    def _reload_notice(self) -> QFrame:
        notice = QFrame(self)
        _name(notice, "reloadNotice")
        notice.setFrameShape(QFrame.Shape.StyledPanel)
        row = QHBoxLayout(notice)
        row.setContentsMargins(10, 6, 10, 6)
        # Without a loaded model there is nothing to reload: the next load uses the new values.
        label = QLabel(RELOAD_NOTICE if self._model_key is not None else NEXT_LOAD_NOTICE, notice)
        _name(label, "reloadNoticeLabel")
        label.setWordWrap(True)
        reload_now = QPushButton("Reload Now", notice)
        _name(reload_now, "reloadNowButton")
        reload_now.setToolTip("Apply the settings and reload the model now")
        reload_now.clicked.connect(self._reload_now)
        reload_now.setVisible(self._model_key is not None)
        row.addWidget(label, 1)
        row.addWidget(reload_now)
        notice.setVisible(False)
        self.reload_notice = notice
        return notice

    # --- public API -------------------------------------------------------------------------

    def editor_widget(self, key: str) -> QWidget:
        """The input widget for a setting key such as "generation.temperature"."""
        for form in self.forms.values():
            if key in form.editors:
                return form.editors[key].widget
        raise KeyError(key)

    def field_specs(self) -> list[FieldSpec]:
        """The specs of every field shown in the dialog."""
        return [editor.spec for form in self.forms.values() for editor in form.editors.values()]

    def result_settings(self) -> Settings:
        """The settings as last applied (OK or Apply); the original ones if nothing was applied."""
        return self._result.model_copy(deep=True)

    def token(self) -> str:
        """The access token as last applied."""
        return self._token

    def apply(self) -> bool:
        """Validate and emit settingsApplied; the dialog stays open. False when a field is invalid."""
        settings, errors = self._build()
        if settings is None:
            self._show_errors(errors)
            return False
        self._result = settings
        self._token = self.token_edit.text().strip()
        self.settingsApplied.emit(settings.model_copy(deep=True), self._token)
        self._revalidate()
        return True

    def reset_to_defaults(self) -> None:
        """Put every field back to its default; nothing is saved until OK or Apply."""
        for form in self.forms.values():
            form.reset_defaults()

    def save_preset(self) -> None:
        """From now on the Generation and Model values are stored as this model's preset."""
        self._preset_mode = True
        self._revalidate()

    def remove_preset(self) -> None:
        """Drop this model's preset (on OK or Apply) and show the global values again."""
        self._preset_mode = False
        self._set_section("generation", self._result.generation)
        self._set_section("runtime", self._result.runtime)
        self._revalidate()

    def show_token_result(self, ok: bool, message: str) -> None:
        """Show the outcome of a token test requested by testTokenRequested."""
        color = "#2e7d32" if ok and not self._is_dark() else "#7ee787" if ok else error_color().name()
        self.token_result.setText(("✓ " if ok else "✗ ") + message)
        self.token_result.setStyleSheet(f"color: {color};")
        self.token_result.setVisible(True)
        self.test_token_button.setEnabled(True)

    # --- internals --------------------------------------------------------------------------

    def _load(self, settings: Settings) -> None:
        generation, runtime = settings.generation, settings.runtime
        if self._model_key is not None and self._preset_mode:
            generation, runtime = settings.for_model(self._model_key)
        self._set_section("generation", generation)
        self._set_section("runtime", runtime)
        self._set_section("app", settings.app)

    def _set_section(self, section: str, model: BaseModel) -> None:
        data = model.model_dump()
        for form in self.forms.values():
            form.set_values(section, data)

    def _form_values(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """Every tab's values by section, and the error message of each field that refused its text."""
        merged: dict[str, dict[str, Any]] = {}
        errors: dict[str, str] = {}
        for form in self.forms.values():
            values, form_errors = form.values()
            errors.update(form_errors)
            for section, data in values.items():
                merged.setdefault(section, {}).update(data)
        return merged, errors

    def _build(self) -> tuple[Settings | None, dict[str, str]]:
        """A new Settings from the form, or the error message for each refused field."""
        merged, errors = self._form_values()
        sections: dict[str, BaseModel] = {}
        for section, model, _tab in SECTIONS:
            data = getattr(self._result, section).model_dump()
            data.update(merged.get(section, {}))
            try:
                sections[section] = model.model_validate(data)
            except ValidationError as exc:
                for item in exc.errors():
                    key = f"{section}.{item['loc'][0]}" if item["loc"] else section
                    errors.setdefault(key, str(item["msg"]))
        token = self.token_edit.text().strip()
        if any(char.isspace() for char in token):
            errors["hub.token"] = "A token has no spaces or line breaks; paste it again."
        if errors:
            return None, errors
        generation, runtime = sections["generation"], sections["runtime"]
        presets = dict(self._result.presets)
        if self._model_key is not None:
            if self._preset_mode:
                kept = presets.get(self._model_key)  # what Preferences doesn't edit (the Think default)
                presets[self._model_key] = ModelPreset.model_validate(
                    {"generation": generation.model_dump(), "runtime": runtime.model_dump()}
                    | ({"thinking": kept.thinking} if kept is not None else {})
                )
                generation, runtime = self._result.generation, self._result.runtime
            else:
                presets.pop(self._model_key, None)
        settings = Settings.model_validate(
            {
                "schema_version": self._result.schema_version,
                "generation": generation.model_dump(),
                "runtime": runtime.model_dump(),
                "app": sections["app"].model_dump(),
                "presets": {key: preset.model_dump() for key, preset in presets.items()},
                "template_overrides": dict(self._result.template_overrides),
            }
        )
        return settings, {}

    def _revalidate(self) -> None:
        settings, errors = self._build()
        self._show_errors(errors)
        self._valid = settings is not None
        self.ok_button.setEnabled(self._valid)
        self.apply_button.setEnabled(self._changed(settings))
        runtime = self._form_values()[0].get("runtime", {})
        self.reload_notice.setVisible(runtime != getattr(self, "_runtime_baseline", runtime))
        if self._model_key is not None:
            has_preset = self._preset_mode
            name = html.escape(self._model_name)
            self.preset_label.setText(
                f"Editing the preset for <b>{name}</b>: Generation and Model values apply whenever it loads."
                if has_preset
                else f"Editing the global settings. <b>{name}</b> has no preset."
            )
            self.save_preset_button.setEnabled(not has_preset)
            self.remove_preset_button.setEnabled(has_preset)

    def _show_errors(self, errors: dict[str, str]) -> None:
        for form in self.forms.values():
            form.show_errors(errors)
        message = errors.get("hub.token", "")
        self.token_error.setText(message)
        self.token_error.setStyleSheet(f"color: {error_color().name()};")
        self.token_error.setVisible(bool(message))

    def _is_dark(self) -> bool:
        return self.palette().color(QPalette.ColorRole.Window).lightness() < 128

    def _changed(self, settings: Settings | None) -> bool:
        """True when ``settings`` (valid) or the token differ from what was last applied."""
        return settings is not None and (
            settings != self._result or self.token_edit.text().strip() != self._token
        )

    def _ok(self) -> None:
        settings, _ = self._build()
        if settings is None or (self._changed(settings) and not self.apply()):
            return
        self.accept()

    def _reload_now(self) -> None:
        if self.apply():
            self._runtime_baseline = self._form_values()[0].get("runtime", {})
            self.reload_notice.setVisible(False)
            self.reloadRequested.emit()

    def _token_edited(self) -> None:
        self.token_result.setVisible(False)
        self.test_token_button.setEnabled(True)
        self._revalidate()

    def _test_token(self) -> None:
        token = self.token_edit.text().strip()
        if not token or any(char.isspace() for char in token):
            self.show_token_result(
                False, "Enter a token first." if not token else "The token has spaces in it."
            )
            return
        self.test_token_button.setEnabled(False)
        self.token_result.setStyleSheet("")
        self.token_result.setText("Testing…")
        self.token_result.setVisible(True)
        self.testTokenRequested.emit(token)

    def _open_data_dir(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._data_dir)))

    def _confirm_delete_all(self) -> None:
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Delete all conversations?",
            "Every conversation will be permanently deleted from this computer.",
            QMessageBox.StandardButton.NoButton,
            self,
        )
        _name(box, "deleteAllConfirm")
        box.setInformativeText("This cannot be undone. Export them first if you may want them later.")
        delete = box.addButton("Delete All", QMessageBox.ButtonRole.DestructiveRole)
        _name(delete, "confirmDeleteAllButton")
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)

        def clicked(button: QAbstractButton) -> None:
            if button is delete:
                self.deleteAllRequested.emit()

        box.buttonClicked.connect(clicked)
        box.finished.connect(box.deleteLater)
        self.delete_confirm = box
        box.open()
