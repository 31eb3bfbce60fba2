"""Hostile input at the command line: absurd numbers, bytes that aren't UTF-8, escape sequences.

Each ends in one line on stderr and exit status 2 (or a normal result), never a traceback, and
changes nothing on disk.
"""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from llamadesk.chat.store import ConversationStore
from llamadesk.cli import main
from llamadesk.cli.common import repair_text, shown
from llamadesk.paths import Paths

HUGE = "99999999999999999999"


def run(
    *args: str | bytes, home: Path, stdin: bytes | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, LLAMADESK_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "llamadesk", *args],
        capture_output=True,
        env=env,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess[bytes]) -> str:
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, err
    assert "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("llamadesk: error:"), err
    return err


@pytest.mark.parametrize(
    "args",
    [
        ("conversations", "show", HUGE),
        ("conversations", "export", HUGE),
        ("conversations", "list", "--limit", HUGE),
        ("conversations", "search", "x", "--limit", HUGE),
        ("conversations", "show", "-1"),
        ("chat", "--conversation", HUGE, "hi"),
        ("chat", "--max-tokens", HUGE, "hi"),
        ("chat", "--seed", HUGE, "hi"),
        ("chat", "--ctx", HUGE, "hi"),
        ("hub", "search", "x", "--limit", HUGE),
    ],
)
def test_numbers_out_of_range_are_one_line_errors(args: tuple[str, ...], llamadesk_home: Path) -> None:
    err = one_error_line(run(*args, home=llamadesk_home))
    assert "must be" in err


def test_a_context_too_small_for_a_chat_is_refused_before_anything_is_stored(
    llamadesk_home: Path, paths: Paths
) -> None:
    err = one_error_line(run("chat", "--ctx", "16", "--new", "hello", home=llamadesk_home))
    assert "context" in err.lower()
    if paths.database_file.exists():
        with ConversationStore(paths.database_file) as store:
            assert store.list_conversations() == []


def test_bytes_that_are_not_utf8_in_arguments(llamadesk_home: Path) -> None:
    result = run("conversations", "search", b"caf\xe9", home=llamadesk_home)
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"No matches.\n"


@pytest.mark.model
def test_a_piped_message_that_is_not_utf8_is_answered(llamadesk_home: Path, paths: Paths) -> None:
    result = run(
        "chat",
        "--new",
        "--max-tokens",
        "4",
        "--seed",
        "1",
        "--system",
        b"be \xff brief",
        home=llamadesk_home,
        stdin=b"hi \xff there",
    )
    assert result.returncode == 0, result.stderr
    with ConversationStore(paths.database_file) as store:
        (conversation,) = store.list_conversations()
        user, reply = store.active_path(conversation.id)
    assert user.content == "hi \ufffd there"
    assert conversation.system_prompt == "be \ufffd brief"
    assert reply.status == "complete"


def test_escape_sequences_in_stored_text_are_shown_escaped_on_a_terminal(
    llamadesk_home: Path, paths: Paths
) -> None:
    with ConversationStore(paths.database_file) as store:
        conversation = store.create_conversation(system_prompt="sys")
        store.add_message(conversation.id, "user", "evil \x1b]0;owned\x07 title\x1b[2J", parent_id=None)
    leader, follower = pty.openpty()
    env = dict(os.environ, LLAMADESK_HOME=str(llamadesk_home))
    process = subprocess.Popen(
        [sys.executable, "-m", "llamadesk", "conversations", "show", str(conversation.id)],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        output += chunk
    assert process.wait(60) == 0
    os.close(leader)
    assert b"\x1b" not in output and b"\x07" not in output
    assert b"\\x1b]0;owned\\x07" in output
    # To a pipe the text is passed on exactly as stored (for scripts).
    piped = run("conversations", "show", str(conversation.id), home=llamadesk_home)
    assert b"\x1b]0;owned\x07" in piped.stdout


def test_shown_and_repair_text() -> None:
    class Tty:
        def isatty(self) -> bool:
            return True

    assert shown("a\x1b[31mb\nc", stream=Tty()) == "a\\x1b[31mb\\nc"  # type: ignore[arg-type]
    assert shown("a\x1b[31mb\nc\td", block=True, stream=Tty()) == "a\\x1b[31mb\nc\td"  # type: ignore[arg-type]
    assert shown("\x9b2J", stream=Tty()) == "\\x9b2J"  # type: ignore[arg-type]
    assert repair_text("ok \udcff") == "ok \ufffd"
    assert repair_text("lone \ud800 high") == "lone \ufffd\ufffd\ufffd high"
    assert repair_text("fine ü") == "fine ü"


def test_export_dash_means_standard_output(
    paths: Paths, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConversationStore(paths.database_file) as store:
        conversation = store.create_conversation()
        store.add_message(conversation.id, "user", "to stdout", parent_id=None)
    monkeypatch.chdir(tmp_path)
    assert main(["conversations", "export", str(conversation.id), "--out", "-"]) == 0
    assert "to stdout" in capsys.readouterr().out
    assert not (tmp_path / "-").exists()


def test_export_never_replaces_a_fifo_or_a_symlink(paths: Paths, tmp_path: Path) -> None:
    with ConversationStore(paths.database_file) as store:
        conversation = store.create_conversation()
        store.add_message(conversation.id, "user", "content", parent_id=None)
    fifo = tmp_path / "pipe.md"
    os.mkfifo(fifo)
    assert main(["conversations", "export", str(conversation.id), "--out", str(fifo)]) == 2
    assert fifo.is_fifo()
    real = tmp_path / "real.md"
    real.write_text("old")
    real.chmod(0o644)
    link = tmp_path / "link.md"
    link.symlink_to(real)
    assert main(["conversations", "export", str(conversation.id), "--out", str(link)]) == 0
    assert link.is_symlink() and "content" in real.read_text()
    assert real.stat().st_mode & 0o777 == 0o644


def test_a_broken_command_module_says_so_instead_of_vanishing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "llamadesk.cli.hub", None)  # as if the module failed to import
    assert main(["hub", "search", "qwen"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("llamadesk: error: the hub command could not start") and err.count("\n") == 1


def test_a_template_that_is_a_fifo_is_refused_without_waiting(llamadesk_home: Path, tmp_path: Path) -> None:
    fifo = tmp_path / "template.jinja"
    os.mkfifo(fifo)
    err = one_error_line(run("chat", "--template", str(fifo), "hi", home=llamadesk_home, timeout=60))
    assert "template" in err and "pipe" in err.lower()


def test_standard_input_is_read_up_to_a_limit() -> None:
    import io

    from llamadesk.cli.common import CliError, read_stdin_text

    class Stdin(io.TextIOWrapper):
        pass

    small = Stdin(io.BytesIO(b"hello \xff"), encoding="utf-8")
    assert read_stdin_text(small, limit=16) == "hello \ufffd"
    big = Stdin(io.BytesIO(b"x" * 17), encoding="utf-8")
    with pytest.raises(CliError, match="longer than"):
        read_stdin_text(big, limit=16)


def test_error_warning_and_note_lines_escape_control_characters_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error, warning or note may quote a name a file or a server chose: escaped on a terminal."""
    import io

    from llamadesk.cli.common import fail, note, warn

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    fail("bad name evil\x1b]0;owned\x07 here")
    warn("skipped \x1b[2Jfile")
    note("line one\nline two")
    text = terminal.getvalue()
    assert "\x1b" not in text and "\x07" not in text
    assert "evil\\x1b]0;owned\\x07 here" in text and "skipped \\x1b[2Jfile" in text
    assert "line one\nline two" in text  # newlines in a message stay newlines
