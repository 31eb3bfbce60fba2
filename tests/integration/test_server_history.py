"""API chats kept in the history: a reasoning model's thinking is stored apart from its answer, in a
real SQLite conversation store, through the same ``History`` the server records finished chats with."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from llamadesk.chat.store import ConversationStore, Message
from llamadesk.paths import Paths
from llamadesk.server.history import History


@pytest.fixture
def store(paths: Paths) -> Iterator[ConversationStore]:
    opened = ConversationStore(paths.database_file)
    yield opened
    opened.close()


def _recorded(store: ConversationStore, reply: str, **options: object) -> list[Message]:
    """The stored path of one API chat whose model answered ``reply``."""
    history = History(lambda: store, owns_store=False)
    sent = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!", "thinking": "A greeting."},
        {"role": "user", "content": "Name a fruit."},
    ]
    history.record("qwen3", sent, reply, {"completion_tokens": 5}, **options)  # type: ignore[arg-type]
    history.close()  # waits for the write
    (conversation,) = store.list_conversations()
    return store.active_path(conversation.id)


def test_thinking_is_stored_apart_from_the_answer(store: ConversationStore) -> None:
    path = _recorded(store, "<think>\nThe user wants a fruit.\n</think>\n\nApple.")
    assert [(m.role, m.content, m.thinking) for m in path] == [
        ("user", "Hi", ""),
        ("assistant", "Hello!", "A greeting."),  # an earlier turn's reasoning_content, as sent
        ("user", "Name a fruit.", ""),
        ("assistant", "Apple.", "The user wants a fruit."),
    ]
    assert path[-1].model == "qwen3" and path[-1].stats == {"completion_tokens": 5}


def test_a_reply_that_began_inside_the_prompts_think(store: ConversationStore) -> None:
    prompt = "<|im_start|>assistant\n<think>\n"
    path = _recorded(store, "Still weighing apples and pears", prompt=prompt)  # stopped mid-thought
    assert (path[-1].content, path[-1].thinking) == ("", "Still weighing apples and pears")


def test_without_the_prompt_a_close_before_any_open_means_it_began_thinking(store: ConversationStore) -> None:
    path = _recorded(store, "A fruit, then.\n</think>\n\nPear.")
    assert (path[-1].content, path[-1].thinking) == ("Pear.", "A fruit, then.")


def test_gpt_oss_channels_are_split_and_their_markers_dropped(store: ConversationStore) -> None:
    reply = "<|channel|>analysis<|message|>Pick one.<|end|><|start|>assistant<|channel|>final<|message|>Plum."
    path = _recorded(store, reply)
    assert (path[-1].content, path[-1].thinking) == ("Plum.", "Pick one.")


@pytest.mark.parametrize("prompt", ["<|im_start|>assistant\n", None])
def test_a_plain_reply_and_markers_in_its_code_stay_text(
    store: ConversationStore, prompt: str | None
) -> None:
    reply = "Use this:\n```\n</think>\n```"
    path = _recorded(store, reply, prompt=prompt)
    assert (path[-1].content, path[-1].thinking) == (reply, "")
