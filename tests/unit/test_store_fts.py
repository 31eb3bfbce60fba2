"""The search index takes a reply once, when it ends: flushes while it streams leave the index alone."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from llamadesk.chat.store import MIGRATIONS, SCHEMA_VERSION, ConversationStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "conversations.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(db_path) as opened:
        yield opened


def index_blocks(path: Path) -> list[tuple[int, bytes]]:
    """Every block of the message index, as another connection sees it."""
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute("SELECT id, block FROM messages_fts_data ORDER BY id").fetchall()


def indexed(path: Path, word: str) -> int:
    with closing(sqlite3.connect(path)) as conn:
        return int(
            conn.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (word,)).fetchone()[
                0
            ]
        )


def check_index(path: Path) -> None:
    """FTS5's own check that the index matches the text it was built from; raises if not."""
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
        conn.execute("INSERT INTO conversations_fts(conversations_fts, rank) VALUES ('integrity-check', 1)")


def test_a_flush_does_not_touch_the_index_and_the_finished_reply_is_found(
    store: ConversationStore, db_path: Path
) -> None:
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "Tell me about zebras", parent_id=None)
    reply = store.stream_reply(conversation.id, parent_id=question.id, flush_interval=3600)
    before = index_blocks(db_path)
    for piece in ("Zebras ", "have ", "stripes."):
        reply.append(piece)
        reply.flush()
        assert index_blocks(db_path) == before
    assert indexed(db_path, "stripes") == 0
    assert store.search("stripes") == []
    reply.finish()
    assert indexed(db_path, "stripes") == 1
    [hit] = store.search("stripes")
    assert hit.message_id == reply.message_id
    assert "[stripes]" in hit.snippet
    check_index(db_path)


def test_an_interrupted_reply_is_found_after_the_next_start(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        conversation = store.create_conversation()
        question = store.add_message(conversation.id, "user", "Tell me a story", parent_id=None)
        reply = store.stream_reply(conversation.id, parent_id=question.id, flush_interval=3600)
        reply.append("Once upon a dragon")
        reply.flush()
        assert store.search("dragon") == []
    check_index(db_path)  # a reply still streaming is consistently not in the index
    with ConversationStore(db_path) as store:
        assert store.interrupted_count == 1
        assert [hit.message_id for hit in store.search("dragon")] == [reply.message_id]
    check_index(db_path)


def test_deleting_a_streaming_reply_keeps_the_index_whole(store: ConversationStore, db_path: Path) -> None:
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "question", parent_id=None)
    reply = store.stream_reply(conversation.id, parent_id=question.id, flush_interval=0)
    reply.append("half an answer")
    store.delete_message(reply.message_id)
    check_index(db_path)
    other = store.stream_reply(conversation.id, parent_id=question.id, flush_interval=0)
    other.append("another half")
    store.delete_conversation(conversation.id)
    check_index(db_path)
    assert store.search("half") == []


def test_substring_search_skips_a_streaming_reply_too(store: ConversationStore) -> None:
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "天気は?", parent_id=None)
    reply = store.stream_reply(conversation.id, parent_id=question.id, flush_interval=0)
    reply.append("明日の天気は晴れ")
    assert [hit.message_id for hit in store.search("晴れ")] == []
    reply.finish()
    assert [hit.message_id for hit in store.search("晴れ")] == [reply.message_id]


def test_a_version_2_database_with_a_streaming_reply_is_migrated(db_path: Path) -> None:
    with closing(sqlite3.connect(db_path)) as conn:
        for migrate in MIGRATIONS[:2]:
            migrate(conn)
        conn.execute("PRAGMA user_version = 2")
        conn.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('Old', 1.0, 2.0)")
        conn.execute(
            "INSERT INTO messages (conversation_id, parent_id, role, content, created_at)"
            " VALUES (1, NULL, 'user', 'an old question about comets', 1.0)"
        )
        conn.execute(
            "INSERT INTO messages (conversation_id, parent_id, role, content, status, created_at)"
            " VALUES (1, 1, 'assistant', 'a reply about asteroids', 'streaming', 2.0)"
        )
        conn.execute("UPDATE conversations SET active_leaf_id = 2")
        conn.commit()
    with ConversationStore(db_path, recover_interrupted=False) as store:
        assert store.warning is None
        assert [hit.message_id for hit in store.search("comets")] == [1]
        assert store.search("asteroids") == []  # still streaming: not indexed
    check_index(db_path)
    with ConversationStore(db_path) as store:
        assert [hit.message_id for hit in store.search("asteroids")] == [2]
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    check_index(db_path)
