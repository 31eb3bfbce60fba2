"""Conversations in SQLite: message trees with branches, crash-safe streaming and full-text search.

Every message is committed the moment it exists and a streaming reply at least once a second;
listeners (``ConversationStore.subscribe``) hear about every committed change. The modules:
``database`` (opening, damage, transactions, listeners), ``conversations`` (the operations),
``tree`` (walking branches), ``documents`` (collections a chat uses, a question's sources),
``search``, ``streaming``, ``importing``, ``salvage``, ``schema``.
"""

from __future__ import annotations

from ..records import (
    DEFAULT_TITLE,
    FINAL_STATUSES,
    ROLES,
    STATUSES,
    TITLE_LENGTH,
    TITLE_MAX_LENGTH,
    Conversation,
    Message,
    clean_text,
    clean_title,
    make_title,
    reply_status,
)
from .conversations import ConversationStore
from .documents import MessageSources, SourceRef
from .errors import StoreError
from .events import StoreEvent
from .importing import (
    IMPORT_BATCH,
    MAX_IMPORT_BYTES,
    parse_import_bytes,
    read_import_file,
    read_import_stream,
)
from .schema import MIGRATIONS, SCHEMA_VERSION
from .search import SNIPPET_WIDTH, SearchHit, fts_query
from .streaming import StreamingReply

__all__ = [
    "DEFAULT_TITLE",
    "FINAL_STATUSES",
    "IMPORT_BATCH",
    "MAX_IMPORT_BYTES",
    "MIGRATIONS",
    "ROLES",
    "SCHEMA_VERSION",
    "SNIPPET_WIDTH",
    "STATUSES",
    "TITLE_LENGTH",
    "TITLE_MAX_LENGTH",
    "Conversation",
    "ConversationStore",
    "Message",
    "MessageSources",
    "SearchHit",
    "SourceRef",
    "StoreError",
    "StoreEvent",
    "StreamingReply",
    "clean_text",
    "clean_title",
    "fts_query",
    "make_title",
    "parse_import_bytes",
    "read_import_file",
    "read_import_stream",
    "reply_status",
]
