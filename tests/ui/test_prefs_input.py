"""Preferences as a demanding user types into it: words, out-of-range numbers, precise values,
folders that are not there, long model names and no model loaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDoubleSpinBox, QLabel, QLineEdit, QSpinBox
from pytestqt.qtbot import QtBot

from llamadesk.settings import GenerationSettings, ModelPreset, Settings
from llamadesk.ui.preferences import PreferencesDialog
from llamadesk.ui.settings_form import decode_lines
from preferences_helpers import find, make_dialog


def type_into(qtbot: QtBot, spin: QSpinBox | QDoubleSpinBox, text: str) -> None:
    spin.lineEdit().selectAll()
    if text:
        qtbot.keyClicks(spin, text)
    else:
        qtbot.keyClick(spin, Qt.Key.Key_Delete)


def error_text(dialog: PreferencesDialog, name: str) -> str:
    label = find(dialog, name + "Error")
    assert isinstance(label, QLabel)
    return label.text() if not label.isHidden() else ""


def test_auto_can_be_typed_while_the_field_shows_what_auto_will_do(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot, auto_gpu_layers=20, model_layers=31)
    gpu = find(dialog, "gpuLayersSpin")
    assert isinstance(gpu, QSpinBox)
    gpu.setValue(8)
    type_into(qtbot, gpu, "auto")
    gpu.interpretText()
    assert gpu.value() == -2 and gpu.text() == "Auto (20 of 31 layers on GPU)"
    assert dialog.ok_button.isEnabled()


def test_a_number_out_of_range_is_explained_under_its_field(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    top_k = find(dialog, "topKSpin")
    assert isinstance(top_k, QSpinBox)
    type_into(qtbot, top_k, "5000")
    assert top_k.text() == "5000"  # the keystroke is not silently dropped
    assert error_text(dialog, "topKSpin") == "Top-k must be a whole number from 0 to 1000."
    assert not dialog.ok_button.isEnabled() and dialog.apply() is False
    top_k.interpretText()  # what leaving the field or pressing Enter does: the nearest limit
    assert top_k.value() == 1000 and error_text(dialog, "topKSpin") == ""
    assert dialog.ok_button.isEnabled()

    gpu = find(dialog, "gpuLayersSpin")
    assert isinstance(gpu, QSpinBox)
    type_into(qtbot, gpu, "-7")
    assert (
        error_text(dialog, "gpuLayersSpin")
        == "GPU layers must be Auto, All or a whole number from 0 to 1000."
    )
    gpu.interpretText()
    assert gpu.value() == -2

    temperature = find(dialog, "temperatureSpin")
    assert isinstance(temperature, QDoubleSpinBox)
    type_into(qtbot, temperature, "3.5")
    assert error_text(dialog, "temperatureSpin") == "Temperature must be a number from 0 to 2."
    assert not dialog.ok_button.isEnabled()
    temperature.interpretText()
    assert temperature.value() == pytest.approx(2.0) and dialog.ok_button.isEnabled()


def test_an_emptied_number_field_blocks_ok_with_the_reason(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    seed = find(dialog, "seedSpin")
    assert isinstance(seed, QSpinBox)
    seed.setValue(42)
    type_into(qtbot, seed, "")
    assert error_text(dialog, "seedSpin") == "Seed must be Random or a whole number from 0 to 2147483647."
    assert not dialog.ok_button.isEnabled()
    with qtbot.assertNotEmitted(dialog.settingsApplied):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.result() != PreferencesDialog.DialogCode.Accepted
    type_into(qtbot, seed, "7")
    assert error_text(dialog, "seedSpin") == "" and dialog.ok_button.isEnabled()


def test_values_finer_than_the_step_are_kept_not_rounded(qtbot: QtBot) -> None:
    settings = Settings()
    settings.generation.temperature = 0.333
    settings.presets["m"] = ModelPreset(generation=GenerationSettings(min_p=0.025))
    dialog = make_dialog(qtbot, settings, model_key="m")
    assert not dialog.apply_button.isEnabled()  # nothing was edited
    temperature, min_p = find(dialog, "temperatureSpin"), find(dialog, "minPSpin")
    assert isinstance(temperature, QDoubleSpinBox) and isinstance(min_p, QDoubleSpinBox)
    assert min_p.text() == "0.025"
    find(dialog, "topKSpin").setValue(20)  # type: ignore[attr-defined]
    assert dialog.apply()
    result = dialog.result_settings()
    assert result.presets["m"].generation.min_p == 0.025 and result.presets["m"].generation.top_k == 20
    assert result.generation.temperature == 0.333
    type_into(qtbot, min_p, "0.075")
    assert min_p.value() == 0.075
    min_p.setValue(0.1)
    assert min_p.text() == "0.10"  # the usual values keep their usual look


def test_repeated_stop_strings_are_kept_once(qtbot: QtBot) -> None:
    assert decode_lines("END\n\nEND\n### User:\\n\n### User:\\n") == ["END", "### User:\n"]
    dialog = make_dialog(qtbot)
    find(dialog, "stopStringsEdit").setPlainText("<|im_end|>\n<|im_end|>")  # type: ignore[attr-defined]
    assert dialog.apply()
    assert dialog.result_settings().generation.stop == ["<|im_end|>"]


def test_models_folder_must_be_writable_or_creatable(
    qtbot: QtBot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unplugged = tmp_path / "usb" / "models"  # saved earlier, missing now: still opens and saves
    settings = Settings()
    settings.app.models_dir = str(unplugged)
    dialog = make_dialog(qtbot, settings)
    folder = find(dialog, "modelsDirEdit")
    assert isinstance(folder, QLineEdit)
    assert error_text(dialog, "modelsDirEdit") == "" and dialog.ok_button.isEnabled()

    (tmp_path / "notes.txt").write_text("not a folder")
    folder.setText(str(tmp_path / "notes.txt" / "models"))
    assert (
        error_text(dialog, "modelsDirEdit")
        == f"This folder cannot be created: {tmp_path / 'notes.txt'} is a file."
    )
    assert not dialog.ok_button.isEnabled()

    folder.setText(str(tmp_path / "new" / "models"))  # created on first use
    assert error_text(dialog, "modelsDirEdit") == "" and dialog.ok_button.isEnabled()

    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:  # root may write anywhere: answer as the file system would for a user
        real_access = os.access
        monkeypatch.setattr(
            os, "access", lambda path, mode: False if Path(path) == locked else real_access(path, mode)
        )
    else:
        locked.chmod(0o500)
    try:
        folder.setText(str(locked))
        assert "cannot save files in this folder" in error_text(dialog, "modelsDirEdit")
        assert not dialog.ok_button.isEnabled()
        folder.setText(str(locked / "models"))
        assert (
            error_text(dialog, "modelsDirEdit")
            == f"This folder cannot be created: you cannot write to {locked}."
        )
        assert not dialog.ok_button.isEnabled()
    finally:
        locked.chmod(0o700)

    folder.setText(str(tmp_path))
    assert error_text(dialog, "modelsDirEdit") == "" and dialog.apply()
    assert dialog.result_settings().app.models_dir == str(tmp_path)


def test_a_long_model_name_does_not_widen_the_dialog(qtbot: QtBot) -> None:
    name = "Meta-Llama-3.1-70B-Instruct-abliterated-Q4_K_M <imatrix> & more"
    dialog = make_dialog(qtbot, model_key="llama.gguf", model_name=name)
    assert dialog.minimumSizeHint().width() < 640
    label = find(dialog, "presetStatusLabel")
    assert isinstance(label, QLabel)
    assert "&lt;imatrix&gt; &amp; more" in label.text()  # shown as typed, not read as markup
    assert name in find(dialog, "savePresetButton").toolTip()


def test_without_a_model_the_notice_says_the_next_load_uses_it(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    find(dialog, "threadsSpin").setValue(4)  # type: ignore[attr-defined]
    assert not find(dialog, "reloadNotice").isHidden()
    assert "when a model is loaded" in find(dialog, "reloadNoticeLabel").text()  # type: ignore[attr-defined]
    assert find(dialog, "reloadNowButton").isHidden()  # there is nothing to reload


def test_storage_tab_describes_the_export_it_starts(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    export = find(dialog, "exportAllButton")
    parent = export.parentWidget()
    assert parent is not None
    helps = [label.text() for label in parent.findChildren(QLabel) if label.property("role") == "help"]
    export_help = next(text for text in helps if text.startswith("Save every conversation"))
    assert "Markdown" in export_help and "JSON" not in export_help  # the export writes .md files only
