"""Chat-template override and the Hub token check, driven through the real main window."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDoubleSpinBox, QLineEdit, QPushButton, QSpinBox
from pytestqt.qtbot import QtBot

from hub_server import FakeHub
from llamadesk.app import create_main_window
from llamadesk.paths import get_paths, starter_model_path
from llamadesk.settings import Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.template_dialog import TemplateDialog

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise")

PLAIN = "{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}assistant:"


@pytest.fixture
def window(qtbot: QtBot, llamadesk_home: Path) -> Iterator[MainWindow]:
    settings = Settings()
    settings.generation.max_tokens = 4
    settings.runtime.n_ctx = 512
    SettingsStore(get_paths(llamadesk_home).ensure().settings_file).save(settings)
    main = create_main_window(llamadesk_home)
    qtbot.addWidget(main)
    main.show()
    qtbot.waitUntil(lambda: main.models.library_ready, timeout=30_000)
    yield main
    main.close()


@pytest.mark.model
def test_template_override_reloads_and_persists(
    qtbot: QtBot, window: MainWindow, llamadesk_home: Path
) -> None:
    starter = starter_model_path()
    assert starter is not None
    if window.controller.loaded is None:
        with qtbot.waitSignal(window.controller.modelLoaded, timeout=60_000):
            window.models.load_model(starter)
    assert window.controller.loaded is not None
    assert window.controller.loaded.chat_format.template != PLAIN

    def edit() -> None:
        dialog = QApplication.activeModalWidget()
        assert isinstance(dialog, TemplateDialog)
        assert "<|im_start|>" in dialog.editor.toPlainText()  # the model's own template is shown
        dialog.editor.setPlainText(PLAIN)
        assert dialog.preview.toPlainText().endswith("assistant:")
        dialog.accept()

    QTimer.singleShot(0, edit)
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=60_000) as reloaded:
        window.commands.template_action.trigger()
    assert reloaded.args[0].chat_format.template == PLAIN
    saved = SettingsStore(get_paths(llamadesk_home).settings_file).load()
    assert list(saved.template_overrides.values()) == [PLAIN]

    with qtbot.waitSignal(window.controller.contextPrepared, timeout=60_000) as prepared:
        window.replies.send("Hi")
    assert prepared.args[0].prompt.startswith("system: ")
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=60_000)


def test_token_check_asks_the_hub(
    qtbot: QtBot, window: MainWindow, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeHub() as hub:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        hub.valid_tokens.add("hf_good")
        dialog = window.open_preferences()
        for token, expected in (("hf_good", "signed in as test-user"), ("hf_bad", "token")):
            dialog.token_edit.setText(token)
            qtbot.mouseClick(dialog.test_token_button, Qt.MouseButton.LeftButton)
            qtbot.waitUntil(lambda: dialog.test_token_button.isEnabled(), timeout=20_000)
            assert expected in dialog.token_result.text()
        assert "✗" in dialog.token_result.text() and "hf_bad" not in dialog.token_result.text()
        dialog.close()


def _tight_ram(monkeypatch: pytest.MonkeyPatch, spare: int, total: int = 0) -> None:
    """Pretend this machine has ``spare`` bytes of RAM free beyond the planner's reserve."""
    import llamadesk.engine as engine
    from llamadesk.engine.hardware import Hardware
    from llamadesk.engine.planner import RAM_RESERVE

    tight = Hardware(
        total_ram=max(total, RAM_RESERVE + spare),
        available_ram=RAM_RESERVE + spare,
        cpu_count=2,
        backend="CPU",
        gpu_offload=False,
    )
    monkeypatch.setattr(engine, "detect_hardware", lambda **_: tight)


@pytest.mark.model
def test_too_large_model_warns_and_offers_a_context_that_fits(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    starter = starter_model_path()
    assert starter is not None
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=60_000)
    window.settings.runtime.n_ctx = 8192  # about 470 MB with this model
    _tight_ram(monkeypatch, 400_000_000)

    with qtbot.assertNotEmitted(window.controller.modelLoading):
        assert window.models.load_model(starter)  # the file is checked in the background first
        qtbot.waitUntil(lambda: window.models.fit_warning is not None)
        box = window.models.fit_warning
        assert box is not None
        qtbot.waitUntil(box.isVisible)
        assert "8,192 tokens" in box.text() and "0.5 GB" in box.text()
        qtbot.mouseClick(box.button(box.StandardButton.Cancel), Qt.MouseButton.LeftButton)
    assert window.models.fit_warning is None

    window.models.load_model(starter)
    qtbot.waitUntil(lambda: window.models.fit_warning is not None)
    box = window.models.fit_warning
    assert box is not None
    qtbot.waitUntil(box.isVisible)
    smaller = box.findChild(QPushButton, "loadSmallerContextButton")
    assert smaller is not None
    offer = smaller.text()
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=60_000) as loaded:
        qtbot.mouseClick(smaller, Qt.MouseButton.LeftButton)
    n_ctx = loaded.args[0].n_ctx
    assert 1024 <= n_ctx < 8192 and offer == f"Load with {n_ctx:,} tokens"
    assert (
        window.settings.runtime.n_ctx == 8192
    )  # the suggestion is for this load, not a silent settings change


