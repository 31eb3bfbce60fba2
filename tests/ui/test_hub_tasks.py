"""Background Hub calls: superseded calls are skipped, answers reach the GUI thread."""

from __future__ import annotations

import threading

from pytestqt.qtbot import QtBot

from llamadesk.errors import LlamaDeskError
from llamadesk.ui.hub_worker import HubTasks


def test_superseded_calls_waiting_for_a_thread_are_never_made(qtbot: QtBot) -> None:
    tasks = HubTasks(max_threads=1)
    gate = threading.Event()
    made: list[str] = []
    answers: list[str] = []
    errors: list[LlamaDeskError] = []

    def call(name: str) -> str:
        made.append(name)
        return name

    tasks.run(lambda: gate.wait(10) and call("slow"), answers.append, errors.append)
    for repo in ("a", "b", "c"):  # clicking through repositories while the thread is busy
        tasks.run(lambda repo=repo: call(repo), answers.append, errors.append, channel="files")
    gate.set()
    qtbot.waitUntil(lambda: not tasks.busy, timeout=5000)
    assert made == ["slow", "c"] and answers == ["slow", "c"] and errors == []


def test_failures_arrive_as_messages_and_shutdown_leaves_a_hung_call_behind(qtbot: QtBot) -> None:
    tasks = HubTasks(max_threads=2)
    errors: list[str] = []

    def broken() -> None:
        raise LlamaDeskError("The Hub is unreachable.")

    tasks.run(broken, lambda _: None, lambda exc: errors.append(str(exc)))
    qtbot.waitUntil(lambda: errors == ["The Hub is unreachable."], timeout=5000)

    started, hung = threading.Event(), threading.Event()
    answered: list[object] = []
    tasks.run(lambda: started.set() or hung.wait(30), answered.append, answered.append)
    assert started.wait(5)
    assert tasks.shutdown(0) is False  # still running, and not waited for
    hung.set()
    qtbot.wait(200)
    assert answered == []  # nothing arrives after shutdown
