"""Bad input is skipped with a reason in the collection, and nothing else is lost: damaged and
encrypted PDFs, a file over the size cap (sparse), binary data named .txt, link loops, broken
links, pipes and unreadable files."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_docs_files import encrypted_pdf, text_pdf

from llamadesk.docs import DocumentIndex, FileInfo
from llamadesk.docs.index import MAX_FILE_BYTES


@pytest.fixture
def index(tmp_path: Path) -> Iterator[DocumentIndex]:
    with DocumentIndex(tmp_path / "documents.sqlite3") as opened:
        yield opened


def by_name(files: list[FileInfo]) -> dict[str, FileInfo]:
    return {Path(f.path).name: f for f in files}


def test_every_bad_file_is_listed_with_its_reason_and_the_good_ones_are_indexed(
    index: DocumentIndex, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.txt").write_text("Penguins huddle together to keep warm.", encoding="utf-8")
    (folder / "good.pdf").write_bytes(text_pdf([["Glaciers carve valleys slowly."]]))
    (folder / "locked.pdf").write_bytes(encrypted_pdf("hunter2"))
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 9 0 R >>\ngarbage")
    (folder / "truncated.pdf").write_bytes(text_pdf([["Cut short."]])[:60])
    (folder / "fake.txt").write_bytes(b"\x7fELF\x02\x01\x01\x00\x00\x00" + bytes(range(256)) * 4)
    (folder / "fake.docx").write_bytes(b"PK\x03\x04 not really a zip archive")
    with open(folder / "huge.txt", "wb") as handle:  # sparse: takes no disk space
        handle.truncate(MAX_FILE_BYTES + 1)
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (folder / ".secret.txt").write_text("hidden words", encoding="utf-8")
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    (folder / "self.txt").symlink_to(folder / "self.txt")
    (folder / "gone.md").symlink_to(folder / "nowhere.md")
    os.mkfifo(folder / "pipe.txt")

    report = index.add("m", [folder])
    assert report.added == 2 and not report.cancelled
    files = by_name(index.files("m"))
    reasons = {name: f.reason for name, f in files.items() if f.status == "skipped"}
    assert reasons == {
        "locked.pdf": "encrypted PDF (it needs a password)",
        "broken.pdf": reasons["broken.pdf"],
        "truncated.pdf": reasons["truncated.pdf"],
        "fake.txt": "binary data, not text (contains NUL bytes)",
        "fake.docx": reasons["fake.docx"],
        "huge.txt": f"too large ({(MAX_FILE_BYTES + 1) / 2**20:,.0f} MB; the limit is 200 MB)",
        "image.png": "unsupported format (.png)",
        ".secret.txt": "hidden",
        "loop": "symbolic link loop (a link back to a folder above it)",
        "self.txt": "symbolic link loop",
        "gone.md": "broken link (its target is missing)",
        "pipe.txt": "not a regular file (a device, pipe or socket)",
    }
    assert reasons["broken.pdf"].startswith("damaged PDF (")
    assert reasons["truncated.pdf"].startswith("damaged PDF (")
    assert reasons["fake.docx"].startswith("damaged or not a Word document (")
    assert {s.path for s in report.skipped} == {str(folder / n) for n in reasons}
    assert files["huge.txt"].size == MAX_FILE_BYTES + 1 and files["huge.txt"].chunks == 0
    assert files["good.txt"].status == "indexed" and files["good.txt"].chunks == 1
    assert index.search(["m"], "penguins")[0].title == "good.txt"
    assert index.search(["m"], "glaciers valleys")[0].location == "page 1"
    assert index.search(["m"], "hidden words") == []
    info = index.collections()[0]
    assert (info.files, info.skipped) == (2, len(reasons))
    assert index.refresh("m").unchanged == 2  # and the bad files are still listed, not lost either
    assert len(index.files("m")) == 2 + len(reasons)


def test_a_file_that_turns_bad_is_skipped_and_the_others_keep_their_passages(
    index: DocumentIndex, tmp_path: Path
) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "keep.txt").write_text("Otters hold hands while sleeping.", encoding="utf-8")
    (folder / "report.pdf").write_bytes(text_pdf([["Quarterly figures rose."]]))
    index.add("f", [folder])
    (folder / "report.pdf").write_bytes(b"%PDF-1.4 overwritten by a crashed program")
    report = index.refresh("f")
    assert [s.path for s in report.skipped] == [str(folder / "report.pdf")]
    assert index.search(["f"], "quarterly figures") == []
    assert index.search(["f"], "otters")[0].title == "keep.txt"
    (folder / "report.pdf").write_bytes(text_pdf([["Quarterly figures fell."]]))
    assert index.refresh("f").added == 1  # mended: indexed again
    assert index.search(["f"], "quarterly figures")[0].text == "Quarterly figures fell."


def _index_as_nobody(folder: Path, database: Path) -> dict[str, str]:
    """Run ``add`` in a forked child that dropped root's right to read every file."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 1
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            with DocumentIndex(database) as index:
                index.add("u", [folder])
                result = {Path(f.path).name: f.reason or f.status for f in index.files("u")}
            os.write(write, json.dumps(result).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return dict(json.loads(data))


def test_unreadable_file_and_folder_are_skipped(tmp_path: Path) -> None:
    shared = Path(tempfile.mkdtemp(prefix="docs-unreadable-"))  # reachable by an unprivileged user
    try:
        shared.chmod(0o777)
        folder = shared / "docs"
        folder.mkdir()
        (folder / "open.txt").write_text("Anyone may read about kites.", encoding="utf-8")
        closed = folder / "closed.txt"
        closed.write_text("Only the owner may read this.", encoding="utf-8")
        closed.chmod(0o000)
        private = folder / "private"
        private.mkdir()
        (private / "inside.txt").write_text("Behind a locked folder.", encoding="utf-8")
        private.chmod(0o000)
        for path in (folder, folder / "open.txt"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        if os.geteuid() == 0:  # root reads everything: drop to nobody in a child process
            result = _index_as_nobody(folder, shared / "documents.sqlite3")
        else:
            with DocumentIndex(shared / "documents.sqlite3") as index:
                index.add("u", [folder])
                result = {Path(f.path).name: f.reason or f.status for f in index.files("u")}
        assert result == {
            "open.txt": "indexed",
            "closed.txt": "not readable (permission denied)",
            "private": "folder not readable (permission denied)",
        }
    finally:
        for path in shared.rglob("*"):
            path.chmod(0o700)
        import shutil

        shutil.rmtree(shared)
