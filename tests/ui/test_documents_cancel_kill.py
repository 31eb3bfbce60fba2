"""Cancel stops indexing even while one file keeps the reader busy: the indexing process is ended after
a grace period, and what it committed before stays (real child process, real SQLite)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from llamadesk.docs import DocumentIndex, IndexProgress, IndexReport
from llamadesk.ui import documents_process
from llamadesk.ui.documents_process import cancel_event, run_indexing


def test_cancel_ends_a_child_stuck_in_one_file_and_keeps_what_was_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(documents_process, "CANCEL_GRACE_S", 0.2)
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a-notes.txt").write_text("Yeast makes bread rise.\n", encoding="utf-8")
    # Markup Python's HTML parser takes seconds over (about 2 µs a character): a busy reader.
    (folder / "b-page.html").write_text("<p>" + "<" * 6_000_000 + "</p>", encoding="utf-8")
    data_dir = tmp_path / "data"
    cancel = cancel_event()
    reading_html = threading.Event()
    result: list[IndexReport] = []

    def progress(update: IndexProgress) -> None:
        if update.path.endswith("b-page.html"):
            reading_html.set()

    def index() -> None:
        result.append(run_indexing(data_dir, "notes", [folder], cancel=cancel, on_progress=progress))

    worker = threading.Thread(target=index)
    worker.start()
    assert reading_html.wait(120)
    cancel.set()
    worker.join(120)
    assert not worker.is_alive()
    assert result and result[0].cancelled
    with DocumentIndex.in_folder(data_dir) as index_file:
        indexed = {Path(f.path).name for f in index_file.files("notes") if f.status == "indexed"}
        assert indexed == {"a-notes.txt"}
        assert [p.title for p in index_file.search(["notes"], "bread")] == ["a-notes.txt"]
