"""Importing conversation files from anywhere: odd or hostile JSON is cleaned or refused with a message."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamadesk.chat.export import TITLE_MAX_LENGTH, file_name
from llamadesk.chat.store import ConversationStore, StoreError


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "conversations.sqlite3") as opened:
        yield opened


def tree(*nodes: dict[str, object], **extra: object) -> dict[str, object]:
    return {"format": "llamadesk.conversation", "version": 1, "tree": list(nodes), **extra}


USER = {"id": 1, "parent": None, "role": "user", "content": "hello"}


@pytest.mark.parametrize(
    "data",
    [
        {"messages": [], "created": 10**400},  # JSON integers have no size limit
        tree({**USER, "created": -(10**400)}),
        {"messages": [], "updated": "9999-12-31T23:59:59-12:00"},  # past year 9999 in UTC
        tree(USER, {"id": 2, "parent": True, "role": "assistant", "content": "x"}),
        tree(USER, active_path=[[1]]),
        tree(USER, active_path=[{"id": 1}]),
        {"messages": [{"role": "user", "content": "x"}], "pinned": "false"},
        {"messages": [{"role": "user", "content": [{"type": "text", "text": {"nested": 1}}]}]},
        {"messages": [{"role": ["user"], "content": "x"}]},
        tree({**USER, "status": {"complete": 1}}),
        {"messages": [], "version": "1"},
        [{"title": "From ChatGPT", "mapping": {}, "current_node": "x"}],
    ],
)
def test_hostile_files_are_refused_with_a_message_and_write_nothing(
    store: ConversationStore, data: object
) -> None:
    with pytest.raises(StoreError, match="not a conversation LlamaDesk can import"):
        store.import_json(data)
    assert store.count_conversations() == 0


def test_a_chatgpt_export_is_named_as_such(store: ConversationStore) -> None:
    with pytest.raises(StoreError, match="ChatGPT data export"):
        store.import_json([{"title": "Trip", "mapping": {}, "current_node": "a"}])


def test_lone_surrogates_from_json_escapes_are_kept_as_replacement_characters(
    store: ConversationStore,
) -> None:
    data = json.loads(
        '{"title": "T\\ud800", "system_prompt": "S\\udfff",'
        ' "tree": [{"id": 1, "parent": null, "role": "user", "content": "a\\ud800b",'
        ' "stats": {"note": "x\\udc00"}}]}'
    )
    conversation = store.import_json(data)
    assert conversation.title == "T\ufffd"
    assert conversation.system_prompt == "S\ufffd"
    [message] = store.active_path(conversation.id)
    assert message.content == "a\ufffdb"
    assert message.stats == {"note": "x\ufffd"}
    json.dumps(store.export_json(conversation.id), ensure_ascii=False).encode("utf-8")


def test_imported_title_is_one_line_and_bounded(store: ConversationStore) -> None:
    conversation = store.import_json(
        {"title": "Line one\nline two\x00\t" + "long " * 200, "messages": [{"role": "user", "content": "hi"}]}
    )
    assert "\n" not in conversation.title and "\x00" not in conversation.title
    assert conversation.title.startswith("Line one line two long long")
    assert len(conversation.title) <= TITLE_MAX_LENGTH
    assert conversation.title_is_custom


def test_rename_to_a_pasted_paragraph_keeps_one_bounded_line(store: ConversationStore) -> None:
    conversation = store.create_conversation()
    renamed = store.rename_conversation(conversation.id, "A title\r\nthat was pasted " + "x" * 1000)
    assert renamed.title.startswith("A title that was pasted x")
    assert len(renamed.title) <= TITLE_MAX_LENGTH
    assert renamed.title.endswith("…")


def test_round_trip_keeps_times_statuses_stats_and_system_prompt(store: ConversationStore) -> None:
    conversation = store.create_conversation(model="m.gguf", system_prompt="Be terse.")
    question = store.add_message(conversation.id, "user", "Name a colour", parent_id=None)
    reply = store.stream_reply(conversation.id, parent_id=question.id, model="m.gguf")
    reply.append("Red")
    reply.finish("stopped", {"completion_tokens": 1, "tokens_per_second": 12.5})
    store.stream_reply(conversation.id, parent_id=question.id).finish("failed", {"error": "boom"})
    exported = json.loads(json.dumps(store.export_json(conversation.id)))

    imported = store.import_json(exported)
    again = store.export_json(imported.id)
    assert again["tree"] == exported["tree"]  # times to the microsecond, statuses, stats, models
    for key in ("created", "updated", "system_prompt", "model", "messages", "active_path", "title"):
        assert again[key] == exported[key], key


def test_export_file_names_are_valid_everywhere() -> None:
    assert file_name('Q/A: what is 1\\2? <"yes"> | *no*', ".md") == "Q-A- what is 1-2- --yes-- - -no-.md"
    assert file_name("CON", ".json") == "_CON.json"
    assert file_name("nul.txt", ".md") == "_nul.txt.md"
    assert file_name(" . ", ".md") == "conversation.md"
    assert file_name("Ends with dots...", ".md") == "Ends with dots.md"
    assert file_name("..", ".md") == "conversation.md"
    long_name = file_name("word " * 100, ".md")
    assert len(long_name) <= 83 and not long_name[:-3].endswith((" ", "."))
