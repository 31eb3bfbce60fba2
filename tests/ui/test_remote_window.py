"""Remote servers in the window: listed in the picker under their names, chatted with like a local model.

The server is the stub of tests/remote_stub.py on 127.0.0.1 (real HTTP, real streaming); the
window, its store and its settings are real.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from llamadesk.paths import get_paths
from llamadesk.remote.registry import secret_name
from llamadesk.secrets import SecretStore
from llamadesk.settings import RemoteServer, Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.model_picker import remote_key
from llamadesk.ui.remote_preferences import RemoteServersTab
from remote_stub import MODEL, StubState, free_port, running_stub

MakeWindow = Callable[[], MainWindow]  # the make_window fixture (tests/ui/conftest.py)
TIMEOUT = 15_000
SERVER = "Stub box"


@pytest.fixture
def stub() -> Iterator[tuple[str, StubState]]:
    with running_stub() as running:
        yield running


def _listed(home: Path, *servers: RemoteServer) -> None:
    """Settings with ``servers`` listed, as Preferences would have saved them."""
    paths = get_paths(home).ensure()
    SettingsStore(paths.settings_file).save(Settings(remote_servers=list(servers)))


def _window_on_stub(qtbot: QtBot, make_window: MakeWindow, home: Path, url: str) -> MainWindow:
    """A window whose picker lists the stub's model, with that model chosen."""
    _listed(home, RemoteServer(name=SERVER, url=url))
    window = make_window()
    picker = window.model_picker
    qtbot.waitUntil(lambda: picker.remote_entries() == [(SERVER, MODEL)], timeout=TIMEOUT)
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=TIMEOUT):
        picker.choose_index(picker.index_of(remote_key(SERVER, MODEL)))
    return window


def _send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    window.composer.set_text(text)
    with qtbot.waitSignal(window.controller.generationFinished, timeout=TIMEOUT):
        window.composer.submit()


def test_the_picker_lists_each_servers_models_under_its_name_with_reachability(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, stub: tuple[str, StubState]
) -> None:
    url, _ = stub
    dead = f"http://127.0.0.1:{free_port()}"
    _listed(llamadesk_home, RemoteServer(name=SERVER, url=url), RemoteServer(name="Gone", url=dead))
    window = make_window()
    picker = window.model_picker
    qtbot.waitUntil(lambda: picker.remote_entries() == [(SERVER, MODEL)], timeout=TIMEOUT)
    texts = [picker.itemText(i) for i in range(picker.count())]
    heading = texts.index(f"{SERVER} — 1 model")
    assert texts[heading + 1].strip() == MODEL
    assert not picker.model().item(heading).isEnabled()  # a heading, not a choice
    gone = next(i for i, text in enumerate(texts) if text.startswith("Gone — "))
    assert texts[gone] == "Gone — not reachable"
    assert "cannot be reached" in picker.itemData(gone, 3)  # the tooltip says why


def test_a_remote_reply_streams_into_the_view_and_is_stored_with_server_and_model(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, stub: tuple[str, StubState]
) -> None:
    url, state = stub
    window = _window_on_stub(qtbot, make_window, llamadesk_home, url)
    assert window.controller.remote is not None and window.models.model_name() == f"{MODEL} @ {SERVER}"
    assert MODEL in window.status.model_label.text()
    pieces: list[str] = []
    window.controller.tokenReceived.connect(pieces.append)
    _send(qtbot, window, "Hi there")
    expected = "".join(state.pieces)
    assert "".join(pieces) == expected
    assert window.chat_view.last_reply_text() == expected
    conversation = window.conversations.conversation_id
    assert conversation is not None
    reply = window.store.active_path(conversation)[-1]
    assert (reply.role, reply.content, reply.status) == ("assistant", expected, "complete")
    assert reply.model == f"{MODEL} @ {SERVER}"
    assert reply.stats is not None and reply.stats["server"] == SERVER and reply.stats["model"] == MODEL
    sent = state.requests[-1].body
    assert sent["model"] == MODEL and sent["stream"] is True
    assert sent["messages"][-1] == {"role": "user", "content": "Hi there"}
    settings = window.settings.generation
    assert (sent["temperature"], sent["top_k"], sent["max_tokens"]) == (
        settings.temperature,
        settings.top_k,
        settings.max_tokens,
    )

    # Regenerate: a second version next to the first, sent the same history.
    with qtbot.waitSignal(window.controller.generationFinished, timeout=TIMEOUT):
        window.replies.regenerate()
    assert len(window.store.siblings(reply.id)) == 2
    assert state.requests[-1].body["messages"] == sent["messages"]


def test_stop_ends_a_remote_reply_at_once_and_keeps_what_arrived(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, stub: tuple[str, StubState]
) -> None:
    url, state = stub
    window = _window_on_stub(qtbot, make_window, llamadesk_home, url)
    state.mode = "hold"  # one piece, then the server waits
    window.composer.set_text("Tell me a long story")
    with qtbot.waitSignal(window.controller.tokenReceived, timeout=TIMEOUT):
        window.composer.submit()
    assert window.generating
    with qtbot.waitSignal(window.controller.generationFinished, timeout=TIMEOUT):
        window.replies.stop()
    assert not window.generating
    assert state.left.wait(10)  # the stream was closed: the server saw the client go
    conversation = window.conversations.conversation_id
    assert conversation is not None
    reply = window.store.active_path(conversation)[-1]
    assert (reply.content, reply.status) == (state.pieces[0], "stopped")


