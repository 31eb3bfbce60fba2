"""The API server inside the app: it serves the window's model, takes turns with the window's chat,
shows itself in the status bar and is set up in Preferences → Server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
from pytestqt.qtbot import QtBot

from llamadesk.paths import get_paths
from llamadesk.settings import API_KEY_SECRET, Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints")

MakeWindow = Callable[[], MainWindow]
LOAD_TIMEOUT = 60_000
REPLY_TIMEOUT = 120_000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_settings(home: Path, *, enabled: bool = True) -> Settings:
    settings = Settings()
    settings.generation.max_tokens = 24
    settings.generation.temperature = 0.0
    settings.generation.seed = 1
    settings.runtime.n_ctx = 2048
    settings.server.enabled = enabled
    settings.server.port = free_port()
    SettingsStore(get_paths(home).ensure().settings_file).save(settings)
    return settings


def serving(qtbot: QtBot, window: MainWindow) -> str:
    qtbot.waitUntil(lambda: bool(window.api_server.url), timeout=LOAD_TIMEOUT)
    return window.api_server.url


@pytest.mark.model
def test_a_gui_chat_and_an_api_request_interleave_without_mixing(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home)
    window = make_window()
    url = serving(qtbot, window)
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=LOAD_TIMEOUT):
        window.models.load_model(starter_model, confirm=False)
    client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=120)
    model = starter_model.stem
    api_messages = [{"role": "user", "content": "Name a fruit and a vegetable."}]
    api_answer: list[str] = []

    def ask() -> None:
        chunks = client.chat.completions.create(model=model, messages=api_messages, stream=True, seed=1)
        api_answer.append("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))

    asking = threading.Thread(target=ask)
    window.composer.set_text("Write a poem about the moon.")
    with qtbot.waitSignal(window.controller.tokenReceived, timeout=REPLY_TIMEOUT):
        window.composer.submit()
    asking.start()  # the API request waits for its turn while the window's reply streams
    qtbot.waitUntil(lambda: not window.generating, timeout=REPLY_TIMEOUT)
    qtbot.waitUntil(lambda: not asking.is_alive(), timeout=REPLY_TIMEOUT)

    gui_reply = window.chat_view.last_reply_text()
    conversation = window.conversation_id
    assert conversation is not None
    path = window.store.active_path(conversation)
    assert path[-1].content == gui_reply and path[-1].status in ("complete", "max_tokens")
    # The same requests one at a time give the same text: nothing of one reply went into the other.
    gui_alone = client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": window.settings.app.default_system_prompt},
            {"role": "user", "content": "Write a poem about the moon."},
        ],
        seed=1,
    )
    api_alone = client.chat.completions.create(model=model, messages=api_messages, seed=1)
    assert gui_alone.choices[0].message.content == gui_reply
    assert api_answer == [api_alone.choices[0].message.content]
    assert gui_reply != api_answer[0]
    client.close()
    # API requests are not kept in the history; the status bar counts them.
    assert [c.id for c in window.store.list_conversations()] == [conversation]
    qtbot.waitUntil(lambda: window.api_server.served >= 3, timeout=5000)
    address = url.removeprefix("http://").removesuffix("/v1")
    assert window.status.server_text().startswith(f"API {address} · ")
    assert window.status.server_text().endswith(" requests")


def test_preferences_server_tab_restarts_the_server_and_keeps_the_key_secret(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path
) -> None:
    write_settings(llamadesk_home, enabled=False)
    window = make_window()
    assert window.status.server_text() == ""
    dialog = window.open_preferences()
    titles = [dialog.tabs.tabText(i) for i in range(dialog.tabs.count())]
    assert "Server" in titles  # other tabs (Remote servers) may follow it
    tab = dialog.tabs.widget(titles.index("Server")).widget()
    port = free_port()
    tab.form.editors["server.enabled"].widget.setChecked(True)
    tab.form.editors["server.port"].widget.setValue(port)
    tab.key_edit.setText("s3cret-key")
    assert dialog.apply_button.isEnabled()
    with qtbot.waitSignal(window.api_server.started, timeout=LOAD_TIMEOUT):
        dialog.apply_button.click()
    assert window.api_server.url == f"http://127.0.0.1:{port}/v1"
    saved = json.loads(get_paths(llamadesk_home).settings_file.read_text())
    assert saved["server"]["enabled"] is True and saved["server"]["port"] == port
    assert "s3cret-key" not in get_paths(llamadesk_home).settings_file.read_text()
    assert window.secrets.get(API_KEY_SECRET) == "s3cret-key"
    with (
        openai.OpenAI(base_url=window.api_server.url, api_key="wrong", max_retries=0) as wrong,
        pytest.raises(openai.AuthenticationError),
    ):
        wrong.models.list()
    with openai.OpenAI(base_url=window.api_server.url, api_key="s3cret-key", max_retries=0) as right:
        assert right.models.list().object == "list"

    tab.form.editors["server.host"].widget.setText("0.0.0.0")
    tab.key_edit.setText("")
    dialog.apply_button.click()
    assert "requires an API key" in tab.error_label.text()
    assert window.api_server.url == f"http://127.0.0.1:{port}/v1"  # unchanged: nothing was applied
    dialog.close()


@pytest.mark.model
def test_a_model_an_api_request_loads_is_announced_on_the_gui_thread(
    qtbot: QtBot, llamadesk_home: Path, starter_model: Path
) -> None:
    from PySide6.QtCore import QCoreApplication, QThread

    from llamadesk.engine.service import InferenceService
    from llamadesk.hub.library import ModelLibrary
    from llamadesk.ui.server_controller import ServerController

    settings = write_settings(llamadesk_home)
    settings.server.load_on_request = True
    library = ModelLibrary(get_paths(llamadesk_home).ensure())
    service = InferenceService()
    controller = ServerController(service, lambda: settings, library=lambda: library)
    heard: list[tuple[str, bool]] = []
    app_thread = QCoreApplication.instance().thread()  # type: ignore[union-attr]
    controller.model_loaded.connect(lambda path: heard.append((path, QThread.currentThread() == app_thread)))
    replies: list[str] = []
    try:
        with qtbot.waitSignal(controller.started, timeout=LOAD_TIMEOUT):
            controller.apply()

        def ask() -> None:
            with openai.OpenAI(base_url=controller.url, api_key="x", max_retries=0, timeout=120) as client:
                reply = client.chat.completions.create(
                    model="starter", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
                )
                replies.append(reply.model)

        asking = threading.Thread(target=ask)
        with qtbot.waitSignal(controller.model_loaded, timeout=LOAD_TIMEOUT):
            asking.start()
        asking.join(120)
        assert heard == [(str(starter_model), True)]
        assert replies == [starter_model.stem]
        loaded = service.loaded
        assert loaded is not None and loaded.path == starter_model
    finally:
        controller.shutdown(timeout_s=5)
        assert service.close(timeout=10)


@pytest.mark.model
def test_a_model_an_api_request_loads_shows_in_the_window_and_answers_there(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    settings = write_settings(llamadesk_home)
    settings.server.load_on_request = True
    SettingsStore(get_paths(llamadesk_home).settings_file).save(settings)
    window = make_window()
    url = serving(qtbot, window)
    assert window.controller.loaded is None
    replies: list[str] = []

    def ask() -> None:
        with openai.OpenAI(base_url=url, api_key="x", max_retries=0, timeout=120) as client:
            reply = client.chat.completions.create(
                model="starter", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
            )
            replies.append(reply.model)

    asking = threading.Thread(target=ask)
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=LOAD_TIMEOUT):
        asking.start()
    asking.join(120)
    assert replies == [starter_model.stem]
    loaded = window.controller.loaded
    assert loaded is not None and loaded.path == starter_model
    # The window chats with the model the API loaded, without loading it again.
    window.composer.set_text("Say hello.")
    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT):
        window.composer.submit()
    conversation = window.conversation_id
    assert conversation is not None
    assert window.store.active_path(conversation)[-1].content.strip() != ""
