"""Hostile files never crash, hang or misplace data: zip bombs, page-tree loops, odd encodings,
undecodable or odd file names, folders deeper than Python's recursion limit, a file swapped for a
pipe between the walk and the read, and text that would make chunking quadratic or unbounded."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_docs_files import text_pdf, word_file

from llamadesk.docs import DocsError, DocumentIndex, IndexProgress
from llamadesk.docs import extract as extract_module
from llamadesk.docs.chunking import CHUNK_TOKENS, chunk_blocks, estimate_tokens
from llamadesk.docs.extract import Block, Unreadable, document_text, extract
from llamadesk.docs.walk import BAD_NAME, NOT_REGULAR, walk


@pytest.fixture
def index(tmp_path: Path) -> Iterator[DocumentIndex]:
    with DocumentIndex(tmp_path / "documents.sqlite3") as opened:
        yield opened


def _docx_with_big_part(tmp_path: Path, expanded: int) -> bytes:
    """A real .docx whose document.xml is padded to ``expanded`` bytes (it compresses to little)."""
    source = io.BytesIO(word_file(tmp_path / "real.docx").read_bytes())
    out = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as bomb:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "word/document.xml":
                with bomb.open("word/document.xml", "w", force_zip64=True) as part:
                    part.write(data[: -len(b"</w:document>")])
                    padding = expanded - len(data)
                    block = b" " * (1 << 20)
                    while padding > 0:
                        part.write(block[: min(padding, len(block))])
                        padding -= len(block)
                    part.write(b"</w:document>")
            else:
                bomb.writestr(info, data)
    return out.getvalue()


def test_docx_zip_bomb_is_refused_before_it_is_unpacked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(extract_module, "MAX_DOCX_BYTES", 4 * 1024 * 1024, raising=False)
    data = _docx_with_big_part(tmp_path, 8 * 1024 * 1024)
    assert len(data) < 200_000  # tiny on disk, 8 MB unpacked
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        expanded = sum(info.file_size for info in archive.infolist())
    message = f"Word document too large when unpacked ({expanded / 2**20:,.0f} MB; the limit is 4 MB)"
    with pytest.raises(Unreadable) as error:
        extract(Path("bomb.docx"), data)
    assert str(error.value) == message


def test_docx_that_is_not_a_zip_and_deeply_nested_xml(tmp_path: Path) -> None:
    with pytest.raises(Unreadable, match=r"^damaged or not a Word document \(not a zip archive\)$"):
        extract(Path("plain.docx"), b"just some text, no archive at all")
    source = io.BytesIO(word_file(tmp_path / "real.docx").read_bytes())
    out = io.BytesIO()
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as nested:
        for info in original.infolist():
            data = original.read(info)
            if info.filename == "word/document.xml":
                data = data.replace(b"<w:body>", b"<w:body>" + b"<w:sdt>" * 100_000 + b"</w:sdt>" * 100_000)
            nested.writestr(info, data)
    with pytest.raises(Unreadable, match=r"^damaged or not a Word document \("):
        extract(Path("nested.docx"), out.getvalue())


def test_pdf_page_limits_and_page_tree_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_module, "MAX_PDF_PAGES", 2, raising=False)
    with pytest.raises(Unreadable, match=r"^too many pages \(3; the limit is 2\)$"):
        extract(Path("long.pdf"), text_pdf([["One."], ["Two."], ["Three."]]))
    loop = text_pdf([["Round and round."]]).replace(b"/Kids [4 0 R]", b"/Kids [4 0 R 2 0 R]")
    with pytest.raises(Unreadable, match=r"^damaged PDF \("):
        extract(Path("loop.pdf"), loop)


def test_a_pdf_over_its_time_budget_stops_with_a_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract_module, "PDF_SECONDS", -1.0, raising=False)  # already over budget
    with pytest.raises(Unreadable, match=r"^PDF too slow to read \(.*stopped at page 1 of 2\)$"):
        extract(Path("slow.pdf"), text_pdf([["One."], ["Two."]]))


def test_utf16_and_utf32_text_with_a_bom_is_read(index: DocumentIndex, tmp_path: Path) -> None:
    folder = tmp_path / "encodings"
    folder.mkdir()
    (folder / "utf16.txt").write_bytes("Wombats dig burrows.".encode("utf-16"))
    (folder / "utf16be.md").write_bytes(b"\xfe\xff" + "# Otters\n\nOtters hold hands.".encode("utf-16-be"))
    (folder / "utf32.txt").write_bytes("Quokkas smile.".encode("utf-32"))
    (folder / "odd.txt").write_bytes(b"\xff\xfe" + "cut".encode("utf-16-le") + b"\x41")
    report = index.add("e", [folder])
    assert report.added == 3
    assert [s.reason for s in report.skipped] == ["damaged UTF-16-LE text (it has a byte order mark)"]
    assert index.search(["e"], "wombats")[0].text == "Wombats dig burrows."
    hit = index.search(["e"], "otters")[0]
    assert (hit.location, hit.text) == ("§ Otters", "Otters\n\nOtters hold hands.")
    assert index.search(["e"], "quokkas")[0].text == "Quokkas smile."


def test_lone_surrogates_become_replacement_characters(index: DocumentIndex, tmp_path: Path) -> None:
    (tmp_path / "surrogate.txt").write_bytes(b"Half a pair \xed\xa0\x80 here.")
    (tmp_path / "surrogate16.txt").write_bytes(b"\xff\xfe" + "Lone ".encode("utf-16-le") + b"\x00\xd8")
    report = index.add("s", [tmp_path / "surrogate.txt", tmp_path / "surrogate16.txt"])
    assert report.added == 2 and not report.skipped
    assert index.search(["s"], "pair")[0].text == "Half a pair \ufffd here."
    assert index.search(["s"], "lone")[0].text == "Lone \ufffd"
    blocks = extract(Path("x.md"), "# Head\ud800\n\ntext".encode("utf-8", "surrogatepass")).blocks
    assert [(b.text, b.location) for b in blocks] == [
        ("Head\ufffd", "§ Head\ufffd"),
        ("text", "§ Head\ufffd"),
    ]


def test_undecodable_and_odd_file_names(index: DocumentIndex, tmp_path: Path) -> None:
    folder = tmp_path / "names"
    folder.mkdir()
    raw = os.fsencode(folder)
    with open(os.path.join(raw, b"caf\xe9.txt"), "wb") as handle:  # Latin-1 bytes: not UTF-8
        handle.write(b"Espresso is strong.")
    (folder / "new\nline.txt").write_text("Newlines in names are allowed.", encoding="utf-8")
    (folder / "-rf.md").write_text("A leading dash is only a name.", encoding="utf-8")
    (folder / "<img src=x>.txt").write_text("Markup in a file name.", encoding="utf-8")
    bad = os.fsdecode(os.path.join(raw, b"caf\xe9.txt"))
    report = index.add("n", [folder])
    assert report.added == 3
    assert [(s.path, s.reason) for s in report.skipped] == [(bad, BAD_NAME)]
    names = {Path(f.path).name: f.status for f in index.files("n")}
    assert names == {"-rf.md": "indexed", "<img src=x>.txt": "indexed", "new\nline.txt": "indexed"}
    again = index.add("n", [Path(bad)])  # added by itself: reported, nothing stored, nothing lost
    assert [(s.path, s.reason) for s in again.skipped] == [(bad, BAD_NAME)]
    assert index.sources("n") == [str(folder)]
    assert index.search(["n"], "newlines")[0].path == str(folder / "new\nline.txt")


def test_folders_deeper_than_the_recursion_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    depth = sys.getrecursionlimit() + 100
    top = tmp_path / "deep"
    os.mkdir(top)
    monkeypatch.chdir(top)  # short relative steps: the whole path stays under PATH_MAX
    try:
        for _ in range(depth):
            os.mkdir("d")
            os.chdir("d")
        Path("bottom.txt").write_text("At the bottom of the well.", encoding="utf-8")
        found = walk([str(top)])
        assert found.files == [str(top) + "/d" * depth + "/bottom.txt"]
    finally:  # removed here, bottom up: a recursive delete (pytest's own cleanup) would overflow too
        os.chdir(top)
        levels = 0
        while os.path.isdir("d"):
            os.chdir("d")
            levels += 1
        for name in os.listdir("."):
            os.remove(name)
        for _ in range(levels):
            os.chdir("..")
            os.rmdir("d")


def test_walk_keeps_name_order_hidden_and_loops(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "b").mkdir(parents=True)
    (root / "a.txt").write_text("a", encoding="utf-8")
    (root / "b" / "c.md").write_text("c", encoding="utf-8")
    (root / "b" / ".h.txt").write_text("h", encoding="utf-8")
    (root / "b" / "up").symlink_to(root, target_is_directory=True)
    (root / "z.txt").write_text("z", encoding="utf-8")
    found = walk([str(root)])
    assert found.files == [str(root / "a.txt"), str(root / "b" / "c.md"), str(root / "z.txt")]
    assert [(s.path, s.reason) for s in found.skipped] == [
        (str(root / "b" / ".h.txt"), "hidden"),
        (str(root / "b" / "up"), "symbolic link loop (a link back to a folder above it)"),
    ]


def test_a_file_swapped_for_a_pipe_or_device_after_the_walk_is_skipped(
    index: DocumentIndex, tmp_path: Path
) -> None:
    folder = tmp_path / "swap"
    folder.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (folder / name).write_text(f"Regular text in {name[0]} file.", encoding="utf-8")

    def swap(update: IndexProgress) -> None:  # runs just before each file is read
        if update.path.endswith("a.txt"):
            os.remove(update.path)
            os.mkfifo(update.path)  # opening it to read would wait for a writer forever
        elif update.path.endswith("b.txt"):
            os.remove(update.path)
            os.symlink("/dev/zero", update.path)  # endless zeros

    report = index.add("w", [folder], progress=swap)
    assert report.added == 1
    assert sorted((Path(s.path).name, s.reason) for s in report.skipped) == [
        ("a.txt", NOT_REGULAR),
        ("b.txt", NOT_REGULAR),
    ]
    with pytest.raises(DocsError, match=r"^Can't read a\.txt: it is not a regular file"):
        document_text(folder / "a.txt", max_bytes=1000)


def test_heading_only_files_make_bounded_chunks() -> None:
    blocks = extract(Path("toc.md"), "\n".join(f"# Heading {i}" for i in range(5000)).encode()).blocks
    chunks = chunk_blocks(blocks)
    assert len(chunks) > 1
    assert max(c.tokens for c in chunks) <= CHUNK_TOKENS
    assert "\n\n".join(c.text for c in chunks) == "\n\n".join(b.text for b in blocks)  # nothing lost


def test_text_without_spaces_makes_bounded_chunks() -> None:
    text = "x" * 1_000_000
    chunks = chunk_blocks([Block(text, "")])
    assert max(estimate_tokens(c.text) for c in chunks) <= CHUNK_TOKENS
    assert "".join(c.text for c in chunks) == text
    words = " ".join(["short"] * 50 + ["y" * 50_000] + ["short"] * 50)
    chunks = chunk_blocks([Block(words, "page 1")])
    assert max(estimate_tokens(c.text) for c in chunks) <= CHUNK_TOKENS
    assert "".join(c.text for c in chunks).count("y") == 50_000


def test_huge_html_is_refused_and_deep_nesting_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    page = ("<div>" * 50_000 + "<p>Deep inside.</p>" + "</div>" * 50_000).encode()
    assert [b.text for b in extract(Path("deep.html"), page).blocks] == ["Deep inside."]
    monkeypatch.setattr(extract_module, "MAX_HTML_CHARS", 1000, raising=False)
    with pytest.raises(Unreadable, match=r"^HTML page too large \(2,000 characters; the limit is 1,000\)$"):
        extract(Path("big.html"), b"<" * 2000)


def test_hostile_search_queries(index: DocumentIndex, tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Pelicans scoop fish. Emoji 🐧 are not words.", encoding="utf-8")
    index.add("q", [tmp_path / "a.txt"])
    hostile = [
        'pelicans" OR "x',
        "pelicans NEAR(a b) * ^ : - + AND NOT",
        "pelicans\x00",
        "\x00\x00",
        '"""',
        "!!! ??? ... ;;;",
        "🐧🐧",
        "pelicans " + "z" * 1_000_000,
        "col:pelicans",
        "",
    ]
    for query in hostile:
        hits = index.search(["q"], query)
        assert [h.title for h in hits] == (["a.txt"] if "pelicans" in query else [])
    assert len(index.search(["q"], "pelicans", k=10**30)) == 1  # more than SQLite's integers


def test_hostile_collection_names(index: DocumentIndex) -> None:
    for name in [
        "",
        " ",
        "a/b",
        "../x",
        "a\x00b",
        "tab\there",
        "line\nbreak",
        "\x1b[31mred",
        "x" * 1_000_000,
    ]:
        with pytest.raises(DocsError) as error:
            index.create(name)
        assert len(str(error.value)) < 300 and "not a valid collection name" in str(error.value)
    with pytest.raises(DocsError) as missing:
        index.search(["y" * 1_000_000], "anything")
    assert len(str(missing.value)) < 200 and str(missing.value).startswith("There is no document collection")
    assert index.collections() == []
