"""Kill a process with SIGKILL while it streams a reply: nothing committed may be lost or damaged."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

import llamadesk
from llamadesk.chat.store import ConversationStore

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL"),
]

RUNS = 20
COMPLETE_MESSAGES = 5

WRITER = """
import sys, time
from pathlib import Path
from llamadesk.chat.store import ConversationStore

db, tag, interval, complete = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
store = ConversationStore(db)
conversation = store.create_conversation(title=f"run {tag}")
parent = None
for index in range(complete):
    role = "user" if index % 2 == 0 else "assistant"
    text = f"run {tag} message {index} " + "x" * 300
    parent = store.add_message(conversation.id, role, text, parent_id=parent).id
reply = store.stream_reply(conversation.id, parent_id=parent, flush_interval=interval)
print("streaming", conversation.id, reply.message_id, flush=True)
piece = 0
committed = 0
while True:
    reply.append(f"<{piece:06d}>")
    piece += 1
    if reply.committed_length != committed:
        committed = reply.committed_length
        print("committed", committed, flush=True)
    time.sleep(0.0005)
"""


def expected_messages(tag: int) -> list[str]:
    return [f"run {tag} message {index} " + "x" * 300 for index in range(COMPLETE_MESSAGES)]


def streamed_text(length: int) -> str:
    pieces = (length + 7) // 8
    return "".join(f"<{piece:06d}>" for piece in range(pieces))[:length]


def test_sigkill_while_streaming_keeps_everything_committed(tmp_path: Path) -> None:
    db = tmp_path / "conversations.sqlite3"
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    source_root = str(Path(llamadesk.__file__).resolve().parent.parent)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [source_root, os.environ.get("PYTHONPATH")])),
    }
    rng = random.Random(8128)
    runs: dict[int, tuple[int, int]] = {}  # run -> (conversation id, streaming message id)

    for run in range(RUNS):
        interval = (0.0, 0.01, 0.05, 0.2)[run % 4]
        with subprocess.Popen(
            [sys.executable, str(script), str(db), str(run), str(interval), str(COMPLETE_MESSAGES)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        ) as child:
            assert child.stdout is not None and child.stderr is not None
            first = child.stdout.readline().split()
            if not first or first[0] != "streaming":
                child.kill()
                child.wait()
                pytest.fail(f"the writer did not start: {child.stderr.read()}")
            time.sleep(rng.uniform(0.0, 0.35))
            child.send_signal(signal.SIGKILL)
            child.wait()
            output = child.stdout.read()
            child.stderr.read()
        assert child.returncode == -signal.SIGKILL
        runs[run] = (int(first[1]), int(first[2]))
        # the kill can cut the writer's last line short: only whole "committed N" lines count
        reported = [
            int(words[1])
            for words in (line.split() for line in output.splitlines())
            if len(words) == 2 and words[0] == "committed" and words[1].isdigit()
        ]
        last_reported = max(reported, default=0)

        with closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            conn.execute("INSERT INTO messages_fts(messages_fts, rank) VALUES ('integrity-check', 1)")
            conn.rollback()

        with ConversationStore(db) as store:
            assert store.warning is None
            assert store.interrupted_count == 1
            for earlier, (conversation_id, message_id) in runs.items():
                path = store.active_path(conversation_id)
                assert [m.content for m in path[:COMPLETE_MESSAGES]] == expected_messages(earlier)
                assert all(m.status == "complete" for m in path[:COMPLETE_MESSAGES])
                assert [m.id for m in path[COMPLETE_MESSAGES:]] == [message_id]
                assert path[-1].status == "interrupted"
            reply = store.get_message(runs[run][1])
            # what was committed survives: at least up to the last commit the writer saw finish,
            # always a whole number of appended pieces, never anything that was not written
            assert len(reply.content) >= last_reported
            assert len(reply.content) % 8 == 0
            assert reply.content == streamed_text(len(reply.content))
