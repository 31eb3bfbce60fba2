"""The plain values the document index hands out: collections, files, passages, progress, reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import LlamaDeskError

__all__ = [
    "CollectionInfo",
    "DocsError",
    "Embedder",
    "FileInfo",
    "IndexProgress",
    "IndexReport",
    "Passage",
    "SkippedFile",
]


class DocsError(LlamaDeskError):
    """A document collection problem the user can fix (a bad name, an unknown collection, a bad index)."""


@dataclass(frozen=True)
class SkippedFile:
    """A file that was not indexed, and why (shown in the collection)."""

    path: str
    reason: str


@dataclass(frozen=True)
class FileInfo:
    """One file of a collection: ``status`` is "indexed" or "skipped" (then ``reason`` says why)."""

    path: str
    size: int
    mtime: float
    chunks: int
    status: str
    reason: str = ""


@dataclass(frozen=True)
class CollectionInfo:
    """A named collection and its counts."""

    name: str
    files: int
    chunks: int
    skipped: int


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk: where it comes from (file, title, page or heading) and its text."""

    chunk_id: int
    collection: str
    path: str
    title: str  # the file name or the document's own title
    location: str  # "page 3", "§ Heading > Subheading", "" when none
    text: str
    score: float


@dataclass(frozen=True)
class IndexProgress:
    """Indexing progress: ``done_files`` of ``total_files``; ``path`` is the file being read."""

    done_files: int
    total_files: int
    path: str


@dataclass
class IndexReport:
    """What an ``add`` or ``refresh`` changed."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)
    cancelled: bool = False


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into vectors of ``dim`` floats; ``name`` tells vectors of different models apart."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...
