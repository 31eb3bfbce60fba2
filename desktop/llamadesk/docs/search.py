"""Query helpers: a safe FTS5 query from free text, vector packing and reciprocal rank fusion."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

__all__ = ["RRF_K", "from_blob", "fts_query", "fuse", "to_blob", "top_indices"]

RRF_K = 60  # the usual constant of reciprocal rank fusion: rank 1 scores 1/61
MAX_QUERY_TERMS = 48

# Words that say nothing about the topic of a question; searching for them only adds noise.
STOPWORDS = frozenset(
    """a about above after again all also am an and any are as at be been before being below between
    both but by can could did do does doing down during each else few for from further had has have
    having he her here hers him his how i if in into is it its itself just me more most my no nor not
    now of off on once only or other our ours out over own same she should so some such than that the
    their theirs them then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours tell explain describe
    give mean means""".split()  # noqa: SIM905 - a word list reads better as text
)


def _terms(query: str) -> list[str]:
    words = re.findall(r"\w+", query.lower())
    kept = [w for w in words if w not in STOPWORDS] or words
    return list(dict.fromkeys(kept))[:MAX_QUERY_TERMS]


def fts_query(query: str) -> str:
    """An FTS5 MATCH expression for any text: each word quoted (so no character is syntax), OR-ed.

    Returns "" when the text has no words at all. BM25 then ranks passages with more (and rarer)
    of the words first.
    """
    return " OR ".join(f'"{term}"' for term in _terms(query))


def to_blob(vector: Sequence[float]) -> bytes:
    """A unit-length float32 copy of ``vector`` as bytes, as stored in the index."""
    import numpy as np

    array = np.asarray(vector, dtype=np.float32)
    norm = float(np.linalg.norm(array))
    if norm > 0:
        array = array / norm
    return array.astype(np.float32).tobytes()


def from_blob(blob: bytes, dim: int) -> Any:
    """The float32 vector stored as ``blob``, or None if it is not ``dim`` floats long."""
    import numpy as np

    if len(blob) != 4 * dim:
        return None
    return np.frombuffer(blob, dtype=np.float32)


def top_indices(scores: Any, n: int) -> list[int]:
    """Positions of the ``n`` highest ``scores``, best first (an exact scan, no approximation)."""
    import numpy as np

    if n >= len(scores):
        return [int(i) for i in np.argsort(-scores)]
    part = np.argpartition(-scores, n)[:n]
    return [int(i) for i in part[np.argsort(-scores[part])]]


def fuse(rankings: Sequence[Sequence[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: ids by the sum of 1 / (k + rank) over the rankings they appear in."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))
