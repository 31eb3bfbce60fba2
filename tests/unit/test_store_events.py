"""Store listeners: every committed change is announced once, after the commit, on the writing thread."""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from llamadesk.chat.store import ConversationStore, StoreError, StoreEvent


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "conversations.sqlite3") as opened:
        yield opened


class Recorder:
    """A listener that keeps what it heard."""

    def __init__(self) -> None:
        self.events: list[StoreEvent] = []

    def __call__(self, event: StoreEvent) -> None:
        self.events.append(event)

    def take(self) -> list[tuple[int | None, str]]:
        heard = [(event.conversation_id, event.kind) for event in self.events]
        self.events.clear()
        return heard


@pytest.fixture
def heard(store: ConversationStore) -> Recorder:
    recorder = Recorder()
    store.subscribe(recorder)
    return recorder


def test_every_kind_of_write_is_announced(store: ConversationStore, heard: Recorder) -> None:
    conversation = store.create_conversation()
    cid = conversation.id
    assert heard.take() == [(cid, "created")]
    store.rename_conversation(cid, "Named")
    store.set_pinned(cid, True)
    store.update_conversation(cid, system_prompt="Be brief.")
    assert heard.take() == [(cid, "changed")] * 3
    question = store.add_message(cid, "user", "hi", parent_id=None)
    assert heard.take() == [(cid, "changed")]
    reply = store.stream_reply(cid, parent_id=question.id, flush_interval=3600)
    assert heard.take() == [(cid, "changed")]  # the empty reply appears
    reply.append("hello")
    reply.flush()
    reply.flush()
    assert heard.take() == []  # flushes are not announced
    reply.finish()
    assert heard.take() == [(cid, "changed")]
    edited = store.edit_message(question.id, "hello?")
    store.switch_branch(question.id)
    store.delete_message(edited.id)
    assert heard.take() == [(cid, "changed")] * 3
    imported = store.import_json(store.export_json(cid))
    assert heard.take() == [(None, "all")]
    store.delete_conversation(imported.id)
    assert heard.take() == [(imported.id, "deleted")]
    store.delete_all()
    assert heard.take() == [(None, "all")]


def test_nothing_is_announced_when_nothing_changed(store: ConversationStore, heard: Recorder) -> None:
    conversation = store.create_conversation(title="Same")
    heard.take()
    store.rename_conversation(conversation.id, "Same")
    store.update_conversation(conversation.id)
    with pytest.raises(StoreError):
        store.add_message(conversation.id + 1, "user", "x", parent_id=None)
    with pytest.raises(StoreError):
        store.import_json({"messages": "not a list"})
    store.list_conversations()
    store.search("anything")
    assert heard.take() == []


def test_listeners_run_after_the_commit(store: ConversationStore) -> None:
    seen: list[int] = []

    def count_from_another_connection(event: StoreEvent) -> None:
        with closing(sqlite3.connect(store.path)) as conn:
            seen.append(conn.execute("SELECT count(*) FROM conversations").fetchone()[0])

    store.subscribe(count_from_another_connection)
    store.create_conversation()
    store.create_conversation()
    assert seen == [1, 2]


def test_a_batch_is_announced_once_when_it_commits(store: ConversationStore, heard: Recorder) -> None:
    kept = store.create_conversation()
    gone = store.create_conversation()
    heard.take()
    with store.batch():
        new = store.create_conversation()
        first = store.add_message(new.id, "user", "one", parent_id=None)
        store.add_message(new.id, "assistant", "two", parent_id=first.id)
        store.rename_conversation(kept.id, "Renamed")
        store.set_pinned(kept.id, True)
        store.delete_conversation(gone.id)
        fleeting = store.create_conversation()
        store.delete_conversation(fleeting.id)
        assert heard.take() == []
    assert heard.take() == [(new.id, "created"), (kept.id, "changed"), (gone.id, "deleted")]
    with store.batch():
        store.rename_conversation(kept.id, "Again")
        store.delete_all()
    assert heard.take() == [(None, "all")]


def test_a_rolled_back_batch_announces_nothing(store: ConversationStore, heard: Recorder) -> None:
    with pytest.raises(RuntimeError), store.batch():
        store.create_conversation()
        raise RuntimeError("cancelled")
    assert store.count_conversations() == 0
    assert heard.take() == []
    store.create_conversation()
    assert [kind for _, kind in heard.take()] == ["created"]


def test_a_failing_listener_is_logged_and_stops_nothing(
    store: ConversationStore, heard: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: StoreEvent) -> None:
        raise ValueError("listener bug")

    store.subscribe(broken)
    after = Recorder()
    store.subscribe(after)
    with caplog.at_level(logging.ERROR):
        conversation = store.create_conversation()
    assert store.get_conversation(conversation.id) == conversation  # the write stands
    assert heard.take() == after.take() == [(conversation.id, "created")]
    assert any("listener bug" in (record.exc_text or "") for record in caplog.records)


def test_unsubscribe_stops_the_events(store: ConversationStore) -> None:
    recorder = Recorder()
    unsubscribe = store.subscribe(recorder)
    store.create_conversation()
    unsubscribe()
    unsubscribe()  # twice is harmless
    store.create_conversation()
    assert len(recorder.take()) == 1


def test_listeners_run_on_the_writing_thread(store: ConversationStore) -> None:
    threads: list[int] = []
    store.subscribe(lambda event: threads.append(threading.get_ident()))
    writer_thread: list[int] = []

    def write() -> None:
        writer_thread.append(threading.get_ident())
        store.create_conversation()

    worker = threading.Thread(target=write)
    worker.start()
    worker.join()
    assert threads == writer_thread
    assert threads != [threading.get_ident()]


def test_events_are_frozen_values() -> None:
    event = StoreEvent(3, "changed")
    assert event == StoreEvent(3, "changed")
    with pytest.raises(AttributeError):
        event.kind = "deleted"  # type: ignore[misc]
