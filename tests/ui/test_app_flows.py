"""End-to-end flows through the real main window: real llama.cpp on the starter model, real SQLite."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QLabel, QWidget
from pytestqt.qtbot import QtBot

from llamadesk.chat.store import Conversation, ConversationStore
from llamadesk.paths import STARTER_MODEL_NAME, get_paths
from llamadesk.settings import ModelPreset, Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.sidebar import ConversationListModel

LOAD_TIMEOUT = 60_000
REPLY_TIMEOUT = 120_000

# The offscreen platform plugin says this on every show(); it is not about our code.
pytestmark = [pytest.mark.model, pytest.mark.qt_log_ignore("does not support propagateSizeHints")]

MakeWindow = Callable[[], MainWindow]  # the make_window fixture (tests/ui/conftest.py)
NAMES = (
    "conversationList",
    "conversationSearch",
    "newChatButton",
    "chatView",
    "composer",
    "sendButton",
    "stopButton",
    "regenerateButton",
    "modelPicker",
    "contextMeter",
    "systemPromptEdit",
)


def write_settings(
    home: Path, *, max_tokens: int = 16, n_ctx: int = 2048, presets: dict[str, ModelPreset] | None = None
) -> None:
    """Small, fast, deterministic settings for the tests."""
    settings = Settings()
    settings.generation.max_tokens = max_tokens
    settings.generation.temperature = 0.0
    settings.generation.seed = 1
    settings.runtime.n_ctx = n_ctx
    settings.presets = presets or {}
    SettingsStore(get_paths(home).ensure().settings_file).save(settings)


def load_starter(qtbot: QtBot, window: MainWindow, starter_model: Path) -> None:
    """Choose the starter model in the picker, as a user would."""
    picker = window.model_picker
    qtbot.waitUntil(lambda: picker.index_of(starter_model) > 0, timeout=LOAD_TIMEOUT)
    index = picker.index_of(starter_model)
    assert index > 0
    assert STARTER_MODEL_NAME in picker.itemText(index)
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=LOAD_TIMEOUT):
        picker.choose_index(index)
    assert window.controller.loaded is not None


def send(qtbot: QtBot, window: MainWindow, text: str) -> None:
    """Type ``text`` and press Enter; wait for the whole reply."""
    editor = window.composer.editor
    editor.setFocus()
    window.composer.set_text(text)
    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT):
        qtbot.keyClick(editor, Qt.Key.Key_Return)


def start_long_reply(
    qtbot: QtBot,
    window: MainWindow,
    text: str = "Write a very long story about a llama who learns to program.",
) -> None:
    """Send ``text`` and return once the reply is streaming (its first token arrived)."""
    window.composer.set_text(text)
    with qtbot.waitSignal(window.controller.tokenReceived, timeout=REPLY_TIMEOUT):
        window.composer.submit()


def show(qtbot: QtBot, window: MainWindow) -> None:
    """Show and activate the window so keyboard shortcuts reach it."""
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5000)


def row(model: ConversationListModel, number: int) -> Conversation:
    conversation = model.conversation_at(number)
    assert conversation is not None
    return conversation


def current(window: MainWindow) -> int:
    """The open conversation's id (a conversation must be open)."""
    assert window.conversation_id is not None
    return window.conversation_id


def child(window: MainWindow, name: str) -> QWidget:
    widget = window.findChild(QWidget, name)
    assert widget is not None, name
    assert widget.accessibleName() == name
    return widget


