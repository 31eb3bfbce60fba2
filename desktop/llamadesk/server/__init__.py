"""The local API server: an OpenAI-compatible HTTP API over the app's one inference service.

Qt-free (``llamadesk serve`` runs it headless; the window runs it on a background thread). The
ASGI app (:mod:`.app`) answers the OpenAI endpoints by submitting jobs to the same
:class:`~llamadesk.engine.service.InferenceService` the window uses, so a model is in memory once
and the window's chat and API requests take turns. :class:`.runner.LocalServer` runs it with
uvicorn on a thread of its own.
"""

from __future__ import annotations

from .config import ServerConfig, ServerError

__all__ = ["ServerConfig", "ServerError"]
