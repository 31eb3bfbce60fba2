"""The root of LlamaDesk's error types: ``str(error)`` is a message fit for a dialog."""

from __future__ import annotations


class LlamaDeskError(Exception):
    """An error a user can read and act on; each package derives its own type."""

    @property
    def message(self) -> str:
        return str(self)