def test_first_run_chat_flow(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home)
    window = make_window()
    for name in (
        "conversationList",
        "conversationSearch",
        "newChatButton",
        "chatView",
        "composer",
        "sendButton",
        "stopButton",
        "regenerateButton",
        "modelPicker",
        "contextMeter",
        "systemPromptEdit",
    ):
        child(window, name)
    assert window.stack.currentWidget() is window.empty_state

    load_starter(qtbot, window, starter_model)
    assert window.stack.currentWidget() is window.chat_view
    assert STARTER_MODEL_NAME in window.status.model_label.text()
    assert window.status.backend_label.text()

    editor = window.composer.editor
    window.composer.set_text("Say hello.")
    assert window.composer.send_button.isEnabled() and not window.composer.stop_button.isEnabled()
    with qtbot.waitSignal(window.controller.tokenReceived, timeout=REPLY_TIMEOUT):
        qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert window.composer.stop_button.isEnabled() and not window.composer.send_button.isEnabled()
    assert editor.toPlainText() == ""
    qtbot.waitUntil(lambda: not window.generating, timeout=REPLY_TIMEOUT)
    assert window.composer.regenerate_button.isEnabled()

    assert window.chat_view.message_count() == 2
    assert window.chat_view.last_reply_text().strip()
    assert window.status.speed_text().endswith("tok/s")
    assert window.status.context_meter.value() > 0
    assert window.controller.loaded is not None
    assert window.status.context_meter.format().endswith(f"/ {window.controller.loaded.n_ctx}")

    conversation_id = window.conversation_id
    assert conversation_id is not None
    path = window.store.active_path(conversation_id)
    assert [m.role for m in path] == ["user", "assistant"]
    assert path[0].content == "Say hello."
    assert path[1].status == "complete" and path[1].stats and path[1].stats["completion_tokens"] > 0
    assert path[1].content == window.chat_view.last_reply_text()
    assert window.sidebar.model.rowCount() == 1
    assert window.settings.app.last_model == str(starter_model)

    show(qtbot, window)
    qtbot.keyClick(
        window, Qt.Key.Key_C, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier
    )
    assert QGuiApplication.clipboard().text() == path[1].content


def test_stop_mid_reply(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home, max_tokens=2000)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    start_long_reply(qtbot, window)
    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT) as finished:
        qtbot.keyClick(window.composer.editor, Qt.Key.Key_Escape)
    assert finished.args[0].stop_reason.value == "user_stop"
    last = window.store.active_path(current(window))[-1]
    assert last.status == "stopped"
    assert window.composer.send_button.isEnabled() is False  # empty box
    assert not window.composer.stop_button.isEnabled()


def test_escape_in_a_rename_cancels_the_rename_not_the_reply(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    from PySide6.QtWidgets import QLineEdit

    write_settings(llamadesk_home, max_tokens=2000)
    window = make_window()
    show(qtbot, window)
    other = window.store.create_conversation(title="Other chat")
    load_starter(qtbot, window, starter_model)
    start_long_reply(qtbot, window)
    view = window.sidebar.view
    view.setFocus()
    index = window.sidebar.model.index(window.sidebar.model.row_of(other.id))
    view.setCurrentIndex(index)
    view.edit(index)  # as a click on the selected row does
    editor = view.focusWidget()
    assert isinstance(editor, QLineEdit)
    qtbot.keyClicks(editor, "Renamed")
    qtbot.keyClick(editor, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: view.state() != view.State.EditingState, timeout=5000)
    assert window.generating  # the reply goes on
    assert window.store.get_conversation(other.id).title == "Other chat"
    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT):
        window.replies.stop()


def test_conversation_being_written_cannot_be_deleted_or_edited(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home, max_tokens=2000)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    start_long_reply(qtbot, window)
    conversation = current(window)
    user = window.store.active_path(conversation)[0]

    window.sidebar.confirm_delete(conversation)  # the sidebar's right-click "Delete…"
    assert window.banner.kind == "info" and "stop it before deleting" in window.banner.text()
    window.replies.edit_message(user.id, "Something else")
    assert "before you edit" in window.banner.text()
    window.replies.step_branch(user.id, 1)
    assert window.generating and window.store.count_conversations() == 1
    assert window.store.active_path(conversation)[0].content == user.content

    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT):
        window.replies.stop()
    assert window.store.active_path(conversation)[-1].status == "stopped"


