"""The model lab in the window: progress with time left and Cancel on the service's thread, and
"Measure speed" / "Measure quality" in My models keeping and showing their figures."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from llamadesk.app import create_main_window
from llamadesk.engine.lab_results import LabProgress, LabRecord, LabResults
from llamadesk.engine.service import InferenceService
from llamadesk.ui.lab_actions import measured_here
from llamadesk.ui.lab_dialog import LabDialog, LabRunner, time_left_text
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.model_library import ModelLibraryPage

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise")

TIMEOUT = 240_000
Report = Callable[[LabProgress], None]


@pytest.fixture
def service() -> Iterator[InferenceService]:
    svc = InferenceService()
    yield svc
    svc.close()


def test_progress_time_left_then_result(qtbot: QtBot, service: InferenceService) -> None:
    runner = LabRunner(service)
    dialog = LabDialog("Measuring", runner)
    qtbot.addWidget(dialog)
    threads: list[str] = []

    def work(stop: threading.Event, report: Report) -> int:
        threads.append(threading.current_thread().name)
        report(LabProgress(0.5, 30.0, "Window 1 of 2"))
        return 42

    with qtbot.waitSignal(runner.finished, timeout=TIMEOUT) as finished:
        runner.start("lab-test", work)
    assert finished.args == [42] and dialog.result == 42
    assert threads == ["llamadesk-inference"]  # the service's own thread, never a new one
    assert not dialog.close_button.isHidden() and dialog.cancel_button.isHidden()
    assert dialog.status.text() == "Done."


def test_cancel_stops_the_work(qtbot: QtBot, service: InferenceService) -> None:
    runner = LabRunner(service)
    dialog = LabDialog("Measuring", runner)
    qtbot.addWidget(dialog)
    dialog.show()
    started = threading.Event()

    def work(stop: threading.Event, report: Report) -> None:
        report(LabProgress(0.25, 80.0, "Prompt processing, run 1 of 3"))
        started.set()
        assert stop.wait(60), "never cancelled"
        from llamadesk.engine.errors import EngineError

        raise EngineError("The measurement was cancelled.")

    with qtbot.waitSignal(runner.progressed, timeout=TIMEOUT):
        runner.start("lab-test", work)
    qtbot.waitUntil(lambda: dialog.left.text() != "", timeout=TIMEOUT)
    assert dialog.left.text() == "about 80 s left" and dialog.bar.value() == 250
    assert dialog.status.text() == "Prompt processing, run 1 of 3"
    assert runner.running
    with qtbot.waitSignal(runner.cancelled, timeout=TIMEOUT):
        qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert "Cancelled" in dialog.status.text() and dialog.close_button.isVisible()
    assert not runner.running


def test_failure_is_shown(qtbot: QtBot, service: InferenceService) -> None:
    runner = LabRunner(service)
    dialog = LabDialog("Measuring", runner)
    qtbot.addWidget(dialog)

    def work(stop: threading.Event, report: Report) -> None:
        from llamadesk.engine.errors import EngineError

        raise EngineError("The text file x.txt is empty: perplexity needs some text to score.")

    with qtbot.waitSignal(runner.failed, timeout=TIMEOUT):
        runner.start("lab-test", work)
    assert "is empty" in dialog.status.text()


def test_time_left_text() -> None:
    assert time_left_text(None).startswith("estimating")
    assert time_left_text(12.4) == "about 12 s left"
    assert time_left_text(600) == "about 10 min left"


@pytest.fixture
def window(qtbot: QtBot, llamadesk_home: Path) -> Iterator[MainWindow]:
    main = create_main_window(llamadesk_home)
    qtbot.addWidget(main)
    yield main
    main.close()


def open_library(window: MainWindow) -> ModelLibraryPage:
    window.commands.my_models_action.trigger()
    page = window.hub.model_library_page
    assert page is not None
    return page


@pytest.mark.model
def test_measure_speed_and_quality_in_my_models(
    qtbot: QtBot, window: MainWindow, starter_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = open_library(window)
    qtbot.waitUntil(lambda: page.select("starter") and page.speed_button.isEnabled(), timeout=TIMEOUT)
    assert page.speed_button.isEnabled() and page.quality_button.isEnabled()
    assert "measured here" not in page.details.text()
    assert page.lab.runner.service is window.controller.service  # the window's one model thread
    page.lab.speed_options = {"pp_tokens": 32, "tg_tokens": 8, "repetitions": 2}
    with qtbot.waitSignal(page.lab.measured, timeout=TIMEOUT) as measured:
        qtbot.mouseClick(page.speed_button, Qt.MouseButton.LeftButton)
    record: LabRecord = measured.args[0]
    assert record.kind == "speed" and len(record.figures["tg_runs"]) == 2
    assert f"measured here: {record.summary}" in page.details.text()
    dialog = page.lab.dialog
    assert dialog is not None and "generation" in dialog.status.text()
    assert (
        measured_here(starter_model.name, starter_model.stat().st_size) == f"Measured here: {record.summary}."
    )
    dialog.accept()

    text = tmp_path / "story.txt"
    text.write_text("The boat left the harbour at dawn and sailed north along the coast. " * 50)
    monkeypatch.setattr(
        "llamadesk.ui.lab_actions.QFileDialog.getOpenFileName", lambda *_a, **_k: (str(text), "")
    )
    page.lab.quality_context = 128
    with qtbot.waitSignal(page.lab.measured, timeout=TIMEOUT) as measured:
        qtbot.mouseClick(page.quality_button, Qt.MouseButton.LeftButton)
    quality: LabRecord = measured.args[0]
    assert quality.kind == "perplexity" and quality.settings["text"] == "story.txt"
    assert f"{quality.summary} on story.txt" in page.details.text()
    kept = LabResults.default().for_model(starter_model)
    assert {r.kind for r in kept} == {"speed", "perplexity"}
