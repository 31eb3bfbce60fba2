"""The conversation store on real SQLite: branches, streaming, search, export, migrations, damage."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from enum import Enum
from pathlib import Path

import pytest

from llamadesk.chat.store import (
    SCHEMA_VERSION,
    Conversation,
    ConversationStore,
    StoreError,
    fts_query,
    make_title,
)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "conversations.sqlite3"


@pytest.fixture
def store(db_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(db_path) as opened:
        yield opened


def raw(path: Path) -> closing[sqlite3.Connection]:
    """A second, independent connection: sees only what the store committed."""
    return closing(sqlite3.connect(path))


def chat(store: ConversationStore, *turns: str) -> Conversation:
    conversation = store.create_conversation(model="tiny.gguf")
    parent: int | None = None
    for index, text in enumerate(turns):
        role = "user" if index % 2 == 0 else "assistant"
        parent = store.add_message(conversation.id, role, text, parent_id=parent).id
    return store.get_conversation(conversation.id)


# ---------------------------------------------------------------- conversations


def test_database_is_wal_with_foreign_keys_and_current_schema(
    store: ConversationStore, db_path: Path
) -> None:
    assert db_path.exists()
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store._open_connection().execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.warning is None
    assert store.interrupted_count == 0


def test_create_and_get_keeps_metadata(store: ConversationStore) -> None:
    created = store.create_conversation(
        model="qwen.gguf", system_prompt="Be brief.", settings_overrides={"temperature": 0.2}
    )
    loaded = store.get_conversation(created.id)
    assert loaded == created
    assert loaded.title == "New chat"
    assert loaded.model == "qwen.gguf"
    assert loaded.system_prompt == "Be brief."
    assert loaded.settings_overrides == {"temperature": 0.2}
    assert loaded.pinned is False
    assert loaded.active_leaf_id is None
    assert loaded.created_at == loaded.updated_at


def test_title_comes_from_first_user_message(store: ConversationStore) -> None:
    conversation = store.create_conversation()
    question = store.add_message(
        conversation.id, "user", "\n  How do   I bake bread?  \nWith details please.", parent_id=None
    )
    assert store.get_conversation(conversation.id).title == "How do I bake bread?"
    answer = store.add_message(conversation.id, "assistant", "Flour, water, salt.", parent_id=question.id)
    store.add_message(conversation.id, "user", "And sourdough?", parent_id=answer.id)
    assert store.get_conversation(conversation.id).title == "How do I bake bread?"


def test_long_title_is_trimmed_at_a_word() -> None:
    title = make_title("word " * 40)
    assert len(title) <= 61
    assert title.endswith("…")
    assert "wor…" not in title
    assert make_title("   \n\n") == ""
    assert make_title("# Heading\nbody") == "Heading"
    assert make_title("> quoted text") == "quoted text"
    assert make_title("#include <stdio.h>") == "#include <stdio.h>"


def test_rename_wins_over_automatic_title_and_empty_name_restores_it(store: ConversationStore) -> None:
    conversation = store.create_conversation()
    store.rename_conversation(conversation.id, "  My   recipes ")
    store.add_message(conversation.id, "user", "How do I bake bread?", parent_id=None)
    assert store.get_conversation(conversation.id).title == "My recipes"
    restored = store.rename_conversation(conversation.id, "")
    assert restored.title == "How do I bake bread?"
    assert not restored.title_is_custom
    given = store.create_conversation(title="Named at birth")
    store.add_message(given.id, "user", "hello", parent_id=None)
    assert store.get_conversation(given.id).title == "Named at birth"


def test_list_puts_pinned_first_then_most_recent(store: ConversationStore) -> None:
    first = chat(store, "first")
    second = chat(store, "second")
    third = chat(store, "third")
    store.add_message(first.id, "assistant", "activity moves it to the top", parent_id=first.active_leaf_id)
    assert [c.id for c in store.list_conversations()] == [first.id, third.id, second.id]
    store.set_pinned(second.id, True)
    listed = store.list_conversations()
    assert [c.id for c in listed] == [second.id, first.id, third.id]
    assert listed[0].pinned
    assert [c.id for c in store.list_conversations(limit=2, offset=1)] == [first.id, third.id]
    assert store.count_conversations() == 3


def test_update_conversation_changes_only_what_is_given(store: ConversationStore) -> None:
    conversation = store.create_conversation(
        model="a.gguf", system_prompt="old", settings_overrides={"top_k": 5}
    )
    updated = store.update_conversation(conversation.id, system_prompt="new")
    assert (updated.model, updated.system_prompt, updated.settings_overrides) == (
        "a.gguf",
        "new",
        {"top_k": 5},
    )
    updated = store.update_conversation(conversation.id, model=None, settings_overrides={"seed": 3})
    assert (updated.model, updated.system_prompt, updated.settings_overrides) == (None, "new", {"seed": 3})


def test_delete_and_delete_all(store: ConversationStore, db_path: Path) -> None:
    keep = chat(store, "keep me", "ok")
    drop = chat(store, "drop me", "ok")
    store.delete_conversation(drop.id)
    assert [c.id for c in store.list_conversations()] == [keep.id]
    assert store.search("drop") == []
    with pytest.raises(StoreError, match="does not exist"):
        store.get_conversation(drop.id)
    store.delete_all()
    assert store.count_conversations() == 0
    assert store.search("keep") == []
    with raw(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_delete_all_leaves_no_deleted_text_in_the_file(store: ConversationStore, db_path: Path) -> None:
    for number in range(20):
        chat(store, f"my secret is xylophonequartz{number}", "noted xylophonequartz")
    store.delete_all()
    store.close()
    files = [db_path, *db_path.parent.glob(db_path.name + "-*")]
    assert not any(b"xylophonequartz" in f.read_bytes() for f in files if f.is_file())


def test_unknown_ids_raise_store_error(store: ConversationStore) -> None:
    conversation = chat(store, "hi")
    other = chat(store, "other")
    calls = [
        lambda: store.get_conversation(999),
        lambda: store.active_path(999),
        lambda: store.add_message(999, "user", "x", parent_id=None),
        lambda: store.rename_conversation(999, "x"),
        lambda: store.set_pinned(999, True),
        lambda: store.update_conversation(999, model="m"),
        lambda: store.delete_conversation(999),
        lambda: store.switch_branch(999),
        lambda: store.siblings(999),
        lambda: store.edit_message(999, "x"),
        lambda: store.export_json(999),
        lambda: store.export_markdown(999),
        # a parent from another conversation is refused too
        lambda: store.add_message(conversation.id, "user", "x", parent_id=other.active_leaf_id),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="does not exist"):
            call()
    assert len(store.active_path(conversation.id)) == 1


def test_closed_store_raises_store_error(db_path: Path) -> None:
    store = ConversationStore(db_path)
    store.close()
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.list_conversations()


# ---------------------------------------------------------------- branches


def test_regenerate_and_switch_branch(store: ConversationStore) -> None:
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "Tell me a joke", parent_id=None)
    first = store.add_message(conversation.id, "assistant", "Joke one", parent_id=question.id)
    follow_up = store.add_message(conversation.id, "user", "Another", parent_id=first.id)
    store.add_message(conversation.id, "assistant", "Joke one, part two", parent_id=follow_up.id)
    # regenerate the first answer: a sibling with the same parent, now shown
    second = store.add_message(conversation.id, "assistant", "Joke two", parent_id=question.id)
    third = store.add_message(conversation.id, "assistant", "Joke three", parent_id=question.id)

    path = store.active_path(conversation.id)
    assert [m.content for m in path] == ["Tell me a joke", "Joke three"]
    assert [(m.sibling_index, m.sibling_count) for m in path] == [(1, 1), (3, 3)]
    assert [m.id for m in store.siblings(first.id)] == [first.id, second.id, third.id]
    assert [m.sibling_index for m in store.siblings(first.id)] == [1, 2, 3]

    # going back to version 1 shows the conversation that continued from it
    store.switch_branch(first.id)
    path = store.active_path(conversation.id)
    assert [m.content for m in path] == ["Tell me a joke", "Joke one", "Another", "Joke one, part two"]
    assert (path[1].sibling_index, path[1].sibling_count) == (1, 3)
    assert path[2].id == follow_up.id

    store.switch_branch(second.id)
    assert [m.content for m in store.active_path(conversation.id)] == ["Tell me a joke", "Joke two"]


def test_edit_creates_a_new_user_branch(store: ConversationStore) -> None:
    conversation = store.create_conversation()
    original = store.add_message(conversation.id, "user", "What is 2+2?", parent_id=None)
    store.add_message(conversation.id, "assistant", "4", parent_id=original.id)
    edited = store.edit_message(original.id, "What is 3+3?")
    assert edited.parent_id is None
    assert edited.role == "user"
    assert (edited.sibling_index, edited.sibling_count) == (2, 2)
    assert [m.content for m in store.active_path(conversation.id)] == ["What is 3+3?"]
    # the title follows the first user message of the new branch
    assert store.get_conversation(conversation.id).title == "What is 3+3?"
    store.add_message(conversation.id, "assistant", "6", parent_id=edited.id)
    store.switch_branch(original.id)
    assert [m.content for m in store.active_path(conversation.id)] == ["What is 2+2?", "4"]


def test_edit_in_the_middle_keeps_the_earlier_turns(store: ConversationStore) -> None:
    conversation = chat(store, "q1", "a1", "q2", "a2")
    path = store.active_path(conversation.id)
    edited = store.edit_message(path[2].id, "q2 edited")
    assert [m.content for m in store.active_path(conversation.id)] == ["q1", "a1", "q2 edited"]
    assert edited.parent_id == path[1].id
    assert store.get_conversation(conversation.id).title == "q1"


def test_delete_message_removes_the_branch_and_shows_a_neighbour(store: ConversationStore) -> None:
    conversation = store.create_conversation()
    question = store.add_message(conversation.id, "user", "q", parent_id=None)
    old = store.add_message(conversation.id, "assistant", "old answer", parent_id=question.id)
    store.add_message(conversation.id, "user", "more", parent_id=old.id)
    new = store.add_message(conversation.id, "assistant", "new answer", parent_id=question.id)
    store.switch_branch(old.id)
    store.delete_message(old.id)
    assert [m.id for m in store.active_path(conversation.id)] == [question.id, new.id]
    store.delete_message(new.id)
    assert [m.id for m in store.active_path(conversation.id)] == [question.id]
    assert store.search("answer") == []


def test_deep_conversation_can_be_deleted(store: ConversationStore, db_path: Path) -> None:
    conversation = store.create_conversation()
    parent: int | None = None
    with store.batch():
        for index in range(1200):  # deeper than SQLite's trigger recursion limit (1000)
            role = "user" if index % 2 == 0 else "assistant"
            parent = store.add_message(conversation.id, role, f"turn {index}", parent_id=parent).id
    path = store.active_path(conversation.id)
    assert len(path) == 1200
    assert path[0].content == "turn 0"
    store.delete_conversation(conversation.id)
    with raw(db_path) as conn:
        assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_chat_messages_for_the_prompt(store: ConversationStore) -> None:
    conversation = store.create_conversation(system_prompt="Be brief.")
    question = store.add_message(conversation.id, "user", "hi", parent_id=None)
    store.add_message(conversation.id, "assistant", "", parent_id=question.id, status="failed")
    assert store.chat_messages(conversation.id) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi"},
    ]
    store.add_message(conversation.id, "assistant", "hello", parent_id=question.id)
    assert store.chat_messages(conversation.id, up_to=question.id)[-1] == {"role": "user", "content": "hi"}
    assert store.chat_messages(conversation.id)[-1] == {"role": "assistant", "content": "hello"}


def test_threads_can_share_the_store(store: ConversationStore) -> None:
    conversations = [store.create_conversation() for _ in range(4)]
    errors: list[BaseException] = []

    def write(conversation_id: int) -> None:
        try:
            parent: int | None = None
            for index in range(50):
                parent = store.add_message(conversation_id, "user", f"message {index}", parent_id=parent).id
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(c.id,)) for c in conversations]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert all(len(store.active_path(c.id)) == 50 for c in conversations)


# ---------------------------------------------------------------- streaming


def test_streaming_commits_on_flush_interval(store: ConversationStore, db_path: Path) -> None:
    conversation = chat(store, "Write a poem")
    reply = store.stream_reply(
        conversation.id, parent_id=conversation.active_leaf_id, model="tiny.gguf", flush_interval=3600
    )
    with raw(db_path) as conn:
        row = conn.execute(
            "SELECT content, status FROM messages WHERE id = ?", (reply.message_id,)
        ).fetchone()
    assert row == ("", "streaming")  # committed the moment it exists
    assert reply.append("Roses ") is False
    assert reply.append("are red") is False
    assert reply.content == "Roses are red"
    with raw(db_path) as conn:
        assert (
            conn.execute("SELECT content FROM messages WHERE id = ?", (reply.message_id,)).fetchone()[0] == ""
        )
    reply.flush()
    assert reply.committed_length == len("Roses are red")
    with raw(db_path) as conn:
        assert conn.execute("SELECT content FROM messages WHERE id = ?", (reply.message_id,)).fetchone()[
            0
        ] == ("Roses are red")


def test_streaming_with_zero_interval_commits_every_piece(store: ConversationStore, db_path: Path) -> None:
    conversation = chat(store, "Count")
    reply = store.stream_reply(conversation.id, parent_id=conversation.active_leaf_id, flush_interval=0)
    for piece in ("one", " two", " three"):
        assert reply.append(piece) is True
        with raw(db_path) as conn:
            stored = conn.execute(
                "SELECT content FROM messages WHERE id = ?", (reply.message_id,)
            ).fetchone()[0]
        assert stored == reply.content


class _Reason(str, Enum):
    EOS = "eos"


def test_finish_records_status_and_stats(store: ConversationStore) -> None:
    conversation = chat(store, "Hi")
    question_id = conversation.active_leaf_id
    reply = store.stream_reply(conversation.id, parent_id=question_id, model="tiny.gguf", flush_interval=3600)
    reply.append("Hello!")
    stats = {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "tokens_per_s": 41.5,
        "ttft_s": 0.08,
        "stop_reason": _Reason.EOS,
    }
    message = reply.finish("complete", stats)
    assert message.content == "Hello!"
    assert message.status == "complete"
    assert message.model == "tiny.gguf"
    assert message.stats == {**stats, "stop_reason": "eos"}
    assert store.active_path(conversation.id)[-1] == message
    with pytest.raises(StoreError, match="already finished"):
        reply.append("more")
    with pytest.raises(ValueError):
        store.stream_reply(conversation.id, parent_id=question_id).finish("streaming")


def test_stopped_and_failed_replies_keep_their_text(store: ConversationStore) -> None:
    conversation = chat(store, "Hi")
    question = store.active_path(conversation.id)[0]
    stopped = store.stream_reply(conversation.id, parent_id=question.id)
    stopped.append("Partial")
    assert stopped.finish("stopped", {"stop_reason": "user_stop"}).content == "Partial"
    with store.stream_reply(conversation.id, parent_id=question.id) as completed:
        completed.append("Half")
    assert store.get_message(completed.message_id).status == "complete"
    with pytest.raises(RuntimeError), store.stream_reply(conversation.id, parent_id=question.id) as broken:
        broken.append("Oops")
        raise RuntimeError("model crashed")
    message = store.get_message(broken.message_id)
    assert (message.status, message.content, message.stats) == ("failed", "Oops", {"error": "model crashed"})


def test_reopen_marks_streaming_replies_interrupted(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        conversation = chat(store, "Tell me a story")
        reply = store.stream_reply(
            conversation.id, parent_id=conversation.active_leaf_id, flush_interval=3600
        )
        reply.append("Once upon")
        reply.flush()
        reply.append(" a time")  # never committed
    with ConversationStore(db_path, recover_interrupted=False) as peek:
        assert peek.get_message(reply.message_id).status == "streaming"
        assert peek.interrupted_count == 0
    with ConversationStore(db_path) as store:
        assert store.interrupted_count == 1
        message = store.get_message(reply.message_id)
        assert (message.status, message.content) == ("interrupted", "Once upon")
    with ConversationStore(db_path) as store:
        assert store.interrupted_count == 0


# ---------------------------------------------------------------- search


def test_search_finds_messages_and_titles_with_snippets(store: ConversationStore) -> None:
    bread = chat(store, "How do I bake sourdough bread?", "Feed the starter the night before, then knead.")
    chat(store, "Unrelated", "Nothing to see here")
    hits = store.search("starter")
    assert [(h.conversation_id, h.title) for h in hits] == [(bread.id, "How do I bake sourdough bread?")]
    assert hits[0].message_id == store.active_path(bread.id)[1].id
    assert "[starter]" in hits[0].snippet
    title_hits = [h for h in store.search("sourdough") if h.message_id is None]
    assert [h.conversation_id for h in title_hits] == [bread.id]
    assert store.search("knea")  # the last word is a prefix
    assert store.search('"the starter"')
    assert store.search('"starter night"') == []  # quotes keep the phrase
    assert store.search("STARTER")  # case-insensitive


def test_search_follows_edits_streaming_and_renames(store: ConversationStore) -> None:
    conversation = chat(store, "hello")
    reply = store.stream_reply(conversation.id, parent_id=conversation.active_leaf_id, flush_interval=0)
    reply.append("zebra ")
    assert store.search("zebra") == []  # a reply is indexed once, when it ends, not on every flush
    reply.append("crossing")
    reply.finish()
    assert store.search("zebra")
    assert store.search("crossing")
    store.rename_conversation(conversation.id, "Animal facts")
    assert any(h.message_id is None for h in store.search("animal"))
    assert not any(h.message_id is None for h in store.search("hello"))
    with closing(sqlite3.connect(store.path)) as conn:
        conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
        conn.execute("INSERT INTO conversations_fts(conversations_fts, rank) VALUES ('integrity-check', 1)")


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '""',
        "'",
        "it's",
        'say "hi',
        "C++",
        "foo*",
        "*",
        "(",
        "a) OR (b",
        "AND",
        "NOT",
        "OR NEAR(",
        "-x",
        "x:y",
        "content: hack",
        "^start",
        "{a b}",
        "naïve café",
        "   ",
        "",
        "💥",
        "\\",
        "%_",
    ],
)
def test_search_never_raises_on_user_punctuation(store: ConversationStore, query: str) -> None:
    chat(store, "it's C++ content: a naïve café (really) \\ %_ AND NOT x:y")
    hits = store.search(query)
    assert isinstance(hits, list)


def test_fts_query_quotes_everything() -> None:
    assert fts_query("hello wor") == '"hello" "wor"*'
    assert fts_query('"exact phrase" then') == '"exact phrase" "then"*'
    assert fts_query('say "hi') == '"say" """hi"*'
    assert fts_query("?? !!") is None