def test_reply_failing_inside_llama_cpp_is_kept_as_failed(
    qtbot: QtBot,
    make_window: MakeWindow,
    llamadesk_home: Path,
    starter_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    write_settings(llamadesk_home, max_tokens=64)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    llm = window.controller.service.engine._require()
    original, calls = llm.eval, [0]

    def eval_then_fail(tokens: list[int]) -> None:  # like a GPU running out of memory mid-reply
        calls[0] += 1
        if calls[0] > 4:
            raise RuntimeError("llama_decode returned -3")
        original(tokens)

    monkeypatch.setattr(llm, "eval", eval_then_fail)
    send(qtbot, window, "Tell me about llamas.")
    reply = window.store.active_path(current(window))[-1]
    assert reply.role == "assistant" and reply.status == "failed" and reply.content  # partial text kept
    assert reply.stats is not None and "llama_decode returned -3" in reply.stats["error"]
    assert window.banner.kind == "error" and "failed while generating" in window.banner.text()


def test_enter_without_a_model_says_what_to_do(qtbot: QtBot, make_window: MakeWindow) -> None:
    window = make_window()
    window.composer.set_text("Hello?")
    assert not window.composer.send_button.isEnabled()
    qtbot.keyClick(window.composer.editor, Qt.Key.Key_Return)
    assert window.banner.kind == "error" and "No model is loaded" in window.banner.text()
    assert window.composer.text() == "Hello?" and window.store.count_conversations() == 0


def test_regenerate_and_switch_versions(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    send(qtbot, window, "Name a colour.")
    first = window.store.active_path(current(window))[-1]
    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT):
        qtbot.mouseClick(window.composer.regenerate_button, Qt.MouseButton.LeftButton)
    second = window.store.active_path(current(window))[-1]
    assert second.id != first.id and second.role == "assistant"
    assert (second.sibling_index, second.sibling_count) == (2, 2)
    assert window.chat_view.message_count() == 2

    window.chat_view.branchStepRequested.emit(second.id, -1)
    shown = window.store.active_path(current(window))[-1]
    assert shown.id == first.id and (shown.sibling_index, shown.sibling_count) == (1, 2)
    assert window.chat_view.last_reply_text() == first.content

    # Regenerating from the chat view's own button works the same way.
    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT):
        window.chat_view.regenerateRequested.emit(first.id)
    assert window.store.active_path(current(window))[-1].sibling_count == 3


def test_edit_user_message_makes_a_branch(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    send(qtbot, window, "What is 2 + 2?")
    user = window.store.active_path(current(window))[0]
    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT):
        window.replies.edit_message(user.id, "What is 3 + 3?")
    path = window.store.active_path(current(window))
    assert [m.role for m in path] == ["user", "assistant"]
    assert path[0].content == "What is 3 + 3?" and (path[0].sibling_index, path[0].sibling_count) == (2, 2)
    assert path[1].status == "complete"
    window.replies.step_branch(path[0].id, -1)
    assert window.store.active_path(current(window))[0].content == "What is 2 + 2?"


