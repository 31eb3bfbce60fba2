"""Several threads opening a brand-new documents index or conversation database at once all get a
working one (the switch to WAL on a new file answers "locked" without waiting)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from llamadesk.chat.store import ConversationStore
from llamadesk.docs import DocumentIndex

THREADS = 4


def _open_at_once(path: Path, open_one: Callable[[Path], None]) -> list[BaseException]:
    """Run ``open_one(path)`` on several threads released at the same moment; the errors they raised."""
    start = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def run() -> None:
        start.wait()
        try:
            open_one(path)
        except BaseException as exc:  # collected: the test names every failure
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return errors


def test_first_opens_of_a_new_index_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    def open_index(path: Path) -> None:
        index = DocumentIndex(path)
        index.create("notes")
        assert [c.name for c in index.collections()] == ["notes"]
        index.close()

    for trial in range(10):
        assert _open_at_once(tmp_path / f"documents-{trial}.sqlite3", open_index) == []


def test_first_opens_of_a_new_conversation_database_at_the_same_moment_all_succeed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def open_store(path: Path) -> None:
        store = ConversationStore(path)
        store.create_conversation(title="hello")
        store.close()

    for trial in range(10):
        path = tmp_path / f"conversations-{trial}.sqlite3"
        assert _open_at_once(path, open_store) == []
        check = ConversationStore(path)
        assert len(check.list_conversations()) == 4
        check.close()
    # No store mistook another one's start-up for "nobody else is here".
    assert "could not tell whether another process" not in caplog.text
