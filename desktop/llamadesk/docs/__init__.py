"""Documents: named collections of files, indexed in SQLite for lexical and vector retrieval.

Qt-free. ``DocumentIndex`` reads .txt, .md, .pdf, .docx and .html files into chunks that respect
paragraphs and headings, searches them with FTS5/BM25 (and, given an ``Embedder``, an exact
cosine scan fused by reciprocal rank), and ``context_block`` turns passages into prompt text
with numbered sources to cite.
"""

from __future__ import annotations

from .context import context_block
from .embedder import LlamaEmbedder
from .extract import SUPPORTED_SUFFIXES, document_text
from .index import MAX_FILE_BYTES, DocumentIndex
from .types import (
    CollectionInfo,
    DocsError,
    Embedder,
    FileInfo,
    IndexProgress,
    IndexReport,
    Passage,
    SkippedFile,
)

__all__ = [
    "MAX_FILE_BYTES",
    "SUPPORTED_SUFFIXES",
    "CollectionInfo",
    "DocsError",
    "DocumentIndex",
    "Embedder",
    "FileInfo",
    "IndexProgress",
    "IndexReport",
    "LlamaEmbedder",
    "Passage",
    "SkippedFile",
    "context_block",
    "document_text",
]