def test_pasted_code_keeps_its_indentation(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    code = "    return a + b\n\nWhat does this line do?"
    send(qtbot, window, "\n  \n" + code + "\n\n")
    path = window.store.active_path(current(window))
    assert path[0].content == code  # blank lines around it dropped, the indentation kept


def test_new_chat_search_rename_delete(qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path) -> None:
    paths = get_paths(llamadesk_home).ensure()
    store = ConversationStore(paths.database_file)
    with store.batch():
        for number in range(450):
            conversation = store.create_conversation()
            store.add_message(
                conversation.id, "user", f"question number {number} about apples", parent_id=None
            )
    special = store.create_conversation()
    store.add_message(special.id, "user", "How do zebras sleep?", parent_id=None)
    store.close()

    window = make_window()
    show(qtbot, window)
    sidebar = window.sidebar
    model = sidebar.model
    assert model.rowCount() == 200 and model.canFetchMore()
    model.fetchMore()
    assert model.rowCount() == 400
    assert row(model, 0).id == special.id  # newest first

    qtbot.mouseClick(
        sidebar.view.viewport(),
        Qt.MouseButton.LeftButton,
        pos=sidebar.view.visualRect(model.index(0)).center(),
    )
    assert window.conversation_id == special.id
    assert window.chat_view.message_count() == 1

    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert sidebar.search.hasFocus()
    qtbot.keyClicks(sidebar.search, "zebra")
    assert model.query == ""  # searched once typing pauses, not per keystroke
    qtbot.waitUntil(lambda: model.query == "zebra")
    assert model.rowCount() == 1 and row(model, 0).id == special.id
    sidebar.search.clear()
    qtbot.keyClick(sidebar.search, Qt.Key.Key_Return)  # Enter searches at once
    assert model.rowCount() == 200

    # A list refresh (as after every reply) waits while a title is edited in place.
    sidebar.view.edit(model.index(3))
    editing_id = row(model, 3).id
    sidebar.refresh()
    assert sidebar.view.state() == sidebar.view.State.EditingState
    editor = sidebar.view.focusWidget()
    assert editor is not None and editor is not sidebar.view
    qtbot.keyClicks(editor, "Renamed while a reply finished")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    qtbot.waitUntil(
        lambda: window.store.get_conversation(editing_id).title == "Renamed while a reply finished"
    )

    assert model.setData(model.index(0), "Zebra facts")
    assert window.store.get_conversation(special.id).title == "Zebra facts"
    sidebar.set_pinned(row(model, 5).id, True)
    assert row(model, 0).pinned

    sidebar.delete(special.id)
    assert window.conversation_id is None
    assert window.store.count_conversations() == 450

    other = row(model, 3).id
    sidebar.view.setCurrentIndex(model.index(3))
    assert window.conversation_id == other
    qtbot.keyClick(window, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert window.conversation_id is None and window.chat_view.message_count() == 0
    assert window.system_prompt_edit.toPlainText() == window.settings.app.default_system_prompt


def test_restart_restores_conversation_draft_and_layout(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path
) -> None:
    paths = get_paths(llamadesk_home).ensure()
    store = ConversationStore(paths.database_file)
    first = store.create_conversation(system_prompt="Be brief.")
    store.add_message(first.id, "user", "first conversation", parent_id=None)
    second = store.create_conversation()
    store.add_message(second.id, "user", "second conversation", parent_id=None)
    store.close()

    window = make_window()
    row = window.sidebar.model.row_of(first.id)
    window.sidebar.view.setCurrentIndex(window.sidebar.model.index(row))
    assert window.conversation_id == first.id
    assert window.system_prompt_edit.toPlainText() == "Be brief."
    window.system_prompt_edit.setPlainText("Be very brief.")
    window.composer.set_text("an unsent draft")
    window.splitter.setSizes([300, 700])
    window.close()

    again = make_window()
    assert again.conversation_id == first.id
    assert again.sidebar.current_id() == first.id
    assert again.composer.text() == "an unsent draft"
    assert again.system_prompt_edit.toPlainText() == "Be very brief."
    assert again.store.count_conversations() == 2
    assert again.chat_view.message_count() == 1


def test_preferences_apply_to_next_reply(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home, max_tokens=16)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    show(qtbot, window)
    qtbot.keyClick(window, Qt.Key.Key_Comma, Qt.KeyboardModifier.ControlModifier)
    dialog = window.preferences_dialog
    assert dialog is not None and dialog.isVisible() and dialog.objectName() == "preferencesDialog"
    new = window.settings.model_copy(deep=True)
    new.generation.temperature = 0.3
    new.generation.max_tokens = 3
    dialog.settingsApplied.emit(new, "")  # what the dialog emits when the user presses OK
    dialog.close()

    saved = json.loads(get_paths(llamadesk_home).settings_file.read_text())
    assert saved["generation"]["temperature"] == 0.3 and saved["generation"]["max_tokens"] == 3

    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT) as finished:
        window.composer.set_text("Tell me everything you know about the moon.")
        window.composer.submit()
    stats = finished.args[0]
    assert stats.completion_tokens <= 3
    assert stats.stop_reason.value == "max_tokens"


def test_model_preset_applied_on_load(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home)
    window = make_window()
    key = window.models.model_key(starter_model)
    window.close()
    preset = ModelPreset()
    preset.runtime.n_ctx = 1024
    preset.generation.max_tokens = 2
    write_settings(llamadesk_home, presets={key: preset})

    window = make_window()
    load_starter(qtbot, window, starter_model)
    assert window.controller.loaded is not None and window.controller.loaded.n_ctx == 1024
    assert window.replies.generation_settings().max_tokens == 2
    send(qtbot, window, "Count to twenty.")
    stats = window.store.active_path(current(window))[-1].stats
    assert stats is not None
    assert stats["completion_tokens"] <= 2 and stats["stop_reason"] == "max_tokens"


def test_corrupt_model_shows_banner_and_keeps_draft(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, tmp_path: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home)
    window = make_window()
    window.show()
    bad = tmp_path / "broken-model.gguf"
    bad.write_bytes(b"this is not a model" * 1000)
    window.composer.set_text("my precious draft")
    window.models.open_model_file(bad)
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=LOAD_TIMEOUT)
    assert window.banner.kind == "error"
    assert "broken-model.gguf" in window.banner.text() or "GGUF" in window.banner.text()
    assert window.composer.text() == "my precious draft"
    assert window.controller.loaded is None
    # The app is still usable: the starter model loads afterwards.
    load_starter(qtbot, window, starter_model)
    assert not window.banner.isVisible()
    assert window.composer.text() == "my precious draft"