# ---------------------------------------------------------------- export and import


def _without_times(data: dict[str, object]) -> dict[str, object]:
    copy = json.loads(json.dumps(data))
    copy.pop("created"), copy.pop("updated")
    for node in copy["tree"]:
        node.pop("created")
    return dict(copy)


def _branchy(store: ConversationStore) -> Conversation:
    conversation = store.create_conversation(
        model="tiny.gguf", system_prompt="You are terse.", settings_overrides={"temperature": 0.1}
    )
    question = store.add_message(conversation.id, "user", "Name a colour", parent_id=None)
    store.add_message(
        conversation.id,
        "assistant",
        "Red",
        parent_id=question.id,
        model="tiny.gguf",
        stats={"completion_tokens": 1},
    )
    reply = store.stream_reply(conversation.id, parent_id=question.id, model="tiny.gguf")
    reply.append("Blu")
    reply.finish("stopped", {"completion_tokens": 2, "stop_reason": "user_stop"})
    store.add_message(conversation.id, "user", "Why?", parent_id=reply.message_id)
    store.set_pinned(conversation.id, True)
    return store.get_conversation(conversation.id)


def test_export_json_has_openai_messages_and_the_whole_tree(store: ConversationStore) -> None:
    conversation = _branchy(store)
    data = store.export_json(conversation.id)
    json.dumps(data)  # serialisable as is
    assert data["title"] == "Name a colour"
    assert data["model"] == "tiny.gguf"
    assert data["system_prompt"] == "You are terse."
    assert data["pinned"] is True
    assert data["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name a colour"},
        {"role": "assistant", "content": "Blu"},
        {"role": "user", "content": "Why?"},
    ]
    assert [node["content"] for node in data["tree"]] == ["Name a colour", "Red", "Blu", "Why?"]
    assert [node["parent"] for node in data["tree"]] == [None, 1, 1, 3]
    assert data["active_path"] == [1, 3, 4]
    assert data["tree"][2]["status"] == "stopped"
    assert data["tree"][2]["stats"] == {"completion_tokens": 2, "stop_reason": "user_stop"}


