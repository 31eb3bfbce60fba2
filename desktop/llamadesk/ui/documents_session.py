"""Documents in the window: the Documents dock, the chat's collections, attachments and retrieval.

Part of the main window (``window.documents``). It shows the Documents panel (View → Documents,
Ctrl+Shift+D), keeps the composer's Documents menu in line with the open chat, links collections to
conversations in the store (a new chat's choice waits until its first message creates it), turns
attached files into message text or a collection for the chat, and searches a chat's collections for
a question off the GUI thread before its reply is written: by words, and by meaning too when the
Documents embedding model is set (one embedder is kept while the setting stays the same).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDockWidget, QMenu

from ..chat.sources import (
    CHAT_FILES_PREFIX,
    attachment_text,
    chat_collection_name,
    context_budget,
    estimate_tokens,
    inline_limit,
    retrieve_sources,
)
from ..chat.store import MessageSources, StoreError
from ..docs import DocsError, DocumentIndex
from ..errors import LlamaDeskError
from .documents_embedding import EmbeddingChoice, HeldEmbedder
from .documents_panel import DocumentsPanel

if TYPE_CHECKING:
    from .main_window import MainWindow

log = logging.getLogger(__name__)

__all__ = ["BY_MEANING", "BY_WORDS", "DOCUMENTS_SHORTCUT", "DocumentsSession"]

DOCUMENTS_SHORTCUT = "Ctrl+Shift+D"
_TOKENIZE_WAIT_S = 5.0  # a count waits this long for the model's tokenizer, then estimates
_DEFAULT_CTX = 4096  # the context assumed for attachments when no model is loaded
BY_WORDS = "words"
BY_MEANING = "words and meaning"


@dataclass(frozen=True)
class _Found:
    """A search's result on its way to the GUI thread: the sources, how it searched, what went wrong."""

    sources: MessageSources
    mode: str
    problem: str = ""


