"""Answers with sources, Qt-free: retrieval into numbered context, citation links, attachments."""

from __future__ import annotations

from pathlib import Path

import pytest

from llamadesk.chat.sources import (
    CITE_SCHEME,
    attachment_text,
    chat_collection_name,
    cited_claim,
    cited_numbers,
    cited_span,
    context_budget,
    estimate_tokens,
    inline_limit,
    link_citations,
    retrieve_sources,
    search_collections,
    sources_lines,
)
from llamadesk.docs import DocsError, DocumentIndex


def _words(text: str) -> int:
    return len(text.split())


def _corpus(folder: Path) -> Path:
    folder.mkdir()
    (folder / "volcanoes.md").write_text(
        "# Volcanoes\n\nA volcano erupts when magma rises through the crust.\n\n"
        "## Lava\n\nBasaltic lava flows are hot and runny; they cool into black rock.\n",
        encoding="utf-8",
    )
    (folder / "bread.txt").write_text(
        "Bread rises because yeast ferments sugar into carbon dioxide.\n\nKnead the dough for ten minutes.\n",
        encoding="utf-8",
    )
    return folder


def test_retrieval_numbers_the_passages_that_fit_and_the_context_names_them(tmp_path: Path) -> None:
    folder = _corpus(tmp_path / "docs")
    with DocumentIndex.in_folder(tmp_path) as index:
        index.add("notes", [folder])
        found = retrieve_sources(
            index, ["notes"], "why does bread rise with yeast", budget_tokens=400, count_tokens=_words
        )
        assert found.sources, "the bread passage matches"
        first = found.sources[0]
        assert first.number == 1 and first.title == "bread.txt" and "yeast ferments" in first.text
        assert first.path == str(folder / "bread.txt") and first.collection == "notes"
        assert [s.number for s in found.sources] == list(range(1, len(found.sources) + 1))
        assert "[1] bread.txt" in found.context and "yeast ferments" in found.context
        assert _words(found.context) <= 400

        nothing = retrieve_sources(
            index, ["notes"], "quantum chromodynamics", budget_tokens=400, count_tokens=_words
        )
        assert nothing.context == "" and nothing.sources == ()
        too_small = retrieve_sources(index, ["notes"], "bread yeast", budget_tokens=5, count_tokens=_words)
        assert too_small.sources == ()


def test_budgets_follow_the_context() -> None:
    assert context_budget(4096, 512) == (4096 - 512) // 4
    assert context_budget(512, 256) == 128  # never below a usable minimum
    assert context_budget(131072, 2048) == 3000  # nor more than a few passages need
    assert inline_limit(8192) == 2048
    assert estimate_tokens("abcdef") == 3


def test_citations_become_links_outside_code_only() -> None:
    text = (
        "Magma rises [1]. Bread [2, 3] and [7].\n`a[1]` code\n```\nx = y[1]\n```\n"
        "[see](https://example.org) [1](x)"
    )
    linked = link_citations(text, [1, 2, 3])
    assert f"\\[[1]({CITE_SCHEME}:1)\\]" in linked
    assert f"\\[[2]({CITE_SCHEME}:2), [3]({CITE_SCHEME}:3)\\]" in linked
    assert "[7]." in linked  # no source 7: stays text
    assert "`a[1]`" in linked and "x = y[1]" in linked and "[1](x)" in linked
    assert link_citations("no sources [1]", []) == "no sources [1]"
    assert cited_numbers(text) == [1, 2, 3, 7]


def test_a_small_text_file_goes_in_whole_and_others_do_not(tmp_path: Path) -> None:
    small = tmp_path / "todo.md"
    small.write_text("- buy milk\n- call Ana\n", encoding="utf-8")
    block = attachment_text(small, 100, _words)
    assert block == "todo.md:\n```\n- buy milk\n- call Ana\n```"
    big = tmp_path / "big.txt"
    big.write_text("word " * 500, encoding="utf-8")
    assert attachment_text(big, 100, _words) is None  # over the limit: indexed instead
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\x00\x00\xff\xfe")
    assert attachment_text(binary, 100, _words) is None
    pdf = tmp_path / "paper.pdf"
    pdf.write_bytes(b"%PDF-1.4 tiny")
    assert attachment_text(pdf, 100, _words) is None
    assert attachment_text(tmp_path / "missing.txt", 100, _words) is None
    fenced = tmp_path / "readme.md"
    fenced.write_text("```py\nprint(1)\n```\n", encoding="utf-8")
    assert (attachment_text(fenced, 100, _words) or "").startswith("readme.md:\n````\n")


def test_a_chat_collection_name_is_one_the_index_accepts(tmp_path: Path) -> None:
    name = chat_collection_name("What: is <this>? a/very/long title indeed, more words here", stamp=0)
    assert len(name) <= 64
    with DocumentIndex.in_folder(tmp_path) as index:
        index.create(name)
        index.create(chat_collection_name("", stamp=0))
        assert name in [c.name for c in index.collections()]


def test_the_cited_sentence_is_found_in_the_passage() -> None:
    answer = "Bread rises because of yeast [1]. Knead it well [2, 1].\n```\nx[3]\n```"
    assert cited_claim(answer, 1) == "Bread rises because of yeast [1]."
    assert cited_claim(answer, 2) == "Knead it well [2, 1]."
    assert cited_claim(answer, 3) == ""  # only in code
    passage = "Bread is old. Bread rises because yeast ferments sugar into gas. Knead for ten minutes."
    span = cited_span(passage, cited_claim(answer, 1))
    assert (
        span is not None
        and passage[span[0] : span[1]] == "Bread rises because yeast ferments sugar into gas."
    )
    assert cited_span(passage, "nothing shared here") is None


def test_the_command_line_search_names_a_missing_collection(tmp_path: Path) -> None:
    folder = _corpus(tmp_path / "docs")
    with DocumentIndex.in_folder(tmp_path) as index:
        index.add("notes", [folder])
    found = search_collections(tmp_path, ["notes"], "yeast bread", n_ctx=2048, reply_tokens=256)
    assert found.sources[0].title == "bread.txt"
    assert sources_lines(found)[0] == f"[1] bread.txt ({folder / 'bread.txt'})"
    with pytest.raises(DocsError, match="no document collection named 'recipes'"):
        search_collections(tmp_path, ["notes", "recipes"], "yeast", n_ctx=2048, reply_tokens=256)
