"""Search by meaning in the window: the Documents embedding model setting, resolved through the library.

Real window, real index (SQLite), real files. A setting that names no model, or a chat model, says so
clearly and documents are searched by words. The starter model (a chat model, which llama.cpp can
still embed with) stands in for an embedding model given as a file, to check the wiring: the indexing
process stores a vector per chunk and the question is embedded by the one embedder the window keeps.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtWidgets import QLineEdit
from pytestqt.qtbot import QtBot

from llamadesk.chat.store import MessageSources
from llamadesk.docs import DocsError, DocumentIndex
from llamadesk.docs.index import FILE_NAME
from llamadesk.errors import LlamaDeskError
from llamadesk.paths import get_paths
from llamadesk.settings import Settings, SettingsStore
from llamadesk.ui.documents_embedding import EmbeddingChoice
from llamadesk.ui.documents_session import BY_MEANING, BY_WORDS
from llamadesk.ui.main_window import MainWindow
from preferences_helpers import find, make_dialog

pytestmark = pytest.mark.qt_log_ignore("does not support propagateSizeHints")

MakeWindow = Callable[[], MainWindow]
TIMEOUT = 120_000


def _cookbook(folder: Path) -> Path:
    folder.mkdir()
    (folder / "bread.md").write_text(
        "# Bread\n\n## Rising\n\nBread rises because yeast ferments sugar into carbon dioxide gas.\n\n"
        "## Kneading\n\nKnead the dough for ten minutes until it is smooth and springy.\n",
        encoding="utf-8",
    )
    (folder / "soup.txt").write_text("Simmer the onion soup for forty minutes.\n", encoding="utf-8")
    return folder


def _vectors(data_dir: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(data_dir / FILE_NAME) as conn:
        rows = conn.execute("SELECT model, COUNT(*) FROM vectors GROUP BY model").fetchall()
    return [(str(model), int(count)) for model, count in rows]


def _chunks(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / FILE_NAME) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])


def _retrieve(
    qtbot: QtBot, window: MainWindow, question: str, embedding_model: Path | None = None
) -> MessageSources:
    results: list[MessageSources] = []
    errors: list[LlamaDeskError] = []
    window.documents.retrieve(
        ["Cookbook"],
        question,
        n_ctx=2048,
        reply_tokens=256,
        done=results.append,
        failed=errors.append,
        embedding_model=embedding_model,
    )
    qtbot.waitUntil(lambda: bool(results or errors), timeout=TIMEOUT)
    assert not errors
    return results[0]


def _save_setting(home: Path, value: str) -> None:
    settings = Settings()
    settings.app.documents_embedding_model = value
    SettingsStore(get_paths(home).ensure().settings_file).save(settings)


def test_a_missing_embedding_model_is_named_and_documents_are_searched_by_words(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, tmp_path: Path
) -> None:
    missing = tmp_path / "nomic-embed-text.gguf"
    _save_setting(llamadesk_home, str(missing))
    data_dir = get_paths(llamadesk_home).ensure().data_dir
    with DocumentIndex.in_folder(data_dir) as index:
        index.add("Cookbook", [_cookbook(tmp_path / "cookbook")])

    window = make_window()
    found = _retrieve(qtbot, window, "Why does bread rise?")
    assert found.sources and found.sources[0].title == "bread.md"  # by words, as before
    assert window.documents.last_search == BY_WORDS
    assert window.documents.embedder.current is None
    shown = window.banner.text()
    assert str(missing) in shown and "neither a model in the library nor a file on disk" in shown
    assert "searched by words only" in shown

    # Indexing says the same and stores no vectors.
    more = tmp_path / "more"
    more.mkdir()
    (more / "tea.md").write_text("# Tea\n\nSteep green tea for two minutes.\n", encoding="utf-8")
    with qtbot.waitSignal(window.documents.panel.problem, timeout=TIMEOUT) as problem:  # noqa: SIM117
        with qtbot.waitSignal(window.documents.panel.indexingFinished, timeout=TIMEOUT):
            assert window.documents.panel.add_paths("Cookbook", [more])
    assert "neither a model in the library nor a file on disk" in str(problem.args[0])
    assert _chunks(data_dir) > 0 and _vectors(data_dir) == []


def test_a_chat_model_is_refused_as_the_embedding_model(llamadesk_home: Path, starter_model: Path) -> None:
    paths = get_paths(llamadesk_home).ensure()
    with pytest.raises(DocsError, match="is a chat model, not an embedding model"):
        EmbeddingChoice(str(starter_model), paths).resolve()
    assert EmbeddingChoice("  ", paths).resolve() is None  # empty: words only, nothing looked up
    with pytest.raises(DocsError, match="neither a model in the library"):
        EmbeddingChoice("no-such-embedding-model", paths).resolve()


@pytest.mark.model
def test_an_embedding_model_file_gives_every_chunk_a_vector_and_embeds_the_question(
    qtbot: QtBot, make_window: MakeWindow, llamadesk_home: Path, starter_model: Path, tmp_path: Path
) -> None:
    window = make_window()
    documents = window.documents
    data_dir = window.paths.data_dir
    documents.panel.embedding = lambda: starter_model  # a model file, as the library would resolve it
    with qtbot.waitSignal(documents.panel.indexingFinished, timeout=TIMEOUT):
        assert documents.panel.add_paths("Cookbook", [_cookbook(tmp_path / "cookbook")])
    chunks = _chunks(data_dir)
    assert chunks >= 2 and _vectors(data_dir) == [(starter_model.name, chunks)]

    found = _retrieve(qtbot, window, "Why does bread rise?", embedding_model=starter_model)
    assert found.sources  # what it finds is not judged here: only that the embedder was used
    assert documents.last_search == BY_MEANING
    held = documents.embedder.current
    assert held is not None and held.path == starter_model
    _retrieve(qtbot, window, "How long is the soup simmered?", embedding_model=starter_model)
    assert documents.embedder.current is held  # one embedder while the model stays the same

    # The settings name no embedding model (this window's never did): the one held is freed at once.
    documents.settings_changed()
    qtbot.waitUntil(lambda: documents.embedder.current is None, timeout=TIMEOUT)


def test_the_setting_is_on_the_model_tab_and_applied(qtbot: QtBot) -> None:
    dialog = make_dialog(qtbot)
    edit = find(dialog, "documentsEmbeddingModelEdit")
    assert isinstance(edit, QLineEdit) and dialog.forms["model"].isAncestorOf(edit)
    assert "search by meaning" in edit.toolTip() and "Empty = words only" in edit.toolTip()
    edit.setText("nomic-embed-text-v1.5")
    with qtbot.waitSignal(dialog.settingsApplied) as applied:
        assert dialog.apply()
    assert applied.args[0].app.documents_embedding_model == "nomic-embed-text-v1.5"
