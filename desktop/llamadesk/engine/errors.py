"""Errors raised by the engine package."""

from __future__ import annotations

from ..errors import LlamaDeskError


class EngineError(LlamaDeskError):
    """Loading or running a model failed; the message says why and what to do."""


class ModelFileError(EngineError):
    """The model file is missing, unreadable or not a usable GGUF file."""
