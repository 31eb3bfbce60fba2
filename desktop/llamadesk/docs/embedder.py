"""``LlamaEmbedder``: document and query vectors from a GGUF model run by llama.cpp (``embedding=True``).

It reuses the server's ``EmbeddingService`` (one embedding context on a thread of its own; a
model without pooling of its own, such as a chat model, is mean-pooled), so the app opens at
most one embedding context per model however many callers there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..engine.errors import EngineError
from .types import DocsError

__all__ = ["MAX_EMBED_CHARS", "LlamaEmbedder"]

MAX_EMBED_CHARS = 6000  # longer texts are cut: a chunk is far shorter, a query should be


class LlamaEmbedder:
    """An ``Embedder`` over one GGUF file; ``name`` is the file name, ``dim`` its embedding size."""

    def __init__(self, model_path: Path | str) -> None:
        from ..engine.errors import ModelFileError
        from ..engine.gguf_info import inspect_gguf
        from ..server.embeddings import EmbeddingService

        self.path = Path(model_path)
        try:
            info = inspect_gguf(self.path)
        except (ModelFileError, OSError) as exc:
            raise DocsError(f"{self.path.name} cannot be used for embeddings: {exc}") from exc
        if not info.embedding_length:
            raise DocsError(f"{self.path.name} does not say its embedding size; it cannot embed.")
        self.name = self.path.name
        self.dim = int(info.embedding_length)
        self._service = EmbeddingService()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """One unit-length vector per text (empty texts become a single space)."""
        inputs = [(t[:MAX_EMBED_CHARS] if t.strip() else " ") for t in texts]
        if not inputs:
            return []
        try:
            return self._service.embed(self.path, inputs).result().vectors
        except EngineError as exc:
            raise DocsError(f"Embedding with {self.name} failed: {exc}") from exc

    def close(self) -> None:
        """Free the model's embedding context."""
        self._service.close()
