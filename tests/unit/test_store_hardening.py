"""Numbers, schema versions and message links from outside the store give clear errors, never hangs."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest

from llamadesk.chat.store import ConversationStore, StoreError

HUGE = 99999999999999999999  # past SQLite's 64-bit integers: Python's sqlite3 raises OverflowError


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "conversations.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(db_path) as opened:
        yield opened


def guard(store: ConversationStore, budget: int = 500_000) -> None:
    """Make a runaway query fail (SQLite "interrupted") instead of hanging the test run."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 1 if steps[0] > budget else 0

    store._open_connection().set_progress_handler(count, 10)


# ---------------------------------------------------------------- ids, limits and offsets


def id_calls(store: ConversationStore, bad: int) -> dict[str, Callable[[], object]]:
    conversation = store.create_conversation()
    message = store.add_message(conversation.id, "user", "hi", parent_id=None)
    return {
        "get_conversation": lambda: store.get_conversation(bad),
        "conversation_position": lambda: store.conversation_position(bad),
        "rename_conversation": lambda: store.rename_conversation(bad, "x"),
        "set_pinned": lambda: store.set_pinned(bad, True),
        "update_conversation": lambda: store.update_conversation(bad, model="m"),
        "delete_conversation": lambda: store.delete_conversation(bad),
        "add_message": lambda: store.add_message(bad, "user", "x", parent_id=None),
        "add_message parent": lambda: store.add_message(conversation.id, "user", "x", parent_id=bad),
        "stream_reply": lambda: store.stream_reply(bad, parent_id=None),
        "stream_reply parent": lambda: store.stream_reply(conversation.id, parent_id=bad),
        "get_message": lambda: store.get_message(bad),
        "active_path": lambda: store.active_path(bad),
        "chat_messages": lambda: store.chat_messages(bad),
        "chat_messages up_to": lambda: store.chat_messages(conversation.id, up_to=bad),
        "siblings": lambda: store.siblings(bad),
        "switch_branch": lambda: store.switch_branch(bad),
        "edit_message": lambda: store.edit_message(bad, "x"),
        "delete_message": lambda: store.delete_message(bad),
        "export_markdown": lambda: store.export_markdown(bad),
        "export_json": lambda: store.export_json(bad),
        "existing message still there": lambda: store.get_message(message.id),
    }


@pytest.mark.parametrize("bad", [HUGE, -HUGE, -1, 0, 2**63])
def test_every_id_out_of_range_is_does_not_exist(store: ConversationStore, bad: int) -> None:
    calls = id_calls(store, bad)
    check = calls.pop("existing message still there")
    for name, call in calls.items():
        with pytest.raises(StoreError, match=f"{bad} does not exist"):
            call()
        assert name  # named for the failure report
    check()
    assert store.count_conversations() == 1


def test_limits_and_offsets_from_outside(store: ConversationStore) -> None:
    for number in range(3):
        store.create_conversation(title=f"chat {number}")
    assert len(store.list_conversations(limit=HUGE)) == 3
    assert store.list_conversations(offset=HUGE) == []
    assert store.list_conversations(limit=0) == []
    assert len(store.search("chat", limit=HUGE)) == 3
    assert store.search("chat", limit=0) == []
    with pytest.raises(StoreError, match="limit must be a whole number, 0 or more, not -1"):
        store.list_conversations(limit=-1)
    with pytest.raises(StoreError, match="offset must be a whole number, 0 or more, not -5"):
        store.list_conversations(offset=-5)
    with pytest.raises(StoreError, match="search limit must be"):
        store.search("chat", limit=-HUGE)


# ---------------------------------------------------------------- schema versions


@pytest.mark.parametrize("version", [-1, -7, 2**31 - 1])
def test_an_impossible_schema_version_is_refused_and_left_alone(db_path: Path, version: int) -> None:
    with ConversationStore(db_path) as store:
        store.create_conversation(title="kept")
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {version}")
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match=f"has schema version {version}, which no LlamaDesk writes"):
        ConversationStore(db_path)
    assert db_path.read_bytes() == before


