"""Search finds what a user means in every script, and never fails on what they type."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llamadesk.chat.store import ConversationStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "conversations.sqlite3") as opened:
        yield opened


def say(store: ConversationStore, text: str, title: str = "Untitled") -> int:
    """A conversation with one message and a title that matches no query."""
    conversation = store.create_conversation(title=title)
    store.add_message(conversation.id, "user", text, parent_id=None)
    return conversation.id


@pytest.mark.parametrize(
    ("text", "query"),
    [
        ("明日の東京の天気を教えてください", "天気"),  # Japanese: no spaces between words
        ("请问北京今天的天气怎么样", "天气"),  # Chinese
        ("ผมอยากไปเที่ยวเชียงใหม่", "เชียงใหม่"),  # Thai
        ("Launch day 🚀 went well", "🚀"),  # emoji
    ],
)
def test_a_word_inside_an_unspaced_sentence_is_found(store: ConversationStore, text: str, query: str) -> None:
    wanted = say(store, text)
    say(store, "something else entirely")
    hits = store.search(query)
    assert [hit.conversation_id for hit in hits] == [wanted]
    assert f"[{query}]" in hits[0].snippet


def test_every_term_must_match_and_titles_come_first(store: ConversationStore) -> None:
    both = say(store, "東京 weather report for Monday")
    say(store, "東京 restaurants")
    titled = say(store, "anything", title="東京 weather notes")
    hits = store.search("東京 weather")
    assert [(hit.conversation_id, hit.message_id is None) for hit in hits] == [(titled, True), (both, False)]
    assert hits[0].snippet == "[東京] [weather] notes"


def test_like_wildcards_in_a_query_are_plain_characters(store: ConversationStore) -> None:
    wanted = say(store, "東京 costs 100% more")
    say(store, "東京 costs 1000 more")
    say(store, "東京 a_b")
    path = say(store, "東京 C:\\temp")
    assert [hit.conversation_id for hit in store.search("東京 100%")] == [wanted]
    assert len(store.search("東京 a_b")) == 1
    assert [hit.conversation_id for hit in store.search("東京 C:\\temp")] == [path]
    assert store.search("東京 C:\\t_mp") == []


def test_a_long_message_gets_a_short_snippet_around_the_match(store: ConversationStore) -> None:
    say(store, "前" * 5000 + "天気" + "後" * 5000)
    [hit] = store.search("天気")
    assert "[天気]" in hit.snippet
    assert hit.snippet.startswith("…") and hit.snippet.endswith("…")
    assert len(hit.snippet) < 120


@pytest.mark.parametrize(
    "query",
    [
        '"東京',
        '東京"',
        "東京 OR",
        "NOT 天気",
        "天気*",
        "(天気)",
        "天気:",
        "🚀" * 5000,
        "「天気」",
        "\\",
        "%",
        "_",
    ],
)
def test_unspaced_queries_with_syntax_never_raise(store: ConversationStore, query: str) -> None:
    say(store, "東京の天気")
    assert isinstance(store.search(query), list)
