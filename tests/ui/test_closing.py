"""Closing the window is quick and loses nothing, whatever is still running in the background."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytestqt.qtbot import QtBot

from hub_server import FakeHub, make_gguf
from llamadesk.chat.store import ConversationStore
from llamadesk.hub import DownloadState
from llamadesk.hub.library import ModelLibrary
from llamadesk.paths import get_paths
from llamadesk.settings import Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow

pytestmark = [
    pytest.mark.model,
    pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise"),
]

MakeWindow = Callable[[], MainWindow]  # the make_window fixture (tests/ui/conftest.py)
REPO = "test/Tiny-GGUF"
FILE = "Tiny-Q8_0.gguf"
TIMEOUT = 60_000
# Closing used to wait up to 5 s for a library scan alone (then the reply, downloads and Hub
# calls in turn); it now gives all background work 1.5 s together. The bound leaves ample room
# for a slow machine while still telling the two apart.
CLOSE_BOUND_S = 4.0


def test_closing_while_everything_runs_is_quick_and_keeps_the_work(
    qtbot: QtBot,
    make_window: MakeWindow,
    llamadesk_home: Path,
    starter_model: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings()
    settings.generation.max_tokens = 2000
    settings.runtime.n_ctx = 2048
    SettingsStore(get_paths(llamadesk_home).ensure().settings_file).save(settings)

    # A models folder on a network drive that stopped answering: listing it hangs.
    hang, entered, release = threading.Event(), threading.Event(), threading.Event()
    listed = ModelLibrary.list_cached

    def hanging_list(self: ModelLibrary) -> Any:
        if hang.is_set():
            entered.set()
            release.wait(60)
        return listed(self)

    monkeypatch.setattr(ModelLibrary, "list_cached", hanging_list)

    with FakeHub() as hub:
        hub.add_file(REPO, FILE, make_gguf(tmp_path / "tiny.gguf", data_bytes=1_000_000))
        hub.faults.hold_after = 200_000  # the download stalls part way
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        window = make_window()
        qtbot.waitUntil(lambda: window.models.library_ready, timeout=TIMEOUT)
        with qtbot.waitSignal(window.controller.modelLoaded, timeout=TIMEOUT):
            window.models.load_model(starter_model, confirm=False)

        task = window.hub.download_manager().add(REPO, FILE)
        qtbot.waitUntil(lambda: task.progress.done >= 200_000, timeout=TIMEOUT)

        browser = window.hub.open_hub_browser()
        hub.faults.stall_path = f"/api/models/{REPO}"  # the network swallows this Hub call
        browser.select_repo(REPO)
        qtbot.waitUntil(lambda: hub.stalled >= 1, timeout=TIMEOUT)

        window.composer.set_text("Write a very long story about a llama who learns to sail.")
        with qtbot.waitSignal(window.controller.tokenReceived, timeout=TIMEOUT):
            window.composer.submit()
        conversation_id = window.conversation_id
        assert conversation_id is not None and window.generating

        hang.set()
        window.models.start_library_scan(restore_last_model=False)  # as after choosing another folder
        assert entered.wait(10)

        started = time.monotonic()
        window.close()
        took = time.monotonic() - started

        # Nothing waited for the calls that hang: both are still stuck.
        assert not release.is_set() and hub.stalled >= 1
        release.set()

    assert took < CLOSE_BOUND_S, f"closing took {took:.1f} s"
    # The download is paused with its partial file kept for next time.
    assert not task.running and task.state is DownloadState.PAUSED
    assert task.path.with_name(task.path.name + ".part").stat().st_size == 200_000
    # The reply written so far is saved, marked as stopped.
    store = ConversationStore(get_paths(llamadesk_home).database_file)
    try:
        last = store.active_path(conversation_id)[-1]
        assert last.role == "assistant" and last.status == "stopped" and last.content
    finally:
        store.close()