def test_tables_that_do_not_match_the_version_are_a_clear_error(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        store.create_conversation(title="kept")
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute("PRAGMA user_version = 0")
    with pytest.raises(StoreError, match="does not match its schema version 0"):
        ConversationStore(db_path)
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("SELECT title FROM conversations").fetchall() == [("kept",)]


# ---------------------------------------------------------------- damaged message links


def chain(store: ConversationStore, *texts: str) -> list[int]:
    conversation = store.create_conversation(title="Chain")
    parent: int | None = None
    ids = []
    for index, text in enumerate(texts):
        role = "user" if index % 2 == 0 else "assistant"
        parent = store.add_message(conversation.id, role, text, parent_id=parent).id
        ids.append(parent)
    return ids


def damage(path: Path, *statements: str) -> None:
    with closing(sqlite3.connect(path)) as conn:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_parent_cycle_is_reported_and_every_walk_stops(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        healthy = chain(store, "fine", "also fine")
        one, two, three, four = chain(store, "q1", "a1", "q2", "a2")
        conversation_id = store.get_message(one).conversation_id
    damage(db_path, f"UPDATE messages SET parent_id = {four} WHERE id = {one}")
    with ConversationStore(db_path) as store:
        guard(store)
        assert store.warning is not None
        assert f"message chain of 1 conversation(s) is damaged ({conversation_id})" in store.warning
        assert [m.id for m in store.active_path(conversation_id)] == [one, two, three, four]
        assert store.chat_messages(conversation_id)[0] == {"role": "user", "content": "q1"}
        assert "q1" in store.export_markdown(conversation_id)
        exported = store.export_json(conversation_id)
        assert [node["parent"] for node in exported["tree"]] == [None, 1, 2, 3]
        copy = store.import_json(exported)  # the export of a damaged chain imports cleanly
        assert [m.content for m in store.active_path(copy.id)] == ["q1", "a1", "q2", "a2"]
        assert [m.id for m in store.siblings(one)] == [one]
        store.switch_branch(two)
        assert store.get_conversation(conversation_id).active_leaf_id == four
        added = store.add_message(conversation_id, "user", "q3", parent_id=four)
        store.add_message(conversation_id, "assistant", "a3", parent_id=added.id)
        assert store.rename_conversation(conversation_id, "").title == "q1"
        store.delete_message(two)  # the message that pointed into the deleted branch keeps its text
        assert [m.content for m in store.active_path(conversation_id)] == ["q1"]
        assert store.get_message(one).parent_id is None
        assert len(store.active_path(store.get_message(healthy[0]).conversation_id)) == 2
    with ConversationStore(db_path) as store:  # repaired by the delete: no more warning
        assert store.warning is None


@pytest.mark.parametrize(
    "link",
    [
        "UPDATE messages SET parent_id = id WHERE id = {first}",  # its own parent
        "UPDATE messages SET parent_id = {second} WHERE id = {first}",  # each the other's parent
    ],
)
def test_short_cycles_do_not_hang(db_path: Path, link: str) -> None:
    with ConversationStore(db_path) as store:
        first, second, third = chain(store, "q1", "a1", "q2")
        conversation_id = store.get_message(first).conversation_id
    damage(db_path, link.format(first=first, second=second))
    with ConversationStore(db_path) as store:
        guard(store)
        assert store.warning is not None and "damaged" in store.warning
        assert [m.id for m in store.active_path(conversation_id)] == [first, second, third]
        store.export_json(conversation_id)
        store.add_message(conversation_id, "user", "more", parent_id=first)
        store.delete_message(first)
        assert store.active_path(conversation_id) == []
        store.delete_conversation(conversation_id)
        assert store.count_conversations() == 0


def test_a_parent_in_another_conversation_is_not_followed(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        other = chain(store, "elsewhere")
        first, _ = chain(store, "q1", "a1")
        conversation_id = store.get_message(first).conversation_id
    damage(db_path, f"UPDATE messages SET parent_id = {other[0]} WHERE id = {first}")
    with ConversationStore(db_path) as store:
        assert [m.content for m in store.active_path(conversation_id)] == ["q1", "a1"]
        assert store.export_json(conversation_id)["tree"][0]["parent"] is None
        store.delete_message(other[0])  # the link into it is dropped, not a foreign-key failure
        assert [m.content for m in store.active_path(conversation_id)] == ["q1", "a1"]
        assert store.get_message(first).parent_id is None


# ---------------------------------------------------------------- imports into a used database


def vm_steps(store: ConversationStore, action: Callable[[], object]) -> int:
    """SQLite virtual-machine steps an action takes (a measure of work that does not depend on timing)."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn = store._open_connection()
    conn.set_progress_handler(count, 100)
    try:
        action()
    finally:
        conn.set_progress_handler(None, 0)
    return steps[0]


def import_costs(path: Path, data: object) -> tuple[int, int]:
    """VM steps to import ``data`` into the database at ``path``, then to load its shown branch."""
    with ConversationStore(path) as store:
        imported: list[int] = []
        steps = vm_steps(store, lambda: imported.append(store.import_json(data).id))
        return steps, vm_steps(store, lambda: store.active_path(imported[0]))


def test_importing_into_a_used_database_is_as_cheap_as_into_a_new_one(tmp_path: Path) -> None:
    long = {"messages": [{"role": ("user", "assistant")[n % 2], "content": f"turn {n}"} for n in range(1500)]}
    used_path = tmp_path / "used.sqlite3"
    with ConversationStore(used_path) as store:
        chain(store, "a first", "small", "conversation")
    with closing(
        sqlite3.connect(used_path)
    ) as conn:  # closing ran PRAGMA optimize: statistics of a tiny table
        assert conn.execute("SELECT count(*) FROM sqlite_stat1 WHERE tbl = 'messages'").fetchone()[0] > 0
    used_import, used_path_steps = import_costs(used_path, long)
    new_import, new_path_steps = import_costs(tmp_path / "new.sqlite3", long)
    assert used_import < 2 * new_import
    assert used_path_steps < 2 * new_path_steps
