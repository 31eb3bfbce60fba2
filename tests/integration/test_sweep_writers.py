"""Several processes adding questions and replies to one conversation at the same time.

Each writer does what a front end does (two windows, the CLI): it reads the branch's leaf, adds its
question under that leaf, and streams its reply under its own question. Whatever order the commits
interleave in, every reply must hang under the question its own process wrote: a reply attached to
"the newest message" would answer another writer's question.
"""

from __future__ import annotations

import multiprocessing
import re
from pathlib import Path
from typing import Any

from llamadesk.chat.store import ConversationStore

WRITERS = 4
PAIRS = 20
_TAGGED = re.compile(r"writer (\d+) (question|answer) (\d+)")


def write_pairs(db_path: str, conversation_id: int, writer: int, start: Any) -> list[tuple[int, int]]:
    """Add ``PAIRS`` question + reply pairs as writer ``writer``; returns (question id, reply id) pairs."""
    written = []
    with ConversationStore(db_path) as store:
        start.wait()  # all writers begin together
        for index in range(PAIRS):
            leaf = store.get_conversation(conversation_id).active_leaf_id
            question = store.add_message(
                conversation_id, "user", f"writer {writer} question {index}", parent_id=leaf
            )
            reply = store.stream_reply(conversation_id, parent_id=question.id, flush_interval=0.0)
            for piece in (f"writer {writer} ", "answer ", str(index)):
                reply.append(piece)  # flushed on every piece: the commits interleave with the others'
            finished = reply.finish("complete")
            written.append((question.id, finished.id))
    return written


def test_every_reply_hangs_under_the_question_its_own_writer_asked(tmp_path: Path) -> None:
    db_path = tmp_path / "conversations.sqlite3"
    with ConversationStore(db_path) as store:
        conversation_id = store.create_conversation().id
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        start = manager.Barrier(WRITERS)
        with context.Pool(WRITERS) as pool:
            results = pool.starmap(
                write_pairs, [(str(db_path), conversation_id, writer, start) for writer in range(WRITERS)]
            )

    with ConversationStore(db_path) as store:
        for writer, pairs in enumerate(results):
            assert len(pairs) == PAIRS
            for index, (question_id, reply_id) in enumerate(pairs):
                question, reply = store.get_message(question_id), store.get_message(reply_id)
                assert (question.role, question.content) == ("user", f"writer {writer} question {index}")
                assert (reply.role, reply.content) == ("assistant", f"writer {writer} answer {index}")
                assert reply.parent_id == question_id
        tree = store.export_json(conversation_id)["tree"]

    # Read back from the export alone: every reply's parent is the question with the same tag.
    assert len(tree) == 2 * WRITERS * PAIRS
    nodes = {node["id"]: node for node in tree}
    replies = [node for node in tree if node["role"] == "assistant"]
    assert len(replies) == WRITERS * PAIRS
    for node in replies:
        parent = nodes[node["parent"]]
        answered, asked = _TAGGED.fullmatch(node["content"]), _TAGGED.fullmatch(parent["content"])
        assert answered is not None and asked is not None and parent["role"] == "user"
        assert (asked[1], asked[2], asked[3]) == (answered[1], "question", answered[3])
