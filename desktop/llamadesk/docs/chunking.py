"""Cut a document's blocks into chunks sized in tokens that respect paragraphs and headings.

A heading (or a new page) starts a new chunk, so a passage cites one place; a section longer
than a chunk is cut between paragraphs (a paragraph longer than a chunk between sentences, then
words), and each further chunk of the section repeats the end of the one before (the overlap),
so a sentence near a cut is found with its context.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .extract import Block

__all__ = ["CHUNK_TOKENS", "OVERLAP_TOKENS", "Chunk", "chunk_blocks", "estimate_tokens"]

CHUNK_TOKENS = 220  # a passage: a few paragraphs, small enough that several fit in a prompt
OVERLAP_TOKENS = 40


def estimate_tokens(text: str) -> int:
    """About four characters a token: the rule of thumb for English when no tokenizer is at hand."""
    return max(1, math.ceil(len(text) / 4)) if text else 0


@dataclass(frozen=True)
class Chunk:
    """A passage's text, where it is, and its size in tokens."""

    text: str
    location: str
    tokens: int


@dataclass(frozen=True)
class _Piece:
    text: str
    location: str
    tokens: int
    heading: bool


_SENTENCE = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE.split(text) if s.strip()]


def _split_long(text: str, count: Callable[[str], int], size: int) -> list[str]:
    """Cut a paragraph longer than ``size`` tokens between lines (code, lists), else sentences, then words."""
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) > 1:
        by_line: list[tuple[str, int]] = []
        for line in lines:
            n = count(line)
            by_line.extend(_sized([line] if n <= size else _split_long(line, count, size), n, count))
        return _pack(by_line, "\n", size)
    sized: list[tuple[str, int]] = []
    for sentence in _sentences(text):
        n = count(sentence)
        if n > size:  # a run-on sentence (or a table flattened to text): cut between words
            words = sentence.split()
            step = max(1, int(len(words) * size / n))
            pieces = [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
            if step == 1 or len(pieces) == 1:  # a "word" longer than a chunk (a hash, a base64 blob)
                pieces = [cut for piece in pieces for cut in _cut_chars(piece, count, size)]
        else:
            pieces = [sentence]
        sized.extend(_sized(pieces, n, count))
    return _pack(sized, " ", size)


def _sized(pieces: list[str], whole: int, count: Callable[[str], int]) -> list[tuple[str, int]]:
    """``pieces`` of a text of ``whole`` tokens, each with its size (the whole when it was not cut)."""
    return [(pieces[0], whole)] if len(pieces) == 1 else [(piece, count(piece)) for piece in pieces]


def _pack(pieces: Iterable[tuple[str, int]], sep: str, size: int) -> list[str]:
    """Consecutive pieces joined by ``sep`` into parts of at most ``size`` tokens (a bigger piece alone)."""
    parts: list[str] = []
    current: list[str] = []
    used = 0
    for piece, tokens in pieces:
        if current and used + tokens > size:
            parts.append(sep.join(current))
            current, used = [], 0
        current.append(piece)
        used += tokens
    if current:
        parts.append(sep.join(current))
    return parts


def _cut_chars(text: str, count: Callable[[str], int], size: int) -> list[str]:
    """``text`` cut between characters into pieces of about ``size`` tokens (for text with no spaces)."""
    n = count(text)
    if n <= size:
        return [text]
    width = max(1, int(len(text) * size / n))
    return [text[i : i + width] for i in range(0, len(text), width)]


def _tail(pieces: Sequence[_Piece], count: Callable[[str], int], overlap: int) -> list[_Piece]:
    """The end of a chunk, at most ``overlap`` tokens, in whole paragraphs or sentences."""
    kept: list[_Piece] = []
    used = 0
    for piece in reversed(pieces):
        if used + piece.tokens <= overlap:
            kept.insert(0, piece)
            used += piece.tokens
            continue
        sentences: list[str] = []
        for sentence in reversed(_sentences(piece.text)):
            n = count(sentence)
            if used + n > overlap:
                break
            sentences.insert(0, sentence)
            used += n
        if sentences:
            text = " ".join(sentences)
            kept.insert(0, _Piece(text, piece.location, count(text), False))
        break
    return kept


def chunk_blocks(
    blocks: Sequence[Block],
    count_tokens: Callable[[str], int] | None = None,
    *,
    size: int = CHUNK_TOKENS,
    overlap: int = OVERLAP_TOKENS,
) -> list[Chunk]:
    """The chunks of ``blocks`` in order; sizes counted with ``count_tokens`` (else an estimate)."""
    count = count_tokens or estimate_tokens
    overlap = max(0, min(overlap, size // 2))
    pieces: list[_Piece] = []
    for block in blocks:
        n = count(block.text)
        if n <= size:
            pieces.append(_Piece(block.text, block.location, n, block.heading))
        else:
            for part in _split_long(block.text, count, size):
                pieces.append(_Piece(part, block.location, count(part), False))

    chunks: list[Chunk] = []
    current: list[_Piece] = []
    used = 0
    has_body = False  # kept as a flag: recounting it per piece is quadratic on heading-only files

    def close() -> None:
        chunks.append(Chunk("\n\n".join(p.text for p in current), current[-1].location, used))

    for piece in pieces:
        if current and has_body and piece.location != current[-1].location:
            close()  # a new section or page: no overlap across it
            current, used, has_body = [], 0, False
        elif current and has_body and used + piece.tokens > size:
            close()
            current = _tail(current, count, min(overlap, max(0, size - piece.tokens)))
            used = sum(p.tokens for p in current)
            has_body = any(not p.heading for p in current)
        elif current and piece.heading and used + piece.tokens > size:  # headings only (a contents page)
            close()
            current, used = [], 0
        has_body = has_body or not piece.heading
        current.append(piece)
        used += piece.tokens
    if current:
        close()
    return chunks
