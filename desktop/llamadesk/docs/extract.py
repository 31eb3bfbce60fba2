"""Read a document file into blocks of text, each with its location (page or heading path).

Supported: .txt, .md (headings), .pdf (pypdf; pages), .docx (python-docx; headings),
.html/.htm (stdlib ``html.parser``; headings). Anything a file cannot give (a binary file named
.txt, an encrypted or corrupt PDF) raises ``Unreadable`` with a reason for the collection list.
Limits keep a hostile file bounded: PDF pages and reading time, what a .docx unpacks to (zip
bombs), the size of an HTML page; NUL and lone surrogates in the text become U+FFFD.
"""

from __future__ import annotations

import io
import re
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

__all__ = ["SUPPORTED_SUFFIXES", "Block", "Document", "Unreadable", "document_text", "extract", "supported"]

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".pdf", ".docx", ".html", ".htm")
MAX_PDF_PAGES = 5000  # a longer PDF is a scan archive or a hostile file, not a document to cite
PDF_SECONDS = 120.0  # reading one PDF stops between pages after this long (a file that makes pypdf spin)
MAX_DOCX_BYTES = 256 * 1024 * 1024  # what a .docx may expand to: more is a zip bomb
MAX_HTML_CHARS = 32 * 1024 * 1024  # html.parser slows badly on huge pathological markup


class Unreadable(Exception):
    """The file's text cannot be read; ``str()`` is the reason shown to the user."""


@dataclass(frozen=True)
class Block:
    """A paragraph (or a heading's text) and where it sits: "page 3", "§ A > B" or ""."""

    text: str
    location: str
    heading: bool = False


@dataclass(frozen=True)
class Document:
    """A file's title and its blocks in reading order."""

    title: str
    blocks: list[Block]


def supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def document_text(path: Path, *, max_bytes: int) -> str:
    """The whole text of one supported file (a small file dropped into a chat goes in whole).

    Raises ``DocsError`` with the reason when the file can't be read or is over ``max_bytes``.
    """
    from .types import DocsError
    from .walk import NotRegularFile, read_regular

    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DocsError(f"{path.name} is too large to read whole ({size:,} bytes).")
        data = read_regular(str(path), max_bytes + 1)
        if len(data) > max_bytes:  # it grew since, or it is a file whose size the system doesn't know
            raise DocsError(f"{path.name} is too large to read whole (over {max_bytes:,} bytes).")
    except NotRegularFile:
        raise DocsError(
            f"Can't read {path.name}: it is not a regular file (a device, pipe or socket)."
        ) from None
    except OSError as exc:
        raise DocsError(f"Can't read {path.name}: {exc.strerror or exc}") from exc
    try:
        document = extract(path, data)
    except Unreadable as exc:
        raise DocsError(f"Can't read {path.name}: {exc}") from exc
    return "\n\n".join(block.text for block in document.blocks)


def extract(path: Path, data: bytes) -> Document:
    """The blocks of ``data`` (the bytes of ``path``), read according to the file's suffix."""
    suffix = path.suffix.lower()
    title = path.name
    if suffix == ".pdf":
        blocks = _pdf(data)
    elif suffix == ".docx":
        blocks = _docx(data)
    elif suffix in (".html", ".htm"):
        blocks = _html(_decode(data))
    elif suffix in (".md", ".markdown"):
        blocks = _markdown(_decode(data))
    elif suffix == ".txt":
        blocks = _paragraphs(_decode(data), "")
    else:
        raise Unreadable(f"unsupported format ({suffix or 'no extension'})")
    blocks = [_clean(b) for b in blocks if b.text.strip()]
    if not blocks:
        raise Unreadable("no text found (a scanned or empty document?)")
    return Document(clean_text(title), blocks)


