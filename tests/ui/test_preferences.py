"""The Preferences dialog, driven like a user would: real widgets, real settings models."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QSlider,
    QSpinBox,
)
from pytestqt.qtbot import QtBot

from llamadesk.settings import AppSettings, GenerationSettings, ModelPreset, RuntimeSettings, Settings
from llamadesk.ui.preferences import PreferencesDialog, gpu_auto_text
from llamadesk.ui.settings_form import camel_case, decode_lines, encode_lines
from preferences_helpers import find, make_dialog

NAMED_WIDGETS = {
    "temperatureSpin": QDoubleSpinBox,
    "topPSpin": QDoubleSpinBox,
    "topKSpin": QSpinBox,
    "minPSpin": QDoubleSpinBox,
    "repeatPenaltySpin": QDoubleSpinBox,
    "maxTokensSpin": QSpinBox,
    "seedSpin": QSpinBox,
    "stopStringsEdit": QPlainTextEdit,
    "defaultSystemPromptEdit": QPlainTextEdit,
    "contextLengthSpin": QSpinBox,
    "gpuLayersSpin": QSpinBox,
    "threadsSpin": QSpinBox,
    "batchSizeSpin": QSpinBox,
    "flashAttnCombo": QComboBox,
    "useMmapCheck": QCheckBox,
    "useMlockCheck": QCheckBox,
    "modelsDirEdit": QLineEdit,
    "themeCombo": QComboBox,
    "fontSizeSpin": QSpinBox,
    "codeFontEdit": QLineEdit,
    "maxParallelDownloadsSpin": QSpinBox,
    "hubTokenEdit": QLineEdit,
    "dataDirEdit": QLineEdit,
}
# Showing a window on the offscreen platform logs this harmless warning.
SHOWS_WINDOW = pytest.mark.qt_log_ignore("propagateSizeHints")
MODELS: dict[str, type[BaseModel]] = {
    "generation": GenerationSettings,
    "runtime": RuntimeSettings,
    "app": AppSettings,
}


def test_every_named_widget_exists_and_a_screen_reader_hears_its_title(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    assert dialog.objectName() == "preferencesDialog"
    assert dialog.accessibleName() == "Preferences"
    tabs = [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())]
    assert tabs == ["Generation", "Model && hardware", "Appearance", "Hub", "Storage"]
    titles = {spec.object_name: spec.title for spec in dialog.field_specs()}
    for name, kind in NAMED_WIDGETS.items():
        widget = find(dialog, name)
        assert isinstance(widget, kind), name
        # The field's title ("Temperature"), not its object name ("temperatureSpin").
        assert widget.accessibleName() == titles.get(name, name), name


def test_every_field_has_its_description_as_tooltip_and_help(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    specs = dialog.field_specs()
    assert len(specs) == sum(len(m.model_fields) for m in MODELS.values()) - 1  # last_model is hidden
    for spec in specs:
        description = MODELS[spec.section].model_fields[spec.name].description
        widget = dialog.editor_widget(spec.key)
        assert description and widget.toolTip() == description, spec.key
        assert len(widget.toolTip()) > 20
        help_label = find(dialog, camel_case(spec.name) + "Help")
        assert isinstance(help_label, QLabel)
        assert help_label.text() == spec.help_text and description.startswith(spec.help_text)
    temperature = dialog.editor_widget("generation.temperature").toolTip()
    assert "0.1" in temperature and "1.0" in temperature
    # What the engine really does: the reply's room is capped at half the context, and a
    # penalty under 1.0 rewards repeats rather than doing nothing.
    assert "half" in dialog.editor_widget("generation.max_tokens").toolTip()
    assert "below 1.0" in dialog.editor_widget("generation.repeat_penalty").toolTip()


def test_ranges_come_from_field_limits(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    for spec in dialog.field_specs():
        widget = dialog.editor_widget(spec.key)
        if not isinstance(widget, QSpinBox | QDoubleSpinBox):
            continue
        info = MODELS[spec.section].model_fields[spec.name]
        limits = {type(m).__name__: m for m in info.metadata}
        assert widget.minimum() == pytest.approx(limits["Ge"].ge), spec.key
        assert widget.maximum() == pytest.approx(limits["Le"].le), spec.key
        assert widget.value() == pytest.approx(info.default), spec.key
    temperature = find(dialog, "temperatureSpin")
    assert isinstance(temperature, QDoubleSpinBox)
    assert (temperature.minimum(), temperature.maximum(), temperature.singleStep()) == (0.0, 2.0, 0.05)


def test_special_values_are_shown_as_words(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, auto_gpu_layers=31, model_layers=31)
    assert find(dialog, "seedSpin").text() == "Random"  # type: ignore[attr-defined]
    assert find(dialog, "contextLengthSpin").text() == "Auto"  # type: ignore[attr-defined]
    assert find(dialog, "threadsSpin").text() == "Auto"  # type: ignore[attr-defined]
    gpu = find(dialog, "gpuLayersSpin")
    assert isinstance(gpu, QSpinBox)
    assert gpu.text() == "Auto (all 31 layers on GPU)"
    gpu.setValue(-1)
    assert gpu.text() == "All"
    gpu.setValue(12)
    assert gpu.text() == "12"
    assert gpu_auto_text(10, 31) == "Auto (10 of 31 layers on GPU)"
    assert gpu_auto_text(0) == "Auto (CPU only)"
    assert gpu_auto_text(None) == "Auto"


def test_changes_are_kept_after_ok(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    applied: list[tuple[Settings, str]] = []
    dialog.settingsApplied.connect(lambda s, t: applied.append((s, t)))
    find(dialog, "temperatureSpin").setValue(0.2)  # type: ignore[attr-defined]
    find(dialog, "maxTokensSpin").setValue(300)  # type: ignore[attr-defined]
    find(dialog, "stopStringsEdit").setPlainText("### User:\\n\nEND")  # type: ignore[attr-defined]
    find(dialog, "themeCombo").setCurrentIndex(2)  # type: ignore[attr-defined]
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    result = dialog.result_settings()
    assert result.generation.temperature == pytest.approx(0.2)
    assert result.generation.max_tokens == 300
    assert result.generation.stop == ["### User:\n", "END"]
    assert result.app.theme == "dark"
    assert dialog.result() == PreferencesDialog.DialogCode.Accepted
    assert len(applied) == 1 and applied[0][0] == result


def test_invalid_text_is_refused_with_a_message_and_ok_disabled(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    stop = find(dialog, "stopStringsEdit")
    assert isinstance(stop, QPlainTextEdit)
    error = find(dialog, "stopStringsEditError")
    assert isinstance(error, QLabel)
    stop.setPlainText("fine\nbad \\q escape")
    assert not dialog.ok_button.isEnabled()
    assert not dialog.apply_button.isEnabled()
    assert "Line 2" in error.text() and "\\q" in error.text()
    assert not error.isHidden()
    stop.setPlainText("fine")
    assert dialog.ok_button.isEnabled() and error.isHidden()

    code_font = find(dialog, "codeFontEdit")
    assert isinstance(code_font, QLineEdit)
    code_font.setText("   ")
    assert "cannot be empty" in find(dialog, "codeFontEditError").text()  # type: ignore[attr-defined]
    assert not dialog.ok_button.isEnabled()
    assert dialog.apply() is False
    code_font.setText("DejaVu Sans Mono")

    folder = find(dialog, "modelsDirEdit")
    assert isinstance(folder, QLineEdit)
    folder.setText("relative/models")
    assert "full path" in find(dialog, "modelsDirEditError").text()  # type: ignore[attr-defined]
    assert not dialog.ok_button.isEnabled()
    folder.setText("")

    token = find(dialog, "hubTokenEdit")
    assert isinstance(token, QLineEdit)
    token.setText("hf_abc def")
    assert "no spaces" in find(dialog, "hubTokenEditError").text()  # type: ignore[attr-defined]
    assert not dialog.ok_button.isEnabled()
    token.setText("hf_abcdef")
    assert dialog.ok_button.isEnabled()


def test_stop_string_escapes_round_trip() -> None:
    values = ["a\nb", "tab\there", "back\\slash", " lead"]
    assert decode_lines(encode_lines(values)) == values
    with pytest.raises(ValueError, match="Line 1"):
        decode_lines("trailing\\")
    with pytest.raises(ValueError, match="only spaces"):
        decode_lines("ok\n   ")


@SHOWS_WINDOW
def test_apply_emits_a_new_settings_and_keeps_the_dialog_open(qtbot: QtBot) -> None:
    original = Settings()
    dialog = make_dialog(qtbot, original, token="")
    dialog.show()
    assert not dialog.apply_button.isEnabled()  # nothing changed yet
    find(dialog, "topKSpin").setValue(7)  # type: ignore[attr-defined]
    find(dialog, "hubTokenEdit").setText(" hf_secret ")  # type: ignore[attr-defined]
    with qtbot.waitSignal(dialog.settingsApplied, timeout=2000) as blocker:
        qtbot.mouseClick(dialog.apply_button, Qt.MouseButton.LeftButton)
    settings, token = blocker.args
    assert isinstance(settings, Settings) and settings is not original
    assert settings.generation.top_k == 7 and token == "hf_secret"
    assert original.generation.top_k == 40  # the caller's object is untouched
    assert dialog.isVisible() and not dialog.apply_button.isEnabled()
    assert dialog.token() == "hf_secret"


def test_cancel_discards_changes(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    with qtbot.assertNotEmitted(dialog.settingsApplied):
        find(dialog, "temperatureSpin").setValue(1.5)  # type: ignore[attr-defined]
        find(dialog, "flashAttnCombo").setCurrentIndex(1)  # type: ignore[attr-defined]
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == PreferencesDialog.DialogCode.Rejected
    assert dialog.result_settings() == Settings()


def test_reset_to_defaults_restores_fields_without_saving(qtbot: QtBot) -> None:
    settings = Settings()
    settings.generation.temperature = 1.3
    settings.runtime.n_batch = 2048
    settings.app.font_size = 16
    dialog = make_dialog(qtbot, settings)
    qtbot.mouseClick(dialog.reset_button, Qt.MouseButton.LeftButton)
    assert find(dialog, "temperatureSpin").value() == pytest.approx(0.7)  # type: ignore[attr-defined]
    assert find(dialog, "batchSizeSpin").value() == 512  # type: ignore[attr-defined]
    assert find(dialog, "fontSizeSpin").value() == 11  # type: ignore[attr-defined]
    assert dialog.result_settings().generation.temperature == pytest.approx(1.3)  # not saved yet
    dialog.apply()
    assert dialog.result_settings().generation.temperature == pytest.approx(0.7)


def test_presets_save_and_remove(qtbot: QtBot) -> None:
    settings = Settings()
    dialog = make_dialog(qtbot, settings, model_key="smol.gguf", model_name="SmolLM2 135M")
    save = find(dialog, "savePresetButton")
    remove = find(dialog, "removePresetButton")
    assert "SmolLM2 135M" in find(dialog, "presetStatusLabel").text()  # type: ignore[attr-defined]
    assert "SmolLM2 135M" in save.toolTip()
    assert save.isEnabled() and not remove.isEnabled()
    find(dialog, "temperatureSpin").setValue(0.3)  # type: ignore[attr-defined]
    find(dialog, "contextLengthSpin").setValue(2048)  # type: ignore[attr-defined]
    qtbot.mouseClick(save, Qt.MouseButton.LeftButton)
    assert remove.isEnabled() and not save.isEnabled()
    assert dialog.apply()
    result = dialog.result_settings()
    preset = result.presets["smol.gguf"]
    assert preset.generation.temperature == pytest.approx(0.3)
    assert preset.runtime.n_ctx == 2048
    assert result.generation.temperature == pytest.approx(0.7)  # the global values are left alone
    assert result.for_model("smol.gguf")[0].temperature == pytest.approx(0.3)

    qtbot.mouseClick(remove, Qt.MouseButton.LeftButton)
    assert find(dialog, "temperatureSpin").value() == pytest.approx(0.7)  # type: ignore[attr-defined]
    assert dialog.apply()
    assert "smol.gguf" not in dialog.result_settings().presets


def test_existing_preset_is_edited(qtbot: QtBot) -> None:
    settings = Settings()
    settings.presets["m"] = ModelPreset(generation=GenerationSettings(temperature=0.25))
    settings.presets["other"] = ModelPreset()
    dialog = make_dialog(qtbot, settings, model_key="m")
    assert find(dialog, "temperatureSpin").value() == pytest.approx(0.25)  # type: ignore[attr-defined]
    assert "preset" in find(dialog, "presetStatusLabel").text()  # type: ignore[attr-defined]
    find(dialog, "minPSpin").setValue(0.1)  # type: ignore[attr-defined]
    assert dialog.apply()
    result = dialog.result_settings()
    assert result.presets["m"].generation.min_p == pytest.approx(0.1)
    assert result.generation.min_p == pytest.approx(0.05)
    assert "other" in result.presets


def test_runtime_change_shows_reload_notice_and_reload_now_applies(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, model_key="smol.gguf")
    notice = find(dialog, "reloadNotice")
    assert notice.isHidden()
    find(dialog, "temperatureSpin").setValue(1.0)  # type: ignore[attr-defined]
    assert notice.isHidden()  # generation settings need no reload
    threads = find(dialog, "threadsSpin")
    assert isinstance(threads, QSpinBox)
    threads.setValue(4)
    assert not notice.isHidden()
    assert "reloaded" in find(dialog, "reloadNoticeLabel").text()  # type: ignore[attr-defined]
    threads.setValue(0)
    assert notice.isHidden()
    threads.setValue(6)
    with qtbot.waitSignals([dialog.settingsApplied, dialog.reloadRequested], order="strict", timeout=2000):
        qtbot.mouseClick(find(dialog, "reloadNowButton"), Qt.MouseButton.LeftButton)
    assert dialog.result_settings().runtime.n_threads == 6
    assert notice.isHidden()


def test_token_field_hides_shows_and_tests(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, token="hf_token123")
    edit = find(dialog, "hubTokenEdit")
    assert isinstance(edit, QLineEdit)
    assert edit.echoMode() == QLineEdit.EchoMode.Password and edit.text() == "hf_token123"
    find(dialog, "showTokenCheck").setChecked(True)  # type: ignore[attr-defined]
    assert edit.echoMode() == QLineEdit.EchoMode.Normal
    button = find(dialog, "testTokenButton")
    with qtbot.waitSignal(dialog.testTokenRequested, timeout=2000) as blocker:
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["hf_token123"]
    result = find(dialog, "tokenResultLabel")
    assert isinstance(result, QLabel)
    assert not button.isEnabled() and "Testing" in result.text()
    dialog.show_token_result(False, "This token was refused (401).")
    assert button.isEnabled() and "refused" in result.text() and not result.isHidden()
    dialog.show_token_result(True, "Valid token for user alice")
    assert "alice" in result.text()


@SHOWS_WINDOW
def test_storage_tab_export_and_confirmed_delete(qtbot: QtBot, tmp_path: Path) -> None:
    dialog = make_dialog(qtbot, data_dir=tmp_path)
    data_dir = find(dialog, "dataDirEdit")
    assert isinstance(data_dir, QLineEdit)
    assert data_dir.text() == str(tmp_path) and data_dir.isReadOnly()
    with qtbot.waitSignal(dialog.exportAllRequested, timeout=2000):
        qtbot.mouseClick(find(dialog, "exportAllButton"), Qt.MouseButton.LeftButton)

    dialog.show()
    with qtbot.assertNotEmitted(dialog.deleteAllRequested):
        qtbot.mouseClick(find(dialog, "deleteAllButton"), Qt.MouseButton.LeftButton)
        box = dialog.delete_confirm
        assert isinstance(box, QMessageBox)
        qtbot.waitUntil(box.isVisible)
        qtbot.mouseClick(box.button(QMessageBox.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    with qtbot.waitSignal(dialog.deleteAllRequested, timeout=2000):
        qtbot.mouseClick(find(dialog, "deleteAllButton"), Qt.MouseButton.LeftButton)
        box = dialog.delete_confirm
        assert isinstance(box, QMessageBox)
        qtbot.waitUntil(box.isVisible)
        qtbot.mouseClick(find(box, "confirmDeleteAllButton"), Qt.MouseButton.LeftButton)  # type: ignore[arg-type]


def test_models_folder_placeholder_shows_the_default(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, models_dir_default="/data/models", hardware_summary="8 GB RAM, CPU only")
    folder = find(dialog, "modelsDirEdit")
    assert isinstance(folder, QLineEdit)
    assert folder.placeholderText() == "Default: /data/models"
    assert find(dialog, "modelsDirBrowseButton").isEnabled()
    assert find(dialog, "hardwareSummaryLabel").text() == "8 GB RAM, CPU only"  # type: ignore[attr-defined]


def test_special_words_can_be_typed(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    gpu = find(dialog, "gpuLayersSpin")
    assert isinstance(gpu, QSpinBox)
    gpu.setValue(5)
    gpu.lineEdit().selectAll()
    qtbot.keyClicks(gpu, "All")
    gpu.interpretText()
    assert gpu.value() == -1
    gpu.lineEdit().selectAll()
    qtbot.keyClicks(gpu, "20")
    gpu.interpretText()
    assert gpu.value() == 20
    gpu.lineEdit().selectAll()
    qtbot.keyClicks(gpu, "Auto")
    gpu.interpretText()
    assert gpu.value() == -2


def test_slider_follows_typed_values_without_rounding_them(qtbot: QtBot) -> None:
    settings = Settings()
    settings.generation.temperature = 0.83  # between two slider steps
    dialog = make_dialog(qtbot, settings)
    spin = find(dialog, "temperatureSpin")
    slider = find(dialog, "temperatureSlider")
    assert isinstance(spin, QDoubleSpinBox) and isinstance(slider, QSlider)
    assert spin.value() == pytest.approx(0.83)
    spin.setValue(0.33)
    assert spin.value() == pytest.approx(0.33) and slider.value() == round(0.33 / 0.05)
    slider.setFocus()
    qtbot.keyClick(slider, Qt.Key.Key_Right)  # the user moves the slider one step
    assert spin.value() == pytest.approx(0.35 + 0.05)
    settings_out, errors = dialog._build()
    assert (
        not errors and settings_out is not None and settings_out.generation.temperature == pytest.approx(0.4)
    )
