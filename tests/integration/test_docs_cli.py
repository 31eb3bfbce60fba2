"""`llamadesk docs add|list|search|refresh|remove` end to end, in-process and as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llamadesk.cli import main


def folder_of_notes(root: Path) -> Path:
    folder = root / "notes"
    folder.mkdir()
    (folder / "tea.md").write_text(
        "# Tea\n\n## Brewing\n\nGreen tea steeps for two minutes in water below boiling.\n", encoding="utf-8"
    )
    (folder / "bikes.txt").write_text(
        "A bicycle chain wants oil every few hundred kilometres.\n", encoding="utf-8"
    )
    (folder / "page.html").write_text("<h1>Maps</h1><p>Contour lines join points of equal height.</p>")
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02 not text")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff")
    return folder


def test_add_list_search_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = folder_of_notes(tmp_path)
    assert main(["docs", "add", "Hobbies", str(folder)]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == (
        "Hobbies: 3 added, 0 updated, 0 unchanged, 0 removed, 2 skipped; 3 files, 3 chunks in all"
    )
    assert f"[1/4] {folder / 'bikes.txt'}" in err  # progress: one line per file when not a terminal
    assert (
        f"llamadesk: warning: skipped {folder / 'binary.txt'}: binary data, not text (contains NUL bytes)"
        in err
    )
    assert f"llamadesk: warning: skipped {folder / 'photo.jpg'}: unsupported format (.jpg)" in err

    assert main(["docs", "list"]) == 0
    assert capsys.readouterr().out == "Hobbies  3 files, 3 chunks, 2 skipped\n"
    assert main(["docs", "list", "Hobbies", "--json"]) == 0
    files = {Path(f["path"]).name: f for f in json.loads(capsys.readouterr().out)}
    assert files["photo.jpg"]["status"] == "skipped" and files["tea.md"]["chunks"] == 1
    assert main(["docs", "list", "Hobbies"]) == 0
    assert f"{folder / 'photo.jpg'}  [skipped: unsupported format (.jpg)]" in capsys.readouterr().out

    assert main(["docs", "search", "Hobbies", "how long should green tea brew?", "--json", "--k", "2"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["rank"] == 1 and hits[0]["title"] == "tea.md"
    assert hits[0]["location"] == "§ Tea > Brewing" and "two minutes" in hits[0]["text"]
    assert set(hits[0]) == {"rank", "chunk_id", "collection", "path", "title", "location", "text", "score"}
    assert main(["docs", "search", "Hobbies", "contour lines on maps"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("[1] page.html — § Maps  (score ")
    assert "    Contour lines join points of equal height." in text

    assert main(["docs", "add", "Hobbies", str(folder)]) == 0
    assert "0 added, 0 updated, 3 unchanged" in capsys.readouterr().out
    (folder / "bikes.txt").unlink()
    assert main(["docs", "refresh", "Hobbies"]) == 0
    assert "1 removed" in capsys.readouterr().out

    assert main(["docs", "remove", "Hobbies"]) == 0
    assert "Removed the collection Hobbies" in capsys.readouterr().out
    assert main(["docs", "list"]) == 0
    assert "No document collections yet" in capsys.readouterr().err
    assert (tmp_path / "notes" / "tea.md").exists()


def test_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = [
        (
            ["docs", "search", "Nope", "anything"],
            "llamadesk: error: There is no document collection named 'Nope'.",
        ),
        (["docs", "remove", "Nope"], "llamadesk: error: There is no document collection named 'Nope'."),
        (["docs", "list", "Nope"], "llamadesk: error: There is no document collection named 'Nope'."),
        (["docs", "add", "a/b", str(tmp_path)], "llamadesk: error: 'a/b' is not a valid collection name"),
        (["docs", "search", "x", "  "], "llamadesk: error: the question is empty"),
    ]
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(message) and "Traceback" not in err, err
    with pytest.raises(SystemExit) as exit_info:
        main(["docs", "search", "x", "y", "--k", "0"])
    assert exit_info.value.code == 2
    assert "a passage count must be from 1 to 100" in capsys.readouterr().err


def test_real_process_and_missing_path(tmp_path: Path, llamadesk_home: Path) -> None:
    folder = folder_of_notes(tmp_path)
    env = dict(os.environ, LLAMADESK_HOME=str(llamadesk_home))

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llamadesk", "docs", *args],
            capture_output=True, text=True, env=env, timeout=120, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    added = run("add", "H", str(folder / "tea.md"), str(tmp_path / "missing.txt"))
    assert added.returncode == 0, added.stderr
    assert f"skipped {tmp_path / 'missing.txt'}: not found" in added.stderr
    found = run("search", "H", "green tea", "--json")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["title"] == "tea.md"
    assert (llamadesk_home / "data" / "documents.sqlite3").is_file()