@pytest.mark.model
def test_cancelling_a_load_is_quiet_and_leaves_no_model(qtbot: QtBot, window: MainWindow) -> None:
    starter = starter_model_path()
    assert starter is not None
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=60_000)
    window.models.unload_model()
    qtbot.waitUntil(lambda: window.controller.loaded is None, timeout=10_000)

    # Hold the load at its first progress report (on the inference thread) until Cancel is clicked,
    # so the click always lands mid-load however fast this machine is.
    clicked = threading.Event()
    hold = window.controller.loadProgress.connect(
        lambda _value: clicked.wait(10), Qt.ConnectionType.DirectConnection
    )
    with qtbot.waitSignal(window.controller.modelLoadFailed, timeout=60_000) as failed:
        assert window.models.load_model(starter, confirm=False)
        cancel = window.load_progress.cancel_button
        qtbot.waitUntil(cancel.isVisible)  # shown in the toolbar, laid out, clickable
        assert cancel.isEnabled() and cancel.width() > 20
        qtbot.mouseClick(cancel, Qt.MouseButton.LeftButton)
        clicked.set()
    window.controller.loadProgress.disconnect(hold)
    assert "cancelled" in failed.args[0]
    assert window.controller.loaded is None
    qtbot.waitUntil(lambda: not window.load_progress.isVisible())
    assert window.banner.kind == "info" and "cancelled" in window.banner.text()

    with qtbot.waitSignal(window.controller.modelLoaded, timeout=60_000):  # the next load is not cancelled
        window.models.load_model(starter, confirm=False)


def test_preferences_ok_keeps_template_overrides_and_updates_downloads(
    qtbot: QtBot, window: MainWindow, llamadesk_home: Path, tmp_path: Path
) -> None:
    window.settings = window.settings.model_copy(update={"template_overrides": {"some-model": PLAIN}})
    downloads = window.hub.download_manager()  # as if Discover were already open
    assert downloads.downloader._token is None

    dialog = window.open_preferences()
    temperature = dialog.findChild(QDoubleSpinBox, "temperatureSpin")
    folder = dialog.findChild(QLineEdit, "modelsDirEdit")
    assert temperature is not None and folder is not None
    temperature.setValue(0.5)
    folder.setText(str(tmp_path / "elsewhere"))
    dialog.token_edit.setText("hf_new")
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)

    saved = SettingsStore(get_paths(llamadesk_home).settings_file).load()
    assert saved.generation.temperature == 0.5
    assert saved.template_overrides == window.settings.template_overrides == {"some-model": PLAIN}
    assert downloads.downloader._token == "hf_new"  # the next gated download uses it at once
    assert downloads.downloader.models_dir == window.models.library.models_dir == tmp_path / "elsewhere"


def _starter_loaded(qtbot: QtBot, window: MainWindow) -> Path:
    """The starter model, loaded (the window may have loaded it at start already)."""
    starter = starter_model_path()
    assert starter is not None
    qtbot.waitUntil(lambda: not window.controller.busy, timeout=60_000)
    if window.controller.loaded is None:
        with qtbot.waitSignal(window.controller.modelLoaded, timeout=60_000):
            window.models.load_model(starter, confirm=False)
    return starter


def _starter_entry(window: MainWindow) -> str:
    starter = starter_model_path()
    return next(e.text for e in window.model_picker._entries if e.path == starter)


@pytest.mark.model
def test_fit_labels_and_warnings_count_the_memory_switching_frees(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    starter = _starter_loaded(qtbot, window)
    loaded = window.controller.loaded
    assert loaded is not None and loaded.ram_used >= 0
    window.settings.runtime.n_ctx = 8192  # about 470 MB with this model
    _tight_ram(monkeypatch, 300_000_000, total=16_000_000_000)  # the rest is in use

    # The picker says what loading would say: this context does not fit in what is free.
    window.controller.loaded = dataclasses.replace(loaded, ram_used=0)
    with qtbot.waitSignal(window.models.modelsListed, timeout=60_000):
        window.models.refresh_models()
    assert "Fits with ≤" in _starter_entry(window) and "tokens of context" in _starter_entry(window)
    with qtbot.assertNotEmitted(window.controller.modelLoading):
        assert window.models.load_model(starter)  # checked in the background, then the question
        qtbot.waitUntil(lambda: window.models.fit_warning is not None)
    window.models.fit_warning.reject()

    # The loaded model's memory comes back when it is replaced, so the same load fits.
    window.controller.loaded = dataclasses.replace(loaded, ram_used=400_000_000)
    with qtbot.waitSignal(window.models.modelsListed, timeout=60_000):
        window.models.refresh_models()
    assert "Fits in RAM" in _starter_entry(window)
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=60_000) as done:
        assert window.models.load_model(starter)
    assert window.models.fit_warning is None and done.args[0].n_ctx == 8192


@pytest.mark.model
def test_preferences_auto_gpu_layers_says_what_the_planner_would_choose(
    qtbot: QtBot, window: MainWindow, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llamadesk.engine as engine
    from llamadesk.engine.hardware import GPUInfo, Hardware

    _starter_loaded(qtbot, window)
    assert window.controller.loaded is not None and window.controller.loaded.n_gpu_layers == 0
    gib = 1024**3
    gpu = Hardware(32 * gib, 16 * gib, 8, "CUDA", True, [GPUInfo("Test GPU", 8 * gib, 8 * gib)])
    monkeypatch.setattr(engine, "detect_hardware", lambda **_: gpu)
    dialog = window.open_preferences()
    layers = dialog.findChild(QSpinBox, "gpuLayersSpin")
    assert layers is not None
    # Not the count this load used (0, on a CPU build) but what Auto picks on this machine.
    assert layers.value() == -2 and layers.text() == "Auto (all 30 layers on GPU)"
    dialog.close()
