"""`llamadesk chat --conversation ID` in a new process reads only the new message: the state the
last process (or the window) saved is loaded once, and a budget of 0 keeps nothing on disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llamadesk.chat.prompt import build_messages
from llamadesk.chat.store import ConversationStore
from llamadesk.engine.service import InferenceService
from llamadesk.engine.states import SUFFIX, ConversationStates
from llamadesk.paths import get_paths
from llamadesk.settings import GenerationSettings, RuntimeSettings, Settings, SettingsStore

pytestmark = pytest.mark.model

CHAT = ["chat", "--ctx", "512", "--temperature", "0", "--max-tokens", "8", "--json"]


def chat(home: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "llamadesk", *CHAT, *args],
        capture_output=True,
        text=True,
        env=dict(os.environ, LLAMADESK_HOME=str(home)),
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return data


def test_each_process_reads_only_the_new_message(llamadesk_home: Path) -> None:
    first = chat(llamadesk_home, "--new", "--system", "Be brief.", "My name is Alice. Say hello.")
    conversation = str(first["conversation_id"])
    assert first["restored_from"] == "" and first["cached_tokens"] == 0
    states = get_paths(llamadesk_home).data_dir / "states"
    assert len(list(states.glob("*" + SUFFIX))) == 1
    for question in ("What is my name?", "Say it once more."):
        turn = chat(llamadesk_home, "--conversation", conversation, question)
        assert turn["restored_from"] == "disk"
        # Everything before this turn came from the saved state; only the last reply's end, the
        # question and a few role markers were read.
        assert turn["prompt_tokens"] - turn["cached_tokens"] <= 40
        assert turn["cached_tokens"] >= first["prompt_tokens"]
    assert len(list(states.glob("*" + SUFFIX))) == 1  # one conversation, one state


def test_the_cli_continues_from_the_state_the_window_saved(starter_model: Path, llamadesk_home: Path) -> None:
    paths = get_paths(llamadesk_home).ensure()
    store = ConversationStore(paths.database_file)
    try:
        conversation = store.create_conversation(system_prompt="Be brief.", model="starter")
        user = store.add_message(
            conversation.id, "user", "I have a dog called Rex. Say hello to him.", parent_id=None
        )
        # What the window does: the same message rule, the same service, the data folder's states.
        service = InferenceService(states=ConversationStates.in_folder(paths.data_dir / "states"))
        try:
            load = service.load(starter_model, RuntimeSettings(n_ctx=512), client="window")
            assert load.wait(300) and load.error is None, load.error
            messages = build_messages("Be brief.", store.active_path(conversation.id)).messages
            job = service.chat(messages, GenerationSettings(temperature=0, max_tokens=8), client="window")
            assert job.wait(300) and job.error is None, job.error
            reply = store.stream_reply(conversation.id, parent_id=user.id, model="starter")
            reply.append(job.result.text)
            reply.finish("complete", job.result.stats.to_dict())
        finally:
            service.close(30)  # quitting the app saves the conversation's state
    finally:
        store.close()
    turn = chat(llamadesk_home, "--conversation", str(conversation.id), "What is my dog called?")
    assert turn["restored_from"] == "disk"
    assert turn["cached_tokens"] >= len(job.result.fit.prompt_tokens)


def test_a_state_budget_of_zero_keeps_nothing_on_disk(llamadesk_home: Path) -> None:
    paths = get_paths(llamadesk_home).ensure()
    settings = Settings()
    settings.app.state_disk_budget_mb = 0
    SettingsStore(paths.settings_file).save(settings)
    first = chat(llamadesk_home, "--new", "Hello there.")
    second = chat(llamadesk_home, "--conversation", str(first["conversation_id"]), "How are you?")
    assert second["restored_from"] == "" and second["cached_tokens"] == 0
    assert not list((paths.data_dir / "states").glob("*" + SUFFIX))