def test_a_stream_cut_mid_reply_keeps_the_part_received_and_says_why(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, stub: tuple[str, StubState]
) -> None:
    url, state = stub
    window = _window_on_stub(qtbot, make_window, llamadesk_home, url)
    state.mode = "cut"
    _send(qtbot, window, "Hi")
    conversation = window.conversations.conversation_id
    assert conversation is not None
    reply = window.store.active_path(conversation)[-1]
    assert reply.content == "".join(state.pieces[:2])
    assert reply.status == "failed" and reply.stats is not None and reply.stats["interrupted"] is True
    assert f"The connection to {SERVER} was cut" in reply.stats["error"]
    assert f"The connection to {SERVER} was cut" in window.banner.text()


def test_an_error_before_any_text_names_the_server_and_the_wait(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, stub: tuple[str, StubState]
) -> None:
    url, state = stub
    window = _window_on_stub(qtbot, make_window, llamadesk_home, url)
    state.mode = "429"
    window.composer.set_text("Hi")
    with qtbot.waitSignal(window.controller.generationFailed, timeout=TIMEOUT) as failed:
        window.composer.submit()
    assert failed.args == [
        f"{SERVER} is busy (429 Too Many Requests): try again in 7 s. The server said: slow down"
    ]
    conversation = window.conversations.conversation_id
    assert conversation is not None
    path = window.store.active_path(conversation)
    assert path[0].content == "Hi" and path[-1].status == "failed"  # the question is kept


def test_preferences_add_a_server_with_its_key_in_the_secret_store(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, stub: tuple[str, StubState]
) -> None:
    url, state = stub
    window = make_window()
    dialog = window.open_preferences()
    tab = dialog.findChild(RemoteServersTab, "remoteServersTab")
    assert tab is not None
    tab.url_edit.setText("not a url at all")
    assert not tab.add_from_fields()
    assert "is not a server address" in tab.error_label.text()
    tab.url_edit.setText(url)
    tab.name_edit.setText(SERVER)
    tab.key_edit.setText("sekret-key")
    assert tab.add_from_fields()
    qtbot.waitUntil(lambda: "reachable, 1 model" in tab.list.item(0).text(), timeout=TIMEOUT)
    assert state.requests[-1].headers["authorization"] == "Bearer sekret-key"
    dialog.apply_button.click()
    assert window.settings.remote_servers == [RemoteServer(name=SERVER, url=url)]
    picker = window.model_picker
    qtbot.waitUntil(lambda: picker.remote_entries() == [(SERVER, MODEL)], timeout=TIMEOUT)
    paths = get_paths(llamadesk_home)
    assert SecretStore(paths.config_dir).get(secret_name(SERVER)) == "sekret-key"
    saved = json.loads(paths.settings_file.read_text(encoding="utf-8"))
    assert saved["remote_servers"] == [{"name": SERVER, "url": url}]
    assert "sekret-key" not in paths.settings_file.read_text(encoding="utf-8")
    dialog.close()


def test_a_wrong_key_shows_in_the_picker_and_a_new_key_from_preferences_fixes_it(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, stub: tuple[str, StubState]
) -> None:
    url, state = stub
    state.key = "right-key"
    _listed(llamadesk_home, RemoteServer(name=SERVER, url=url))
    window = make_window()
    picker = window.model_picker
    heading = f"{SERVER} — not reachable"
    qtbot.waitUntil(lambda: picker.findText(heading) > 0, timeout=TIMEOUT)
    assert "401 Unauthorized" in picker.itemData(picker.findText(heading), 3)
    dialog = window.open_preferences()
    tab = dialog.findChild(RemoteServersTab, "remoteServersTab")
    assert tab is not None
    tab.list.setCurrentRow(0)
    tab.key_edit.setText("right-key")
    assert tab.set_key_of_selected()
    qtbot.waitUntil(lambda: "reachable, 1 model" in tab.list.item(0).text(), timeout=TIMEOUT)
    dialog.apply_button.click()
    qtbot.waitUntil(lambda: picker.remote_entries() == [(SERVER, MODEL)], timeout=TIMEOUT)
    assert SecretStore(get_paths(llamadesk_home).config_dir).get(secret_name(SERVER)) == "right-key"
    dialog.close()


def test_the_remote_model_used_last_is_chosen_again_at_the_next_start(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, stub: tuple[str, StubState]
) -> None:
    url, _ = stub
    first = _window_on_stub(qtbot, make_window, llamadesk_home, url)
    assert first.settings.app.last_model == remote_key(SERVER, MODEL)
    first.close()
    again = make_window()
    qtbot.waitUntil(lambda: again.controller.remote is not None, timeout=TIMEOUT)
    assert again.models.model_name() == f"{MODEL} @ {SERVER}"
    assert again.model_picker.currentText().strip() == MODEL