def test_json_round_trip(store: ConversationStore) -> None:
    original = _branchy(store)
    exported = store.export_json(original.id)
    imported = store.import_json(json.loads(json.dumps(exported)))
    assert imported.id != original.id
    again = store.export_json(imported.id)
    assert _without_times(again) == _without_times(exported)
    assert imported.title == original.title
    assert not imported.title_is_custom
    assert [m.content for m in store.active_path(imported.id)] == ["Name a colour", "Blu", "Why?"]
    store.rename_conversation(original.id, "Colours")
    renamed = store.import_json(store.export_json(original.id))
    assert (renamed.title, renamed.title_is_custom) == ("Colours", True)


def test_import_plain_openai_messages(store: ConversationStore) -> None:
    conversation = store.import_json(
        {
            "messages": [
                {"role": "system", "content": "Be kind."},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}],
                },
                {"role": "assistant", "content": "Hello!"},
            ]
        }
    )
    assert conversation.system_prompt == "Be kind."
    assert conversation.title == "Hi there"
    assert [(m.role, m.content) for m in store.active_path(conversation.id)] == [
        ("user", "Hi there"),
        ("assistant", "Hello!"),
    ]


def test_import_reads_millisecond_times_and_exports_them_again(store: ConversationStore) -> None:
    imported = store.import_json(
        {"created": 1_700_000_000_000, "messages": [{"role": "user", "content": "from a web app"}]}
    )
    assert imported.created_at == 1_700_000_000
    assert store.export_json(imported.id)["created"].startswith("2023-11-14")
    assert "2023" in store.export_markdown(imported.id)