def test_closing_mid_generation_exits_cleanly(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home, max_tokens=2000)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    start_long_reply(qtbot, window, "Write a long poem about the sea.")
    conversation_id = current(window)
    window.close()
    store = ConversationStore(get_paths(llamadesk_home).database_file)
    try:
        last = store.active_path(conversation_id)[-1]
        assert last.role == "assistant" and last.status == "stopped"
    finally:
        store.close()


def test_last_model_loads_at_start(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home)
    store = SettingsStore(get_paths(llamadesk_home).settings_file)
    settings = store.load()
    settings.app.last_model = str(starter_model)
    store.save(settings)
    window = make_window()
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=LOAD_TIMEOUT):
        pass
    assert window.model_picker.currentText().startswith(STARTER_MODEL_NAME)
    assert window.stack.currentWidget() is window.chat_view

    settings.app.last_model = str(llamadesk_home / "gone.gguf")
    store.save(settings)
    again = make_window()
    qtbot.waitUntil(lambda: again.model_picker.index_of(starter_model) > 0, timeout=LOAD_TIMEOUT)
    assert again.controller.loaded is None and not again.controller.busy
    assert again.stack.currentWidget() is again.empty_state


def test_exports_get_file_names_every_system_accepts(
    qtbot: QtBot, make_window: MakeWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PySide6.QtWidgets import QFileDialog

    window = make_window()
    conversation = window.store.create_conversation(title='Plan: a/b "fix" <now>?')
    window.store.add_message(conversation.id, "user", "Hello", parent_id=None)
    window.conversations.open_conversation(conversation.id)
    suggested: list[str] = []
    target = tmp_path / "out.md"
    target.write_text("an older export", encoding="utf-8")

    def save_as(_parent: object, _caption: str, name: str, _filter: str) -> tuple[str, str]:
        suggested.append(name)
        return str(target), ""

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_as)
    window.conversations.ask_export_conversation()
    assert suggested == ["Plan- a-b -fix- -now--.md"]
    assert "Hello" in target.read_text(encoding="utf-8")  # replaced, not appended to
    if os.name == "posix":
        assert target.stat().st_mode & 0o044 == 0o044 & ~_umask()  # readable as any new file is

    folder = tmp_path / "all"
    folder.mkdir()
    with qtbot.waitSignal(window.conversations.exportFinished, timeout=10_000) as exported:
        window.conversations.export_all(folder)  # in the background
    assert exported.args[0] == 1
    names = [p.name for p in folder.iterdir()]
    assert names == [f"{conversation.id:05d} Plan- a-b -fix- -now--.md"]


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_unusable_conversation_database_says_so_and_the_app_still_chats(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path
) -> None:
    database = get_paths(llamadesk_home).ensure().database_file
    database.mkdir()  # something that can't be opened as a database, and can't be moved aside
    window = make_window()
    assert window.banner.isVisibleTo(window) and "only until LlamaDesk closes" in window.banner.text()
    assert llamadesk_home not in window.store.path.parents  # nothing pretends to be saved there
    conversation = window.store.create_conversation(title="Still works")
    assert window.store.get_conversation(conversation.id).title == "Still works"
    assert database.is_dir()  # left as it was


