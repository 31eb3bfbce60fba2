"""What every command shares: the error type, exit codes, argument types and terminal-safe output.

Everything a user types or pipes in is checked here once: ids and counts must be numbers
SQLite and llama.cpp can hold, text that is not valid UTF-8 becomes replacement characters
instead of a crash, and text from files and servers (model names, Hub file names, messages)
is shown with control characters escaped when it goes to a terminal.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import IO

from ..errors import LlamaDeskError

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells expect after Ctrl+C
MAX_ID = 2**63 - 1  # SQLite's largest integer


class CliError(LlamaDeskError):
    """A command-line problem the user can fix."""


def fail(message: str) -> int:
    """Print one error line on stderr; the exit status for it. Messages may quote file names, model
    names or server answers: control characters in them are shown escaped on a terminal."""
    print(f"llamadesk: error: {shown(message, block=True, stream=sys.stderr)}", file=sys.stderr)
    return EXIT_ERROR


def warn(message: str) -> None:
    print(f"llamadesk: warning: {shown(message, block=True, stream=sys.stderr)}", file=sys.stderr)


def note(message: str) -> None:
    print(f"llamadesk: note: {shown(message, block=True, stream=sys.stderr)}", file=sys.stderr)


class Parser(argparse.ArgumentParser):
    """Usage errors in the same one-line form as every other error, with exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"llamadesk: error: {message}\n")


def bounded_int(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` to ``high``, refused with a reason otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from {low:,} to {high:,} (got {text})")
        return value

    parse.__name__ = what  # argparse names the type in its messages
    return parse


conversation_id = bounded_int(1, MAX_ID, "a conversation id")
limit = bounded_int(1, 1_000_000, "a limit")


def text_arg(text: str) -> str:
    """An argparse type for free text: bytes that are not UTF-8 become U+FFFD instead of a crash later."""
    return repair_text(text)


def repair_text(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes from argv or a pipe) replaced by U+FFFD."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:  # bytes smuggled in by the filesystem encoding's surrogateescape
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


MAX_STDIN_BYTES = 64 << 20  # a message piped in; far more than any model's context holds


def read_stdin_text(stream: IO[str] | None = None, *, limit: int = MAX_STDIN_BYTES) -> str:
    """Standard input as text (bytes that are not UTF-8 become U+FFFD); CliError past ``limit``."""
    stream = stream if stream is not None else sys.stdin
    if stream is None:
        return ""
    buffer = getattr(stream, "buffer", None)
    data: bytes | str = bytes(buffer.read(limit + 1)) if buffer is not None else stream.read(limit + 1)
    if len(data) > limit:
        raise CliError(f"the message on standard input is longer than {limit >> 20} MB")
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else repair_text(data)


_CONTROL_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BLOCK = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def shown(text: object, *, block: bool = False, stream: IO[str] | None = None) -> str:
    """``text`` made safe to print on a terminal: control characters (escape sequences that could
    move the cursor, retitle the window or hide text) are shown escaped. ``block`` keeps newlines
    and tabs (message bodies). Output to a pipe or file is left exactly as it is."""
    value = repair_text(str(text))
    target = stream if stream is not None else sys.stdout
    try:
        tty = bool(target is not None and target.isatty())
    except (AttributeError, ValueError):
        tty = False
    if not tty:
        return value
    return (_CONTROL_BLOCK if block else _CONTROL_LINE).sub(_escape, value)