def test_import_turns_streaming_into_interrupted(store: ConversationStore) -> None:
    data = store.export_json(_branchy(store).id)
    data["tree"][2]["status"] = "streaming"
    imported = store.import_json(data)
    assert store.active_path(imported.id)[1].status == "interrupted"


@pytest.mark.parametrize(
    "data",
    [
        "just text",
        {"format": "something.else", "messages": []},
        {"messages": "nope"},
        {"messages": [{"role": "wizard", "content": "x"}]},
        {"messages": [{"role": "user", "content": 42}]},
        {"tree": [{"id": 1, "parent": 7, "role": "user", "content": "x"}]},
        {"tree": [{"id": 1, "parent": None, "role": "user", "content": "x", "status": "weird"}]},
        {"tree": [], "version": 99},
        {"messages": [], "created": "yesterday"},
        {"messages": [], "created": 1e20},
        {"messages": [], "created": -5},
        {"messages": [], "updated": "1600-01-01T00:00:00Z"},
    ],
)
def test_import_refuses_bad_data_without_writing(store: ConversationStore, data: object) -> None:
    with pytest.raises(StoreError, match="not a conversation LlamaDesk can import"):
        store.import_json(data)
    assert store.count_conversations() == 0


def test_markdown_export(store: ConversationStore) -> None:
    text = store.export_markdown(_branchy(store).id)
    assert text.startswith("# Name a colour\n")
    assert "model: tiny.gguf" in text
    assert "## System prompt\n\nYou are terse." in text
    assert "## Assistant (tiny.gguf) · version 2 of 2\n\nBlu\n\n_(stopped by the user)_" in text
    assert "## User\n\nWhy?" in text
    assert "Red" not in text


