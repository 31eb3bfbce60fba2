"""Conversation store at scale: 10,000 conversations plus one of 2,000 messages, in a temp dir.

Run: PYTHONPATH=desktop .venv/bin/python benchmarks/bench_store.py [--conversations N] [--long M]
Prints the median time of each operation the sidebar, chat view and search box depend on.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
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
                for turn in range(4):
                    role = "user" if turn % 2 == 0 else "assistant"
                    store.add_message(conversation.id, role, sentence(rng, 12 if role == "user" else 60))
    long = store.create_conversation(model="bench.gguf", system_prompt="You are a benchmark.")
    with store.batch():
        for turn in range(long_messages):
            role = "user" if turn % 2 == 0 else "assistant"
            store.add_message(long.id, role, sentence(rng, 12 if role == "user" else 80))
    return long.id


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
                reply = store.stream_reply(long_id, flush_interval=0)
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

    print(
        f"Conversation store: {args.conversations:,} conversations x 4 messages"
        f" + 1 x {args.long:,} messages; built in {build_s:.1f} s, {size_mb:.1f} MB"
    )
    width = max(len(name) for name, _, _ in rows)
    print(f"{'operation':<{width}}  {'median ms':>10}  {'max ms':>8}")
    print(f"{'-' * width}  {'-' * 10}  {'-' * 8}")
    for name, median, worst in rows:
        print(f"{name:<{width}}  {median:>10.2f}  {worst:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
