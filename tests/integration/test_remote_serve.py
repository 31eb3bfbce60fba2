"""LlamaDesk's own `llamadesk serve`, in a second process, used as a remote server (real model, real HTTP).

One server runs for the whole module (loading the starter model once).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from llamadesk.chat.store import ConversationStore
from llamadesk.engine.engine import StopReason
from llamadesk.paths import get_paths
from llamadesk.remote.client import RemoteClient
from llamadesk.remote.registry import check_server
from llamadesk.settings import GenerationSettings, RemoteServer

pytestmark = pytest.mark.model

GREEDY = GenerationSettings(temperature=0.0, max_tokens=12, seed=1)
QUESTION: list[Any] = [{"role": "user", "content": "Name a colour."}]


@pytest.fixture(scope="module")
def served(starter_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(base URL without /v1, model id) of `llamadesk serve` with the starter model."""
    home = tmp_path_factory.mktemp("serve-home")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llamadesk",
            "serve",
            "-m",
            str(starter_model),
            "--ctx",
            "1024",
            "--port",
            "0",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "LLAMADESK_HOME": str(home)},
    )
    assert process.stderr is not None
    url = ""
    for line in process.stderr:
        found = re.search(r"at (http://127\.0\.0\.1:\d+)/v1", line)
        if found:
            url = found.group(1)
            break
    if not url:
        process.wait(30)
        pytest.fail(f"llamadesk serve did not start (exit status {process.returncode})")
    drain = threading.Thread(
        target=process.stderr.read, daemon=True
    )  # its request log must not fill the pipe
    drain.start()
    try:
        yield url, starter_model.stem
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        drain.join(10)
        process.stderr.close()


def test_the_models_of_llamadesk_serve_are_listed_and_a_greedy_reply_matches_the_servers_own(
    served: tuple[str, str],
) -> None:
    url, model = served
    status = check_server(RemoteServer(name="Home", url=url), None)
    assert status.reachable and model in status.models
    pieces: list[str] = []
    with RemoteClient(url, name="Home") as client:
        reply = client.chat(model, QUESTION, GREEDY, on_text=pieces.append)
    assert len(pieces) > 1 and "".join(pieces) == reply.text
    assert reply.stats.stop_reason in (StopReason.EOS, StopReason.MAX_TOKENS)
    assert 0 < reply.stats.completion_tokens <= GREEDY.max_tokens and reply.stats.prompt_tokens > 0
    # The same request, not streamed, through the plain OpenAI client: the same words.
    with openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120) as plain:
        whole = plain.chat.completions.create(
            model=model,
            messages=QUESTION,
            temperature=0.0,
            max_tokens=12,
            seed=1,
        )
    assert whole.choices[0].message.content == reply.text


def test_chat_server_on_the_command_line_stores_the_reply_with_server_and_model(
    served: tuple[str, str], llamadesk_home: Path
) -> None:
    url, model = served
    command = ["chat", "--server", url, "-m", model, "--json", "--new", "--temperature", "0"]
    command += ["--max-tokens", "12", "--seed", "1", QUESTION[0]["content"]]
    done = subprocess.run(
        [sys.executable, "-m", "llamadesk", *command],
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "LLAMADESK_HOME": str(llamadesk_home)},
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    host = url.removeprefix("http://")
    assert result["model"] == f"{model} @ {host}" and result["text"]
    with ConversationStore(get_paths(llamadesk_home).database_file) as store:
        path = store.active_path(result["conversation_id"])
    assert [m.role for m in path] == ["user", "assistant"]
    assert (path[1].content, path[1].status, path[1].model) == (
        result["text"],
        "complete",
        f"{model} @ {host}",
    )


def test_stop_closes_the_stream_and_the_server_goes_on_serving(served: tuple[str, str]) -> None:
    url, model = served
    stop = threading.Event()
    pieces: list[str] = []

    stopped_at: list[float] = []

    def on_text(piece: str) -> None:
        pieces.append(piece)
        if len(pieces) == 3:
            stopped_at.append(time.monotonic())
            stop.set()

    long_reply = GenerationSettings(temperature=0.0, max_tokens=2000)
    story = [{"role": "user", "content": "Write a very long story about a llama."}]
    with RemoteClient(url, name="Home") as client:
        reply = client.chat(model, story, long_reply, on_text=on_text, stop=stop)
        print(f"the stream ended {1000 * (time.monotonic() - stopped_at[0]):.1f} ms after Stop")
        assert reply.stats.stop_reason is StopReason.USER and len(pieces) == 3
        again = client.chat(model, QUESTION, GREEDY, on_text=lambda _piece: None)
    assert again.text and again.stats.stop_reason in (StopReason.EOS, StopReason.MAX_TOKENS)
