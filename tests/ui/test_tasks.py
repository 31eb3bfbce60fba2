"""The GUI's background runner: answers on the GUI thread, failures as messages, superseded calls
skipped, nothing called back once its window is gone."""

from __future__ import annotations

import logging
import threading

import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QWidget
from pytestqt.qtbot import QtBot

from llamadesk.errors import LlamaDeskError
from llamadesk.ui.tasks import TaskRunner


def test_success_arrives_on_the_gui_thread(qtbot: QtBot) -> None:
    runner = TaskRunner()
    gui = QThread.currentThread()
    worker: list[bool] = []
    answers: list[tuple[int, bool]] = []

    def op() -> int:
        worker.append(QThread.currentThread() is not gui)
        return 42

    runner.run(op, lambda value: answers.append((value, QThread.currentThread() is gui)))
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert worker == [True] and answers == [(42, True)]
    runner.shutdown()


def test_failures_give_their_message_and_bugs_are_logged(
    qtbot: QtBot, caplog: pytest.LogCaptureFixture
) -> None:
    shown: list[str] = []
    runner = TaskRunner(on_error=shown.append)
    errors: list[str] = []

    def unreachable() -> None:
        raise LlamaDeskError("The Hub is unreachable.")

    def bug() -> None:
        raise KeyError("missing")

    runner.run(unreachable, lambda _: None, lambda exc: errors.append(str(exc)))
    with caplog.at_level(logging.ERROR, logger="llamadesk.ui.tasks"):
        runner.run(bug, lambda _: None)  # no failure callback: the window's banner hears of it
        qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert errors == ["The Hub is unreachable."]
    assert shown == ["Something went wrong: 'missing'"]
    assert any(record.exc_info and record.exc_info[0] is KeyError for record in caplog.records)
    runner.shutdown()


def test_superseded_calls_waiting_for_a_thread_are_never_made(qtbot: QtBot) -> None:
    runner = TaskRunner(max_threads=1)
    gate = threading.Event()
    made: list[str] = []
    answers: list[str] = []
    errors: list[LlamaDeskError] = []

    def call(name: str) -> str:
        made.append(name)
        return name

    runner.run(lambda: gate.wait(10) and call("slow"), answers.append, errors.append)
    for repo in ("a", "b", "c"):  # clicking through repositories while the thread is busy
        runner.run(lambda repo=repo: call(repo), answers.append, errors.append, channel="files")
    gate.set()
    qtbot.waitUntil(lambda: not runner.busy, timeout=5000)
    assert made == ["slow", "c"] and answers == ["slow", "c"] and errors == []
    runner.shutdown()


def test_closing_the_window_while_a_task_runs_calls_nothing_back(qtbot: QtBot) -> None:
    window = QWidget()
    runner = TaskRunner(window)
    started, release = threading.Event(), threading.Event()
    workers: list[threading.Thread] = []
    answered: list[object] = []

    def hangs() -> str:
        workers.append(threading.current_thread())
        started.set()
        release.wait(30)
        return "late"

    runner.run(hangs, answered.append, answered.append)
    assert started.wait(5)
    assert runner.shutdown(0) is False  # still running, and not waited for
    window.deleteLater()  # the window goes, with its runner
    qtbot.waitUntil(lambda: not _alive(runner), timeout=5000)
    release.set()
    workers[0].join(5)
    assert not workers[0].is_alive()
    # An answer would have been queued to the GUI thread before its worker ended; a later task's
    # answer is queued after it, so once that one is in, nothing can still come for the first.
    other = TaskRunner()
    late: list[str] = []
    other.run(lambda: "next", late.append)
    qtbot.waitUntil(lambda: late == ["next"], timeout=5000)
    assert answered == []
    other.shutdown()


def _alive(obj: TaskRunner) -> bool:
    import shiboken6

    return shiboken6.isValid(obj)
