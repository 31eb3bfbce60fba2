"""The composer's Think switch becomes the model's default: saved when the user flips it, and set
again when the model loads after a restart. Real window, real settings file, real llama.cpp on the
starter model given a template that can switch thinking (SmolLM3's ``/think`` and ``/no_think``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from llamadesk.chat.reasoning import thinking_control
from llamadesk.paths import get_paths
from llamadesk.settings import ModelPreset, Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow

pytestmark = [pytest.mark.model, pytest.mark.qt_log_ignore("does not support propagateSizeHints")]

MakeWindow = Callable[[], MainWindow]
TIMEOUT = 120_000
FLAG_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n"
    "{{ m.content.replace('/no_think', '').replace('/think', '').strip() }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_the_think_switch_is_remembered_per_model_across_a_restart(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    assert thinking_control(FLAG_TEMPLATE) == "flag"
    settings_file = get_paths(llamadesk_home).ensure().settings_file
    settings = Settings()
    settings.runtime.n_ctx = 1024
    SettingsStore(settings_file).save(settings)
    window = make_window()
    key = window.models.model_key(starter_model)
    window.settings = window.settings.model_copy(update={"template_overrides": {key: FLAG_TEMPLATE}})
    window.save_settings()
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=TIMEOUT):
        window.models.load_model(starter_model)
    composer = window.composer
    assert composer.think_button.isVisibleTo(window) and composer.thinking_choice() == "on"

    qtbot.mouseClick(composer.think_button, Qt.MouseButton.LeftButton)
    assert composer.thinking_choice() == "off"
    saved = SettingsStore(settings_file).load()
    assert saved.thinking_defaults == {key: "off"}
    assert saved.presets == {}  # the model keeps following the general settings
    window.close()

    again = make_window()  # a restart: the last model is loaded again
    with qtbot.waitSignal(again.controller.modelLoaded, timeout=TIMEOUT):
        again.models.start_library_scan()
    assert again.models.model_key() == key
    assert again.composer.think_button.isVisibleTo(again) and again.composer.thinking_choice() == "off"

    # A model with a preset keeps its Think default there.
    again.settings.presets[key] = ModelPreset(generation=again.settings.generation)
    qtbot.mouseClick(again.composer.think_button, Qt.MouseButton.LeftButton)
    saved = SettingsStore(settings_file).load()
    assert saved.presets[key].thinking == "on" and saved.thinking_defaults == {}
