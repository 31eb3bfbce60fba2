"""Conversation store at scale: 10,000 conversations plus one of 2,000 messages, in a temp dir.

Run: PYTHONPATH=desktop .venv/bin/python benchmarks/bench_store.py [--conversations N] [--long M]
Prints the median time of each operation the sidebar, chat view and search box depend on, the
time to open a store of 5,000 conversations / 200,000 messages against an empty one, and a
20,000-message import into a used database with the longest write transaction it took.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from llamadesk.chat.store import ConversationStore

VOCABULARY = (
    "model token context prompt llama quantize memory python bread river mountain garden music "
    "window kernel matrix vector network server coffee travel history science planet ocean forest "
    "engine battery signal camera pixel market budget recipe story poem letter summary question answer"
)
WORDS = VOCABULARY.split()


def sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


def build(store: ConversationStore, conversations: int, long_messages: int, rng: random.Random) -> int:
    """Fill the store; returns the id of the long conversation."""
    for start in range(0, conversations, 1000):
        with store.batch():
            for _ in range(start, min(start + 1000, conversations)):
                conversation = store.create_conversation(model="bench.gguf")
                parent: int | None = None
                for turn in range(4):
                    role = "user" if turn % 2 == 0 else "assistant"
                    text = sentence(rng, 12 if role == "user" else 60)
                    parent = store.add_message(conversation.id, role, text, parent_id=parent).id
    long = store.create_conversation(model="bench.gguf", system_prompt="You are a benchmark.")
    parent = None
    with store.batch():
        for turn in range(long_messages):
            role = "user" if turn % 2 == 0 else "assistant"
            text = sentence(rng, 12 if role == "user" else 80)
            parent = store.add_message(long.id, role, text, parent_id=parent).id
    return long.id


def build_raw(path: Path, conversations: int, messages: int, rng: random.Random) -> None:
    """A large store made fast: the store creates the schema, then plain batch inserts fill it."""
    ConversationStore(path).close()
    per_conversation = max(1, messages // conversations)
    now = time.time()
    with closing(sqlite3.connect(path)) as conn:
        conn.executemany(
            "INSERT INTO conversations (id, title, created_at, updated_at, active_leaf_id)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (number, f"Conversation {number}", now, now + number, number * per_conversation)
                for number in range(1, conversations + 1)
            ],
        )
        rows = []
        for number in range(1, conversations + 1):
            first = (number - 1) * per_conversation + 1
            for message_id in range(first, first + per_conversation):
                role = "user" if (message_id - first) % 2 == 0 else "assistant"
                parent = None if message_id == first else message_id - 1
                rows.append(
                    (message_id, number, parent, role, sentence(rng, 12 if role == "user" else 40), now)
                )
        conn.executemany(
            "INSERT INTO messages (id, conversation_id, parent_id, role, content, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.commit()


def open_times(folder: Path, conversations: int, messages: int, runs: int) -> tuple[float, float]:
    """Median ms to open (and close) an empty store and one of the given size."""
    empty, large = folder / "empty.sqlite3", folder / "large.sqlite3"
    ConversationStore(empty).close()
    build_raw(large, conversations, messages, random.Random(7))
    return (
        measure(lambda: ConversationStore(empty).close(), runs)[0],
        measure(lambda: ConversationStore(large).close(), runs)[0],
    )


def import_into_used(folder: Path, messages: int) -> tuple[float, float]:
    """Seconds to import a conversation of ``messages`` into a used database, and its longest transaction."""
    path = folder / "used.sqlite3"
    with ConversationStore(path) as store:  # a small history: closing it leaves small-table statistics
        first = store.add_message(store.create_conversation().id, "user", "hello", parent_id=None)
        store.add_message(first.conversation_id, "assistant", "hi", parent_id=first.id)
    data = {
        "messages": [{"role": ("user", "assistant")[n % 2], "content": f"turn {n}"} for n in range(messages)]
    }
    spans: list[float] = []
    began = [0.0]

    def trace(sql: str) -> None:
        if sql.startswith("BEGIN"):
            began[0] = time.perf_counter()
        elif sql == "COMMIT":
            spans.append(time.perf_counter() - began[0])

    with ConversationStore(path) as store:
        store._open_connection().set_trace_callback(trace)
        started = time.perf_counter()
        store.import_json(data)
        return time.perf_counter() - started, max(spans)


def measure(operation: Callable[[], object], runs: int) -> tuple[float, float]:
    """Median and worst time in milliseconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        operation()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--long", type=int, default=2_000, help="messages in the long conversation")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--open-conversations", type=int, default=5_000)
    parser.add_argument("--open-messages", type=int, default=200_000)
    parser.add_argument("--import-messages", type=int, default=20_000)
    args = parser.parse_args(argv)
    rng = random.Random(42)

    with tempfile.TemporaryDirectory(prefix="llamadesk-bench-") as folder:
        path = Path(folder) / "conversations.sqlite3"
        started = time.perf_counter()
        with ConversationStore(path) as store:
            long_id = build(store, args.conversations, args.long, rng)
        build_s = time.perf_counter() - started
        size_mb = path.stat().st_size / 1e6

        rows: list[tuple[str, float, float]] = []

        def reopen() -> None:
            ConversationStore(path).close()

        rows.append(("open store (quick_check + migrations)", *measure(reopen, max(3, args.runs // 4))))
        with ConversationStore(path) as store:
            long_path = store.active_path(long_id)
            assert len(long_path) == args.long
            middle = long_path[len(long_path) // 2]
            rows.append(
                (
                    "list first 100 conversations",
                    *measure(lambda: store.list_conversations(limit=100), args.runs),
                )
            )
            rows.append(("count conversations", *measure(store.count_conversations, args.runs)))
            rows.append(
                (
                    f"open: active_path of {args.long} messages",
                    *measure(lambda: store.active_path(long_id), args.runs),
                )
            )
            rows.append(
                ("search rare word (FTS, all)", *measure(lambda: store.search("quantize"), args.runs))
            )
            rows.append(
                ("search common word (matches most)", *measure(lambda: store.search("model"), args.runs))
            )
            rows.append(
                ("search two words + prefix", *measure(lambda: store.search("coffee plan"), args.runs))
            )
            rows.append(("search punctuation 'c++ \"x'", *measure(lambda: store.search('c++ "x'), args.runs)))
            rows.append(
                (
                    "search Japanese '天気' (substring scan)",
                    *measure(lambda: store.search("天気"), args.runs),
                )
            )

            def branch() -> None:
                store.add_message(long_id, "assistant", "regenerated", parent_id=middle.parent_id)
                store.switch_branch(middle.id)

            rows.append(("regenerate + switch_branch mid-way", *measure(branch, args.runs)))

            def stream() -> None:
                leaf = store.get_conversation(long_id).active_leaf_id
                reply = store.stream_reply(long_id, parent_id=leaf, flush_interval=0)
                for _ in range(10):
                    reply.append("token ")
                reply.finish("complete", {"completion_tokens": 10})

            rows.append(("stream reply: 10 commits + finish", *measure(stream, args.runs)))
            rows.append(
                ("export_json of the long conversation", *measure(lambda: store.export_json(long_id), 5))
            )
            rows.append(
                ("delete the long conversation", *measure(lambda: store.delete_conversation(long_id), 1))
            )
            rows.append((f"delete_all ({args.conversations:,}) + VACUUM", *measure(store.delete_all, 1)))
        empty_ms, large_ms = open_times(Path(folder), args.open_conversations, args.open_messages, 5)
        import_s, longest_s = import_into_used(Path(folder), args.import_messages)

    print(
        f"Conversation store: {args.conversations:,} conversations x 4 messages"
        f" + 1 x {args.long:,} messages; built in {build_s:.1f} s, {size_mb:.1f} MB"
    )
    width = max(len(name) for name, _, _ in rows)
    print(f"{'operation':<{width}}  {'median ms':>10}  {'max ms':>8}")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 8}")
    for name, median, worst in rows:
        print(f"{name:<{width}}  {median:>10.2f}  {worst:>8.2f}")
    print(
        f"open + close: empty store {empty_ms:.1f} ms, {args.open_conversations:,} conversations /"
        f" {args.open_messages:,} messages {large_ms:.1f} ms ({large_ms / empty_ms:.1f}x)"
    )
    print(
        f"import of {args.import_messages:,} messages into a used database: {import_s:.2f} s,"
        f" longest write transaction {longest_s * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