class DocumentsSession(QObject):
    """The window's documents: the dock, the chat's collections, attachments, retrieval."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.pending: list[str] = []  # collections chosen for a new chat, linked when it is created
        self.collections: list[str] = []
        self.embedder = HeldEmbedder()  # the Documents embedding model, kept while the setting is the same
        self.last_search = ""  # how the last search ran: BY_WORDS or BY_MEANING ("" before any)
        self._told = ""  # the embedding problem last shown (each is shown once, not at every question)
        self._held_setting = ""  # the setting the held embedder was made for
        self.panel = DocumentsPanel(window.paths.data_dir, window)
        self.panel.embedding = self.embedding_choice
        self.dock = QDockWidget("Documents", window)
        self.dock.setObjectName("documentsDock")
        self.dock.setWidget(self.panel)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
        self.dock.hide()
        self.action = QAction("&Documents…", window)
        self.action.setObjectName("documentsAction")
        self.action.setShortcut(QKeySequence(DOCUMENTS_SHORTCUT))
        self.action.setToolTip("Collections of files to chat with")
        self.action.triggered.connect(self.show_panel)
        window.addAction(self.action)
        self._add_to_view_menu()
        window.chat_view.sources_provider = window.store.message_sources

        composer = window.composer
        composer.collectionToggled.connect(self.set_used)
        composer.documentsRequested.connect(self.show_panel)
        composer.filesAttached.connect(lambda paths: self.attach([Path(p) for p in paths]))
        panel = self.panel
        panel.collectionsChanged.connect(self._on_collections)
        panel.useInChatRequested.connect(lambda name: self.set_used(name, True))
        panel.collectionRemoved.connect(self._on_removed)
        panel.problem.connect(lambda message: window.show_error(message))
        self._sync = QTimer(self)
        self._sync.setSingleShot(True)
        self._sync.setInterval(0)
        self._sync.timeout.connect(self.sync_composer)
        window.sidebar.conversationSelected.connect(self._sync.start)
        window.sidebar.newChatRequested.connect(self._sync.start)
        window.store_signals.conversationChanged.connect(self._sync.start)
        panel.reload()

    def _add_to_view_menu(self) -> None:
        for action in self.window.menuBar().actions():
            menu = action.menu()
            if isinstance(menu, QMenu) and action.text().replace("&", "") == "View":
                menu.addSeparator()
                menu.addAction(self.action)
                return

    def show_panel(self) -> None:
        """Show the Documents dock (and list the collections again)."""
        self.dock.show()
        self.dock.raise_()
        self.panel.reload()

    # -- the chat's collections

    def used(self, conversation_id: int | None = None) -> list[str]:
        """The collections the open chat (or ``conversation_id``) searches."""
        conversation = self.window.conversation_id if conversation_id is None else conversation_id
        if conversation is None:
            return list(self.pending)
        try:
            return self.window.store.conversation_collections(conversation)
        except StoreError as exc:
            log.warning("could not read the chat's documents: %s", exc)
            return []

    def set_used(self, name: str, on: bool) -> None:
        """Let the open chat search ``name`` (``on``) or stop searching it."""
        names = [n for n in self.used() if n != name] + ([name] if on else [])
        conversation = self.window.conversation_id
        if conversation is None:
            self.pending = names
        else:
            try:
                self.window.store.set_conversation_collections(conversation, names)
            except StoreError as exc:
                self.window.show_error(str(exc))
                return
        if on:
            self.window.show_info(f"This chat now searches “{name}” before each answer.")
        self.sync_composer()

    def link_pending(self, conversation_id: int) -> None:
        """A new chat was created by its first message: it searches what was chosen before."""
        names, self.pending = self.pending, []
        if names:
            try:
                self.window.store.set_conversation_collections(conversation_id, names)
            except StoreError as exc:
                self.window.show_error(str(exc))

    def sync_composer(self) -> None:
        """Show the open chat's collections in the composer's Documents menu."""
        if self.window.closed:
            return
        used = self.used()
        offered = list(self.collections) + [n for n in used if n not in self.collections]
        self.window.composer.set_documents(offered, used)

    def _on_collections(self, names: list[str]) -> None:
        self.collections = list(names)
        self.sync_composer()

    def _on_removed(self, name: str) -> None:
        self.pending = [n for n in self.pending if n != name]
        try:
            self.window.store.forget_collection(name)
        except StoreError as exc:
            self.window.show_error(str(exc))
        self.sync_composer()

    # -- tokens

    def counter(self) -> Callable[[str], int]:
        """Counts tokens with the loaded model's tokenizer (on the inference thread); estimates
        without a model. Call the result from a worker thread, never the GUI thread."""
        controller = self.window.controller
        if controller.loaded is None:
            return estimate_tokens
        service = controller.service

        def count(text: str) -> int:
            job = service.tokenize(text, client="documents")
            if not job.wait(_TOKENIZE_WAIT_S) or job.error is not None or not isinstance(job.result, list):
                return estimate_tokens(text)
            return len(job.result)

        return count

    # -- attachments

    def attach(self, paths: Sequence[Path]) -> None:
        """Attach files to the message: small text files go in whole, the rest into the chat's collection."""
        if not paths:
            return
        loaded = self.window.controller.loaded
        limit = inline_limit(loaded.n_ctx if loaded is not None else _DEFAULT_CTX)
        count = self.counter()

        def read() -> list[tuple[Path, str | None]]:
            return [(path, attachment_text(path, limit, count)) for path in paths]

        self.window.tasks.run(read, self._attached, channel="attach")

    def _attached(self, results: list[tuple[Path, str | None]]) -> None:
        window = self.window
        inline = [text for _path, text in results if text is not None]
        for text in inline:
            window.composer.insert_text(text)
        to_index = [path for path, text in results if text is None]
        if to_index:
            self.index_for_chat(to_index)
        elif inline:
            window.show_info(f"{len(inline)} file(s) added to your message.")

    def index_for_chat(self, paths: Sequence[Path]) -> None:
        """Index ``paths`` into a collection for the open chat (one per chat, created once) and use it."""
        window = self.window
        name = next((n for n in self.used() if n.startswith(CHAT_FILES_PREFIX)), "")
        if not name:
            title = ""
            if window.conversation_id is not None:
                try:
                    title = window.store.get_conversation(window.conversation_id).title
                except StoreError:
                    title = ""
            name = chat_collection_name(title)
        if not self.panel.add_paths(name, list(paths)):
            return
        self.dock.show()
        self.set_used(name, True)

    # -- retrieval

    def embedding_choice(self) -> EmbeddingChoice:
        """The embedding model the settings name for documents (resolved later, off the GUI thread)."""
        app = self.window.settings.app
        folder = app.models_dir
        return EmbeddingChoice(
            app.documents_embedding_model, self.window.paths, Path(folder).expanduser() if folder else None
        )

    def settings_changed(self) -> None:
        """The settings were applied: an embedding model no longer named is freed now (off the GUI
        thread) rather than at the next question, and a problem with the new one is told again."""
        held = self.embedder.current
        if held is None or self.embedding_choice().setting.strip() == self._held_setting:
            return
        self._told = ""
        self.window.tasks.run(lambda: self.embedder.close(), lambda _none: None)

    def retrieve(
        self,
        names: Iterable[str],
        question: str,
        *,
        n_ctx: int,
        reply_tokens: int,
        done: Callable[[MessageSources], None],
        failed: Callable[[LlamaDeskError], None],
        embedding_model: Path | None = None,
    ) -> None:
        """Search ``names`` for ``question`` on a worker; ``done(sources)`` on the GUI thread.

        By words, and by meaning with the settings' embedding model (or ``embedding_model``, a model
        file); an embedding model that cannot be used is reported once and the search uses words.
        """
        data_dir = self.window.paths.data_dir
        wanted = list(names)
        budget = context_budget(n_ctx, reply_tokens)
        count = self.counter()
        choice: EmbeddingChoice | Path = embedding_model or self.embedding_choice()
        self._held_setting = (
            str(embedding_model) if embedding_model else self.embedding_choice().setting.strip()
        )
        held = self.embedder

        def search() -> _Found:
            problem = ""
            try:
                embedder = held.get(choice.resolve() if isinstance(choice, EmbeddingChoice) else choice)
            except DocsError as exc:
                held.close()
                embedder, problem = None, str(exc)
            index = DocumentIndex.in_folder(data_dir)
            try:
                existing = {info.name for info in index.collections()}
                present = [name for name in wanted if name in existing]
                mode = BY_MEANING if embedder is not None else BY_WORDS
                if not present:
                    return _Found(MessageSources(), mode, problem)
                try:
                    found = retrieve_sources(
                        index, present, question, budget_tokens=budget, count_tokens=count, embedder=embedder
                    )
                except DocsError as exc:
                    if embedder is None:
                        raise
                    problem, mode = f"{exc} This question was searched by words only.", BY_WORDS
                    found = retrieve_sources(
                        index, present, question, budget_tokens=budget, count_tokens=count
                    )
                return _Found(found, mode, problem)
            finally:
                index.close()

        def searched(found: _Found) -> None:
            self.last_search = found.mode
            if found.problem and found.problem != self._told:
                self.window.show_error(found.problem)
            self._told = found.problem
            done(found.sources)

        self.window.tasks.run(search, searched, failed, channel="retrieve")

    def cancel_retrieval(self) -> None:
        """Drop the search under way (its answer is never delivered)."""
        self.window.tasks.cancel("retrieve")

    def shutdown(self, timeout_s: float = 0.0) -> None:
        """At close: cancel indexing (what was indexed stays) and free the embedding model."""
        self.panel.shutdown(timeout_s)
        self.embedder.close()