def test_message_too_long_for_the_context_goes_back_to_the_box(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home, n_ctx=512)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    pasted = "A log line that goes on and on. " * 200

    # In a new chat: nothing is stored, the text is back in the box, the error says why.
    window.composer.set_text(pasted)
    with qtbot.waitSignal(window.controller.promptTooLong, timeout=REPLY_TIMEOUT):
        qtbot.keyClick(window.composer.editor, Qt.Key.Key_Return)
    assert not window.generating and window.composer.send_button.isEnabled()
    assert window.composer.text() == pasted.rstrip()
    assert window.conversation_id is None and window.store.count_conversations() == 0
    assert window.chat_view.message_count() == 0
    text = window.banner.text()
    assert window.banner.kind == "error" and "context length 512" in text and "back in the box" in text

    # In a conversation: the earlier messages stay, the long one comes back to the box.
    window.composer.set_text("")
    send(qtbot, window, "Hello!")
    conversation = current(window)
    window.composer.set_text(pasted)
    with qtbot.waitSignal(window.controller.promptTooLong, timeout=REPLY_TIMEOUT):
        window.composer.submit()
    assert window.composer.text() == pasted.rstrip()
    path = window.store.active_path(conversation)
    assert [m.role for m in path] == ["user", "assistant"] and path[0].content == "Hello!"
    assert window.chat_view.message_count() == 2
    window.close()
    again = make_window()  # the text is a saved draft like any other
    assert again.conversation_id == conversation and again.composer.text() == pasted.rstrip()


def test_stop_right_after_send(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home, max_tokens=200)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    window.composer.set_text("Tell me a story.")
    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT) as finished:
        window.composer.submit()
        qtbot.keyClick(window.composer.editor, Qt.Key.Key_Escape)
    assert finished.args[0].completion_tokens == 0
    reply = window.store.active_path(current(window))[-1]
    assert reply.role == "assistant" and reply.status == "stopped"
    assert window.status.speed_text() == ""  # no token, no speed (not "0.0 tok/s")
    # The meter shows the prompt evaluated (none when Stop came before the reply began).
    assert window.status.context_meter.value() == finished.args[0].prompt_tokens
    send(qtbot, window, "Then just say hi.")  # the next message is answered normally
    assert window.store.active_path(current(window))[-1].status == "complete"
    assert window.status.speed_text().endswith("tok/s")


def _card(window: MainWindow, message_id: int) -> QFrame:
    for card in window.chat_view.findChildren(QFrame, "messageCard"):
        if card.property("messageId") == message_id and card.isVisibleTo(window):
            return card
    raise AssertionError(f"no card for message {message_id}")


def _left_out(window: MainWindow, message_id: int) -> bool:
    tag = _card(window, message_id).findChild(QLabel, "notInContext")
    return tag is not None and tag.isVisibleTo(window)


