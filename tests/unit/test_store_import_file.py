"""Import files as people have them (byte-order marks, other encodings, huge or hostile JSON), and large
imports that commit in steps without showing a half-imported conversation."""

from __future__ import annotations

import codecs
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

import llamadesk.chat.store.importing as importing
from llamadesk.chat.store import (
    ConversationStore,
    SearchHit,
    StoreError,
    StoreEvent,
    parse_import_bytes,
    read_import_file,
)

CONVERSATION = {"messages": [{"role": "user", "content": "Grüße"}, {"role": "assistant", "content": "Hallo"}]}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "conversations.sqlite3") as opened:
        yield opened


@pytest.mark.parametrize(
    "encode",
    [
        lambda text: text.encode("utf-8"),
        lambda text: codecs.BOM_UTF8 + text.encode("utf-8"),  # Notepad's "UTF-8 with BOM"
        lambda text: text.encode("utf-16"),  # PowerShell's `>`: UTF-16 with a byte-order mark
    ],
)
def test_a_file_is_read_with_or_without_a_byte_order_mark(
    store: ConversationStore, tmp_path: Path, encode: object
) -> None:
    path = tmp_path / "chat.json"
    assert callable(encode)
    path.write_bytes(encode(json.dumps(CONVERSATION, ensure_ascii=False)))
    assert read_import_file(path) == CONVERSATION
    conversation = store.import_file(path)
    assert [m.content for m in store.active_path(conversation.id)] == ["Grüße", "Hallo"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x80\x81 not text", r"is not UTF-8 text \(byte 1 cannot be read\)"),
        ("Grüße".encode("latin-1"), r"is not UTF-8 text \(byte 3 cannot be read\)"),
        (b"", "is empty"),
        (codecs.BOM_UTF8 + b"  \n", "is empty"),
        (b'{"messages": [', "is not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "is not valid JSON: it is nested more than 64 levels deep"),
        (b'{"messages": [], "created": 1e999}', "is not valid JSON: the number 1e999 is too large"),
        (b"NaN", "is not valid JSON"),
    ],
)
def test_unreadable_content_is_a_clear_store_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "chat.json"
    path.write_bytes(content)
    with pytest.raises(StoreError, match=message) as raised:
        read_import_file(path)
    assert str(path) in str(raised.value)


def test_a_missing_file_or_a_folder_is_a_clear_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"could not read .*missing\.json: No such file"):
        read_import_file(tmp_path / "missing.json")
    with pytest.raises(StoreError, match="could not read"):
        read_import_file(tmp_path)


def test_standard_input_is_parsed_the_same_way() -> None:
    data = codecs.BOM_UTF8 + json.dumps(CONVERSATION).encode()
    assert parse_import_bytes(data, "standard input") == CONVERSATION
    with pytest.raises(StoreError, match=r"^standard input is not valid JSON"):
        parse_import_bytes(b"{", "standard input")


def long_conversation(count: int) -> dict[str, object]:
    return {
        "messages": [{"role": ("user", "assistant")[n % 2], "content": f"turn {n}"} for n in range(count)]
    }


def test_a_large_import_commits_in_steps(store: ConversationStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "IMPORT_BATCH", 10)
    commits: list[str] = []
    store._open_connection().set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    conversation = store.import_json(long_conversation(35))
    store._open_connection().set_trace_callback(None)
    assert len(commits) == 1 + 4 + 1  # the conversation, four steps of messages, the finishing touch
    path = store.active_path(conversation.id)
    assert [m.content for m in path] == [f"turn {n}" for n in range(35)]
    assert conversation.title == "turn 0"


def test_a_conversation_is_hidden_until_its_import_is_complete(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importing, "IMPORT_BATCH", 10)
    seen_midway: list[tuple[int, list[SearchHit]]] = []

    def look(sql: str) -> None:
        if sql == "COMMIT" and not seen_midway:
            with closing(sqlite3.connect(store.path)) as conn:
                if conn.execute("SELECT count(*) FROM messages").fetchone()[0]:
                    with ConversationStore(store.path) as other:
                        seen_midway.append((other.count_conversations(), other.search("turn")))

    store._open_connection().set_trace_callback(look)
    store.import_json(long_conversation(35))
    store._open_connection().set_trace_callback(None)
    assert seen_midway == [(0, [])]
    assert store.count_conversations() == 1


def test_a_failed_import_leaves_nothing_behind(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(importing, "IMPORT_BATCH", 10)
    heard: list[StoreEvent] = []
    store.subscribe(heard.append)

    real_dumps = importing.dumps
    calls = [0]

    def dumps_failing_midway(value: dict[str, object] | None) -> str | None:
        calls[0] += 1
        if calls[0] == 25:  # the third step of messages
            raise StoreError("the disk went away")
        return real_dumps(value)

    monkeypatch.setattr(importing, "dumps", dumps_failing_midway)
    with pytest.raises(StoreError, match="the disk went away"):
        store.import_json(long_conversation(35))
    with closing(sqlite3.connect(store.path)) as conn:
        assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert heard == []
    assert calls[0] == 25


def test_an_import_cut_short_by_a_crash_is_removed_on_the_next_start(tmp_path: Path) -> None:
    db = tmp_path / "conversations.sqlite3"
    with ConversationStore(db) as store:
        store.create_conversation(title="kept")
    with closing(sqlite3.connect(db)) as conn:  # what a crash between two import steps leaves
        conn.execute(
            "INSERT INTO conversations (title, created_at, updated_at, importing) VALUES ('', 1.0, 1.0, 1)"
        )
        conn.execute(
            "INSERT INTO messages (conversation_id, role, content, created_at)"
            " VALUES (last_insert_rowid(), 'user', 'half imported', 1.0)"
        )
        conn.commit()
    with ConversationStore(db) as first:
        assert [c.title for c in first.list_conversations()] == ["kept"]
        assert first.search("imported") == []
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM conversations").fetchone()[0] == 1