_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` with NUL and lone surrogates (which SQLite and UTF-8 refuse) replaced by U+FFFD."""
    return _UNSTORABLE.sub("\ufffd", text)


def _clean(block: Block) -> Block:
    text, location = clean_text(block.text), clean_text(block.location)
    if text is block.text and location is block.location:
        return block
    return Block(text, location, block.heading)


# -- plain text


def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16/32 with a BOM, else Windows-1252; binary data is refused."""
    for bom, codec in _BOMS:
        if data.startswith(bom):
            try:
                data = data[len(bom) :].decode(codec, "surrogatepass").encode("utf-8", "surrogatepass")
            except UnicodeDecodeError:
                raise Unreadable(f"damaged {codec.upper()} text (it has a byte order mark)") from None
            break
    if b"\x00" in data[: 1 << 20]:
        raise Unreadable("binary data, not text (contains NUL bytes)")
    try:
        text = data.decode("utf-8-sig", "surrogatepass")
    except UnicodeDecodeError:
        try:
            text = data.decode("cp1252")
        except UnicodeDecodeError:
            raise Unreadable("not UTF-8 text and not in any encoding LlamaDesk can read") from None
    control = sum(1 for ch in text[:100_000] if ord(ch) < 32 and ch not in "\n\r\t\f")
    if control > max(8, len(text[:100_000]) // 100):
        raise Unreadable("binary data, not text (many control characters)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32-le"),
    (b"\x00\x00\xfe\xff", "utf-32-be"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)
_BLANK = re.compile(r"\n[ \t\f]*\n+")


def _paragraphs(text: str, location: str) -> list[Block]:
    return [Block(p.strip(), location) for p in _BLANK.split(text) if p.strip()]


def heading_path(stack: list[str]) -> str:
    """ "§ A > B" for the headings above a block ("" at the top of a document)."""
    names = [h for h in stack if h]
    return "§ " + " > ".join(names) if names else ""


_ATX = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


def _markdown(text: str) -> list[Block]:
    """Paragraphs under their heading path; headings inside code fences are code, not headings."""
    blocks: list[Block] = []
    stack: list[str] = []
    lines: list[str] = []
    fenced = False

    def flush() -> None:
        if lines:
            blocks.extend(_paragraphs("\n".join(lines), heading_path(stack)))
            lines.clear()

    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            lines.append(line)
            continue
        match = None if fenced else _ATX.match(line)
        if match is None:
            lines.append(line)
            continue
        flush()
        level, name = len(match.group(1)), match.group(2).strip()
        del stack[level - 1 :]
        stack.extend([""] * (level - 1 - len(stack)))
        stack.append(name)
        blocks.append(Block(name, heading_path(stack), heading=True))
    flush()
    return blocks


# -- PDF


def _pdf(data: bytes) -> list[Block]:
    """One or more blocks per page; the location is "page N" (1-based)."""
    import logging

    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns about every odd object
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except (DependencyError, NotImplementedError) as exc:
                raise Unreadable(f"encrypted PDF that cannot be opened here ({exc})") from None
            if not opened:
                raise Unreadable("encrypted PDF (it needs a password)")
        count = len(reader.pages)
        if count > MAX_PDF_PAGES:
            raise Unreadable(f"too many pages ({count:,}; the limit is {MAX_PDF_PAGES:,})")
        pages = list(reader.pages)
    except Unreadable:
        raise
    except FileNotDecryptedError:
        raise Unreadable("encrypted PDF (it needs a password)") from None
    except (PdfReadError, Exception) as exc:  # pypdf raises many types on damaged files
        raise Unreadable(f"damaged PDF ({_short(exc)})") from None
    blocks: list[Block] = []
    failed = 0
    deadline = time.monotonic() + PDF_SECONDS
    for number, page in enumerate(pages, start=1):
        if time.monotonic() > deadline:
            raise Unreadable(
                f"PDF too slow to read (over {PDF_SECONDS:.0f} s; stopped at page {number} of {len(pages)})"
            )
        try:
            text = page.extract_text() or ""
        except Exception:  # one bad page must not lose the others
            failed += 1
            continue
        blocks.extend(_paragraphs(text, f"page {number}"))
    if failed and not blocks:
        raise Unreadable(f"damaged PDF (no page could be read, {failed} failed)")
    return blocks


def _short(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."


# -- DOCX


def _docx(data: bytes) -> list[Block]:
    """Paragraphs and table rows in order, under the heading path of the "Heading N" styles."""
    _check_zip(data)
    try:
        import docx
        from docx.table import Table
        from docx.text.paragraph import Paragraph

        document = docx.Document(io.BytesIO(data))
        body = document.element.body
        children = list(body.iterchildren())
    except Exception as exc:  # python-docx raises zip, XML and key errors on damaged files
        raise Unreadable(f"damaged or not a Word document ({_short(exc)})") from None
    blocks: list[Block] = []
    stack: list[str] = []
    for child in children:
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            paragraph = Paragraph(child, document)
            text = paragraph.text.strip()
            if not text:
                continue
            level = _heading_level(paragraph)
            if level < 0:  # the document's title: above every heading, so in no heading path
                blocks.append(Block(text, "", heading=True))
            elif level:
                del stack[level - 1 :]
                stack.extend([""] * (level - 1 - len(stack)))
                stack.append(text)
                blocks.append(Block(text, heading_path(stack), heading=True))
            else:
                blocks.append(Block(text, heading_path(stack)))
        elif tag == "tbl":
            table = Table(child, document)
            for row in table.rows:
                cells = [c.text.strip() for c in row.cells]
                line = " | ".join(dict.fromkeys(c for c in cells if c))
                if line:
                    blocks.append(Block(line, heading_path(stack)))
    return blocks


def _check_zip(data: bytes) -> None:
    """Refuse what is not a zip archive, and a zip bomb (parts that expand past ``MAX_DOCX_BYTES``)."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, OSError):
        raise Unreadable("damaged or not a Word document (not a zip archive)") from None
    expanded = sum(info.file_size for info in infos)
    if expanded > MAX_DOCX_BYTES:
        raise Unreadable(
            f"Word document too large when unpacked ({expanded / 2**20:,.0f} MB; "
            f"the limit is {MAX_DOCX_BYTES >> 20} MB)"
        )


def _heading_level(paragraph: object) -> int:
    try:
        name = (paragraph.style.name or "").lower()  # type: ignore[attr-defined]
    except Exception:  # a style the document names but does not define
        return 0
    if name == "title":
        return -1
    match = re.match(r"heading (\d)", name)
    return min(int(match.group(1)), 6) if match else 0


# -- HTML

_BLOCK_TAGS = {
    "p", "div", "li", "ul", "ol", "br", "tr", "table", "pre", "blockquote", "section", "article",
    "header", "footer", "main", "nav", "aside", "dd", "dt", "dl", "figcaption", "hr", "td", "th",
}  # fmt: skip
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head"}


class _HtmlText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.stack: list[str] = []
        self.parts: list[str] = []
        self.heading = 0
        self.skipping = 0
        self.in_title = False
        self.title = ""

    def flush(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self.parts)).strip()
        self.parts.clear()
        if not text:
            return
        if self.heading:
            level = self.heading
            del self.stack[level - 1 :]
            self.stack.extend([""] * (level - 1 - len(self.stack)))
            self.stack.append(text)
            self.blocks.append(Block(text, heading_path(self.stack), heading=True))
        else:
            self.blocks.append(Block(text, heading_path(self.stack)))

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        elif tag in _SKIP_TAGS:
            self.skipping += 1
        elif re.fullmatch(r"h[1-6]", tag):
            self.flush()
            self.heading = int(tag[1])
        elif tag in _BLOCK_TAGS:
            self.flush()

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        elif tag in _SKIP_TAGS:
            self.skipping = max(0, self.skipping - 1)
        elif re.fullmatch(r"h[1-6]", tag):
            self.flush()
            self.heading = 0
        elif tag in _BLOCK_TAGS:
            self.flush()

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        elif not self.skipping:
            self.parts.append(data)


def _html(text: str) -> list[Block]:
    if len(text) > MAX_HTML_CHARS:
        raise Unreadable(f"HTML page too large ({len(text):,} characters; the limit is {MAX_HTML_CHARS:,})")
    parser = _HtmlText()
    try:
        parser.feed(text)
        parser.close()
    except Exception as exc:  # html.parser is lenient; this is a safety net for odd input
        raise Unreadable(f"HTML that cannot be read ({_short(exc)})") from None
    parser.flush()
    return parser.blocks
