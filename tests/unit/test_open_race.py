"""Several threads opening a brand-new documents index or conversation database at once all get a
working one (the switch to WAL on a new file answers "locked" without waiting)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from llamadesk.chat.store import ConversationStore
from llamadesk.docs import DocumentIndex


def test_first_opens_of_a_new_index_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    for trial in range(10):
        path = tmp_path / f"documents-{trial}.sqlite3"
        start = threading.Barrier(4)
        errors: list[BaseException] = []

        def open_it(
            index_path: Path = path, barrier: threading.Barrier = start, errors: list[BaseException] = errors
        ) -> None:
            barrier.wait()
            try:
                index = DocumentIndex(index_path)
                index.create("notes")
                assert [c.name for c in index.collections()] == ["notes"]
                index.close()
            except BaseException as exc:  # collected: the test names every failure
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []


def test_first_opens_of_a_new_conversation_database_at_the_same_moment_all_succeed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for trial in range(10):
        path = tmp_path / f"conversations-{trial}.sqlite3"
        start = threading.Barrier(4)
        errors: list[BaseException] = []

        def open_it(
            store_path: Path = path, barrier: threading.Barrier = start, errors: list[BaseException] = errors
        ) -> None:
            barrier.wait()
            try:
                store = ConversationStore(store_path)
                store.create_conversation(title="hello")
                store.close()
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
        check = ConversationStore(path)
        assert len(check.list_conversations()) == 4
        check.close()
    # No store mistook another one's start-up for "nobody else is here".
    assert "could not tell whether another process" not in caplog.text