# ---------------------------------------------------------------- schema, damage, full disk

V1_SCHEMA = [
    """CREATE TABLE conversations (id INTEGER PRIMARY KEY, title TEXT NOT NULL DEFAULT '',
        title_custom INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL,
        model TEXT, system_prompt TEXT, settings_json TEXT NOT NULL DEFAULT '{}',
        pinned INTEGER NOT NULL DEFAULT 0, active_leaf_id INTEGER)""",
    """CREATE TABLE messages (id INTEGER PRIMARY KEY,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        parent_id INTEGER REFERENCES messages(id), role TEXT NOT NULL, content TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'complete', model TEXT, stats_json TEXT, created_at REAL NOT NULL)""",
    "CREATE INDEX messages_by_parent ON messages(conversation_id, parent_id)",
    "INSERT INTO conversations VALUES (1, 'Old chat', 0, 100.0, 200.0, 'old.gguf', NULL, '{}', 0, 2)",
    "INSERT INTO messages VALUES (1, 1, NULL, 'user', 'Old chat', 'complete', NULL, NULL, 100.0)",
    "INSERT INTO messages VALUES (2, 1, 1, 'assistant', 'An archived answer', 'streaming', 'old.gguf',"
    " NULL, 101.0)",
    "PRAGMA user_version = 1",
]


