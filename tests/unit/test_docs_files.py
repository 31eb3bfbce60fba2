"""Reading documents: real .txt, .md, .pdf, .docx and .html files, and cutting them into chunks.

PDFs are written here by hand (a valid file with a text content stream; pypdf cannot create
text) and read back with pypdf; Word files are written with python-docx. The helpers
``text_pdf`` and ``word_file`` are imported by the other document tests.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
from pypdf import PdfReader, PdfWriter

from llamadesk.docs.chunking import chunk_blocks, estimate_tokens
from llamadesk.docs.extract import Block, Unreadable, extract
from pdf_files import text_pdf


def encrypted_pdf(password: str) -> bytes:
    """A one-page PDF encrypted with ``password`` as the user password (RC4, no extra library)."""
    writer = PdfWriter()
    writer.append(PdfReader(io.BytesIO(text_pdf([["Secret plans for the garden."]]))))
    writer.encrypt(password, "owner-password", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def word_file(path: Path) -> Path:
    """A .docx with a title, two heading levels, paragraphs and a table."""
    import docx

    document = docx.Document()
    document.add_heading("Garden handbook", level=0)
    document.add_heading("Soil", level=1)
    document.add_paragraph("Loam holds water and air; add compost every spring.")
    document.add_heading("Acidity", level=2)
    document.add_paragraph("Blueberries want acidic soil with a pH near 5.")
    document.add_heading("Watering", level=1)
    document.add_paragraph("Water deeply once a week rather than a little every day.")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Tomato"
    table.cell(0, 1).text = "every two days in July"
    table.cell(1, 0).text = "Cactus"
    table.cell(1, 1).text = "once a month"
    document.save(str(path))
    return path


# -- extraction


def test_pdf_text_comes_back_per_page(tmp_path: Path) -> None:
    data = text_pdf([["The harbour opens at dawn."], ["Ferries leave every (half) hour."]])
    assert PdfReader(io.BytesIO(data)).pages[1].extract_text().strip() == "Ferries leave every (half) hour."
    document = extract(tmp_path / "timetable.pdf", data)
    assert document.title == "timetable.pdf"
    assert [(b.text, b.location) for b in document.blocks] == [
        ("The harbour opens at dawn.", "page 1"),
        ("Ferries leave every (half) hour.", "page 2"),
    ]


def test_pdf_with_empty_user_password_is_opened(tmp_path: Path) -> None:
    document = extract(tmp_path / "open.pdf", encrypted_pdf(""))
    assert document.blocks[0].text == "Secret plans for the garden."


def test_docx_headings_become_locations(tmp_path: Path) -> None:
    path = word_file(tmp_path / "garden.docx")
    blocks = extract(path, path.read_bytes()).blocks
    by_text = {b.text: b.location for b in blocks}
    assert by_text["Blueberries want acidic soil with a pH near 5."] == "§ Soil > Acidity"
    assert by_text["Water deeply once a week rather than a little every day."] == "§ Watering"
    assert by_text["Tomato | every two days in July"] == "§ Watering"
    assert by_text["Garden handbook"] == ""


def test_html_headings_scripts_and_entities(tmp_path: Path) -> None:
    html = """<!doctype html><html><head><title>Guide</title><style>p {color: red}</style></head>
    <body><h1>Kitchen</h1><p>Knives are sharpened on a whetstone &amp; honed on steel.</p>
    <script>var secret = "never indexed";</script>
    <h2>Bread</h2><div>Dough rises <b>twice</b>.</div><ul><li>Flour</li><li>Water</li></ul></body></html>"""
    blocks = extract(tmp_path / "guide.html", html.encode()).blocks
    texts = [(b.text, b.location) for b in blocks if not b.heading]
    assert texts == [
        ("Knives are sharpened on a whetstone & honed on steel.", "§ Kitchen"),
        ("Dough rises twice.", "§ Kitchen > Bread"),
        ("Flour", "§ Kitchen > Bread"),
        ("Water", "§ Kitchen > Bread"),
    ]
    assert [b.text for b in blocks if b.heading] == ["Kitchen", "Bread"]
    assert all("never indexed" not in b.text and "color" not in b.text for b in blocks)


def test_markdown_headings_but_not_inside_code(tmp_path: Path) -> None:
    text = (
        "# Setup\n\nInstall it.\n\n## Linux\n\nUse apt.\n\n"
        "```sh\n# not a heading\nmake\n```\n\n# Use\n\nRun it."
    )
    blocks = extract(tmp_path / "notes.md", text.encode()).blocks
    body = [(b.text, b.location) for b in blocks if not b.heading]
    assert body == [
        ("Install it.", "§ Setup"),
        ("Use apt.", "§ Setup > Linux"),
        ("```sh\n# not a heading\nmake\n```", "§ Setup > Linux"),
        ("Run it.", "§ Use"),
    ]


def test_text_encodings(tmp_path: Path) -> None:
    assert extract(tmp_path / "a.txt", "\ufeffCafé au lait".encode()).blocks[0].text == "Café au lait"
    assert extract(tmp_path / "b.txt", "Crème brûlée".encode("cp1252")).blocks[0].text == "Crème brûlée"
    with pytest.raises(Unreadable, match="NUL"):
        extract(tmp_path / "c.txt", b"ELF\x00\x01\x02binary")
    with pytest.raises(Unreadable, match="no text"):
        extract(tmp_path / "d.txt", b"  \n\n  ")
    with pytest.raises(Unreadable, match="unsupported"):
        extract(tmp_path / "e.png", b"\x89PNG")


# -- chunking


def test_chunks_respect_paragraphs_sizes_and_overlap() -> None:
    paragraphs = [f"Paragraph {i} says something about topic {i} in a few words." for i in range(40)]
    blocks = [Block(p, "§ Long") for p in paragraphs]
    chunks = chunk_blocks(blocks, size=60, overlap=20)
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.tokens <= 60 + 20
        assert chunk.location == "§ Long"
        for part in chunk.text.split("\n\n"):
            assert part in paragraphs  # never cut inside a paragraph of normal size
    for before, after in itertools.pairwise(chunks):
        assert after.text.split("\n\n")[0] == before.text.split("\n\n")[-1]  # the overlap
    assert {p for c in chunks for p in c.text.split("\n\n")} == set(paragraphs)


def test_a_heading_starts_a_new_chunk_without_overlap() -> None:
    blocks = [
        Block("Soil", "§ Soil", heading=True),
        Block("Loam is good.", "§ Soil"),
        Block("Water", "§ Water", heading=True),
        Block("Water weekly.", "§ Water"),
    ]
    chunks = chunk_blocks(blocks)
    assert [(c.text, c.location) for c in chunks] == [
        ("Soil\n\nLoam is good.", "§ Soil"),
        ("Water\n\nWater weekly.", "§ Water"),
    ]


def test_long_paragraph_is_cut_between_sentences_and_counted_with_the_given_tokenizer() -> None:
    sentence = "The quick brown fox jumps over the lazy dog."
    paragraph = " ".join([sentence] * 30)
    words = len(paragraph.split())

    def count(text: str) -> int:
        return len(text.split())

    chunks = chunk_blocks([Block(paragraph, "")], count, size=50, overlap=9)
    assert all(c.tokens <= 50 + 9 for c in chunks)
    assert all(c.text.endswith(".") for c in chunks)
    assert sum(c.tokens for c in chunks) >= words
    assert estimate_tokens("abcd" * 10) == 10


def test_document_text_of_a_whole_file(tmp_path: Path) -> None:
    from llamadesk.docs import DocsError, document_text

    path = word_file(tmp_path / "garden.docx")
    text = document_text(path, max_bytes=1 << 20)
    assert text.startswith("Garden handbook\n\nSoil\n\nLoam holds water")
    assert "Cactus | once a month" in text
    with pytest.raises(DocsError, match="too large"):
        document_text(path, max_bytes=100)
    (tmp_path / "bin.txt").write_bytes(b"\x00\x00")
    with pytest.raises(DocsError, match=r"Can't read bin\.txt: binary data"):
        document_text(tmp_path / "bin.txt", max_bytes=100)
    with pytest.raises(DocsError, match=r"Can't read missing\.md"):
        document_text(tmp_path / "missing.md", max_bytes=100)
