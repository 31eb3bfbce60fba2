"""Ctrl+C in `llamadesk chat`: a real SIGINT, the real model, in this process so the moment is exact."""

from __future__ import annotations

import io
import signal
from typing import Any

import pytest

from llamadesk import cli
from llamadesk.chat.store import ConversationStore
from llamadesk.engine import Engine
from llamadesk.paths import Paths

pytestmark = pytest.mark.model


class _CtrlCOnFirstOutput(io.StringIO):
    """A terminal whose user presses Ctrl+C as soon as the reply starts to appear."""

    def write(self, text: str) -> int:
        first = not self.getvalue() and bool(text)
        written = super().write(text)
        if first:
            signal.raise_signal(signal.SIGINT)
        return written


def test_ctrl_c_mid_reply_keeps_the_partial_reply_and_exits_130(
    paths: Paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    terminal = _CtrlCOnFirstOutput()
    monkeypatch.setattr("sys.stdout", terminal)
    args = ["chat", "--new", "--seed", "3", "--max-tokens", "200", "Tell me a long story about a dragon."]
    assert cli.main(args) == cli.EXIT_INTERRUPTED  # a shell loop around the command stops too
    shown = terminal.getvalue().removesuffix("\n")
    assert shown.strip()
    with ConversationStore(paths.database_file) as store:
        (conversation,) = store.list_conversations()
        user, reply = store.active_path(conversation.id)
    assert user.content == "Tell me a long story about a dragon."
    assert (reply.status, reply.content) == ("stopped", shown)  # exactly what the user saw is kept
    assert reply.stats is not None and reply.stats["stop_reason"] == "user_stop"
    assert "Traceback" not in capsys.readouterr().err


def test_ctrl_c_while_the_model_loads_cancels_without_a_reply(
    paths: Paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real_load = Engine.load

    def load_pressing_ctrl_c(self: Engine, *args: Any, **kwargs: Any) -> None:
        signal.raise_signal(signal.SIGINT)  # the user gives up while the model is still loading
        real_load(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "load", load_pressing_ctrl_c)
    assert cli.main(["chat", "--new", "--max-tokens", "50", "Hello"]) == cli.EXIT_INTERRUPTED
    captured = capsys.readouterr()
    assert captured.out == ""  # no reply was written after the user pressed Ctrl+C
    assert "error" not in captured.err
    with ConversationStore(paths.database_file) as store:
        assert store.list_conversations() == []  # nothing half-made is left in the history
