"""Exports keep a question's sources: a "Sources" list in Markdown, ``sources`` in JSON, and an import
of that JSON into another store gives the question the same context and numbered passages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamadesk.chat.store import ConversationStore, MessageSources, SourceRef, StoreError
from llamadesk.chat.store.importing import read_import_file


def _sources() -> MessageSources:
    refs = (
        SourceRef(
            1, 11, "Cookbook", "/docs/bread.md", "bread.md", "§ Bread > Rising", "Yeast ferments sugar."
        ),
        SourceRef(2, 12, "Cookbook", "/docs/soup.pdf", "Soup", "page 3", "Simmer for forty minutes."),
        SourceRef(3, 13, "Cookbook", "/docs/notes.txt", "notes.txt", "", "No heading here."),
    )
    context = "Answer using the sources below.\n\n[1] bread.md\nYeast ferments sugar."
    return MessageSources(context, refs)


def _chat(store: ConversationStore) -> tuple[int, int, int]:
    conversation = store.create_conversation(title="Baking")
    question = store.add_message(conversation.id, "user", "Why does bread rise?", parent_id=None)
    answer = store.add_message(conversation.id, "assistant", "Yeast makes gas [1].", parent_id=question.id)
    store.set_message_sources(question.id, _sources())
    return conversation.id, question.id, answer.id


def test_markdown_lists_the_sources_under_the_answer(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "a.sqlite3") as store:
        conversation_id, _question, answer = _chat(store)
        store.add_message(conversation_id, "user", "And soup?", parent_id=answer)  # no sources: no list
        text = store.export_markdown(conversation_id)
    answer_at = text.index("Yeast makes gas [1].")
    sources_at = text.index("**Sources**")
    assert answer_at < sources_at < text.index("And soup?")
    assert "- [1] bread.md — § Bread > Rising\n" in text
    assert "- [2] Soup — page 3\n" in text
    assert "- [3] notes.txt\n" in text
    assert text.count("**Sources**") == 1


def test_a_question_without_an_answer_lists_its_own_sources(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "a.sqlite3") as store:
        conversation = store.create_conversation(title="Waiting")
        question = store.add_message(conversation.id, "user", "Why does bread rise?", parent_id=None)
        store.set_message_sources(question.id, _sources())
        text = store.export_markdown(conversation.id)
    assert text.index("Why does bread rise?") < text.index("**Sources**")
    assert "- [2] Soup — page 3" in text


def test_json_export_and_import_keep_the_sources(tmp_path: Path) -> None:
    with ConversationStore(tmp_path / "a.sqlite3") as store:
        conversation_id, _question, _answer = _chat(store)
        data = store.export_json(conversation_id)
    first, second = data["tree"]
    assert first["role"] == "user" and first["sources_context"] == _sources().context
    assert [s["title"] for s in first["sources"]] == ["bread.md", "Soup", "notes.txt"]
    assert first["sources"][1] == {
        "number": 2,
        "chunk_id": 12,
        "collection": "Cookbook",
        "path": "/docs/soup.pdf",
        "title": "Soup",
        "location": "page 3",
        "text": "Simmer for forty minutes.",
    }
    assert "sources" not in second  # the answer has none of its own
    assert all("sources" not in m for m in data["messages"])  # the OpenAI list stays plain

    export_file = tmp_path / "baking.json"
    export_file.write_text(json.dumps(data), encoding="utf-8")
    with ConversationStore(tmp_path / "b.sqlite3") as other:
        imported = other.import_json(read_import_file(export_file))
        question, answer = other.active_path(imported.id)
        restored = other.message_sources([question.id, answer.id])
        assert restored == {question.id: _sources()}
        # Exported again from the new store, the file says the same about its sources.
        again = other.export_json(imported.id)
    assert again["tree"][0]["sources"] == first["sources"]
    assert again["tree"][0]["sources_context"] == first["sources_context"]


def test_import_leaves_out_entries_that_are_not_sources_and_refuses_a_bad_field(tmp_path: Path) -> None:
    data = {
        "messages": [
            {
                "role": "user",
                "content": "Why?",
                "sources": [
                    {
                        "number": 1,
                        "chunk_id": 5,
                        "collection": "c",
                        "path": "/p",
                        "title": "t",
                        "location": "",
                        "text": "kept",
                    },
                    {"number": "two", "chunk_id": 6},
                    "not a source",
                ],
            },
            {"role": "assistant", "content": "Because [1]."},
        ]
    }
    with ConversationStore(tmp_path / "c.sqlite3") as store:
        imported = store.import_json(data)
        question, _answer = store.active_path(imported.id)
        kept = store.message_sources([question.id])[question.id]
        assert [s.text for s in kept.sources] == ["kept"] and kept.context == ""
        with pytest.raises(StoreError, match="'sources' must be a list"):
            store.import_json({"messages": [{"role": "user", "content": "x", "sources": "all of them"}]})
