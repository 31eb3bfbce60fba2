"""`llamadesk docs` with hostile files, names and queries: clear messages, no escape sequence from a
file reaches the terminal, no traceback."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pytest

from llamadesk.cli import main
from llamadesk.cli.common import EXIT_ERROR


class Terminal(io.StringIO):
    """A captured stream that says it is a terminal, so output is escaped as on a real one."""

    def isatty(self) -> bool:
        return True


def test_skip_reasons_and_listings_carry_no_escape_sequences(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "hostile"
    folder.mkdir()
    (folder / "ok.txt").write_text("Lanterns glow at dusk.", encoding="utf-8")
    (folder / "x.\x1b]0;owned\x07").write_text("not a document", encoding="utf-8")  # its suffix is the reason
    with open(os.path.join(os.fsencode(folder), b"bad\xff.txt"), "wb") as handle:
        handle.write(b"undecodable name")
    err, out = Terminal(), Terminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["docs", "add", "Lamps", str(folder)]) == 0
    assert main(["docs", "list", "Lamps"]) == 0
    for shown in (err.getvalue().replace("\r\x1b[2K", ""), out.getvalue()):  # bar for the progress line
        assert "\x1b" not in shown and "\x07" not in shown
    assert "unsupported format (.\\x1b]0;owned\\x07)" in err.getvalue()
    assert "the file name is not valid UTF-8 (rename it to index it)" in err.getvalue()
    assert "Lamps: 1 added, 0 updated, 0 unchanged, 0 removed, 2 skipped" in out.getvalue()


def test_hostile_queries_and_names_get_short_clear_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.md").write_text("# Kites\n\nKites need wind.", encoding="utf-8")
    assert main(["docs", "add", "Sky", str(tmp_path / "a.md")]) == 0
    capsys.readouterr()
    for query in ['kites" OR "', "kites NEAR(", "kites " + "w" * 1_000_000, "🪁 kites"]:
        assert main(["docs", "search", "Sky", query, "--json"]) == 0
        assert '"title": "a.md"' in capsys.readouterr().out
    assert main(["docs", "search", "Sky", "?!.,;"]) == 0
    assert capsys.readouterr().err == "No passage matches that question.\n"
    for name in ["", "a/b", "x" * 100_000, "\x1b[2J", " lead"]:
        assert main(["docs", "add", name, str(tmp_path / "a.md")]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.startswith("llamadesk: error: ") and "not a valid collection name" in err
        assert len(err) < 300 and "\x1b" not in err
    assert main(["docs", "search", "y" * 100_000, "kites"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert err.startswith("llamadesk: error: There is no document collection named ") and len(err) < 200
