"""``LlamaEmbedder`` on the real starter model: vectors of the model's size, stored and searched."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamadesk.docs import DocsError, DocumentIndex, LlamaEmbedder


@pytest.fixture(scope="module")
def embedder(starter_model: Path) -> Iterator[LlamaEmbedder]:
    opened = LlamaEmbedder(starter_model)
    yield opened
    opened.close()


def test_vectors_are_unit_length_and_the_model_size(embedder: LlamaEmbedder) -> None:
    vectors = embedder.embed(["Cats purr when they are content.", ""])
    assert embedder.dim == 576 and embedder.name.endswith(".gguf")
    assert [len(v) for v in vectors] == [576, 576]
    assert all(math.isclose(math.sqrt(sum(x * x for x in v)), 1.0, rel_tol=1e-4) for v in vectors)
    assert vectors[0] != vectors[1]


def test_hybrid_search_with_the_real_model(embedder: LlamaEmbedder, tmp_path: Path) -> None:
    folder = tmp_path / "pets"
    folder.mkdir()
    (folder / "cats.txt").write_text("Cats purr when they are content.", encoding="utf-8")
    (folder / "ships.txt").write_text("Container ships cross the Pacific in two weeks.", encoding="utf-8")
    with DocumentIndex(tmp_path / "documents.sqlite3") as index:
        assert index.add("pets", [folder], embedder=embedder).added == 2
        hits = index.search(["pets"], "why do cats purr", embedder=embedder)
        assert hits[0].title == "cats.txt"
        assert {h.title for h in hits} == {"cats.txt", "ships.txt"}  # vectors rank every passage


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "notes.gguf"
    bogus.write_bytes(b"not a gguf file at all")
    with pytest.raises(DocsError, match=r"notes\.gguf cannot be used for embeddings"):
        LlamaEmbedder(bogus)
