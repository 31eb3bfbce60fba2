"""Replies: send, regenerate, edit, switch versions, stream into the chat view, stop.

Part of the main window: it holds the window and reaches the other parts through it. The
messages sent to the model come from :func:`llamadesk.chat.prompt.build_messages`, the one
rule every front end uses. A question in a chat that searches documents is answered in two steps:
its collections are searched off the GUI thread (``window.documents``), the context found is stored
with the question, and every turn sends each question with the context stored for it.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QInputDialog

from ..chat.prompt import PromptMessages, build_messages, reply_reserve
from ..chat.reasoning import ReasoningSplitter, starts_in_thinking, uses_channels
from ..chat.store import Message, MessageSources, StoreError, StreamingReply, reply_status
from ..chat.templates import apply_thinking
from ..errors import LlamaDeskError
from ..settings import GenerationSettings, SettingsError, validated_update
from .composer import tidy_message

if TYPE_CHECKING:
    from .main_window import MainWindow

log = logging.getLogger(__name__)

__all__ = ["ReplySession"]


@dataclasses.dataclass(frozen=True)
class _SentMessage:
    """A message sent from the composer, kept until its reply starts in case it must go back."""

    text: str
    message_id: int
    created_conversation: bool


class ReplySession(QObject):
    """The reply being written (at most one) and the commands that start one."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self._reply: StreamingReply | None = None
        self._prompt = PromptMessages()
        self._reply_failed_store = False
        self._sent: _SentMessage | None = None  # the message the running reply answers, when just sent
        self._searching: int | None = None  # the question whose documents are being searched
        c = window.controller
        c.contextPrepared.connect(self._on_context_prepared)
        # (conversation, how many of its messages were left out when the user was last told)
        self._left_out_told: tuple[int | None, int] = (None, 0)
        c.tokenReceived.connect(self._on_token)
        c.generationFinished.connect(self._on_generation_finished)
        c.generationFailed.connect(self._on_generation_failed)
        c.promptTooLong.connect(self._on_prompt_too_long)
        # Reasoning models: the reply's thinking is split from its answer as it streams.
        self._splitter: ReasoningSplitter | None = None
        self._thinking_started: float | None = None
        self._thinking_ended: float | None = None
        c.modelLoaded.connect(self._on_model_loaded)
        c.modelUnloaded.connect(lambda: window.composer.set_thinking_control(""))

    @property
    def generating(self) -> bool:
        """A reply is being written, or its question's documents searched."""
        return self._reply is not None or self._searching is not None

    @property
    def _active(self) -> bool:
        """A reply is being written and the window is still open."""
        return self._reply is not None and not self.window.closed

    # -- starting a reply

    def send(self, text: str) -> None:
        """Store the user's message and ask the model for a reply."""
        window = self.window
        text = tidy_message(text)
        if not text.strip() or self.generating:
            return
        if window.models.loading:
            window.show_info(
                "The model is still loading; your message is kept. Send it once loading finishes.",
                topic="model",
            )
            return
        if window.controller.loaded is None:
            window.show_error(
                "No model is loaded",
                "Choose a model in the toolbar first; your message is kept.",
                topic="model",
            )
            return
        conversations = window.conversations
        conversations.flush_system_prompt()
        created = False
        try:
            if conversations.conversation_id is None:
                conversation = window.store.create_conversation(
                    system_prompt=window.system_prompt_edit.toPlainText(), model=window.models.model_name()
                )
                window.window_state.remove(conversations.draft_key())
                conversations.conversation_id = conversation.id
                created = True
                window.window_state.setValue("conversation/current", conversation.id)
            else:
                conversation = window.store.get_conversation(conversations.conversation_id)
            # The branch the user sees, not the database's newest leaf: another window or the command
            # line may have added to this conversation meanwhile.
            leaf = None if created else window.chat_view.shown_leaf_id()
            user = window.store.add_message(conversation.id, "user", text, parent_id=leaf)
        except StoreError as exc:
            window.show_error(str(exc), "Your message is still in the box.")
            return
        if created:
            window.documents.link_pending(conversation.id)
        window.composer.clear()
        conversations.save_draft()
        window.sidebar.select(conversation.id)
        self._start_reply(user.id, sent=_SentMessage(text, user.id, created))

    def _start_reply(
        self, parent_id: int, *, sent: _SentMessage | None = None, searched: bool = False
    ) -> None:
        """Generate a reply to the message ``parent_id`` on the open branch; ``sent`` is the
        message just sent from the composer, given back if it is too long. A question in a chat with
        documents is searched first (``searched``: that is done)."""
        window = self.window
        conversation_id = window.conversations.conversation_id
        assert conversation_id is not None
        if not searched and self._search_documents(conversation_id, parent_id, sent):
            return
        try:
            conversation = window.store.get_conversation(conversation_id)
            path = window.store.path_to(parent_id)
            contexts = {
                message_id: found.context
                for message_id, found in window.store.message_sources(
                    [m.id for m in path if m.role == "user"]
                ).items()
                if found.context
            }
            reply = window.store.stream_reply(
                conversation_id, parent_id=parent_id, model=window.models.model_name()
            )
            message = window.store.get_message(reply.message_id)
        except StoreError as exc:
            window.show_error(str(exc))
            return
        self._prompt = build_messages(conversation.system_prompt, path, contexts=contexts)
        messages, variables = self._thinking_prompt(path)
        self._splitter = None
        self._thinking_started = self._thinking_ended = None
        self._reply = reply
        self._sent = sent
        self._reply_failed_store = False
        window.chat_view.set_messages(list(path))
        window.chat_view.set_excluded(set())
        window.chat_view.begin_stream(message)
        window.update_state()
        settings = self.generation_settings(conversation.settings_overrides)
        window.controller.generate(messages, settings, variables=variables or None)

    def _search_documents(self, conversation_id: int, parent_id: int, sent: _SentMessage | None) -> bool:
        """Search the chat's collections for the question ``parent_id`` when it has not been searched
        yet; True when a search started (the reply starts when it ends)."""
        window = self.window
        loaded = window.controller.loaded
        try:
            names = window.store.conversation_collections(conversation_id)
            if not names or loaded is None:
                return False
            question = window.store.get_message(parent_id)
            if question.role != "user" or window.store.message_sources([parent_id]):
                return False  # answered from the context stored with it: the same prompt as before
            overrides = window.store.get_conversation(conversation_id).settings_overrides
        except StoreError as exc:
            window.show_error(str(exc))
            return False
        settings = self.generation_settings(overrides)
        self._searching = parent_id
        window.status.showMessage("Searching documents…", 5000)
        window.update_state()

        def proceed(sources: MessageSources | None) -> None:
            if self._searching != parent_id or window.closed:
                return
            self._searching = None
            if window.conversations.conversation_id != conversation_id:
                self._take_back(conversation_id, sent)  # its chat was closed meanwhile
                window.update_state()
                return
            try:
                if sources is not None:  # kept even when empty: a new version is asked the same way
                    window.store.set_message_sources(parent_id, sources)
            except StoreError as exc:
                window.show_error(str(exc), "The question is answered without its documents.")
            if window.conversations.conversation_id == conversation_id:
                self._start_reply(parent_id, sent=sent, searched=True)
            window.update_state()

        def failed(error: LlamaDeskError) -> None:
            window.show_error(
                f"The documents could not be searched: {error}", "The question is answered without them."
            )
            proceed(None)

        window.documents.retrieve(
            names,
            question.content,
            n_ctx=loaded.n_ctx,
            reply_tokens=reply_reserve(loaded.n_ctx, settings.max_tokens),
            done=proceed,
            failed=failed,
        )
        return True

    def _take_back(self, conversation_id: int, sent: _SentMessage | None) -> None:
        """The chat a question was asked in was closed while its documents were searched (the window
        refuses a switch then, but another window may delete the chat): a question just sent goes back
        to that chat's message box, unanswered, to be sent again from there."""
        window = self.window
        try:
            title = window.store.get_conversation(conversation_id).title
        except StoreError:
            return  # the chat is gone, and the question with it
        if sent is None:
            window.show_info(
                f"The question in “{title}” was not answered: that chat was closed while its documents "
                "were searched. Open it and ask for the reply again."
            )
            return
        try:
            window.store.delete_message(sent.message_id)  # the collections it searches stay linked
        except StoreError as exc:
            window.show_error(str(exc), f"Open “{title}” and ask for the reply again.")
            return
        key = f"drafts/{conversation_id}"
        typed = str(window.window_state.value(key, "") or "")
        window.window_state.setValue(key, sent.text + (f"\n\n{typed}" if typed.strip() else ""))
        window.show_info(
            f"Your question in “{title}” was not sent: that chat was closed while its documents were "
            "searched. It is back in that chat's message box."
        )

    def _thinking_prompt(self, path: list[Message]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The prompt's messages and template variables with the composer's thinking choice applied;
        earlier replies' thinking goes along only where the template reads it."""
        loaded = self.window.controller.loaded
        if loaded is None:
            return list(self._prompt.messages), {}
        thinking = {m.id: m.thinking for m in path if m.thinking}
        messages: list[dict[str, Any]] = []
        for message, sources in zip(self._prompt.messages, self._prompt.sources, strict=True):
            text = thinking.get(sources[0], "") if len(sources) == 1 else ""
            messages.append({**message, "thinking": text} if text else dict(message))
        prepared, variables = apply_thinking(
            loaded.chat_format.template, messages, self.window.composer.thinking_choice()
        )
        if len(prepared) == len(messages) + 1:  # a system turn added for /think: keep indices aligned
            self._prompt.messages.insert(0, dict(prepared[0]))
            self._prompt.sources.insert(0, ())
        return prepared, variables

    def _on_model_loaded(self, loaded: Any) -> None:
        """Offer the Think switch the new model's template has, set to the model's default (its
        preset's, else the choice last made for it)."""
        window = self.window
        choice = window.settings.thinking_for(window.models.model_key(loaded.path))
        window.composer.set_thinking_control(loaded.chat_format.thinking_control, choice)

    def generation_settings(self, overrides: dict[str, Any] | None = None) -> GenerationSettings:
        """The loaded model's preset if it has one, else the global settings, plus conversation overrides."""
        window = self.window
        generation = window.settings.generation
        key = window.models.model_key()
        if key and key in window.settings.presets:
            generation = window.settings.presets[key].generation
        fields = GenerationSettings.model_fields
        changes = {k: v for k, v in (overrides or {}).items() if k in fields}
        if changes:
            try:
                generation = validated_update(generation, **changes)
            except SettingsError as exc:
                window.show_error(f"This conversation's own settings were ignored: {exc}")
        return generation

    def stop(self) -> None:
        """Stop the reply being written (it is kept as "stopped", even when it had not begun), or
        cancel a model load."""
        if self._searching is not None:
            question, self._searching = self._searching, None
            self.window.documents.cancel_retrieval()
            self._stopped_before_reply(question)
            self.window.update_state()
        elif self.generating:
            self.window.controller.stop()
        elif self.window.models.loading:
            self.window.models.cancel_load()

    def _stopped_before_reply(self, question_id: int) -> None:
        """Stopped while the documents were searched: the question gets an empty reply marked
        "stopped", as a reply stopped before its first token does, so Regenerate answers it."""
        window = self.window
        conversation_id = window.conversations.conversation_id
        if conversation_id is None:
            return
        try:
            window.store.add_message(
                conversation_id,
                "assistant",
                "",
                parent_id=question_id,
                status="stopped",
                model=window.models.model_name(),
            )
        except StoreError as exc:
            window.show_error(str(exc))
            return
        window.conversations.refresh_chat()

    def regenerate(self) -> None:
        """Write the last reply again, as a new version next to the old one."""
        last = self.window.conversations.last_assistant()
        if last is not None:
            self.regenerate_message(last.id)

    def _refuse_while_busy(self, doing: str) -> bool:
        """True (and say why) when a reply is being written or a model is loading."""
        if self.generating:
            self.window.show_info(f"Stop the reply being written (Esc) before you {doing}.")
            return True
        if self.window.models.loading:
            self.window.show_info(f"Wait for the model to finish loading before you {doing}.")
            return True
        return False

    def regenerate_message(self, message_id: int) -> None:
        """Write a new version of a reply (or a first reply to a user message)."""
        window = self.window
        if self._refuse_while_busy("regenerate a reply"):
            return
        if window.controller.loaded is None:
            window.show_info("Load a model first to write a new version of this reply.", topic="model")
            return
        try:
            message = window.store.get_message(message_id)
        except StoreError as exc:
            window.show_error(str(exc))
            return
        answered = message.parent_id if message.role == "assistant" else message.id
        if answered is None:
            return
        self._start_reply(answered)

    def ask_edit_message(self, message_id: int, draft: str | None = None) -> None:
        """Ask for the new text of a message (``draft``: text edited earlier), then branch from it."""
        window = self.window
        if self._refuse_while_busy("edit a message"):
            return
        try:
            message = window.store.get_message(message_id)
        except StoreError as exc:
            window.show_error(str(exc))
            return
        start = message.content if draft is None else draft
        text, ok = QInputDialog.getMultiLineText(window, "Edit message", "Message:", start)
        text = tidy_message(text)
        if not ok or not text.strip() or text == message.content:
            return
        if self.generating or window.models.loading:
            # Something started while the dialog was open (the start-up load, say): keep the edit.
            window.banner.show_message(
                "Your edit is kept: it can be sent once the model has finished.",
                "info",
                action_text="Edit again",
                action=lambda: self.ask_edit_message(message_id, text),
            )
            return
        self.edit_message(message_id, text)

    def edit_message(self, message_id: int, text: str) -> None:
        """Save an edited user message as a new branch and reply to it."""
        window = self.window
        if self._refuse_while_busy("edit a message"):
            return
        try:
            edited = window.store.edit_message(message_id, text)
        except StoreError as exc:
            window.show_error(str(exc))
            return
        if edited.role == "user" and window.controller.loaded is not None:
            self._start_reply(edited.id)
        else:
            window.conversations.refresh_chat()
            window.update_state()

    def step_branch(self, message_id: int, delta: int) -> None:
        """Show the previous/next version of a message (‹ 1/2 ›)."""
        window = self.window
        if self._refuse_while_busy("switch versions"):
            return
        try:
            versions = window.store.siblings(message_id)
            ids = [m.id for m in versions]
            position = ids.index(message_id) + delta if message_id in ids else -1
            if not 0 <= position < len(ids):
                return
            window.store.switch_branch(ids[position])
        except StoreError as exc:
            window.show_error(str(exc))
            return
        window.conversations.refresh_chat()
        window.update_state()

    # -- the reply being written

    def _on_context_prepared(self, fit: Any) -> None:
        if not self._active:
            return
        loaded = self.window.controller.loaded
        self._splitter = ReasoningSplitter(
            start_in_thinking=starts_in_thinking(fit.prompt),
            channels=loaded is not None and uses_channels(loaded.chat_format.template),
        )
        dropped = self._prompt.ids_of(fit.dropped)
        self.window.chat_view.set_excluded(dropped)
        # Said when more are left out (a long chat drops its oldest turns in steps), not at every reply.
        conversation = self.window.conversations.conversation_id
        told = self._left_out_told if self._left_out_told[0] == conversation else (conversation, 0)
        if len(dropped) > told[1]:
            self.window.show_info(
                f"{len(dropped)} older message(s) did not fit in the model's context and are left out "
                "(marked “not in context”). Start a new chat or choose a longer context in Preferences."
            )
        self._left_out_told = (conversation, len(dropped))

    def _on_token(self, piece: str) -> None:
        if not self._active:
            return
        if self._splitter is None:
            self._splitter = ReasoningSplitter()
        self._show_parts(self._splitter.feed(piece))

    def _show_parts(self, parts: list[tuple[str, str]]) -> None:
        """Store and show the thinking and answer text the splitter handed back."""
        assert self._reply is not None
        view = self.window.chat_view
        for kind, text in parts:
            try:
                if kind == "thinking":
                    if self._thinking_started is None:
                        self._thinking_started = time.monotonic()
                    self._reply.append_thinking(text)
                else:
                    if self._thinking_started is not None and self._thinking_ended is None:
                        self._thinking_ended = time.monotonic()
                    self._reply.append(text)
            except StoreError as exc:
                if not self._reply_failed_store:
                    self._reply_failed_store = True
                    self.window.show_error(
                        str(exc), "The reply is shown but may not be saved; free some disk space."
                    )
            if kind == "thinking":
                view.append_thinking(text)
            else:
                view.append_stream(text)

    def _end_thinking(self, stats: dict[str, Any] | None) -> dict[str, Any] | None:
        """Split off what the reply held back and add how long the model thought to ``stats``."""
        splitter, self._splitter = self._splitter, None
        if splitter is None or self._reply is None:
            return stats
        self._show_parts(splitter.finish())
        self._reply.set_thinking(splitter.thinking)
        if self._thinking_started is not None:
            ended = self._thinking_ended if self._thinking_ended is not None else time.monotonic()
            stats = {**(stats or {}), "thinking_s": round(ended - self._thinking_started, 2)}
        return stats

    def _finish_reply(self, status: str, stats: dict[str, Any] | None) -> Message | None:
        stats = self._end_thinking(stats)
        reply, self._reply = self._reply, None
        self._sent = None
        if reply is None:
            return None
        try:
            return reply.finish(status, stats)
        except StoreError as exc:
            self.window.show_error(str(exc), "Free some disk space; the reply could not be saved.")
            return None

    def _on_generation_finished(self, stats: Any) -> None:
        if not self._active:
            return
        window = self.window
        data = stats.to_dict()
        message = self._finish_reply(reply_status(str(data.get("stop_reason"))), data)
        if message is not None:
            window.chat_view.end_stream(message)
        window.status.set_stats(data)
        if data.get("stop_reason") == "context_full":
            window.show_error(
                "The reply stopped because the model's context is full",
                "Start a new chat, or raise the context length in Preferences and reload the model.",
            )
        elif data.get("error"):  # llama.cpp failed mid-reply: the part written so far is kept, marked failed
            window.show_error(str(data["error"]), "Try again, or change the model or its settings.")
        window.update_state()

    def _on_generation_failed(self, text: str) -> None:
        if not self._active:
            return
        message = self._finish_reply("failed", {"error": text})
        if message is not None:
            self.window.chat_view.end_stream(message)
        self.window.show_error(
            text, "Your messages are kept; try again, or change the model or its settings."
        )
        self.window.update_state()

    def _on_prompt_too_long(self, text: str) -> None:
        """The newest message does not fit in the context: a message just sent goes back to the box."""
        if not self._active:
            return
        window = self.window
        conversations = window.conversations
        sent, self._sent = self._sent, None
        if sent is None:  # a regenerate or an edit: the failed reply says why, next to the message
            self._on_generation_failed(text)
            return
        conversation_id = conversations.conversation_id
        assert conversation_id is not None
        try:
            if sent.created_conversation:
                window.store.delete_conversation(conversation_id)
            else:
                window.store.delete_message(sent.message_id)  # and the empty reply under it
        except StoreError as exc:  # the message stays where it is, its reply marked failed
            log.error("could not take back the message that did not fit: %s", exc)
            self._on_generation_failed(text)
            return
        self._reply = None
        typed = window.composer.text()  # anything written since it was sent stays after it
        if sent.created_conversation:
            window.window_state.remove(f"drafts/{conversation_id}")
            conversations.switch_to(None, save_draft=False)
        else:
            conversations.refresh_chat()
        window.composer.set_text(sent.text + (f"\n\n{typed}" if typed.strip() else ""))
        conversations.save_draft()
        window.show_error(text, "Your message is back in the box.")
        window.update_state()

    def stop_for_close(self) -> None:
        """At close: stop the reply and keep what was written, marked "stopped"."""
        if self._reply is None:
            return
        self.window.controller.stop()
        stats = self._end_thinking(None)
        reply, self._reply = self._reply, None
        try:
            reply.finish("stopped", stats)
        except StoreError as exc:
            log.error("could not save the last reply: %s", exc)
