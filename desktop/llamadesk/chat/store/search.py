"""Search over titles and messages: FTS5 for spaced scripts, substring matching for the rest.

Scripts written without spaces between words (Chinese, Japanese, Thai, Lao, Khmer, Myanmar)
reach the full-text index as whole sentences, so a word inside one is found by substring, as
are queries of symbols only (emoji). Nothing a user types can make a query fail.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import unicodedata
from dataclasses import dataclass

from ..records import DEFAULT_TITLE

log = logging.getLogger(__name__)

_UNSPACED = re.compile(
    "[\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u2e80-\u2fdf\u3040-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f\U00020000-\U0003134f]"
)
SNIPPET_WIDTH = 80


@dataclass(frozen=True)
class SearchHit:
    """A search result; ``message_id`` is None when the conversation's title matched."""

    conversation_id: int
    message_id: int | None
    title: str
    snippet: str


def _search_terms(text: str) -> list[tuple[str, bool]]:
    """What a user typed as (term, typed as a bare word) pairs: quoted phrases stay whole."""
    terms: list[tuple[str, bool]] = []
    for match in re.finditer(r'"([^"]*)"|(\S+)', text):
        quoted, word = match.group(1), match.group(2)
        term = quoted if quoted is not None else word
        if term.strip():
            terms.append((term.strip(), quoted is None))
    return terms


def _needs_substring(term: str) -> bool:
    """True when the word index cannot find ``term``: an unspaced script, or only symbols (emoji)."""
    return bool(_UNSPACED.search(term)) or (
        not re.search(r"\w", term)
        and any(unicodedata.category(ch) in ("So", "Sk", "Sm", "Sc") for ch in term)
    )


def fts_query(text: str) -> str | None:
    """Turn what a user typed into a safe FTS5 query: quoted phrases, the last word as a prefix.

    Punctuation and quotes can never cause a syntax error; None when nothing is searchable.
    """
    terms = [(term, bare) for term, bare in _search_terms(text) if re.search(r"\w", term)]
    if not terms:
        return None
    parts = ['"' + term.replace('"', '""') + '"' for term, _ in terms]
    if terms[-1][1]:
        parts[-1] += "*"
    return " ".join(parts)


def _snippet(text: str, terms: list[str], highlight: tuple[str, str]) -> str:
    """About ``SNIPPET_WIDTH`` characters of ``text`` around the first term found, terms highlighted."""
    start, end = highlight
    pattern = re.compile(
        "|".join(re.escape(term) for term in sorted(terms, key=len, reverse=True)), re.IGNORECASE
    )
    found = pattern.search(text)
    first = max(0, found.start() - SNIPPET_WIDTH // 4) if found else 0
    last = min(len(text), max(first + SNIPPET_WIDTH, found.end() if found else 0))
    piece = pattern.sub(lambda m: start + m.group(0) + end, text[first:last])
    return ("…" if first > 0 else "") + piece + ("…" if last < len(text) else "")


def search(conn: sqlite3.Connection, query: str, limit: int, highlight: tuple[str, str]) -> list[SearchHit]:
    """Titles first, then messages, best matches first; at most ``limit`` hits (0 or more)."""
    if limit == 0:
        return []
    terms = [term for term, _ in _search_terms(query) if re.search(r"\w", term) or _needs_substring(term)]
    if any(_needs_substring(term) for term in terms):
        return _substring_search(conn, terms, limit, highlight)
    match = fts_query(query)
    if match is None:
        return []
    start, end = highlight
    try:
        titles = conn.execute(
            "SELECT c.id, c.title, highlight(conversations_fts, 0, ?, ?) FROM conversations_fts"
            " JOIN conversations c ON c.id = conversations_fts.rowid"
            " WHERE conversations_fts MATCH ? AND c.importing = 0 ORDER BY rank LIMIT ?",
            (start, end, match, limit),
        ).fetchall()
        messages = conn.execute(
            "SELECT m.conversation_id, m.id, c.title, snippet(messages_fts, 0, ?, ?, '…', 16)"
            " FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid"
            " JOIN conversations c ON c.id = m.conversation_id"
            " WHERE messages_fts MATCH ? AND c.importing = 0 ORDER BY rank LIMIT ?",
            (start, end, match, max(0, limit - len(titles))),
        ).fetchall()
    except sqlite3.OperationalError as exc:  # a query FTS5 still refuses finds nothing
        log.warning("search for %r failed: %s", query, exc)
        return []
    hits = [SearchHit(row[0], None, row[1] or DEFAULT_TITLE, row[2]) for row in titles]
    hits += [SearchHit(row[0], row[1], row[2] or DEFAULT_TITLE, row[3]) for row in messages]
    return hits


def _substring_search(
    conn: sqlite3.Connection, terms: list[str], limit: int, highlight: tuple[str, str]
) -> list[SearchHit]:
    """Titles and messages holding every term as a substring, most recent first (see ``_UNSPACED``)."""
    patterns = ["%" + re.sub(r"([\\%_])", r"\\\1", term) + "%" for term in terms]
    titles_match = " AND ".join(["c.title LIKE ? ESCAPE '\\'"] * len(terms))
    messages_match = " AND ".join(["m.content LIKE ? ESCAPE '\\'"] * len(terms))
    titles = conn.execute(
        f"SELECT c.id, c.title FROM conversations c WHERE {titles_match} AND c.importing = 0"
        " ORDER BY c.updated_at DESC, c.id DESC LIMIT ?",
        (*patterns, limit),
    ).fetchall()
    messages = conn.execute(
        f"SELECT m.conversation_id, m.id, c.title, m.content FROM messages m"
        f" JOIN conversations c ON c.id = m.conversation_id WHERE {messages_match}"
        " AND m.status != 'streaming' AND c.importing = 0"
        " ORDER BY c.updated_at DESC, m.id DESC LIMIT ?",
        (*patterns, max(0, limit - len(titles))),
    ).fetchall()
    hits = [
        SearchHit(row[0], None, row[1] or DEFAULT_TITLE, _snippet(row[1], terms, highlight)) for row in titles
    ]
    hits += [
        SearchHit(row[0], row[1], row[2] or DEFAULT_TITLE, _snippet(row[3], terms, highlight))
        for row in messages
    ]
    return hits
