"""Embeddings from a llama.cpp context of their own (``embedding=True``), on a thread of its own.

Chat contexts do not return embeddings, so /v1/embeddings opens the model again as an embedding
context: memory-mapped, its weights are the same pages of the file the chat model uses, so the
extra memory is the context's own buffers. It runs on the CPU on its own thread and never waits
for (or delays) a chat reply. One embedding model is open at a time, until another is asked for.
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..engine.errors import EngineError

log = logging.getLogger(__name__)

__all__ = ["EmbeddingResult", "EmbeddingService"]

MAX_CONTEXT = 8192


class EmbeddingResult:
    """One vector per input, and the tokens read."""

    def __init__(self, vectors: list[list[float]], tokens: int, n_ctx: int) -> None:
        self.vectors = vectors
        self.tokens = tokens
        self.n_ctx = n_ctx


class EmbeddingService:
    """Owns at most one embedding ``llama_cpp.Llama``; every call runs on its one worker thread."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamadesk-embeddings")
        self._llm: Any = None
        self._path: Path | None = None
        self._n_ctx = 0
        self._closed = False
        self._lock = threading.Lock()

    def embed(self, path: Path, inputs: list[str] | list[list[int]]) -> Future[EmbeddingResult]:
        """Embed ``inputs`` (texts, or token id lists) with the model file ``path``."""
        with self._lock:
            if self._closed:
                raise EngineError("The embedding service is closed.")
            return self._executor.submit(self._embed, Path(path), inputs)

    def close(self) -> None:
        """Free the embedding model and end the thread (waits for the running call)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._executor.submit(self._free)
        self._executor.shutdown(wait=True, cancel_futures=True)

    # -- the worker thread

    def _free(self) -> None:
        llm, self._llm, self._path = self._llm, None, None
        if llm is not None:
            llm.close()

    def _open(self, path: Path) -> Any:
        if self._llm is not None and self._path == path:
            return self._llm
        self._free()
        from ..engine import rpc, runtime
        from ..engine.engine import _physical_cores
        from ..engine.gguf_info import inspect_gguf

        info = inspect_gguf(path)
        module = runtime.llama_cpp()
        n_ctx = min(info.context_length or 2048, MAX_CONTEXT)
        pooling = info.metadata.get(f"{info.architecture}.pooling_type")
        # A chat model has no pooling of its own: average its token vectors into one per input.
        pooling_type = module.LLAMA_POOLING_TYPE_MEAN if pooling is None else int(pooling)
        threads = _physical_cores()
        log.info("opening %s for embeddings (n_ctx=%s, pooling=%s)", path.name, n_ctx, pooling_type)
        try:
            # Never on RPC workers: they belong to the chat model (and a lost one would stall this load).
            with rpc.use_workers(module, (), track=False):
                self._llm = module.Llama(
                    model_path=str(path),
                    embedding=True,
                    n_ctx=n_ctx,
                    n_batch=n_ctx,
                    n_ubatch=n_ctx,  # a whole input in one step: pooling needs all of it at once
                    n_gpu_layers=0,
                    n_threads=threads,
                    n_threads_batch=threads,
                    pooling_type=pooling_type,
                    use_mmap=True,
                    verbose=False,
                )
        except (ValueError, RuntimeError, OSError) as exc:
            raise EngineError(f"llama.cpp could not open {path.name} for embeddings: {exc}") from exc
        self._path = path
        self._n_ctx = n_ctx
        return self._llm

    def _embed(self, path: Path, inputs: list[str] | list[list[int]]) -> EmbeddingResult:
        llm = self._open(path)
        vectors: list[list[float]] = []
        tokens = 0
        for item in inputs:
            ids = list(item) if isinstance(item, list) else llm.tokenize(item.encode("utf-8"), add_bos=True)
            if not ids:
                raise EngineError("An input is empty: there is nothing to embed.")
            if len(ids) > self._n_ctx:
                raise EngineError(
                    f"An input is {len(ids):,} tokens; this embedding model reads at most {self._n_ctx:,}."
                )
            vocab = int(llm.n_vocab())
            if any(not 0 <= t < vocab for t in ids):
                raise EngineError(f"A token id is outside the model's vocabulary (0 to {vocab - 1}).")
            tokens += len(ids)
            vectors.append(self._vector(llm, ids))
        return EmbeddingResult(vectors, tokens, self._n_ctx)

    @staticmethod
    def _vector(llm: Any, ids: list[int]) -> list[float]:
        """The pooled, unit-length vector of one input (as OpenAI's embeddings are)."""
        from ..engine import runtime

        lib = runtime.llama_cpp().llama_cpp
        size = int(llm.n_embd())
        llm._batch.reset()
        llm._ctx.kv_cache_clear()
        llm._batch.add_sequence(ids, 0, True)
        try:
            llm._ctx.decode(llm._batch)
            pointer = lib.llama_get_embeddings_seq(llm._ctx.ctx, 0)
            if not pointer:
                raise EngineError("llama.cpp returned no embedding for this model.")
            vector = [float(x) for x in pointer[:size]]
        finally:
            llm._batch.reset()
            llm._ctx.kv_cache_clear()
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector] if norm > 0 else vector
