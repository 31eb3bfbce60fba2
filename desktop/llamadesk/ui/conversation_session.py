"""The open conversation: switching, renaming, pinning, deleting and exporting conversations,
the system prompt edit and the unsent drafts.

Part of the main window: it holds the window and reaches the other parts through it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QInputDialog

from ..chat.store import Message, StoreError
from ..errors import LlamaDeskError
from ..files import atomic_write_text, default_file_mode

if TYPE_CHECKING:
    from .main_window import MainWindow

__all__ = ["ConversationSession"]

SAVE_DELAY_MS = 500  # drafts and the system prompt are saved after a pause in typing, not per keystroke


class ConversationSession(QObject):
    """Which conversation is open, and everything done to conversations as a whole.

    Signals:
        exportFinished(int): "Export all" ended; how many conversations were written.
        allDeleted: "Delete all" ended and the database was compacted.
    """

    exportFinished = Signal(int)
    allDeleted = Signal()

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.conversation_id: int | None = None
        self.system_prompt_timer = QTimer(self)
        self.system_prompt_timer.setSingleShot(True)
        self.system_prompt_timer.setInterval(SAVE_DELAY_MS)
        self.system_prompt_timer.timeout.connect(self.save_system_prompt)
        self.draft_timer = QTimer(self)
        self.draft_timer.setSingleShot(True)
        self.draft_timer.setInterval(SAVE_DELAY_MS)
        self.draft_timer.timeout.connect(self.save_draft)

    # -- switching

    def new_chat(self) -> None:
        """Start a new conversation (stored when the first message is sent)."""
        window = self.window
        if window.generating:
            window.show_info("Wait for the reply to finish, or stop it, before starting a new chat.")
            return
        self.flush_system_prompt()
        self.switch_to(None)
        window.focus_composer()

    def open_conversation(self, conversation_id: int) -> None:
        """Show a stored conversation."""
        window = self.window
        if conversation_id == self.conversation_id:
            return
        if window.generating:
            window.sidebar.select(self.conversation_id)
            window.show_info("Stop the reply being written before switching conversations.")
            return
        self.flush_system_prompt()
        self.switch_to(conversation_id)

    def switch_to(self, conversation_id: int | None, *, save_draft: bool = True) -> None:
        """Show ``conversation_id`` (None: a new chat) with its system prompt and draft."""
        window = self.window
        if save_draft:
            self.save_draft()
        if conversation_id is not None:
            try:
                window.store.get_conversation(conversation_id)
            except StoreError as exc:
                window.show_error(str(exc))
                conversation_id = None
        self.conversation_id = conversation_id
        window.sidebar.select(conversation_id)
        window.window_state.setValue("conversation/current", conversation_id or 0)
        self.load_system_prompt()
        self.refresh_chat()
        window.composer.blockSignals(True)
        window.composer.set_text(str(window.window_state.value(self.draft_key(), "") or ""))
        window.composer.blockSignals(False)
        window.update_state()

    def refresh_chat(self) -> None:
        """Show the active branch of the open conversation."""
        window = self.window
        messages: list[Message] = []
        if self.conversation_id is not None:
            try:
                messages = window.store.active_path(self.conversation_id)
            except StoreError as exc:
                window.show_error(str(exc))
        window.chat_view.set_messages(list(messages))
        window.chat_view.set_excluded(set())
        last = next((m for m in reversed(messages) if m.role == "assistant"), None)
        window.status.set_stats(last.stats if last is not None else None)

    def last_assistant(self) -> Message | None:
        """The newest reply on the open branch, if any."""
        leaf = self.window.chat_view.shown_leaf_id()
        if self.conversation_id is None or leaf is None:
            return None
        try:
            path = self.window.store.path_to(leaf)
        except StoreError:
            return None
        return next((m for m in reversed(path) if m.role == "assistant"), None)

    def on_conversation_deleted(self, conversation_id: int) -> None:
        self.window.window_state.remove(f"drafts/{conversation_id}")
        if conversation_id == self.conversation_id:
            self.switch_to(None, save_draft=False)  # its draft went with it; the new chat keeps its own

    # -- one conversation

    def title_of(self, conversation_id: int | None) -> str:
        if conversation_id is None:
            return ""
        try:
            return self.window.store.get_conversation(conversation_id).title
        except StoreError:
            return ""

    def rename_current(self) -> None:
        """Ask for a new title of the open conversation."""
        # Taken before the dialog: its event loop may run a reply's end that switches conversations.
        conversation_id = self.conversation_id
        if conversation_id is None:
            return
        title, ok = QInputDialog.getText(
            self.window, "Rename conversation", "Title:", text=self.title_of(conversation_id)
        )
        if ok:
            self.window.sidebar.rename(conversation_id, title)

    def toggle_pin_current(self) -> None:
        if self.conversation_id is None:
            return
        try:
            pinned = self.window.store.get_conversation(self.conversation_id).pinned
        except StoreError as exc:
            self.window.show_error(str(exc))
            return
        self.window.sidebar.set_pinned(self.conversation_id, not pinned)

    def delete_current(self) -> None:
        if self.conversation_id is not None and not self.window.generating:
            self.window.sidebar.confirm_delete(self.conversation_id)

    def ask_export_conversation(self) -> None:
        conversation_id = self.conversation_id
        if conversation_id is None:
            return
        from ..chat.export import file_name

        name = file_name(self.title_of(conversation_id) or "conversation", ".md")  # valid on every system
        target, _ = QFileDialog.getSaveFileName(self.window, "Export conversation", name, "Markdown (*.md)")
        if target:
            self.export_conversation(conversation_id, Path(target))

    def export_conversation(self, conversation_id: int, target: Path) -> None:
        """Write one conversation as Markdown to ``target``."""
        window = self.window
        try:
            # Over an existing file: all of the new export or the old file, never half of one.
            atomic_write_text(target, window.store.export_markdown(conversation_id), mode=default_file_mode())
        except (StoreError, OSError) as exc:
            window.show_error(
                f"Could not export the conversation: {exc}", "Choose another folder and try again."
            )
            return
        window.show_info(f"Saved {target.name}.")

    # -- all conversations

    def ask_export_all(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Export all conversations to")
        if folder:
            self.export_all(Path(folder))

    def export_all(self, folder: Path) -> None:
        """Write every conversation as a Markdown file into ``folder``, in the background;
        ``exportFinished`` tells how many were written."""
        from ..chat.export import file_name

        store = self.window.store
        mode = default_file_mode()
        written = [0]

        def export() -> int:
            for conversation in store.list_conversations():
                # The id keeps names unique; the title part is valid on Windows, macOS and Linux.
                name = file_name(f"{conversation.id:05d} {conversation.title}", ".md", max_length=66)
                try:
                    atomic_write_text(folder / name, store.export_markdown(conversation.id), mode=mode)
                except OSError as exc:
                    raise LlamaDeskError(str(exc)) from exc
                written[0] += 1
            return written[0]

        def done(count: int) -> None:
            self.window.show_info(f"Exported {count} conversation(s) to {folder}.")
            self.exportFinished.emit(count)

        def failed(error: LlamaDeskError) -> None:
            self.window.show_error(f"Export stopped after {written[0]} conversation(s): {error}")
            self.exportFinished.emit(written[0])

        self.window.tasks.run(export, done, failed)

    def delete_all(self) -> None:
        """Delete every conversation; the database is compacted in the background."""
        window = self.window
        if window.generating:
            window.show_info("Stop the reply being written first.")
            return
        for key in window.window_state.allKeys():
            if key.startswith("drafts/"):
                window.window_state.remove(key)
        self.conversation_id = None
        self.switch_to(None)  # what is in the box stays there, as the new chat's draft
        store = window.store
        window.store_signals.hold()  # the list reloads once, after compacting, not while it holds the file

        def done(_result: None) -> None:
            window.store_signals.release()
            self.allDeleted.emit()

        def failed(error: LlamaDeskError) -> None:
            window.store_signals.release()
            window.show_error(str(error))

        window.tasks.run(store.delete_all, done, failed)

    # -- system prompt

    def toggle_system_prompt(self, shown: bool) -> None:
        window = self.window
        window.system_prompt_edit.setVisible(shown)
        window.system_prompt_toggle.setArrowType(Qt.ArrowType.DownArrow if shown else Qt.ArrowType.RightArrow)
        if shown:
            window.system_prompt_edit.setFocus()

    def load_system_prompt(self) -> None:
        """Show the open conversation's system prompt (a new chat: the default one)."""
        window = self.window
        prompt = window.settings.app.default_system_prompt
        if self.conversation_id is not None:
            try:
                prompt = window.store.get_conversation(self.conversation_id).system_prompt or ""
            except StoreError:
                pass
        window.system_prompt_edit.blockSignals(True)
        window.system_prompt_edit.setPlainText(prompt)
        window.system_prompt_edit.blockSignals(False)
        self.system_prompt_timer.stop()

    def flush_system_prompt(self) -> None:
        """Save a system prompt change still waiting for its pause in typing."""
        if self.system_prompt_timer.isActive():
            self.system_prompt_timer.stop()
            self.save_system_prompt()

    def save_system_prompt(self) -> None:
        """Store the system prompt edit's text with the open conversation."""
        window = self.window
        if self.conversation_id is None or window.closed:
            return
        try:
            window.store.update_conversation(
                self.conversation_id, system_prompt=window.system_prompt_edit.toPlainText()
            )
        except StoreError as exc:
            window.show_error(str(exc))

    # -- drafts

    def draft_key(self) -> str:
        """Where the open conversation's unsent text is kept in the window state."""
        return f"drafts/{self.conversation_id or 'new'}"

    def save_draft(self) -> None:
        """Keep the composer's text for the open conversation (across restarts)."""
        window = self.window
        self.draft_timer.stop()
        if window.closed:
            return
        text = window.composer.text()
        if text:
            window.window_state.setValue(self.draft_key(), text)
        else:
            window.window_state.remove(self.draft_key())
