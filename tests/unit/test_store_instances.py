"""Two LlamaDesk processes on one database: a reply being written by one is never marked as cut short
by the other, and a busy database gives a clear message and loses nothing."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import llamadesk
from llamadesk.chat.store import ConversationStore, StoreError

WRITER = """
import sys
from pathlib import Path
from llamadesk.chat.store import ConversationStore

store = ConversationStore(Path(sys.argv[1]))
conversation = store.create_conversation()
question = store.add_message(conversation.id, "user", "Tell me a story", parent_id=None)
reply = store.stream_reply(conversation.id, parent_id=question.id, flush_interval=3600)
reply.append("Once upon")
reply.flush()
print(reply.message_id, flush=True)
sys.stdin.readline()  # the test has opened its own store meanwhile
reply.append(" a time.")
reply.finish("complete")
store.close()
"""


def test_a_second_process_leaves_a_reply_being_written_alone(tmp_path: Path) -> None:
    db = tmp_path / "conversations.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(Path(llamadesk.__file__).parent.parent)}
    with subprocess.Popen(
        [sys.executable, "-c", WRITER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as writer:
        try:
            assert writer.stdout is not None and writer.stdin is not None
            message_id = int(writer.stdout.readline())
            with ConversationStore(db) as second:
                assert second.interrupted_count == 0
                assert second.get_message(message_id).status == "streaming"
                writer.stdin.write("go on\n")
                writer.stdin.close()
                assert writer.wait(timeout=60) == 0
                message = second.get_message(message_id)
                assert (message.status, message.content) == ("complete", "Once upon a time.")
        finally:
            if writer.poll() is None:
                writer.kill()


def test_the_first_store_to_open_alone_recovers(tmp_path: Path) -> None:
    db = tmp_path / "conversations.sqlite3"
    first = ConversationStore(db)
    conversation = first.create_conversation()
    reply = first.stream_reply(conversation.id, parent_id=None)
    with ConversationStore(db) as second:  # same process, another window
        assert second.interrupted_count == 0
    first._conn.close()  # type: ignore[union-attr]  # as if the process died: no finish, no close
    first._conn = None
    first.close()
    with ConversationStore(db) as alone:
        assert alone.interrupted_count == 1
        assert alone.get_message(reply.message_id).status == "interrupted"


def test_a_database_busy_in_another_process_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "conversations.sqlite3"
    with ConversationStore(db) as store:
        conversation = store.create_conversation()
        kept = store.add_message(conversation.id, "user", "kept", parent_id=None)
        store._open_connection().execute("PRAGMA busy_timeout = 50")
        with closing(sqlite3.connect(db, isolation_level=None)) as other:
            other.execute("BEGIN IMMEDIATE")  # another program writing, for longer than we wait
            with pytest.raises(StoreError, match=r"busy \(another program is using it\): could not save"):
                store.add_message(conversation.id, "user", "retried", parent_id=kept.id)
            assert [m.content for m in store.active_path(conversation.id)] == ["kept"]  # reads still work
            other.execute("ROLLBACK")
        store.add_message(conversation.id, "user", "retried", parent_id=kept.id)
        assert [m.content for m in store.active_path(conversation.id)] == ["kept", "retried"]


def test_opening_while_another_process_writes_does_not_fail(tmp_path: Path) -> None:
    db = tmp_path / "conversations.sqlite3"
    with ConversationStore(db) as first:
        first.create_conversation()
        with closing(sqlite3.connect(db, isolation_level=None, timeout=0)) as other:
            other.execute("BEGIN IMMEDIATE")
            try:
                with ConversationStore(db) as second:
                    assert second.count_conversations() == 1
            finally:
                other.execute("ROLLBACK")
