"""Remote OpenAI-compatible servers (llama-server, vLLM, Ollama, LM Studio, another LlamaDesk) as
model sources, beside the local GGUF files. Qt-free: the window and the command line both use it."""

from __future__ import annotations

from .errors import RemoteError
from .registry import RemoteModel, ServerStatus, secret_name
from .urls import api_base, normalize_url

__all__ = ["RemoteError", "RemoteModel", "ServerStatus", "api_base", "normalize_url", "secret_name"]
