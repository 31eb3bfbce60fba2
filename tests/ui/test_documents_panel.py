"""The Documents panel on a real index: create, index a real folder with progress, skipped files, cancel."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from llamadesk.docs import DocumentIndex, IndexProgress, IndexReport
from llamadesk.ui.documents_panel import DocumentsPanel

TIMEOUT = 60_000


def _folder(path: Path, *, extra: int = 0) -> Path:
    path.mkdir()
    (path / "guide.md").write_text("# Guide\n\nInstall the app, then open Documents.\n", encoding="utf-8")
    (path / "notes.txt").write_text("Chunks respect paragraphs.\n\nSearch uses BM25.\n", encoding="utf-8")
    (path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")  # not a document: skipped, with the reason
    for i in range(extra):
        (path / f"page{i:03}.txt").write_text(f"Page {i} talks about topic {i}.\n", encoding="utf-8")
    return path


@pytest.fixture
def panel(qtbot: QtBot, tmp_path: Path) -> DocumentsPanel:
    widget = DocumentsPanel(tmp_path / "data")
    (tmp_path / "data").mkdir()
    qtbot.addWidget(widget)
    yield widget
    widget.shutdown(5.0)


def _names(panel: DocumentsPanel) -> list[str]:
    tree = panel.collection_tree
    return [tree.topLevelItem(i).text(0) for i in range(tree.topLevelItemCount())]  # type: ignore[union-attr]


def test_a_collection_is_created_indexed_with_progress_and_lists_skipped_files(
    qtbot: QtBot, panel: DocumentsPanel, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "docs")
    with qtbot.waitSignal(panel.collectionsChanged, timeout=TIMEOUT) as listed:
        panel.create_collection("Manuals")
    assert listed.args == [["Manuals"]]
    assert panel.selected() == "Manuals" and panel.add_folder_button.isEnabled()

    updates: list[IndexProgress] = []
    panel.job.progress.connect(updates.append)
    with qtbot.waitSignal(panel.indexingFinished, timeout=TIMEOUT) as finished:
        assert panel.add_paths("Manuals", [folder])
        assert panel.progress.isVisibleTo(panel) and panel.cancel_button.isVisibleTo(panel)
        assert not panel.add_files_button.isEnabled()  # one indexing job at a time
    name, report = finished.args
    assert name == "Manuals" and isinstance(report, IndexReport)
    assert report.added == 2 and not report.cancelled
    assert [Path(s.path).name for s in report.skipped] == ["photo.png"]
    assert updates and updates[-1].total_files >= 2
    assert panel.progress.isHidden() and panel.cancel_button.isHidden()
    assert "2 added" in panel.status_label.text() and "1 skipped" in panel.status_label.text()

    qtbot.waitUntil(lambda: len(panel.files) == 3, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: panel.file_tree.topLevelItemCount() == 3, timeout=TIMEOUT)
    rows = {
        panel.file_tree.topLevelItem(i).text(0): panel.file_tree.topLevelItem(i)  # type: ignore[union-attr]
        for i in range(3)
    }
    assert rows["guide.md"].text(1) == "indexed" and int(rows["guide.md"].text(2)) >= 1
    assert rows["photo.png"].text(1) == "skipped" and rows["photo.png"].text(3)  # the reason is shown
    qtbot.waitUntil(lambda: bool(panel.collections) and panel.collections[0].files == 2, timeout=TIMEOUT)
    assert panel.collections[0].skipped == 1

    # A changed file is read again on Refresh; an unchanged one is not.
    (folder / "notes.txt").write_text("Chunks respect headings too.\n", encoding="utf-8")
    with qtbot.waitSignal(panel.indexingFinished, timeout=TIMEOUT) as again:
        assert panel.refresh_collection("Manuals")
    report = again.args[1]
    assert report.updated == 1 and report.unchanged == 1 and report.added == 0


def test_cancel_keeps_what_was_indexed_and_adding_again_finishes_the_rest(
    qtbot: QtBot, panel: DocumentsPanel, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "many", extra=300)
    with qtbot.waitSignal(panel.indexingFinished, timeout=TIMEOUT) as finished:
        assert panel.add_paths("Big", [folder])  # created when missing
        panel.cancel()
        assert "Cancelling" in panel.status_label.text()
    report = finished.args[1]
    assert report.cancelled and report.added < 302
    assert panel.status_label.text().startswith("Cancelled")
    with DocumentIndex.in_folder(panel.data_dir) as index:
        kept = {c.name: c.files for c in index.collections()}["Big"]
    assert kept == report.added  # what was indexed before the cancel stays

    with qtbot.waitSignal(panel.indexingFinished, timeout=TIMEOUT) as rest:
        panel.add_paths("Big", [folder])
    assert not rest.args[1].cancelled and rest.args[1].added == 302 - kept
    with qtbot.waitSignal(panel.collectionRemoved, timeout=TIMEOUT):
        panel.remove_collection("Big")
    qtbot.waitUntil(lambda: _names(panel) == [], timeout=TIMEOUT)


def test_a_bad_collection_name_is_reported_not_raised(qtbot: QtBot, panel: DocumentsPanel) -> None:
    with qtbot.waitSignal(panel.problem, timeout=TIMEOUT) as problem:
        panel.create_collection("../etc")
    assert "not a valid collection name" in problem.args[0]
    assert "not a valid collection name" in panel.status_label.text()


def test_an_indexing_process_that_dies_is_reported_and_the_index_survives(
    qtbot: QtBot, panel: DocumentsPanel, tmp_path: Path
) -> None:
    folder = _folder(tmp_path / "many", extra=2000)

    def child() -> multiprocessing.Process | None:
        return next((p for p in multiprocessing.active_children() if p.name == "llamadesk-index"), None)

    with qtbot.waitSignal(panel.job.failed, timeout=TIMEOUT) as failed:
        assert panel.add_paths("Big", [folder])
        qtbot.waitUntil(lambda: child() is not None, timeout=TIMEOUT)
        process = child()
        assert process is not None and process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
    assert failed.args[0] == "Big" and "stopped unexpectedly" in failed.args[1]
    qtbot.waitUntil(lambda: "stopped unexpectedly" in panel.status_label.text(), timeout=TIMEOUT)
    assert panel.progress.isHidden() and not panel.indexing  # a new job may start

    ends: list[tuple[str, object]] = []
    panel.indexingFinished.connect(lambda _name, report: ends.append(("finished", report)))
    panel.job.failed.connect(lambda _name, message: ends.append(("failed", message)))
    panel.add_paths("Big", [folder])  # the index opens and takes the rest
    qtbot.waitUntil(lambda: bool(ends), timeout=TIMEOUT)
    assert ends[0][0] == "finished", ends
    with DocumentIndex.in_folder(panel.data_dir) as index:
        assert {c.name: c.files for c in index.collections()}["Big"] == 2002
