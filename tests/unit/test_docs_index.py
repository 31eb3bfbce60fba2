"""The document index on real files and a real SQLite file: collections, search, incremental
re-indexing, vectors and fusion, the prompt block, threads, cancel and the schema version."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from test_docs_files import text_pdf, word_file

from llamadesk.docs import (
    DocsError,
    DocumentIndex,
    IndexProgress,
    Passage,
    context_block,
)
from llamadesk.docs.index import FILE_NAME


@pytest.fixture
def index(tmp_path: Path) -> Iterator[DocumentIndex]:
    with DocumentIndex(tmp_path / "documents.sqlite3") as opened:
        yield opened


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    root = tmp_path / "corpus"
    write(root / "bees.md", "# Bees\n\nHoney bees build wax combs and feed larvae with royal jelly.\n")
    write(root / "volcanoes.txt", "Magma rises through the crust and erupts as lava from a volcano.\n")
    write(
        root / "trains.html",
        "<h1>Rail</h1><p>The night train to Vienna leaves from platform nine.</p>",
    )
    (root / "orbits.pdf").write_bytes(
        text_pdf([["Kepler described planetary motion."], ["Orbits are ellipses with the sun at one focus."]])
    )
    word_file(root / "garden.docx")
    return root


def test_collections_create_remove_and_names(index: DocumentIndex, corpus: Path) -> None:
    assert index.collections() == []
    index.create("Notes")
    index.create("Notes")  # idempotent
    report = index.add("Science 2024", [corpus])
    assert report.added == 5 and not report.skipped and not report.cancelled
    names = [(c.name, c.files, c.skipped) for c in index.collections()]
    assert names == [("Notes", 0, 0), ("Science 2024", 5, 0)]
    assert index.collections()[1].chunks == sum(f.chunks for f in index.files("Science 2024"))
    for bad in ("", " lead", "a/b", "x" * 65, "tab\there", "_hidden"):
        with pytest.raises(DocsError, match="not a valid collection name"):
            index.create(bad)
    index.remove("Notes")
    with pytest.raises(DocsError, match="no document collection named 'Notes'"):
        index.remove("Notes")
    with pytest.raises(DocsError, match="no document collection"):
        index.files("Notes")
    with pytest.raises(DocsError, match="no document collection"):
        index.search(["Notes"], "bees")


def test_search_ranks_the_answering_passage_first(index: DocumentIndex, corpus: Path) -> None:
    index.add("c", [corpus])
    cases = {
        "what do bees feed their larvae?": ("bees.md", "§ Bees"),
        "Where does the night train to Vienna depart?": ("trains.html", "§ Rail"),
        "which curve has the sun at one focus": ("orbits.pdf", "page 2"),
        "how acidic should soil be for blueberries": ("garden.docx", "§ Soil > Acidity"),
        "lava eruptions": ("volcanoes.txt", ""),
    }
    for question, (name, location) in cases.items():
        best = index.search(["c"], question, k=3)[0]
        assert (best.title, best.location) == (name, location), question
        assert best.collection == "c" and Path(best.path).name == name and best.score > 0


def test_query_syntax_never_raises(index: DocumentIndex, corpus: Path) -> None:
    index.add("c", [corpus])
    for query in ['"', "bees*", "AND OR NOT", "NEAR(bees lava", "title:bees", "^bees", "(", "-", "", "   ",
                  "'; DROP TABLE chunks; --", "🐝 bees", "ümlaut", "a" * 5000, "bees:" * 100]:  # fmt: skip
        index.search(["c"], query)
    assert index.search(["c"], '"bees" AND (larvae') != []
    assert index.search(["c"], "") == []
    assert index.search([], "bees") == []


def test_incremental_reindex_counts(index: DocumentIndex, tmp_path: Path) -> None:
    folder = tmp_path / "notes"
    a = write(folder / "a.txt", "Alpha talks about apricots.")
    b = write(folder / "b.txt", "Bravo talks about bananas.")
    write(folder / "c.md", "# C\n\nCharlie talks about cherries.")
    assert index.add("n", [folder]).added == 3

    again = index.add("n", [folder])
    assert (again.added, again.updated, again.unchanged, again.removed) == (0, 0, 3, 0)

    write(a, "Alpha now talks about avocados instead.")  # new content (and size)
    stat = b.stat()
    os.utime(b, (stat.st_atime, stat.st_mtime + 100))  # touched, same content: the hash says unchanged
    write(folder / "d.txt", "Delta talks about dates.")
    (folder / "c.md").unlink()
    report = index.refresh("n")
    assert (report.added, report.updated, report.unchanged, report.removed) == (1, 1, 1, 1)
    assert [Path(f.path).name for f in index.files("n")] == ["a.txt", "b.txt", "d.txt"]
    assert index.search(["n"], "cherries") == []
    assert index.search(["n"], "apricots") == []
    assert index.search(["n"], "avocados")[0].title == "a.txt"
    assert index.files("n")[1].mtime == pytest.approx(stat.st_mtime + 100)
    assert index.refresh("n").unchanged == 3


def test_refresh_checks_single_files_and_missing_sources(index: DocumentIndex, tmp_path: Path) -> None:
    single = write(tmp_path / "single.txt", "A lone file about lighthouses.")
    index.add("s", [single, tmp_path / "not-there.txt"])
    assert index.sources("s") == [str(single)]
    single.unlink()
    report = index.refresh("s")
    assert report.removed == 1
    assert index.files("s") == [] and index.sources("s") == []


def test_passage_by_id_and_after_removal(index: DocumentIndex, corpus: Path) -> None:
    index.add("c", [corpus])
    found = index.search(["c"], "royal jelly")[0]
    again = index.passage(found.chunk_id)
    assert again is not None
    assert (again.path, again.title, again.location, again.text) == (
        found.path,
        found.title,
        found.location,
        found.text,
    )
    index.remove("c")
    assert index.passage(found.chunk_id) is None


def test_search_across_collections(index: DocumentIndex, tmp_path: Path) -> None:
    index.add("one", [write(tmp_path / "1.txt", "Owls hunt mice at night.")])
    index.add("two", [write(tmp_path / "2.txt", "Owls sleep during the day.")])
    assert {p.collection for p in index.search(["one", "two"], "owls")} == {"one", "two"}
    assert {p.collection for p in index.search(["two"], "owls")} == {"two"}


class ConceptEmbedder:
    """Words of one concept share a direction: it finds passages that share no word with the query."""

    CONCEPTS = [
        {"car", "automobile", "vehicle", "sedan"},
        {"dog", "puppy", "hound"},
        {"rain", "storm", "weather"},
    ]

    def __init__(self) -> None:
        self.name = "concepts-v1"
        self.dim = len(self.CONCEPTS) + 1
        self.calls = 0

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls += len(texts)
        vectors = []
        for text in texts:
            words = set(text.lower().replace(".", " ").replace("?", " ").split())
            vector = [float(len(words & concept)) for concept in self.CONCEPTS] + [0.01]
            vectors.append(vector)
        return vectors


def test_hybrid_search_fuses_vectors_with_words(index: DocumentIndex, tmp_path: Path) -> None:
    folder = tmp_path / "h"
    write(folder / "garage.txt", "The sedan needs new tyres before winter.")
    write(folder / "kennel.txt", "The puppy sleeps in a basket by the door.")
    write(folder / "sky.txt", "A storm is coming in from the west tonight.")
    embedder = ConceptEmbedder()
    index.add("h", [folder], embedder=embedder)
    assert index.search(["h"], "automobile maintenance") == []  # no shared word
    best = index.search(["h"], "automobile maintenance", embedder=embedder)[0]
    assert best.title == "garage.txt"
    assert index.search(["h"], "hound", embedder=embedder)[0].title == "kennel.txt"
    rows = sqlite3.connect(tmp_path / "documents.sqlite3").execute("SELECT model, length(data) FROM vectors")
    assert sorted(rows.fetchall()) == [("concepts-v1", 4 * embedder.dim)] * 3

    # A file indexed without vectors gets them on a later add with an embedder, without re-reading.
    write(folder / "later.txt", "The hound barks at the postman.")
    index.add("h", [folder])
    calls = embedder.calls
    report = index.add("h", [folder], embedder=embedder)
    assert report.unchanged == 4 and embedder.calls == calls + 1
    assert {p.title for p in index.search(["h"], "dog", k=2, embedder=embedder)} == {
        "kennel.txt",
        "later.txt",
    }


def test_context_block_numbers_sources_within_budget() -> None:
    def passage(i: int, text: str, location: str = "") -> Passage:
        return Passage(i, "c", f"/d/{i}.md", f"{i}.md", location, text, 1.0)

    def count(text: str) -> int:
        return len(text.split())

    passages = [
        passage(1, "short one", "page 3"),
        passage(2, "word " * 500),
        passage(3, "also short", "§ A > B"),
    ]
    text, used = context_block(passages, budget_tokens=80, count_tokens=count)
    assert [p.chunk_id for p in used] == [1, 3]  # the long one does not fit; the next one does
    assert "[1] 1.md — page 3\nshort one" in text
    assert "[2] 3.md — § A > B\nalso short" in text
    assert "[1]" in text.split("\n\n")[0]  # the instruction says how to cite
    assert count(text) <= 80
    assert context_block(passages, budget_tokens=5, count_tokens=count) == ("", [])
    doubled, used = context_block([passages[0], passages[0]], budget_tokens=80, count_tokens=count)
    assert len(used) == 1 and "[2]" not in doubled.split("\n\n", 1)[1]


def test_index_in_a_thread_while_searching_from_another(index: DocumentIndex, tmp_path: Path) -> None:
    folder = tmp_path / "many"
    for i in range(6):
        write(folder / f"f{i}.txt", f"File {i} mentions the keyword zebra and number {i}.")
    index.add("t", [folder / "f0.txt"])
    reached = threading.Event()
    searched = threading.Event()
    seen: list[IndexProgress] = []

    def progress(p: IndexProgress) -> None:
        seen.append(p)
        if p.done_files == 3:
            reached.set()
            assert searched.wait(30), "the search never ran"

    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(index.add("t", [folder], progress=progress)))
    worker.start()
    assert reached.wait(30)
    during = index.search(["t"], "zebra", k=10)  # while the worker is mid-way, in another thread
    searched.set()
    worker.join(30)
    assert not worker.is_alive()
    assert {p.title for p in during} == {"f0.txt", "f1.txt", "f2.txt"}
    assert len(index.search(["t"], "zebra", k=10)) == 6
    assert [(p.done_files, p.total_files) for p in seen] == [(i, 6) for i in range(7)]
    assert seen[-1].path == "" and seen[0].path.endswith("f0.txt")


def test_cancel_stops_between_files_and_keeps_what_was_done(index: DocumentIndex, tmp_path: Path) -> None:
    folder = tmp_path / "c"
    for i in range(5):
        write(folder / f"{i}.txt", f"Document number {i} about otters.")
    cancel = threading.Event()

    def progress(p: IndexProgress) -> None:
        if p.done_files == 2:
            cancel.set()

    report = index.add("c", [folder], progress=progress, cancel=cancel)
    assert report.cancelled and report.added == 3  # the file being read when Cancel came is finished
    assert len(index.files("c")) == 3
    assert index.add("c", [folder]).added == 2


def test_schema_version_and_damaged_files(tmp_path: Path) -> None:
    path = tmp_path / "data" / FILE_NAME
    index = DocumentIndex.in_folder(tmp_path / "data")
    index.close()
    with pytest.raises(DocsError, match="closed"):
        index.collections()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        conn.execute("PRAGMA user_version=99")
    conn.close()
    with pytest.raises(DocsError, match="newer LlamaDesk"):
        DocumentIndex(path)
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(DocsError, match="not a documents index"):
        DocumentIndex(junk)
    assert junk.read_bytes() == b"this is not a database at all" * 100


def test_a_folder_added_inside_another_is_walked_once(index: DocumentIndex, tmp_path: Path) -> None:
    outer = tmp_path / "outer"
    write(outer / "top.txt", "Top level notes about kayaks.")
    write(outer / "inner" / "deep.txt", "Deeper notes about canoes.")
    report = index.add("k", [outer, outer / "inner", outer / "inner" / "deep.txt"])
    assert (report.added, report.skipped) == (2, [])
    assert [f.status for f in index.files("k")] == ["indexed", "indexed"]
    assert index.refresh("k").unchanged == 2


def test_removing_the_collection_while_it_is_indexed_stops_the_indexing(
    index: DocumentIndex, tmp_path: Path
) -> None:
    folder = tmp_path / "r"
    for i in range(4):
        write(folder / f"{i}.txt", f"Note {i} about herons.")

    def progress(p: IndexProgress) -> None:
        if p.done_files == 2:
            index.remove("r")  # as the Documents panel may do from another thread

    report = index.add("r", [folder], progress=progress)
    assert report.cancelled and report.added == 2
    assert index.collections() == []
    assert index.search([], "herons") == []
