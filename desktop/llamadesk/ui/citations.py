"""Citations in answers: the "Sources" line under a reply and the dialog that opens a cited passage.

The passage shown is the text stored with the question, the sentence the answer's claim came from
highlighted (the sentence sharing the most words with the citing sentence; the whole passage when
none does), so a citation opens even after its file
changed or was removed; "Open file" opens the file itself in the system's viewer. Text from a
document is only ever shown as text: labels are plain, the passage is escaped, links in it do nothing.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from ..chat.sources import CITE_SCHEME, cited_span
from ..chat.store import SourceRef
from ..docs.extract import supported

__all__ = ["PassageDialog", "cite_number", "sources_html"]


def cite_number(url: QUrl) -> int | None:
    """The source number a ``llamadesk-cite:N`` link names; None for any other link."""
    if url.scheme() != CITE_SCHEME:
        return None
    text = url.path().strip()
    # ASCII digits only: str.isdigit() also accepts "²" or "١", which int() refuses or reads oddly.
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else None


def sources_html(sources: Sequence[SourceRef]) -> str:
    """The "Sources" line: each numbered source as a link that opens its passage."""
    links = " · ".join(
        f'<a href="{CITE_SCHEME}:{s.number}">[{s.number}]</a> {html.escape(s.label())}' for s in sources
    )
    return f"<b>Sources</b>: {links}"


def _plain_label(text: str, parent: QWidget) -> QLabel:
    """A label that shows ``text`` as it is: never read as rich text (a file name can hold ``<b>``)."""
    label = QLabel(parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setText(text)
    return label


class PassageDialog(QDialog):
    """One cited passage: its file, page or heading, the passage text highlighted, and Open file."""

    def __init__(
        self, source: SourceRef, parent: QWidget | None = None, *, claim: str = "", dark: bool = False
    ) -> None:
        super().__init__(parent)
        self.setObjectName("passageDialog")
        self.setWindowTitle(f"Source [{source.number}] — {source.title}")
        self.source = source
        self.resize(620, 460)
        layout = QVBoxLayout(self)
        self.title_label = QLabel(f"<b>[{source.number}] {html.escape(source.title)}</b>", self)
        self.title_label.setObjectName("passageTitle")
        layout.addWidget(self.title_label)
        self.location_label = _plain_label(source.location or "whole document", self)
        self.location_label.setObjectName("passageLocation")
        layout.addWidget(self.location_label)
        exists = Path(source.path).is_file()
        where = source.path + (
            "" if exists else " — the file is no longer there; the passage is as it was cited"
        )
        self.path_label = _plain_label(where, self)
        self.path_label.setObjectName("passagePath")
        self.path_label.setWordWrap(True)
        layout.addWidget(self.path_label)
        self.text = QTextBrowser(self)
        self.text.setObjectName("passageText")
        self.text.setOpenLinks(False)
        self.text.setOpenExternalLinks(False)
        mark = "#5a4a00" if dark else "#fff3b0"
        text = source.text.strip()
        span = cited_span(text, claim) if claim else None
        start, end = span if span is not None else (0, len(text))
        self.highlighted = text[start:end]

        def part(piece: str) -> str:
            return html.escape(piece).replace("\n", "<br>")

        body = f'{part(text[:start])}<span style="background-color: {mark};">{part(text[start:end])}</span>'
        self.text.setHtml(f"<div>{body}{part(text[end:])}</div>")
        layout.addWidget(self.text, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        self.open_button = QPushButton("Open file", self)
        self.open_button.setObjectName("openSourceFile")
        self.open_button.setEnabled(exists and supported(Path(source.path)))
        self.open_button.setToolTip("Open the file in the system's viewer")
        self.open_button.clicked.connect(self.open_file)
        buttons.addButton(self.open_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def passage_text(self) -> str:
        """The passage as shown."""
        return self.text.toPlainText()

    def open_file(self) -> bool:
        """Open the source file with the system's viewer; False when it is gone or cannot be opened.

        Only a document of a kind that can be indexed is opened: a stored path that now names a
        program or a script is not handed to the system's opener."""
        path = Path(self.source.path)
        if not path.is_file() or not supported(path):
            return False
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(path)))