def test_long_conversation_leaves_out_its_oldest_turns_without_hiding_a_warning(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path
) -> None:
    write_settings(llamadesk_home, n_ctx=512)
    get_paths(llamadesk_home).database_file.mkdir()  # conversations can't be saved this session
    window = make_window()
    warning = window.banner.text()
    assert window.banner.kind == "warning" and "only until LlamaDesk closes" in warning
    conversation = window.store.create_conversation(system_prompt="Be brief.")
    long = "llamas are fond of mountains " * 20
    parent: int | None = None
    for number in range(5):
        question = window.store.add_message(
            conversation.id, "user", f"Question {number}: {long}", parent_id=parent
        )
        parent = window.store.add_message(
            conversation.id, "assistant", f"Answer {number}: {long}", parent_id=question.id
        ).id
    window.conversations.open_conversation(conversation.id)
    load_starter(qtbot, window, starter_model)

    send(qtbot, window, "Hi")
    path = window.store.active_path(conversation.id)
    assert path[-1].status == "complete"
    assert _left_out(window, path[0].id) and _left_out(window, path[1].id)  # greyed: oldest exchange
    assert not _left_out(window, path[-2].id) and not _left_out(window, path[-3].id)
    assert window.banner.kind == "info" and "did not fit" in window.banner.text()
    window.banner.dismiss()
    assert window.banner.isVisibleTo(window) and window.banner.text() == warning  # still not read


def test_an_edit_refused_because_a_load_began_is_kept(
    qtbot: QtBot,
    make_window: MakeWindow,
    llamadesk_home: Path,
    starter_model: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PySide6.QtWidgets import QInputDialog

    write_settings(llamadesk_home)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    send(qtbot, window, "What is 2 + 2?")
    user = window.store.active_path(current(window))[0]
    shown: list[str] = []

    def edit_while_a_load_begins(_parent: object, _title: str, _label: str, text: str) -> tuple[str, bool]:
        shown.append(text)
        if len(shown) == 1:
            window.models.load_model(starter_model, confirm=False)  # the model reloads meanwhile
        return "What is 3 + 3?", True

    monkeypatch.setattr(QInputDialog, "getMultiLineText", edit_while_a_load_begins)
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=LOAD_TIMEOUT):
        window.replies.ask_edit_message(user.id)
    assert "Your edit is kept" in window.banner.text()
    assert window.store.active_path(current(window))[0].content == "What is 2 + 2?"
    with qtbot.waitSignal(window.controller.generationFinished, timeout=REPLY_TIMEOUT):
        qtbot.mouseClick(window.banner._action_button, Qt.MouseButton.LeftButton)
    assert shown == ["What is 2 + 2?", "What is 3 + 3?"]  # the dialog reopened with the edit
    assert window.store.active_path(current(window))[0].content == "What is 3 + 3?"


def test_a_message_answers_the_branch_shown_even_when_another_writer_moved_on(
    qtbot: QtBot, make_window: MakeWindow, starter_model: Path, llamadesk_home: Path
) -> None:
    """The command line adds to the open conversation meanwhile: the window's next message still
    follows what the window shows, and its reply is computed from that branch."""
    write_settings(llamadesk_home, max_tokens=4)
    window = make_window()
    load_starter(qtbot, window, starter_model)
    send(qtbot, window, "First question from the window")
    conversation_id = current(window)
    shown_reply = window.store.active_path(conversation_id)[-1]
    # Another process (e.g. `llamadesk chat --conversation`) writes a question and a reply.
    with ConversationStore(get_paths(llamadesk_home).database_file) as other:
        elsewhere = other.add_message(conversation_id, "user", "Other process", parent_id=shown_reply.id)
        other.add_message(conversation_id, "assistant", "Other reply", parent_id=elsewhere.id)
    prompts: list[list[dict[str, str]]] = []
    original = window.controller.generate

    def recording(messages: list[dict[str, str]], settings: object, **kwargs: object) -> None:
        prompts.append(messages)
        original(messages, settings, **kwargs)  # type: ignore[arg-type]

    window.controller.generate = recording  # type: ignore[method-assign]
    send(qtbot, window, "Second question from the window")
    path = window.store.active_path(conversation_id)
    question = next(m for m in path if m.content == "Second question from the window")
    assert question.parent_id == shown_reply.id  # not under "Other reply"
    assert all(m["content"] not in {"Other process", "Other reply"} for m in prompts[-1])
