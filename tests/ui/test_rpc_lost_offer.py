"""The window after an RPC worker was lost mid-reply: the partial reply is kept as failed, the app goes
on, and the banner's "Reload without …" reloads the model without that worker.

No RPC here (llama.cpp's client would stay registered in the test process): the starter model runs
locally and the service is told mid-reply that a worker of its load was lost, as the abort callback
tells it (tests/integration/test_rpc_lost.py does it with real workers).
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from PySide6.QtWidgets import QPushButton
from pytestqt.qtbot import QtBot
from test_app_flows import LOAD_TIMEOUT, MakeWindow, current, load_starter, send, write_settings

from llamadesk.engine import rpc
from llamadesk.ui.main_window import MainWindow

pytestmark = [pytest.mark.model, pytest.mark.qt_log_ignore("does not support propagateSizeHints")]


def _closed_port() -> str:
    """An address nothing listens on: the "worker" that went away."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{sock.getsockname()[1]}"


def _lose_worker_mid_reply(window: MainWindow, worker: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a few decodes, the service hears that ``worker`` broke (on its own thread, as llama.cpp's
    abort callback would tell it); the old service thread then parks at its next piece."""
    service = window.controller.service
    llm = service.engine._require()
    original, calls = llm.eval, [0]

    def eval_then_lose(tokens: list[int]) -> None:
        calls[0] += 1
        if calls[0] == 4:
            service._replace_engine((worker,))
        original(tokens)

    monkeypatch.setattr(llm, "eval", eval_then_lose)


def test_lost_worker_keeps_the_reply_and_offers_a_reload_without_it(
    qtbot: QtBot,
    make_window: MakeWindow,
    llamadesk_home: Path,
    starter_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_settings(llamadesk_home, max_tokens=64)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    worker = _closed_port()
    monkeypatch.setattr(rpc, "_lost", set())
    monkeypatch.setattr(rpc, "_held", set())
    # As if the model had been loaded across ``worker`` (it stays in Preferences afterwards).
    window.settings.runtime.workers = [worker]
    window.models.workers.loading(starter_model, window.settings.runtime)
    _lose_worker_mid_reply(window, worker, monkeypatch)

    editor = window.composer.editor
    window.composer.set_text("Tell me about llamas.")
    with qtbot.waitSignal(window.controller.generationFailed, timeout=LOAD_TIMEOUT):
        editor.setFocus()
        window.composer.submit()
    reply = window.store.active_path(current(window))[-1]
    assert reply.role == "assistant" and reply.status == "failed" and reply.content  # partial text kept
    assert reply.stats is not None and worker in reply.stats["error"]
    assert rpc.lost_workers() == (worker,)
    assert window.banner.kind == "error" and worker in window.banner.text() and "kept" in window.banner.text()
    action = window.banner.findChild(QPushButton, "bannerAction")
    assert action is not None and not action.isHidden() and action.text() == f"Reload without {worker}"
    qtbot.waitUntil(lambda: window.controller.loaded is None, timeout=LOAD_TIMEOUT)  # the window follows

    with qtbot.waitSignal(window.controller.modelLoaded, timeout=LOAD_TIMEOUT):
        action.click()
    assert window.controller.loaded is not None and window.controller.loaded.path == starter_model
    assert window.models.workers.lost() == []  # this load does not use the lost worker
    assert window.settings.runtime.workers == [worker]  # Preferences keep it: only this load left it out
    send(qtbot, window, "Name a colour.")  # the app goes on with the new engine
    again = window.store.active_path(current(window))[-1]
    assert again.status == "complete" and again.content
