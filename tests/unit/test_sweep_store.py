"""The conversation store and the prompt against text and numbers from outside: lone surrogates,
non-finite numbers, and files that are not files. Nothing a caller passes makes a save fail,
and every export imports again."""

from __future__ import annotations

import io
import json
import os
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from llamadesk import safejson
from llamadesk.chat import render_prompt
from llamadesk.chat.store import (
    ConversationStore,
    StoreError,
    importing,
    read_import_file,
    read_import_stream,
)

BAD = "a\ud800b"  # what JSON's "\ud800", a Qt string or a file name decoded with surrogateescape gives
CLEAN = "a\ufffdb"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ConversationStore]:
    with ConversationStore(tmp_path / "conversations.sqlite3") as opened:
        yield opened


def exported_text(store: ConversationStore, conversation_id: int) -> str:
    """The conversation as the JSON file ``conversations export`` writes (strict JSON, UTF-8)."""
    text = json.dumps(store.export_json(conversation_id), ensure_ascii=False, allow_nan=False)
    text.encode("utf-8")
    return text


def test_lone_surrogates_in_every_text_a_caller_passes_are_saved_as_replacement_characters(
    store: ConversationStore,
) -> None:
    conversation = store.create_conversation(model=BAD, system_prompt=BAD)
    assert (conversation.model, conversation.system_prompt) == (CLEAN, CLEAN)
    updated = store.update_conversation(conversation.id, model=BAD + "2", system_prompt=BAD + "2")
    assert (updated.model, updated.system_prompt) == (CLEAN + "2", CLEAN + "2")
    question = store.add_message(conversation.id, "user", BAD, parent_id=None, model=BAD)
    assert (question.content, question.model) == (CLEAN, CLEAN)
    edited = store.edit_message(question.id, "edited " + BAD)
    assert edited.content == "edited " + CLEAN
    with store.stream_reply(conversation.id, parent_id=edited.id, model=BAD) as reply:
        reply.append("first " + BAD)
        reply.flush()
        assert store.get_message(reply.message_id).content == "first " + CLEAN
        reply.append(" then \udfff")
        finished = reply.finish("complete", {"error": BAD})
    assert finished.content == "first " + CLEAN + " then \ufffd" and finished.stats == {"error": CLEAN}
    assert "\ud800" not in exported_text(store, conversation.id)


def test_a_search_with_a_lone_surrogate_finds_what_it_can(store: ConversationStore) -> None:
    conversation = store.create_conversation()
    store.add_message(conversation.id, "user", "find me here", parent_id=None)
    hits = store.search("here\ud800")  # typed next to a word: the word is still searched for
    assert hits == store.search("here") and {hit.conversation_id for hit in hits} == {conversation.id}


def test_non_finite_numbers_in_stats_are_saved_as_null_and_the_export_imports_again(
    store: ConversationStore,
) -> None:
    conversation = store.create_conversation(settings_overrides={"temperature": float("nan")})
    question = store.add_message(conversation.id, "user", "hi", parent_id=None)
    stats = {"tokens_per_s": float("inf"), "ttft_s": 0.5, "per_layer": [1.0, float("-inf")]}
    store.add_message(conversation.id, "assistant", "hello", parent_id=question.id, stats=stats)
    reply = store.active_path(conversation.id)[-1]
    assert reply.stats == {"tokens_per_s": None, "ttft_s": 0.5, "per_layer": [1.0, None]}
    assert store.get_conversation(conversation.id).settings_overrides == {"temperature": None}
    again = store.import_json(safejson.loads(exported_text(store, conversation.id)))
    assert [m.content for m in store.active_path(again.id)] == ["hi", "hello"]


