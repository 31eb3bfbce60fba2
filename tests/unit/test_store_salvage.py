"""A damaged database costs only what is on its damaged pages: the rest is copied into a new one."""

from __future__ import annotations

import logging
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from llamadesk.chat.store import ConversationStore, make_title

CONVERSATIONS = 60


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "conversations.sqlite3"


def fill(path: Path) -> dict[int, tuple[str, list[str]]]:
    """Conversations with long enough messages to span many pages; returns id -> (title, texts)."""
    with ConversationStore(path) as store:
        with store.batch():
            for number in range(CONVERSATIONS):
                conversation = store.create_conversation(
                    title=f"Chat number {number}", model="m.gguf", system_prompt="Be helpful. " * 20
                )
                question = store.add_message(
                    conversation.id, "user", f"question {number} " + "lorem ipsum " * 30, parent_id=None
                )
                store.add_message(
                    conversation.id, "assistant", f"answer {number} " * 40, parent_id=question.id
                )
        return {
            c.id: (c.title, [m.content for m in store.active_path(c.id)]) for c in store.list_conversations()
        }


def spoil_page(path: Path, table: str) -> None:
    """Overwrite one page in the middle of ``table`` with bytes SQLite cannot read as a page."""
    with closing(sqlite3.connect(path)) as conn:
        pages = [
            row[0]
            for row in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno", (table,)
            )
        ]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    assert len(pages) > 2
    data = bytearray(path.read_bytes())
    start = (pages[len(pages) // 2] - 1) * size
    data[start : start + size] = b"\xff" * size
    path.write_bytes(bytes(data))


def test_one_bad_message_page_loses_only_the_messages_on_it(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = fill(db_path)
    spoil_page(db_path, "messages")
    damaged = db_path.read_bytes()
    with caplog.at_level(logging.INFO, logger="llamadesk"), ConversationStore(db_path) as store:
        assert store.recovered_count == CONVERSATIONS
        assert store.count_conversations() == CONVERSATIONS
        backup = store.backup_path
        assert backup is not None and backup.read_bytes() == damaged  # the damaged file is kept as it was
        kept = 0
        for conversation in store.list_conversations():
            title, texts = original[conversation.id]
            assert conversation.title == title
            recovered = [node["content"] for node in store.export_json(conversation.id)["tree"]]
            assert set(recovered) <= set(texts)
            kept += len(recovered)
        lost = 2 * CONVERSATIONS - kept
        assert 0 < lost < 2 * CONVERSATIONS // 2
        warning = store.warning
        assert warning is not None
        assert f"set aside as {backup.name}" in warning
        assert f"{CONVERSATIONS} conversations were recovered into a new database" in warning
        assert f"{lost} message" in warning and "could not be read" in warning
        assert warning.startswith("Your conversation database could not be read (")
        # the warning is handed to the caller to show, once: the store does not also log it as a warning
        logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert not [message for message in logged if "set aside" in message]
        assert warning.count("set aside") == 1
        assert store.search("lorem")  # the search index was rebuilt with the copied messages
    with ConversationStore(db_path) as store:
        assert store.warning is None
        assert store.count_conversations() == CONVERSATIONS


def test_a_bad_page_of_conversations_keeps_their_messages(db_path: Path) -> None:
    original = fill(db_path)
    spoil_page(db_path, "conversations")
    with ConversationStore(db_path) as store:
        assert store.count_conversations() == CONVERSATIONS
        assert store.warning is not None and "without their title and settings" in store.warning
        for conversation in store.list_conversations():
            title, texts = original[conversation.id]
            assert [m.content for m in store.active_path(conversation.id)] == texts
            assert conversation.title in (title, make_title(texts[0]))


def test_a_bad_index_page_loses_nothing(db_path: Path) -> None:
    original = fill(db_path)
    spoil_page(db_path, "messages_fts_data")
    with ConversationStore(db_path) as store:
        assert (
            store.warning is not None
            and "60 conversations were recovered into a new database." in store.warning
        )
        assert {
            c.id: (c.title, [m.content for m in store.active_path(c.id)]) for c in store.list_conversations()
        } == original
