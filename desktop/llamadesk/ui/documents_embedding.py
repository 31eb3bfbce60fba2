"""Search by meaning: the Documents "Embedding model" setting resolved through the model library.

Qt-free. :class:`EmbeddingChoice` is taken on the GUI thread (the setting and the models folder, no
disk access) and resolved on a worker: a path, a library key or a library name, like any other model
name. An empty setting means documents are searched by words only; a model that is missing or is not
an embedding model gives a message that says so, and the search falls back to words.
:class:`HeldEmbedder` keeps one embedder alive while the setting stays the same.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from ..docs import DocsError, LlamaEmbedder
from ..errors import LlamaDeskError
from ..paths import Paths

__all__ = ["SETTING_PLACE", "EmbeddingChoice", "HeldEmbedder"]

SETTING_PLACE = "Preferences → Model & hardware → Documents embedding model"
_WORDS_ONLY = "documents are searched by words only until it is changed"


@dataclass(frozen=True)
class EmbeddingChoice:
    """The embedding model the settings name (``setting`` "" for none) and where to look it up."""

    setting: str
    paths: Paths
    models_dir: Path | None = None

    def resolve(self) -> Path | None:
        """The model file to embed with; None when the setting is empty.

        Raises DocsError (a message for the user) when the model is missing, damaged, or not an
        embedding model. Reads only the headers of the models whose name matches.
        """
        from ..hub.library import ModelLibrary

        name = self.setting.strip()
        if not name:
            return None
        try:
            found = ModelLibrary(self.paths, models_dir=self.models_dir).find(name)
        except LlamaDeskError as exc:  # a name matching several models
            raise DocsError(f"The embedding model for documents is unclear: {exc} ({SETTING_PLACE})") from exc
        if found is None:
            raise DocsError(
                f"The embedding model for documents, “{name}”, is neither a model in the library nor a "
                f"file on disk; {_WORDS_ONLY} ({SETTING_PLACE})."
            )
        if not found.loadable:
            why = f": {found.message}" if found.message else ""
            raise DocsError(
                f"The embedding model for documents, “{found.name}”, cannot be used{why}; {_WORDS_ONLY}."
            )
        if not found.is_embedding:
            raise DocsError(
                f"“{found.name}” is a chat model, not an embedding model; {_WORDS_ONLY}. Choose an "
                f"embedding model (the Hub browser marks them) in {SETTING_PLACE}, or clear it."
            )
        return Path(found.path)


class HeldEmbedder:
    """One :class:`LlamaEmbedder` kept alive for the model file in use; a new file replaces (and frees)
    it. Thread-safe: searches run on worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._embedder: LlamaEmbedder | None = None

    @property
    def current(self) -> LlamaEmbedder | None:
        """The embedder held now (None when none)."""
        return self._embedder

    def get(self, path: Path | None) -> LlamaEmbedder | None:
        """The embedder for ``path`` (made once and kept); None frees the one held.

        Raises DocsError when the file cannot embed.
        """
        with self._lock:
            held = self._embedder
            if held is not None and (path is None or held.path != Path(path)):
                self._embedder = None
                held.close()
                held = None
            if path is None:
                return None
            if held is None:
                held = self._embedder = LlamaEmbedder(path)
            return held

    def close(self) -> None:
        """Free the embedding context (at close, or when documents are searched by words again)."""
        self.get(None)