def test_columns_written_by_another_program_never_give_infinite_numbers(
    store: ConversationStore, tmp_path: Path
) -> None:
    conversation = store.create_conversation()
    message = store.add_message(conversation.id, "assistant", "x", parent_id=None)
    deep = "[" * 500 + "]" * 500
    with closing(sqlite3.connect(tmp_path / "conversations.sqlite3")) as conn, conn:
        conn.execute(
            "UPDATE messages SET stats_json = ? WHERE id = ?",
            (
                '{"prompt_tokens": Infinity, "completion_tokens": 1e999, "tokens_per_s": NaN, "n": 3}',
                message.id,
            ),
        )
        conn.execute(
            "UPDATE conversations SET settings_json = ? WHERE id = ?", (f'{{"x": {deep}}}', conversation.id)
        )
    stats = store.get_message(message.id).stats
    assert stats == {"prompt_tokens": None, "completion_tokens": None, "tokens_per_s": None, "n": 3}
    assert store.get_conversation(conversation.id).settings_overrides == {}  # too deep: left out
    exported_text(store, conversation.id)


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX files")
def test_a_named_pipe_to_import_is_refused_without_being_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "chat.json"
    os.mkfifo(fifo)
    opened: list[bool] = []

    def writer() -> None:  # lets a wrongly opened pipe end instead of blocking for ever
        fd = os.open(fifo, os.O_WRONLY)
        opened.append(True)
        os.write(fd, b"[]")
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(StoreError, match=r"chat\.json is a named pipe \(FIFO\), not a regular file"):
            read_import_file(fifo)
        assert opened == []
    finally:
        release = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        thread.join()
        os.close(release)


def test_an_import_file_too_large_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.truncate(4 << 30)  # sparse: 4 GB that use no disk, and would take 4 GB to read
    with pytest.raises(StoreError, match=r"huge\.json is larger than \d+ MB"):
        read_import_file(path)


@pytest.mark.parametrize("kind", ["folder", "named pipe"])
def test_a_database_path_that_is_not_a_file_is_named_as_such(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "conversations.sqlite3"
    if kind == "folder":
        path.mkdir()
    elif sys.platform == "win32":
        pytest.skip("named pipes are POSIX files")
    else:
        os.mkfifo(path)
    with pytest.raises(StoreError, match="not a conversation database: move it elsewhere"):
        ConversationStore(path)


def test_a_template_that_writes_a_lone_surrogate_gives_a_prompt_the_tokenizer_can_encode() -> None:
    template = "{{ '\\ud800' }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    prompt = render_prompt(template, [{"role": "user", "content": "hi \udcff"}])
    assert prompt == "\ufffdhi \ufffd"
    prompt.encode("utf-8")


def test_an_endless_pipe_to_import_ends_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importing, "MAX_IMPORT_BYTES", 1 << 20)
    read_end, write_end = os.pipe()

    def endless() -> None:  # like `yes | llamadesk conversations import -`
        try:
            while True:
                os.write(write_end, b"y\n" * 4096)
        except OSError:  # the reader closed its end
            os.close(write_end)

    thread = threading.Thread(target=endless, daemon=True)
    thread.start()
    with os.fdopen(read_end, "rb") as stream, pytest.raises(StoreError, match="holds more than 1 MB"):
        read_import_stream(stream)
    thread.join()
    assert read_import_stream(io.BytesIO(b'[{"role": "user", "content": "hi"}]')) == [
        {"role": "user", "content": "hi"}
    ]


def test_imported_reply_stats_keep_only_real_numbers(store: ConversationStore) -> None:
    stats = {"prompt_tokens": "many", "completion_tokens": 1e300, "ttft_s": True, "tokens_per_s": 12.5}
    tree = [
        {"id": 1, "parent": None, "role": "user", "content": "hi"},
        {
            "id": 2,
            "parent": 1,
            "role": "assistant",
            "content": "hello",
            "stats": {**stats, "stop_reason": "eos"},
        },
    ]
    conversation = store.import_json({"format": "llamadesk.conversation", "version": 1, "tree": tree})
    reply = store.active_path(conversation.id)[-1]
    assert reply.stats == {"tokens_per_s": 12.5, "stop_reason": "eos"}


def test_the_path_to_a_question_is_its_own_branch_whichever_branch_is_shown(store: ConversationStore) -> None:
    conversation = store.create_conversation()
    first = store.add_message(conversation.id, "user", "first", parent_id=None)
    answer = store.add_message(conversation.id, "assistant", "answer", parent_id=first.id)
    mine = store.add_message(conversation.id, "user", "my question", parent_id=answer.id)
    # Another window branches from the first answer meanwhile: its branch is the shown one now.
    other = store.add_message(conversation.id, "user", "their question", parent_id=answer.id)
    assert store.active_path(conversation.id)[-1].id == other.id
    assert [m.content for m in store.path_to(mine.id)] == ["first", "answer", "my question"]
    with pytest.raises(StoreError, match="does not exist"):
        store.path_to(2**70)