def test_version_1_database_is_migrated(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(db_path)) as conn:
        for statement in V1_SCHEMA:
            conn.execute(statement)
        conn.commit()
    with ConversationStore(db_path) as store:
        assert store.warning is None
        assert store.interrupted_count == 1
        assert [m.content for m in store.active_path(1)] == ["Old chat", "An archived answer"]
        assert [h.message_id for h in store.search("archived")] == [2]
        assert [h.conversation_id for h in store.search("old") if h.message_id is None] == [1]
    with raw(db_path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused_and_left_alone(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db_path.read_bytes()
    with pytest.raises(StoreError, match="newer LlamaDesk"):
        ConversationStore(db_path)
    assert db_path.read_bytes() == before


def _assert_moved_aside(store: ConversationStore, db_path: Path, original: bytes, recovered: int = 0) -> Path:
    assert store.warning is not None
    assert store.backup_path is not None
    backup = store.backup_path
    assert backup.name.startswith("conversations.sqlite3.corrupt-")
    assert backup.name in store.warning
    assert backup.read_bytes() == original
    assert store.count_conversations() == store.recovered_count == recovered
    conversation = chat(store, "a fresh start")
    assert store.active_path(conversation.id)[0].content == "a fresh start"
    return backup


def test_random_bytes_file_is_moved_aside(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    garbage = os.urandom(64 * 1024)
    db_path.write_bytes(garbage)
    wal = db_path.with_name(db_path.name + "-wal")
    wal.write_bytes(b"not a wal")
    with ConversationStore(db_path) as store:
        backup = _assert_moved_aside(store, db_path, garbage)
    assert backup.with_name(backup.name + "-wal").read_bytes() == b"not a wal"


def test_truncated_database_is_moved_aside(db_path: Path) -> None:
    with ConversationStore(db_path) as store:
        with store.batch():
            for index in range(200):
                chat(store, f"question {index} " + "lorem ipsum " * 40, "answer " * 80)
        original = {c.id: [m.content for m in store.active_path(c.id)] for c in store.list_conversations()}
    whole = db_path.read_bytes()
    truncated = whole[: len(whole) // 2]
    db_path.write_bytes(truncated)
    with ConversationStore(db_path) as store:
        # the conversations before the cut are copied into the new database, word for word
        recovered = store.recovered_count
        assert 0 < recovered < 200
        assert f"{recovered} conversations were recovered" in (store.warning or "")
        complete = 0
        for conversation in store.list_conversations():
            texts = [node["content"] for node in store.export_json(conversation.id)["tree"]]
            assert set(texts) <= set(original[conversation.id])  # the same ids, no text from elsewhere
            complete += texts == original[conversation.id]
        assert complete > 0
        _assert_moved_aside(store, db_path, truncated, recovered)
    with ConversationStore(db_path) as store:  # the new database opens cleanly
        assert store.warning is None
        assert store.count_conversations() == recovered + 1


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    folder = tmp_path / "is-a-folder"
    folder.mkdir()
    with pytest.raises(StoreError):
        ConversationStore(folder)
    assert folder.is_dir()


def test_full_disk_is_a_store_error_and_loses_nothing(store: ConversationStore) -> None:
    conversation = chat(store, "kept", "also kept")
    reply = store.stream_reply(conversation.id, parent_id=conversation.active_leaf_id, flush_interval=3600)
    conn = store._open_connection()
    # the database may not grow by a single page: SQLite reports SQLITE_FULL exactly as for a full disk
    conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0]}")
    with pytest.raises(StoreError, match=r"^the disk is full: "):
        store.add_message(conversation.id, "user", "x" * 200_000, parent_id=reply.message_id)
    reply.append("y" * 200_000)
    with pytest.raises(StoreError, match=r"^the disk is full: "):
        reply.flush()
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert [m.content for m in store.active_path(conversation.id)] == ["kept", "also kept", ""]
    reply.finish("complete")
    assert store.get_message(reply.message_id).content == "y" * 200_000
