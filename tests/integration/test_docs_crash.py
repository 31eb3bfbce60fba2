"""SIGKILL in the middle of indexing: the index reopens intact, every file is either fully indexed
or absent, search works, and indexing again finishes the rest."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

import llamadesk
from llamadesk.docs import DocumentIndex

FILES = 150

INDEXER = """
import sys
from pathlib import Path
from llamadesk.docs import DocumentIndex

index = DocumentIndex(Path(sys.argv[1]))

def progress(p):
    print("file", p.done_files, flush=True)

index.add("crash", [Path(sys.argv[2])], progress=progress)
print("finished", flush=True)
"""


def paragraphs(n: int) -> str:
    """A few kilobytes of text per file, with words unique to file ``n``."""
    return "\n\n".join(
        f"Document marker{n:04d} paragraph {p}: the quartermaster counted {n * 7 + p} barrels of rope."
        for p in range(40)
    )


def test_sigkill_while_indexing_leaves_a_consistent_index(tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(FILES):
        (folder / f"doc{n:04d}.txt").write_text(paragraphs(n), encoding="utf-8")
    database = tmp_path / "documents.sqlite3"
    script = tmp_path / "indexer.py"
    script.write_text(INDEXER, encoding="utf-8")
    source_root = str(Path(llamadesk.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")])),
    }

    with subprocess.Popen(
        [sys.executable, str(script), str(database), str(folder)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    ) as child:  # fmt: skip
        assert child.stdout is not None and child.stderr is not None
        for line in child.stdout:
            if line.strip() == "file 5":  # five files committed, the sixth being read: kill it now
                break
        else:
            child.wait()
            pytest.fail(f"the indexer ended early: {child.stderr.read()}")
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.read()
        child.stderr.read()
    assert child.returncode == -signal.SIGKILL

    with closing(sqlite3.connect(database)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")
        orphans = conn.execute(
            "SELECT COUNT(*) FROM chunks WHERE file_id NOT IN (SELECT id FROM files)"
        ).fetchone()[0]
        assert orphans == 0

    with DocumentIndex(database) as index:
        files = index.files("crash")
        assert 5 <= len(files) < FILES
        for info in files:  # every file that is there is whole: all its chunks, findable
            assert info.status == "indexed"
            n = int(Path(info.path).stem[3:])
            expected = len(expected_chunks(n))
            assert info.chunks == expected
            hits = index.search(["crash"], f"marker{n:04d}", k=50)
            assert len(hits) == expected and all(Path(h.path) == Path(info.path) for h in hits)
        report = index.add("crash", [folder])
        assert (report.added, report.unchanged) == (FILES - len(files), len(files))
        assert index.collections()[0].files == FILES


def expected_chunks(n: int) -> list[str]:
    """The chunks a file of ``paragraphs(n)`` gets (the chunker is deterministic)."""
    from llamadesk.docs.chunking import chunk_blocks
    from llamadesk.docs.extract import extract

    document = extract(Path(f"doc{n:04d}.txt"), paragraphs(n).encode())
    return [c.text for c in chunk_blocks(document.blocks)]
