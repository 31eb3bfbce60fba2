"""The store's document links: schema 5 (migrated from 4), a chat's collections, a question's sources."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from llamadesk.chat.prompt import build_messages
from llamadesk.chat.store import (
    MIGRATIONS,
    SCHEMA_VERSION,
    ConversationStore,
    MessageSources,
    SourceRef,
    StoreError,
)


def _sources(*numbers: int) -> MessageSources:
    refs = tuple(
        SourceRef(n, 100 + n, "notes", f"/docs/file{n}.md", f"file{n}.md", f"§ Part {n}", f"passage {n}")
        for n in numbers
    )
    context = "Answer using the sources below.\n\n" + "\n\n".join(
        f"[{n}] file{n}.md\npassage {n}" for n in numbers
    )
    return MessageSources(context, refs)


def test_a_version_4_database_gains_the_document_tables_and_keeps_its_messages(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path)
    for migrate in MIGRATIONS[:4]:
        migrate(conn)
    conn.execute("PRAGMA user_version = 4")
    conn.execute(
        "INSERT INTO conversations (id, title, created_at, updated_at, active_leaf_id)"
        " VALUES (1, 'Old', 1, 1, 2)"
    )
    conn.execute(
        "INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at, thinking)"
        " VALUES (1, 1, NULL, 'user', 'an old question', 1, ''),"
        " (2, 1, 1, 'assistant', 'an old answer', 2, '')"
    )
    conn.commit()
    conn.close()

    assert SCHEMA_VERSION == 5
    with ConversationStore(path) as store:
        assert [m.content for m in store.active_path(1)] == ["an old question", "an old answer"]
        assert store.conversation_collections(1) == []
        assert store.message_sources([1, 2]) == {}
        store.set_conversation_collections(1, ["notes"])
        store.set_message_sources(1, _sources(1))
        assert store.message_sources([1])[1].sources[0].title == "file1.md"
    with sqlite3.connect(path) as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 5


def test_a_chat_keeps_its_collections_in_order_and_forgets_a_removed_one(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "c.sqlite3") as store:
        a = store.create_conversation()
        b = store.create_conversation()
        assert store.set_conversation_collections(a.id, ["manuals", " notes ", "manuals", ""]) == [
            "manuals",
            "notes",
        ]
        store.set_conversation_collections(b.id, ["notes"])
        assert store.conversation_collections(a.id) == ["manuals", "notes"]
        store.forget_collection("notes")
        assert store.conversation_collections(a.id) == ["manuals"]
        assert store.conversation_collections(b.id) == []
        with pytest.raises(StoreError, match="does not exist"):
            store.set_conversation_collections(9999, ["notes"])
        store.delete_conversation(a.id)
        with store._read("check") as conn:
            assert conn.execute("SELECT count(*) FROM conversation_collections").fetchone()[0] == 0


def test_sources_are_kept_with_the_question_and_leave_with_it(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "c.sqlite3") as store:
        conversation = store.create_conversation()
        question = store.add_message(conversation.id, "user", "What is in part 2?", parent_id=None)
        store.set_message_sources(question.id, _sources(1, 2))
        kept = store.message_sources([question.id])[question.id]
        assert kept == _sources(1, 2)
        assert kept.source(2) is not None and kept.source(2).label() == "file2.md, § Part 2"  # type: ignore[union-attr]
        assert kept.source(3) is None
        store.set_message_sources(question.id, MessageSources())  # searched again: replaced, not added
        assert store.message_sources([question.id])[question.id] == MessageSources()
        with pytest.raises(StoreError, match="does not exist"):
            store.set_message_sources(question.id + 50, _sources(1))
        store.delete_message(question.id)
        assert store.message_sources([question.id]) == {}


def test_damaged_stored_sources_are_skipped_not_raised(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "c.sqlite3") as store:
        conversation = store.create_conversation()
        question = store.add_message(conversation.id, "user", "q", parent_id=None)
        store.set_message_sources(question.id, _sources(1))
        with store._write("damage") as conn:
            conn.execute(
                "UPDATE message_sources SET sources_json = ? WHERE message_id = ?",
                (
                    '[{"number": 1, "chunk_id": "x"}, {"number": 2, "chunk_id": 7, "title": "t"}, 5]',
                    question.id,
                ),
            )
        kept = store.message_sources([question.id])[question.id]
        assert [s.number for s in kept.sources] == [2] and kept.sources[0].path == ""
        with store._write("damage") as conn:
            conn.execute(
                "UPDATE message_sources SET sources_json = '[[[' WHERE message_id = ?", (question.id,)
            )
        assert store.message_sources([question.id])[question.id].sources == ()


def test_every_turn_sends_each_question_with_its_stored_context_byte_for_byte(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "c.sqlite3") as store:
        conversation = store.create_conversation(system_prompt="Be brief.")
        first = store.add_message(conversation.id, "user", "What is in part 1?", parent_id=None)
        store.set_message_sources(first.id, _sources(1))
        answer = store.add_message(conversation.id, "assistant", "Passage 1 [1].", parent_id=first.id)
        turn_one = build_messages(
            "Be brief.",
            store.path_to(first.id),
            contexts={i: s.context for i, s in store.message_sources([first.id]).items()},
        )
        follow = store.add_message(conversation.id, "user", "And part 2?", parent_id=answer.id)
        store.set_message_sources(follow.id, _sources(2))
        path = store.path_to(follow.id)
        contexts = {i: s.context for i, s in store.message_sources([m.id for m in path]).items()}
        turn_two = build_messages("Be brief.", path, contexts=contexts)
    assert turn_two.messages[: len(turn_one.messages)] == turn_one.messages
    assert turn_one.messages[1]["content"] == _sources(1).context + "\n\nWhat is in part 1?"
    assert turn_two.messages[-1]["content"].startswith(_sources(2).context)
    assert turn_two.messages[-1]["content"].endswith("\n\nAnd part 2?")
