"""Sidebar benchmark: the conversation list with 10,000 conversations, rows of one height vs measured rows.

Run: QT_QPA_PLATFORM=offscreen .venv/bin/python benchmarks/bench_sidebar.py [--conversations N] [--runs R]

Two sidebars on the same store, shown side by side in one run: the shipped one (every row one
title line, so Qt lays out ten thousand rows without asking each for its size) and the same list
with ``setUniformItemSizes(False)`` (Qt measures every loaded row). For each it times what a user
does: open the oldest conversation (the list loads down to it and scrolls there), refresh the whole
loaded list after a reply, and a full-text search. The ratio measured ÷ uniform says what the
uniform rows save.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtWidgets import QApplication

from llamadesk.chat.store import ConversationStore
from llamadesk.ui.sidebar import Sidebar

WORDS = (
    "model",
    "token",
    "context",
    "prompt",
    "llama",
    "memory",
    "river",
    "garden",
    "coffee",
    "planet",
    "story",
)


def build(store: ConversationStore, conversations: int, rng: random.Random) -> list[int]:
    ids = []
    for start in range(0, conversations, 1000):
        with store.batch():
            for _ in range(start, min(start + 1000, conversations)):
                conversation = store.create_conversation(model="bench.gguf")
                first = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))).capitalize()
                question = store.add_message(conversation.id, "user", first + "?", parent_id=None)
                store.add_message(
                    conversation.id,
                    "assistant",
                    "An answer about " + rng.choice(WORDS) + ".",
                    parent_id=question.id,
                )
                ids.append(conversation.id)
    return ids


def settle(app: QApplication) -> None:
    """Let the view lay out and paint what the step changed."""
    for _ in range(3):
        app.processEvents()


def timed(app: QApplication, step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    settle(app)
    return (time.perf_counter() - started) * 1000


def make_sidebar(store: ConversationStore, uniform: bool) -> Sidebar:
    sidebar = Sidebar(store)
    if not uniform:
        sidebar.model.modelAboutToBeReset.disconnect(sidebar._update_row_sizes)
        sidebar.view.setUniformItemSizes(False)
    sidebar.resize(280, 800)
    sidebar.show()
    return sidebar


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    results: dict[str, dict[bool, list[float]]] = {}

    with (
        tempfile.TemporaryDirectory(prefix="llamadesk-bench-") as folder,
        ConversationStore(Path(folder) / "conversations.sqlite3") as store,
    ):
        ids = build(store, args.conversations, random.Random(7))
        oldest, newest = ids[0], ids[-1]
        for _ in range(args.runs):
            for uniform in (True, False):  # alternating, so machine noise hits both alike
                sidebar = make_sidebar(store, uniform)
                settle(app)
                steps = {
                    "open the oldest conversation": lambda s=sidebar: s.select(oldest),
                    "refresh the whole loaded list": lambda s=sidebar: s.refresh(),
                    "back to the newest": lambda s=sidebar: s.select(newest),
                    "search 'coffee'": lambda s=sidebar: s.model.set_query("coffee"),
                }
                for name, step in steps.items():
                    results.setdefault(name, {True: [], False: []})[uniform].append(timed(app, step))
                assert sidebar.model.rowCount() > 0
                sidebar.close()
                sidebar.deleteLater()
                settle(app)

    print(f"Sidebar, {args.conversations:,} conversations, median of {args.runs} runs (ms)")
    width = max(len(name) for name in results)
    print(f"{'step':<{width}}  {'uniform rows':>12}  {'measured rows':>13}  {'measured ÷ uniform':>18}")
    for name, by_mode in results.items():
        fast, slow = statistics.median(by_mode[True]), statistics.median(by_mode[False])
        print(f"{name:<{width}}  {fast:>12.1f}  {slow:>13.1f}  {slow / max(fast, 0.01):>18.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
