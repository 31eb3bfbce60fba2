"""Answers with sources: retrieval turned into the text sent before a question, and citations back.

Qt-free, shared by the window and the command line. :func:`retrieve_sources` searches a chat's
collections for the question and numbers the passages that fit a token budget; the result is stored
with the user message and sent again unchanged on every later turn (see ``chat.prompt``).
:func:`link_citations` turns the ``[1]`` of an answer into links; :func:`attachment_text` decides
whether a file dropped on the composer goes into the message whole.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..files import read_regular_bytes
from .store.documents import MessageSources, SourceRef

if TYPE_CHECKING:
    from ..docs import DocumentIndex, Embedder

__all__ = [
    "CHAT_FILES_PREFIX",
    "CITE_SCHEME",
    "DEFAULT_K",
    "INLINE_SUFFIXES",
    "attachment_text",
    "chat_collection_name",
    "cited_claim",
    "cited_numbers",
    "cited_span",
    "context_budget",
    "estimate_tokens",
    "inline_limit",
    "link_citations",
    "retrieve_sources",
    "search_collections",
    "sources_lines",
]

CITE_SCHEME = "llamadesk-cite"
DEFAULT_K = 6  # passages asked for; those that fit the budget are numbered
INLINE_SUFFIXES = (
    ".txt",
    ".md",
    ".markdown",
    ".csv",
    ".json",
    ".py",
    ".log",
    ".rst",
    ".yaml",
    ".yml",
    ".toml",
)
_MAX_INLINE_BYTES = 512 * 1024  # a file this big never goes in whole, whatever the context

_CITATION = re.compile(r"\[(\d{1,3}(?:\s*,\s*\d{1,3})*)\](?![(:])")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_NOT_IN_NAME = re.compile(r"[^\w .'()+&-]", re.UNICODE)
CHAT_FILES_PREFIX = "Chat files - "


def estimate_tokens(text: str) -> int:
    """A cautious token count when no model is loaded: about three characters a token."""
    return len(text) // 3 + 1


def context_budget(n_ctx: int, reply_tokens: int) -> int:
    """Tokens the sources of one question may take: a quarter of what the reply leaves, 128 to 3,000."""
    free = max(0, n_ctx - reply_tokens)
    return max(128, min(3000, free // 4))


def inline_limit(n_ctx: int) -> int:
    """The most tokens a dropped file may have to go into the message whole: a quarter of the context."""
    return max(1, n_ctx // 4)


def chat_collection_name(conversation_title: str, stamp: float | None = None) -> str:
    """A collection name for files dropped on one chat: "Chat files - <title> (date time)".

    Only the characters collection names allow are kept (letters, digits, spaces, . ' ( ) + & - _),
    and the name stays within 64 characters.
    """
    when = time.strftime("%Y-%m-%d %H.%M.%S", time.localtime(time.time() if stamp is None else stamp))
    title = " ".join(_NOT_IN_NAME.sub(" ", conversation_title).split())[:24].strip() or "new chat"
    return f"{CHAT_FILES_PREFIX}{title} ({when})"


def retrieve_sources(
    index: DocumentIndex,
    names: Sequence[str],
    question: str,
    *,
    budget_tokens: int,
    count_tokens: Callable[[str], int],
    k: int = DEFAULT_K,
    embedder: Embedder | None = None,
) -> MessageSources:
    """Search ``names`` for ``question`` and number the passages that fit ``budget_tokens``.

    Empty when nothing matches or nothing fits: the question is then sent as it is.
    """
    from ..docs import context_block

    passages = index.search(list(names), question, k=k, embedder=embedder)
    if not passages:
        return MessageSources()
    context, used = context_block(passages, budget_tokens=budget_tokens, count_tokens=count_tokens)
    if not used:
        return MessageSources()
    refs = tuple(
        SourceRef(number, p.chunk_id, p.collection, p.path, p.title, p.location, p.text)
        for number, p in enumerate(used, start=1)
    )
    return MessageSources(context, refs)


def search_collections(
    data_dir: Path,
    names: Sequence[str],
    question: str,
    *,
    n_ctx: int,
    reply_tokens: int,
    count_tokens: Callable[[str], int] = estimate_tokens,
) -> MessageSources:
    """Open the document index in ``data_dir`` and search ``names`` for ``question`` (the command
    line's ``chat --docs``); DocsError names a collection that does not exist."""
    from ..docs import DocsError, DocumentIndex

    with DocumentIndex.in_folder(data_dir) as index:
        existing = {info.name for info in index.collections()}
        missing = [name for name in names if name not in existing]
        if missing:
            raise DocsError(
                f"there is no document collection named {missing[0]!r} (see `llamadesk docs list`)"
            )
        budget = context_budget(n_ctx, reply_tokens)
        return retrieve_sources(index, names, question, budget_tokens=budget, count_tokens=count_tokens)


def sources_lines(sources: MessageSources) -> list[str]:
    """The numbered sources as lines: "[1] notes.md — § Setup (/path/to/notes.md)"."""
    return [
        f"[{s.number}] {s.title}" + (f" — {s.location}" if s.location else "") + f" ({s.path})"
        for s in sources.sources
    ]


def cited_numbers(text: str) -> list[int]:
    """The source numbers an answer cites, in order of first use (``[1]``, ``[2, 3]``)."""
    numbers: list[int] = []
    for match in _CITATION.finditer(_strip_code(text)):
        for part in match.group(1).split(","):
            number = int(part)
            if number not in numbers:
                numbers.append(number)
    return numbers


def _strip_code(text: str) -> str:
    """``text`` with code blocks and inline code blanked (citations there are code, not citations)."""
    lines: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            lines.append("")
        elif fenced:
            lines.append("")
        else:
            parts = line.split("`")
            lines.append("`".join(part if i % 2 == 0 else " " * len(part) for i, part in enumerate(parts)))
    return "\n".join(lines)


_SENTENCE_END = re.compile(r"(?<=[.!?;:])\s+|\n+")
_WORD = re.compile(r"\w{3,}", re.UNICODE)


def cited_claim(answer: str, number: int) -> str:
    """The sentence of ``answer`` that cites ``[number]`` ("" when none does)."""
    mark = re.compile(rf"\[(?:\d+\s*,\s*)*{number}(?:\s*,\s*\d+)*\]")
    for sentence in _SENTENCE_END.split(_strip_code(answer)):
        if mark.search(sentence):
            return sentence.strip()
    return ""


def cited_span(passage: str, claim: str) -> tuple[int, int] | None:
    """Where in ``passage`` the ``claim`` citing it comes from: the sentence sharing the most words
    with it, as (start, end) offsets; None when no sentence shares two words."""
    words = {w.lower() for w in _WORD.findall(_CITATION.sub(" ", claim))}
    if not words:
        return None
    best: tuple[int, int, int] | None = None  # (shared words, start, end)
    start = 0
    for match in [*_SENTENCE_END.finditer(passage), None]:
        end = match.start() if match is not None else len(passage)
        shared = len(words & {w.lower() for w in _WORD.findall(passage[start:end])})
        if shared >= 2 and (best is None or shared > best[0]):
            best = (shared, start, end)
        if match is not None:
            start = match.end()
    return (best[1], best[2]) if best is not None else None


def link_citations(text: str, numbers: Sequence[int]) -> str:
    """Markdown ``text`` with each ``[n]`` (n one of ``numbers``) made a ``llamadesk-cite:n`` link.

    Code blocks, inline code and existing links are left alone; a number with no source stays text.
    """
    known = set(numbers)
    if not known or "[" not in text:
        return text
    out: list[str] = []
    fenced = False
    for line in text.split("\n"):
        if _FENCE.match(line):
            fenced = not fenced
            out.append(line)
            continue
        if fenced:
            out.append(line)
            continue
        parts = line.split("`")
        for i in range(0, len(parts), 2):  # odd parts are inline code
            parts[i] = _CITATION.sub(lambda m: _linked(m, known), parts[i])
        out.append("`".join(parts))
    return "\n".join(out)


def _linked(match: re.Match[str], known: set[int]) -> str:
    numbers = [part.strip() for part in match.group(1).split(",")]
    if not all(int(n) in known for n in numbers):
        return match.group(0)
    links = ", ".join(f"[{n}]({CITE_SCHEME}:{n})" for n in numbers)
    return f"\\[{links}\\]"


def attachment_text(path: Path, max_tokens: int, count_tokens: Callable[[str], int]) -> str | None:
    """A dropped file as message text when it is plain text that fits ``max_tokens``; else None
    (it is then indexed into a collection for the chat). Reads at most 512 KiB."""
    if path.suffix.lower() not in INLINE_SUFFIXES:
        return None
    try:
        if not path.is_file() or path.stat().st_size > _MAX_INLINE_BYTES:
            return None
        text = read_regular_bytes(path, limit=_MAX_INLINE_BYTES).decode("utf-8-sig")
    except (OSError, ValueError):  # unreadable, not a regular file, or not UTF-8 text
        return None
    if "\x00" in text:
        return None
    fence = "````" if "```" in text else "```"
    block = f"{path.name}:\n{fence}\n{text.rstrip()}\n{fence}"
    if count_tokens(block) > max_tokens:
        return None
    return block
