"""Text from a hostile document is shown as text: no rich text or HTML from a passage, a file name or
a heading is rendered, links in a passage open nothing, and "Open file" opens only documents."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QLabel
from pytestqt.qtbot import QtBot

from llamadesk.chat.sources import CITE_SCHEME
from llamadesk.chat.store import SourceRef
from llamadesk.docs import FileInfo
from llamadesk.ui.citations import PassageDialog, cite_number, sources_html
from llamadesk.ui.documents_panel import DocumentsPanel, plain_tip

HOSTILE = (
    '<img src="file:///etc/passwd"> <a href="file:///etc/shadow">click</a> '
    '<a href="llamadesk-cite:1">[1]</a> <table><tr><td>cell</td></tr></table> &amp; <b>bold</b>'
)


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[QUrl]:
    """Every URL handed to the system's opener (recorded, never opened)."""
    urls: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", staticmethod(lambda url: urls.append(url) or True))
    return urls


def _source(
    path: Path, *, title: str = "notes.md", location: str = "§ Intro", text: str = HOSTILE
) -> SourceRef:
    return SourceRef(1, 7, "Notes", str(path), title, location, text)


def test_passage_title_location_and_path_show_markup_as_text(qtbot: QtBot, tmp_path: Path) -> None:
    path = tmp_path / "<img src=x> & y.md"
    path.write_text("text", encoding="utf-8")
    dialog = PassageDialog(_source(path, title="<i>t</i> & co", location="§ <u>A</u> & B"))
    qtbot.addWidget(dialog)
    assert dialog.location_label.textFormat() == Qt.TextFormat.PlainText
    assert dialog.location_label.text() == "§ <u>A</u> & B"
    assert dialog.path_label.textFormat() == Qt.TextFormat.PlainText
    assert dialog.path_label.text() == str(path)
    assert dialog.title_label.text() == "<b>[1] &lt;i&gt;t&lt;/i&gt; &amp; co</b>"


def test_passage_markup_is_text_and_its_links_open_nothing(
    qtbot: QtBot, tmp_path: Path, opened: list[QUrl]
) -> None:
    dialog = PassageDialog(_source(tmp_path / "gone.md"), claim="bold cell")
    qtbot.addWidget(dialog)
    assert dialog.passage_text() == HOSTILE
    document = dialog.text.document()
    rendered = document.toHtml()
    for tag in ("<img ", "<a ", "<table", "<td", "<b>"):
        assert tag not in rendered
    assert not any(f.isImageFormat() or f.isTableFormat() for f in document.allFormats())
    assert not any(f.isCharFormat() and f.toCharFormat().isAnchor() for f in document.allFormats())
    assert not dialog.text.openExternalLinks() and not dialog.text.openLinks()
    dialog.text.anchorClicked.emit(QUrl("file:///etc/passwd"))
    assert opened == []


def test_open_file_opens_only_documents(qtbot: QtBot, tmp_path: Path, opened: list[QUrl]) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n", encoding="utf-8")
    script.chmod(0o755)
    dialog = PassageDialog(_source(script, text="a passage"))
    qtbot.addWidget(dialog)
    assert not dialog.open_button.isEnabled()
    assert dialog.open_file() is False and opened == []
    document = tmp_path / "notes.md"
    document.write_text("a passage", encoding="utf-8")
    dialog = PassageDialog(_source(document, text="a passage"))
    qtbot.addWidget(dialog)
    assert dialog.open_button.isEnabled() and dialog.open_file() is True
    assert opened == [QUrl.fromLocalFile(str(document))]


def test_cite_links_take_only_ascii_numbers() -> None:
    assert cite_number(QUrl(f"{CITE_SCHEME}:12")) == 12
    for odd in ["²", "١٢", "1e3", "-1", "12345", "", "1 2"]:
        assert cite_number(QUrl(f"{CITE_SCHEME}:{odd}")) is None
    assert cite_number(QUrl("file:///etc/passwd")) is None


def test_sources_line_escapes_titles_and_locations(qtbot: QtBot, tmp_path: Path) -> None:
    source = _source(tmp_path / "a.md", title='<a href="file:///etc">t</a>', location="<img src=x>")
    line = sources_html([source])
    label = QLabel(line)
    label.setTextFormat(Qt.TextFormat.RichText)
    qtbot.addWidget(label)
    assert line.count("<a ") == 1 and f'href="{CITE_SCHEME}:1"' in line
    assert "&lt;img src=x&gt;" in line and "&lt;a href=&quot;file:///etc&quot;&gt;" in line


def test_documents_panel_shows_names_and_reasons_as_text(qtbot: QtBot, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    panel = DocumentsPanel(tmp_path / "data")
    qtbot.addWidget(panel)
    try:
        assert panel.status_label.textFormat() == Qt.TextFormat.PlainText
        name = str(tmp_path / "<img src=x>.txt")
        reason = "unsupported format (.<b>x</b>)"
        panel._show_files([FileInfo(name, 1, 0.0, 0, "skipped", reason)])
        item = panel.file_tree.topLevelItem(0)
        assert item is not None and item.text(0) == "<img src=x>.txt"
        assert (
            item.toolTip(0)
            == plain_tip(name)
            == f"<span>{name.replace('<', '&lt;').replace('>', '&gt;')}</span>"
        )
        assert item.toolTip(3) == "<span>unsupported format (.&lt;b&gt;x&lt;/b&gt;)</span>"
    finally:
        panel.shutdown(5.0)
