"""The conversation list: newest first (pinned on top), full-text search, rename, pin, delete.

The list model fetches conversations a page at a time (``canFetchMore``/``fetchMore``),
so ten thousand conversations open as fast as ten.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QPersistentModelIndex,
    QPoint,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ..chat.store import Conversation, ConversationStore, StoreError
from .resources import icon
from .store_signals import StoreSignals

PAGE_SIZE = 200
ID_ROLE = Qt.ItemDataRole.UserRole
PINNED_ROLE = Qt.ItemDataRole.UserRole + 1
_Index = QModelIndex | QPersistentModelIndex


class ConversationListModel(QAbstractListModel):
    """Conversations from the store, loaded lazily; or search hits when a query is set.

    Signals:
        storeFailed(str): a store operation failed (message for the user).
    """

    storeFailed = Signal(str)

    def __init__(self, store: ConversationStore, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._store = store
        self._items: list[Conversation] = []
        self._snippets: dict[int, str] = {}
        self._total = 0
        self._query = ""
        self.refresh()

    # -- loading

    @property
    def query(self) -> str:
        return self._query

    def refresh(self) -> None:
        """Reload from the store (first page now, the rest as the view scrolls)."""
        self.beginResetModel()
        self._items = []
        self._snippets = {}
        try:
            if self._query:
                self._load_search()
            else:
                self._total = self._store.count_conversations()
                self._items = self._store.list_conversations(limit=PAGE_SIZE, offset=0)
        except StoreError as exc:
            self._total = 0
            self.storeFailed.emit(str(exc))
        self.endResetModel()

    def _load_search(self) -> None:
        seen: set[int] = set()
        for hit in self._store.search(self._query, limit=PAGE_SIZE):
            if hit.conversation_id in seen:
                continue
            seen.add(hit.conversation_id)
            try:
                self._items.append(self._store.get_conversation(hit.conversation_id))
            except StoreError:
                continue
            if hit.message_id is not None:
                self._snippets[hit.conversation_id] = " ".join(hit.snippet.split())
        self._total = len(self._items)

    def set_query(self, query: str) -> None:
        self._query = query.strip()
        self.refresh()

    def canFetchMore(self, parent: _Index = QModelIndex()) -> bool:  # noqa: B008 (Qt override)
        return not parent.isValid() and not self._query and len(self._items) < self._total

    def fetchMore(self, parent: _Index = QModelIndex()) -> None:  # noqa: B008 (Qt override)
        if parent.isValid() or self._query:
            return
        self._fetch(PAGE_SIZE)

    def _fetch(self, count: int) -> None:
        """Load the next ``count`` conversations in one go (one query, one row insertion)."""
        try:
            page = self._store.list_conversations(limit=count, offset=len(self._items))
        except StoreError as exc:
            self.storeFailed.emit(str(exc))
            return
        known = {c.id for c in self._items}
        page = [c for c in page if c.id not in known]
        if not page:
            self._total = len(self._items)
            return
        first = len(self._items)
        self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
        self._items.extend(page)
        self.endInsertRows()

    # -- reading

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt override)
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        conversation = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            title = conversation.title or "New chat"
            text = f"📌 {title}" if conversation.pinned else title
            snippet = self._snippets.get(conversation.id)
            return f"{text}\n{snippet}" if snippet else text
        if role == Qt.ItemDataRole.EditRole:
            return conversation.title
        if role == Qt.ItemDataRole.ToolTipRole:
            return conversation.title or "New chat"
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return conversation.title or "New chat"
        if role == ID_ROLE:
            return conversation.id
        if role == PINNED_ROLE:
            return conversation.pinned
        return None

    def flags(self, index: _Index) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsEditable if index.isValid() else base

    def setData(self, index: _Index, value: Any, role: int = Qt.ItemDataRole.EditRole) -> bool:
        if role != Qt.ItemDataRole.EditRole or not index.isValid():
            return False
        row = index.row()
        conversation = self._items[row]
        try:
            updated = self._store.rename_conversation(conversation.id, str(value))
        except StoreError as exc:
            self.storeFailed.emit(str(exc))
            return False
        # The store's change event may have reloaded the list meanwhile: update the row only if
        # it still shows this conversation.
        if row < len(self._items) and self._items[row].id == updated.id:
            self._items[row] = updated
            changed = self.index(row)
            self.dataChanged.emit(changed, changed)
        return True

    def shows_current(self, conversation: Conversation) -> bool:
        """True when the list already shows ``conversation`` as it is (title, pin and order)."""
        known = next((c for c in self._items if c.id == conversation.id), None)
        return known is not None and (known.title, known.pinned, known.updated_at) == (
            conversation.title,
            conversation.pinned,
            conversation.updated_at,
        )

    def conversation_at(self, row: int) -> Conversation | None:
        return self._items[row] if 0 <= row < len(self._items) else None

    def row_of(self, conversation_id: int) -> int:
        """The row of a conversation, loading the list down to it when it is further than loaded so far."""
        for row, conversation in enumerate(self._items):
            if conversation.id == conversation_id:
                return row
        if not self.canFetchMore():
            return -1
        try:
            position = self._store.conversation_position(conversation_id)
        except StoreError:  # deleted meanwhile
            return -1
        before = len(self._items)
        pages = (position + 1 - before + PAGE_SIZE - 1) // PAGE_SIZE
        self._fetch(max(1, pages) * PAGE_SIZE)
        for row in range(before, len(self._items)):
            if self._items[row].id == conversation_id:
                return row
        return -1


class Sidebar(QWidget):
    """Search box, "New chat" and the conversation list, kept up to date by the store's events.

    Signals:
        conversationSelected(int): the user opened a conversation.
        newChatRequested: start a new conversation.
        conversationDeleted(int): a conversation was deleted.
        storeFailed(str): a store operation failed.
        notice(str): something the user asked for can't be done right now, and why.
    """

    conversationSelected = Signal(int)
    newChatRequested = Signal()
    conversationDeleted = Signal(int)
    storeFailed = Signal(str)
    notice = Signal(str)

    def __init__(
        self,
        store: ConversationStore,
        parent: QWidget | None = None,
        *,
        store_signals: StoreSignals | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("sidebar")
        self._store = store
        # The window shares its listener; a sidebar on its own listens for itself.
        self.store_signals = store_signals or StoreSignals(store, self)
        self._current: int | None = None
        self._selecting = False
        self.locked_id: int | None = None  # the conversation a reply is being written into

        self.new_chat_button = QPushButton(icon("new-chat"), "New chat", self)
        self.new_chat_button.setObjectName("newChatButton")
        self.new_chat_button.setAccessibleName("newChatButton")
        self.new_chat_button.setToolTip("Start a new conversation (Ctrl+N)")
        self.new_chat_button.clicked.connect(self.newChatRequested)

        self.search = QLineEdit(self)
        self.search.setObjectName("conversationSearch")
        self.search.setAccessibleName("conversationSearch")
        self.search.setPlaceholderText("Search conversations")
        self.search.setClearButtonEnabled(True)
        self.search.addAction(icon("search"), QLineEdit.ActionPosition.LeadingPosition)
        # Search once typing pauses, not per keystroke; Enter searches at once.
        self._search_timer = QTimer(self)
        self._search_timer.setSingleShot(True)
        self._search_timer.setInterval(150)
        self._search_timer.timeout.connect(self._run_search)
        self.search.textChanged.connect(self._search_timer.start)
        self.search.returnPressed.connect(self._run_search)
        self._refresh_pending = False

        self.model = ConversationListModel(store, self)
        self.model.storeFailed.connect(self.storeFailed)
        self.view = QListView(self)
        self.view.setObjectName("conversationList")
        self.view.setAccessibleName("conversationList")
        self.view.setModel(self.model)
        # One line per title (elided): every row has the same height, so a list of ten thousand
        # conversations is laid out without asking each row for its size. Search hits show a
        # second line (the snippet); see _update_row_sizes.
        self.view.setUniformItemSizes(True)
        self.view.setWordWrap(False)
        self.view.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(
            QAbstractItemView.EditTrigger.EditKeyPressed | QAbstractItemView.EditTrigger.SelectedClicked
        )
        self.view.setSpacing(1)
        self.view.setStyleSheet("QListView#conversationList::item { padding: 5px 6px; }")
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.view.customContextMenuRequested.connect(self._context_menu)
        self.view.itemDelegate().closeEditor.connect(self._on_editor_closed)
        self.view.selectionModel().currentChanged.connect(self._on_current_changed)
        self.model.modelAboutToBeReset.connect(self._update_row_sizes)
        self.model.modelReset.connect(self._reselect)
        self.store_signals.conversationsChanged.connect(self.refresh)
        self.store_signals.conversationChanged.connect(self._on_conversation_changed)

        # What an empty list means: nothing yet, or nothing matches the search.
        self.empty_label = QLabel(self)
        self.empty_label.setObjectName("conversationListEmpty")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop)
        self.empty_label.setWordWrap(True)
        self.empty_label.setEnabled(False)  # drawn in the muted text colour
        for signal in (self.model.modelReset, self.model.rowsInserted, self.model.rowsRemoved):
            signal.connect(self._update_empty_state)

        top = QHBoxLayout()
        top.addWidget(self.new_chat_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 0, 6)
        layout.addLayout(top)
        layout.addWidget(self.search)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.view, 1)
        self._update_empty_state()

    def _update_row_sizes(self) -> None:
        """Rows of one height while listing; search hits (at most a page) may have a snippet line."""
        self.view.setUniformItemSizes(not self.model.query)

    def _update_empty_state(self) -> None:
        empty = self.model.rowCount() == 0
        if self.model.query:
            query = self.model.query if len(self.model.query) <= 40 else self.model.query[:39] + "…"
            self.empty_label.setText(f"No conversation matches “{query}”.")
        else:
            self.empty_label.setText("No conversations yet. Start one with “New chat”.")
        self.empty_label.setVisible(empty)

    # -- selection

    def current_id(self) -> int | None:
        return self._current

    def select(self, conversation_id: int | None) -> None:
        """Highlight a conversation without emitting ``conversationSelected``."""
        self._current = conversation_id
        self._reselect()

    def _reselect(self) -> None:
        self._selecting = True
        try:
            row = self.model.row_of(self._current) if self._current is not None else -1
            if row >= 0:
                index = self.model.index(row)
                self.view.setCurrentIndex(index)
                self.view.scrollTo(index)
            else:
                self.view.clearSelection()
                self.view.setCurrentIndex(QModelIndex())
        finally:
            self._selecting = False

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self._selecting or not current.isValid():
            return
        conversation_id = int(current.data(ID_ROLE))
        if conversation_id != self._current:
            self._current = conversation_id
            self.conversationSelected.emit(conversation_id)

    def refresh(self) -> None:
        """Reload the list; while a title is being edited in place, wait until the edit ends."""
        if self.view.state() == QAbstractItemView.State.EditingState:
            self._refresh_pending = True
            return
        self._refresh_pending = False
        self.model.refresh()

    def _on_conversation_changed(self, conversation_id: int) -> None:
        """Reload the list when a conversation's title, pin or place changed (not for every saved
        piece of a reply being written)."""
        try:
            conversation = self._store.get_conversation(conversation_id)
        except StoreError:  # deleted meanwhile: its own event reloads the list
            return
        if not self.model.shows_current(conversation):
            self.refresh()

    def _on_editor_closed(self) -> None:
        if self._refresh_pending:
            QTimer.singleShot(0, self.refresh)  # after the view has left its editing state

    # -- search

    def focus_search(self) -> None:
        self.search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.search.selectAll()

    def _run_search(self) -> None:
        self._search_timer.stop()
        if self.search.text().strip() != self.model.query:
            self.model.set_query(self.search.text())

    # -- actions on one conversation

    def rename(self, conversation_id: int, title: str) -> None:
        try:
            self._store.rename_conversation(conversation_id, title)
        except StoreError as exc:
            self.storeFailed.emit(str(exc))

    def set_pinned(self, conversation_id: int, pinned: bool) -> None:
        try:
            self._store.set_pinned(conversation_id, pinned)
        except StoreError as exc:
            self.storeFailed.emit(str(exc))

    def delete(self, conversation_id: int) -> None:
        """Delete without asking (the menu asks first)."""
        try:
            self._store.delete_conversation(conversation_id)
        except StoreError as exc:
            self.storeFailed.emit(str(exc))
            return
        if self._current == conversation_id:
            self._current = None
        self.conversationDeleted.emit(conversation_id)

    def confirm_delete(self, conversation_id: int) -> None:
        if conversation_id == self.locked_id:
            self.notice.emit("A reply is being written in this conversation; stop it before deleting.")
            return
        title = next(
            (
                c.title
                for c in (self.model.conversation_at(r) for r in range(self.model.rowCount()))
                if c is not None and c.id == conversation_id
            ),
            "this conversation",
        )
        answer = QMessageBox.question(
            self,
            "Delete conversation",
            f"Delete “{title or 'New chat'}” and all its messages? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self.delete(conversation_id)

    def start_rename(self, conversation_id: int) -> None:
        row = self.model.row_of(conversation_id)
        if row >= 0:
            self.view.edit(self.model.index(row))

    def _context_menu(self, pos: QPoint) -> None:
        index = self.view.indexAt(pos)
        if not index.isValid():
            return
        conversation_id = int(index.data(ID_ROLE))
        pinned = bool(index.data(PINNED_ROLE))
        menu = QMenu(self)
        menu.addAction("Rename", lambda: self.start_rename(conversation_id))
        menu.addAction("Unpin" if pinned else "Pin", lambda: self.set_pinned(conversation_id, not pinned))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: self.confirm_delete(conversation_id))
        menu.exec(self.view.viewport().mapToGlobal(pos))
