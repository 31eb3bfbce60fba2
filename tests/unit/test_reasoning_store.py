"""A reasoning reply's thinking in the store: migration, streaming, export and import."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from llamadesk.chat.prompt import build_messages
from llamadesk.chat.reasoning import ReasoningSplitter
from llamadesk.chat.store import MIGRATIONS, ConversationStore, StreamingReply

REPLY = ["<th", "ink>\nThe user greets me", ".\nI should greet back.\n</thi", "nk>\n\nHello", " there!"]


def _stream(store: ConversationStore, pieces: list[str], *, flush_interval: float = 1.0) -> StreamingReply:
    conversation = store.create_conversation()
    user = store.add_message(conversation.id, "user", "Hi", parent_id=None)
    reply = store.stream_reply(
        conversation.id, parent_id=user.id, model="qwen3.gguf", flush_interval=flush_interval
    )
    splitter = ReasoningSplitter()
    for piece in pieces:
        for kind, text in splitter.feed(piece):
            (reply.append_thinking if kind == "thinking" else reply.append)(text)
    for kind, text in splitter.finish():
        (reply.append_thinking if kind == "thinking" else reply.append)(text)
    reply.set_thinking(splitter.thinking)
    return reply


def test_a_database_from_before_thinking_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for migrate in MIGRATIONS[:3]:
        migrate(conn)
    conn.execute("PRAGMA user_version = 3")
    conn.execute("INSERT INTO conversations (title, created_at, updated_at) VALUES ('Old', 1, 1)")
    conn.execute(
        "INSERT INTO messages (conversation_id, role, content, created_at) VALUES (1, 'assistant', 'kept', 1)"
    )
    conn.close()
    with ConversationStore(path) as store:
        message = store.get_message(1)
        assert (message.content, message.thinking) == ("kept", "")


def test_streamed_thinking_is_stored_apart_from_the_answer(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "c.sqlite3") as store:
        reply = _stream(store, REPLY)
        message = reply.finish("complete", {"thinking_s": 2.4})
        assert message.content == "Hello there!"
        assert message.thinking == "The user greets me.\nI should greet back."
        assert store.get_message(message.id).thinking == message.thinking
        # The next prompt holds the answer only.
        prompt = build_messages(None, store.active_path(message.conversation_id))
        assert prompt.messages[-1] == {"role": "assistant", "content": "Hello there!"}


def test_thinking_is_committed_while_streaming(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with ConversationStore(path) as store:
        reply = _stream(store, REPLY[:3], flush_interval=0)  # still thinking: a crash now keeps it
        with ConversationStore(path, recover_interrupted=False) as other:
            saved = other.get_message(reply.message_id)
        assert saved.status == "streaming" and saved.content == ""
        assert saved.thinking.startswith("The user greets me.")


def test_a_reply_that_never_closes_its_thinking(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "c.sqlite3") as store:
        message = _stream(store, ["<think>Counting", " to a million: 1, 2"]).finish("stopped")
        assert (message.thinking, message.content) == ("Counting to a million: 1, 2", "")


def test_export_and_import_round_trip(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "c.sqlite3") as store:
        message = _stream(store, REPLY).finish("complete", {"thinking_s": 2.4})
        markdown = store.export_markdown(message.conversation_id)
        assert "<details>\n<summary>Thought for 2 s</summary>\n\nThe user greets me." in markdown
        assert markdown.index("</details>") < markdown.index("Hello there!")
        exported = store.export_json(message.conversation_id)
        assert exported["messages"][-1] == {
            "role": "assistant",
            "content": "Hello there!",
            "reasoning_content": "The user greets me.\nI should greet back.",
        }
        assert exported["tree"][-1]["thinking"] == message.thinking
        assert "thinking" not in exported["tree"][0]  # the user's message has none
        text = json.dumps(exported)
        copy = store.import_json(json.loads(text))
        (_, imported) = store.active_path(copy.id)
        assert (imported.content, imported.thinking) == (message.content, message.thinking)
        assert imported.stats == {"thinking_s": 2.4}
        assert store.export_json(copy.id)["tree"] == exported["tree"]
        # A plain OpenAI messages list with reasoning_content (as reasoning APIs return it).
        linear = store.import_json(exported["messages"])
        assert store.active_path(linear.id)[-1].thinking == message.thinking


def test_a_damaged_database_keeps_the_thinking_it_can_read(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite3"
    with ConversationStore(path) as store, store.batch():
        for number in range(60):
            conversation = store.create_conversation(
                title=f"Chat {number}", system_prompt="Be helpful. " * 20
            )
            user = store.add_message(conversation.id, "user", "Hi", parent_id=None)
            reply = store.stream_reply(conversation.id, parent_id=user.id)
            reply.append_thinking(f"thought {number}")
            reply.append(f"answer {number}")
            reply.finish()
    with sqlite3.connect(path) as conn:  # one unreadable page of conversation rows
        pages = [
            row[0]
            for row in conn.execute(
                "SELECT pageno FROM dbstat WHERE name = 'conversations' AND pagetype = 'leaf' ORDER BY pageno"
            )
        ]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    start = (pages[len(pages) // 2] - 1) * size
    data[start : start + size] = b"\xff" * size
    path.write_bytes(bytes(data))
    with ConversationStore(path) as store:
        assert store.backup_path is not None and store.recovered_count == 60
        replies = [store.active_path(c.id)[-1] for c in store.list_conversations()]
        assert sorted(m.thinking for m in replies) == sorted(f"thought {n}" for n in range(60))
        assert all(m.content == m.thinking.replace("thought", "answer") for m in replies)
