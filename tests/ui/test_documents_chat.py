"""A chat with documents through the real window: real llama.cpp on the starter model, a real index of
real files, real SQLite. The question is sent with its sources, the answer shows them and opens them,
and a follow-up question reuses the cached prompt (the first turn is sent again byte for byte)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QUrl
from pytestqt.qtbot import QtBot

from llamadesk.chat.sources import CITE_SCHEME
from llamadesk.paths import get_paths
from llamadesk.settings import Settings, SettingsStore
from llamadesk.ui.main_window import MainWindow
from llamadesk.ui.message_widget import MessageCard

pytestmark = [pytest.mark.model, pytest.mark.qt_log_ignore("does not support propagateSizeHints")]

MakeWindow = Callable[[], MainWindow]
TIMEOUT = 120_000


def _send(qtbot: QtBot, window: MainWindow, text: str | None) -> tuple[str, dict[str, Any]]:
    """Send ``text`` (None: regenerate the last reply); the prompt the model got and the reply's stats."""
    with qtbot.waitSignal(window.controller.contextPrepared, timeout=TIMEOUT) as prepared:  # noqa: SIM117
        with qtbot.waitSignal(window.controller.generationFinished, timeout=TIMEOUT) as finished:
            if text is None:
                window.replies.regenerate()
            else:
                window.replies.send(text)
    return str(prepared.args[0].prompt), finished.args[0].to_dict()


def _card(window: MainWindow, message_id: int) -> MessageCard:
    card = next((c for c in window.chat_view.findChildren(MessageCard) if c.item.id == message_id), None)
    assert card is not None
    return card


def test_a_chat_with_documents_cites_them_and_keeps_the_prompt_cache_warm(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path, tmp_path: Path
) -> None:
    settings = Settings()
    settings.generation.max_tokens = 16
    settings.generation.temperature = 0.0
    settings.runtime.n_ctx = 2048
    SettingsStore(get_paths(llamadesk_home).ensure().settings_file).save(settings)
    folder = tmp_path / "cookbook"
    folder.mkdir()
    (folder / "bread.md").write_text(
        "# Bread\n\n## Rising\n\nBread rises because yeast ferments sugar into carbon dioxide gas.\n\n"
        "## Kneading\n\nKnead the dough for ten minutes until it is smooth and springy.\n",
        encoding="utf-8",
    )
    (folder / "soup.txt").write_text("Simmer the onion soup for forty minutes.\n", encoding="utf-8")

    window = make_window()
    documents = window.documents
    with qtbot.waitSignal(documents.panel.indexingFinished, timeout=TIMEOUT):
        documents.panel.add_paths("Cookbook", [folder])
    documents.set_used("Cookbook", True)  # a new chat: linked when its first message creates it
    with qtbot.waitSignal(window.controller.modelLoaded, timeout=TIMEOUT):
        window.models.load_model(starter_model)

    first_prompt, first_stats = _send(qtbot, window, "Why does bread rise?")
    conversation_id = window.conversation_id
    assert conversation_id is not None
    assert window.store.conversation_collections(conversation_id) == ["Cookbook"]
    question, answer = window.store.active_path(conversation_id)
    assert question.content == "Why does bread rise?"  # the stored message is the user's own text
    stored = window.store.message_sources([question.id])[question.id]
    assert (
        stored.sources
        and stored.sources[0].title == "bread.md"
        and "yeast ferments" in stored.sources[0].text
    )
    assert stored.context + "\n\nWhy does bread rise?" in first_prompt  # sources first, then the question

    card = _card(window, answer.id)
    assert card.sources_label is not None and card.sources_label.isVisibleTo(card)
    with qtbot.waitSignal(window.chat_view.citationOpened, timeout=TIMEOUT):
        card.body.anchorClicked.emit(QUrl(f"{CITE_SCHEME}:1"))
    dialog = window.chat_view.passage_dialog
    assert dialog is not None and "yeast ferments" in dialog.passage_text()
    assert dialog.open_button.isEnabled()
    dialog.close()

    follow_prompt, follow_stats = _send(qtbot, window, "How long should I knead the dough?")
    assert follow_prompt.startswith(first_prompt)  # the first turn is sent again byte for byte
    follow_question = window.store.active_path(conversation_id)[-2]
    follow_sources = window.store.message_sources([follow_question.id])[follow_question.id]
    assert any("ten minutes" in s.text for s in follow_sources.sources)
    assert follow_stats["cached_tokens"] >= first_stats["prompt_tokens"] - 1

    # A new version of the reply is asked exactly as before: its question is not searched again.
    again_prompt, again_stats = _send(qtbot, window, None)
    assert again_prompt == follow_prompt
    assert window.store.message_sources([follow_question.id])[follow_question.id] == follow_sources

    # The same two questions without documents, for the figures in the report.
    documents.set_used("Cookbook", False)
    window.conversations.new_chat()
    plain_first_prompt, plain_first = _send(qtbot, window, "Why does bread rise?")
    plain_follow_prompt, plain_follow = _send(qtbot, window, "How long should I knead the dough?")
    assert plain_follow_prompt.startswith(plain_first_prompt)
    print(
        "\nfollow-up with documents: prompt",
        follow_stats["prompt_tokens"],
        "reused",
        follow_stats["cached_tokens"],
        "read",
        follow_stats["prompt_tokens"] - follow_stats["cached_tokens"],
        "| regenerate: read",
        again_stats["prompt_tokens"] - again_stats["cached_tokens"],
        "| without documents: prompt",
        plain_follow["prompt_tokens"],
        "reused",
        plain_follow["cached_tokens"],
        "read",
        plain_follow["prompt_tokens"] - plain_follow["cached_tokens"],
        "| first turn with documents",
        first_stats["prompt_tokens"],
        "without",
        plain_first["prompt_tokens"],
    )
