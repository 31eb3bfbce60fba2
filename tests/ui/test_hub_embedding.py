"""Discover models and My models mark embedding models and let the user show only one type."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from pytestqt.qtbot import QtBot

from hub_server import FakeHub, make_gguf
from llamadesk.engine.gguf_info import EMBEDDING_TIP
from llamadesk.hub import ModelLibrary
from llamadesk.paths import Paths
from llamadesk.ui.hub_browser import HubBrowser
from llamadesk.ui.hub_worker import DownloadManager
from llamadesk.ui.library_table import LibraryTableModel

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints", "does not support raise")

EMBED_REPO = "nomic-ai/nomic-embed-text-v1.5-GGUF"
CHAT_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
OTHER_EMBED_REPO = "someone/bge-small-GGUF"
TIMEOUT = 20_000


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[FakeHub]:
    tiny = make_gguf(tmp_path / "served" / "tiny.gguf", data_bytes=2048)
    with FakeHub() as server:
        server.add_repo(CHAT_REPO, downloads=900, tags=["gguf", "text-generation", "conversational"])
        server.add_repo(EMBED_REPO, downloads=500, tags=["gguf", "sentence-transformers", "nomic-bert"])
        server.add_repo(OTHER_EMBED_REPO, downloads=100, tags=["gguf", "embeddings"])
        for repo in (CHAT_REPO, EMBED_REPO, OTHER_EMBED_REPO):
            server.add_file(repo, "model-Q8_0.gguf", tiny)
        yield server


@pytest.fixture
def browser(qtbot: QtBot, hub: FakeHub, tmp_path: Path) -> Iterator[HubBrowser]:
    downloads = DownloadManager(tmp_path / "models", endpoint=hub.url)
    window = HubBrowser(downloads, token=lambda: "", endpoint=hub.url)
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.searchFinished, timeout=TIMEOUT):
        window.search()
    yield window
    window.shutdown()
    downloads.shutdown()


def type_cell(browser: HubBrowser, row: int, role: Qt.ItemDataRole = Qt.ItemDataRole.DisplayRole) -> object:
    results = browser.results
    return results.data(results.index(row, results.TYPE_COLUMN), role)


def test_embedding_repos_are_marked_with_an_explaining_tooltip(browser: HubBrowser) -> None:
    results = browser.results
    header = results.headerData(results.TYPE_COLUMN, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole)
    assert header == "Type"
    assert [r.repo_id for r in results.repos] == [CHAT_REPO, EMBED_REPO, OTHER_EMBED_REPO]
    assert [type_cell(browser, row) for row in range(3)] == ["", "Embedding", "Embedding"]
    assert type_cell(browser, 1, Qt.ItemDataRole.ToolTipRole) == EMBEDDING_TIP
    assert EMBEDDING_TIP == "Turns text into vectors for document search; not a chat model"
    assert type_cell(browser, 0, Qt.ItemDataRole.ToolTipRole) == CHAT_REPO
    assert browser.status_label.text() == "3 models"


def test_type_filter_shows_only_the_chosen_kind(qtbot: QtBot, browser: HubBrowser) -> None:
    combo = browser.type_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["All", "Chat", "Embedding"]
    combo.setCurrentIndex(combo.findData("embedding"))
    assert [r.repo_id for r in browser.results.repos] == [EMBED_REPO, OTHER_EMBED_REPO]
    assert browser.status_label.text() == "2 of 3 models are embedding models"
    # Selecting a filtered row opens that repository, and its header carries the mark.
    with qtbot.waitSignal(browser.filesLoaded, timeout=TIMEOUT) as loaded:
        browser.results_view.selectRow(1)
    assert loaded.args == [OTHER_EMBED_REPO]
    assert "Embedding" in browser.repo_label.text() and EMBEDDING_TIP in browser.repo_label.text()

    combo.setCurrentIndex(combo.findData("chat"))
    assert [r.repo_id for r in browser.results.repos] == [CHAT_REPO]
    assert browser.status_label.text() == "1 of 3 models are chat models"
    # A new search keeps the chosen type.
    with qtbot.waitSignal(browser.searchFinished, timeout=TIMEOUT) as searched:
        browser.search()
    assert searched.args == [1] and [r.repo_id for r in browser.results.repos] == [CHAT_REPO]
    combo.setCurrentIndex(combo.findData("all"))
    assert browser.results.rowCount() == 3 and browser.status_label.text() == "3 models"


def test_load_more_keeps_the_filter(qtbot: QtBot, hub: FakeHub, tmp_path: Path) -> None:
    hub.page_size = 1
    downloads = DownloadManager(tmp_path / "models", endpoint=hub.url)
    browser = HubBrowser(downloads, token=lambda: "", endpoint=hub.url)
    qtbot.addWidget(browser)
    try:
        browser.type_combo.setCurrentIndex(browser.type_combo.findData("embedding"))
        with qtbot.waitSignal(browser.searchFinished, timeout=TIMEOUT) as first:
            browser.search()
        assert first.args == [0] and browser.load_more_button.isEnabled()
        assert browser.status_label.text() == "0 of 1 models are embedding models — more available"
        for expected in ([EMBED_REPO], [EMBED_REPO, OTHER_EMBED_REPO]):
            with qtbot.waitSignal(browser.searchFinished, timeout=TIMEOUT):
                browser.load_more_button.click()
            assert [r.repo_id for r in browser.results.repos] == expected
        assert not browser.load_more_button.isEnabled()
    finally:
        browser.shutdown()
        downloads.shutdown()


def test_my_models_marks_embedding_models(paths: Paths, tmp_path: Path, qtbot: QtBot) -> None:
    library = ModelLibrary(paths, hf_cache_dir=tmp_path / "no-hf-cache")
    embedder = library.import_model(make_gguf(tmp_path / "embed.gguf", arch="bert", data_bytes=1024))
    table = LibraryTableModel()
    table.set_models(library.list())
    column = table.TYPE_COLUMN
    assert table.headerData(column, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole) == "Type"
    embed_row, starter_row = table.row_of(embedder.key), table.row_of("starter")
    assert table.data(table.index(embed_row, column)) == "Embedding"
    assert table.data(table.index(embed_row, column), Qt.ItemDataRole.ToolTipRole) == EMBEDDING_TIP
    assert table.data(table.index(starter_row, column)) == "Chat"
    assert table.data(table.index(starter_row, 6)) == "Ready"
