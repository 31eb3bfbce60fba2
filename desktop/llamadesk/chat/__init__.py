"""Chat: rendering a model's chat template, fitting a conversation into the context, storage.

Only the light template and context modules are imported here; import the SQLite store from
:mod:`llamadesk.chat.store` directly.
"""

from __future__ import annotations

from .context import ContextError, ContextFit, fit_context
from .templates import CHATML_TEMPLATE, ChatFormat, TemplateError, chat_format_for, render_prompt

__all__ = [
    "CHATML_TEMPLATE",
    "ChatFormat",
    "ContextError",
    "ContextFit",
    "TemplateError",
    "chat_format_for",
    "fit_context",
    "render_prompt",
]
