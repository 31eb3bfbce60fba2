"""`llamadesk conversations ...` run in-process through argparse, against the store in LLAMADESK_HOME."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from llamadesk.chat.store import ConversationStore
from llamadesk.cli import main
from llamadesk.paths import Paths


def run(*argv: str) -> int:
    return main(["conversations", *argv])


@pytest.fixture
def seeded(paths: Paths) -> dict[str, int]:
    with ConversationStore(paths.database_file) as store:
        bread = store.create_conversation(model="tiny.gguf", system_prompt="Be brief.")
        question = store.add_message(bread.id, "user", "How do I bake sourdough bread?", parent_id=None)
        store.add_message(bread.id, "assistant", "Feed the starter first.", parent_id=question.id)
        store.add_message(bread.id, "assistant", "Mix flour and water.", parent_id=question.id)
        other = store.create_conversation()
        store.add_message(other.id, "user", "Plan a trip to Lisbon", parent_id=None)
        store.set_pinned(other.id, True)
        return {"bread": bread.id, "other": other.id}


def test_list(seeded: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    assert run("list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert "Plan a trip to Lisbon" in lines[0] and "*" in lines[0]  # pinned first
    assert "How do I bake sourdough bread?" in lines[1] and "[tiny.gguf]" in lines[1]
    assert run("list", "--json", "--limit", "1") == 0
    data = json.loads(capsys.readouterr().out)
    assert [item["id"] for item in data] == [seeded["other"]]
    assert data[0]["pinned"] is True


def test_list_when_empty(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("list") == 0
    assert capsys.readouterr().out == "No conversations yet.\n"
    assert run("list", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_show(seeded: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    assert run("show", str(seeded["bread"])) == 0
    out = capsys.readouterr().out
    assert out.startswith("# How do I bake sourdough bread?\n")
    assert "[system]\nBe brief." in out
    assert "[assistant 2/2]\nMix flour and water." in out
    assert "Feed the starter" not in out
    assert run("show", str(seeded["bread"]), "--json") == 0
    assert len(json.loads(capsys.readouterr().out)["tree"]) == 3


def test_unknown_id_is_one_line_on_stderr(seeded: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    for command in (("show", "999"), ("export", "999"), ("export", "999", "--format", "json")):
        assert run(*command) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.count("\n") == 1
        assert captured.err.startswith("llamadesk: error: conversation 999 does not exist")


def test_export_markdown_to_stdout_and_json_to_file(
    seeded: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run("export", str(seeded["bread"])) == 0
    assert capsys.readouterr().out.startswith("# How do I bake sourdough bread?")
    target = tmp_path / "out" / "bread.json"
    assert run("export", str(seeded["bread"]), "--format", "json", "--out", str(target)) == 0
    assert str(target) in capsys.readouterr().out
    data = json.loads(target.read_text(encoding="utf-8"))
    assert data["messages"][-1] == {"role": "assistant", "content": "Mix flour and water."}


def test_export_to_an_unwritable_place(
    seeded: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert run("export", str(seeded["bread"]), "--out", str(blocker / "sub" / "out.md")) == 2
    err = capsys.readouterr().err
    assert err.startswith("llamadesk: error: could not write") and err.count("\n") == 1


def test_search(seeded: dict[str, int], capsys: pytest.CaptureFixture[str]) -> None:
    assert run("search", "starter") == 0
    out = capsys.readouterr().out
    assert f"{seeded['bread']}#" in out and "[starter]" in out
    assert run("search", 'lisbon "', "--json") == 0
    hits = json.loads(capsys.readouterr().out)
    assert {hit["conversation_id"] for hit in hits} == {seeded["other"]}
    assert run("search", "nothing-like-this") == 0
    assert capsys.readouterr().out == "No matches.\n"


def test_import_round_trip(
    seeded: dict[str, int], tmp_path: Path, paths: Paths, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "bread.json"
    assert run("export", str(seeded["bread"]), "--format", "json", "--out", str(target)) == 0
    capsys.readouterr()
    assert run("import", str(target), "--json") == 0
    imported = json.loads(capsys.readouterr().out)
    assert imported["title"] == "How do I bake sourdough bread?"
    with ConversationStore(paths.database_file) as store:
        assert store.count_conversations() == 3
        assert [m.content for m in store.active_path(imported["id"])][-1] == "Mix flour and water."


def test_import_from_stdin(
    paths: Paths, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    payload = json.dumps({"messages": [{"role": "user", "content": "Hello from a pipe"}]})
    monkeypatch.setattr("sys.stdin", io.StringIO(payload))
    assert run("import", "-") == 0
    assert "Hello from a pipe" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "llamadesk: error: could not read"),
        ("{not json", "is not valid JSON"),
        ('{"messages": "nope"}', "not a conversation LlamaDesk can import"),
    ],
)
def test_import_errors(
    paths: Paths, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    source = tmp_path / "in.json"
    if content is not None:
        source.write_text(content, encoding="utf-8")
    assert run("import", str(source)) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


def test_damaged_database_is_reported_and_set_aside(paths: Paths, capsys: pytest.CaptureFixture[str]) -> None:
    paths.database_file.write_bytes(b"\x00garbage" * 1000)
    assert run("list") == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("llamadesk: warning: Your conversation database could not be read")
    assert "conversations.sqlite3.corrupt-" in captured.err
    assert captured.out == "No conversations yet.\n"
