"""`llamadesk servers` and `llamadesk chat --server` against a stub server on 127.0.0.1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamadesk.chat.store import ConversationStore
from llamadesk.cli import main
from llamadesk.paths import get_paths
from llamadesk.remote.registry import secret_name
from llamadesk.secrets import SecretStore
from llamadesk.settings import SettingsStore
from remote_stub import MODEL, StubState, free_port, running_stub


@pytest.fixture
def stub() -> Iterator[tuple[str, StubState]]:
    with running_stub() as running:
        yield running


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_servers_are_added_listed_and_removed_with_their_keys_in_the_secret_store(
    capsys: pytest.CaptureFixture[str], stub: tuple[str, StubState], llamadesk_home: Path
) -> None:
    url, state = stub
    status, out, _ = _run(capsys, "servers", "add", url, "--name", "Stub box", "--api-key", "k-9")
    assert status == 0 and "Stub box: reachable, 1 model(s)" in out
    assert state.requests[-1].headers["authorization"] == "Bearer k-9"
    dead = f"http://127.0.0.1:{free_port()}"
    status, _, err = _run(capsys, "servers", "add", dead, "--name", "Off")
    assert status == 0 and "cannot be reached" in err and "added anyway" in err
    status, out, _ = _run(capsys, "servers", "list", "--json")
    listed = json.loads(out)
    assert [(s["name"], s["reachable"], s["models"]) for s in listed] == [
        ("Stub box", True, [MODEL]),
        ("Off", False, []),
    ]
    paths = get_paths(llamadesk_home)
    assert SecretStore(paths.config_dir).get(secret_name("Stub box")) == "k-9"
    assert "k-9" not in paths.settings_file.read_text(encoding="utf-8")

    status, _, err = _run(capsys, "servers", "add", url + "/", "--name", "Again")
    assert status == 2 and "already listed as 'Stub box'" in err
    status, _, _ = _run(capsys, "servers", "remove", "Stub box")
    assert status == 0
    assert SecretStore(paths.config_dir).get(secret_name("Stub box")) is None
    assert [s.name for s in SettingsStore(paths.settings_file).load().remote_servers] == ["Off"]


def test_a_page_that_is_not_an_openai_api_is_not_added(
    capsys: pytest.CaptureFixture[str], stub: tuple[str, StubState], llamadesk_home: Path
) -> None:
    url, state = stub
    state.models_mode = "html"
    status, _, err = _run(capsys, "servers", "add", url)
    assert status == 2 and "not an OpenAI-compatible model list" in err and "--no-check" in err
    assert SettingsStore(get_paths(llamadesk_home).settings_file).load().remote_servers == []


def test_chat_with_a_listed_server_streams_and_stores_who_answered(
    capsys: pytest.CaptureFixture[str], stub: tuple[str, StubState], llamadesk_home: Path
) -> None:
    url, state = stub
    assert _run(capsys, "servers", "add", url, "--name", "Stub box", "--api-key", "k-9")[0] == 0
    status, out, _ = _run(capsys, "chat", "--server", "Stub box", "--json", "--new", "--seed", "4", "Hi")
    assert status == 0
    result = json.loads(out)
    assert result["text"] == "".join(state.pieces) and result["stop_reason"] == "eos"
    assert result["model"] == f"{MODEL} @ Stub box"  # -m left out: the server's only model
    body = state.requests[-1].body
    assert body["seed"] == 4 and state.requests[-1].headers["authorization"] == "Bearer k-9"
    with ConversationStore(get_paths(llamadesk_home).database_file) as store:
        reply = store.active_path(result["conversation_id"])[-1]
    assert (reply.content, reply.status, reply.model) == (result["text"], "complete", f"{MODEL} @ Stub box")


def test_chat_errors_name_the_server_and_a_cut_reply_is_kept(
    capsys: pytest.CaptureFixture[str], stub: tuple[str, StubState], llamadesk_home: Path
) -> None:
    url, state = stub
    state.mode = "429"
    status, out, err = _run(capsys, "chat", "--server", url, "-m", MODEL, "--new", "Hi")
    assert status == 2 and out == ""
    assert "is busy (429 Too Many Requests): try again in 7 s" in err
    state.mode = "cut"
    status, out, err = _run(capsys, "chat", "--server", url, "-m", MODEL, "--new", "Hi")
    assert status == 2 and out.strip() == "".join(state.pieces[:2])
    assert "was cut during the reply" in err and "The part received is kept" in err
    with ConversationStore(get_paths(llamadesk_home).database_file) as store:
        conversations = store.list_conversations()
        assert len(conversations) == 1  # the 429 stored nothing
        reply = store.active_path(conversations[0].id)[-1]
    assert (reply.content, reply.status) == ("".join(state.pieces[:2]), "failed")
    assert reply.stats is not None and reply.stats["interrupted"] is True
    status, _, err = _run(capsys, "chat", "--server", "no such server", "Hi")
    assert status == 2 and "is not a server address" in err
