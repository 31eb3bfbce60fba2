"""The header cache: each header read once per process, remembered across runs until the file changes."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hub_server import make_gguf
from llamadesk.engine import ModelFileError, header_cache, inspect_gguf
from llamadesk.engine.header_cache import CACHE_FILE_NAME, HeaderCache


@pytest.fixture
def cache_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A process-wide cache of its own, kept in a file of its own."""
    file = tmp_path / "cache" / CACHE_FILE_NAME
    monkeypatch.setattr(header_cache, "_current", HeaderCache(file))
    return file


def next_run(monkeypatch: pytest.MonkeyPatch, file: Path) -> HeaderCache:
    """What a later start of LlamaDesk finds: nothing in memory, the file on disk."""
    header_cache.flush()
    cache = HeaderCache(file)
    monkeypatch.setattr(header_cache, "_current", cache)
    return cache


def entries(file: Path) -> dict[str, object]:
    data = json.loads(file.read_text(encoding="utf-8"))
    assert isinstance(data["entries"], dict)
    return data["entries"]


def test_a_header_is_read_once_per_process(cache_file: Path, tmp_path: Path) -> None:
    model = make_gguf(tmp_path / "Tiny-Q4_K_M.gguf", name="Tiny")
    first, again = inspect_gguf(model), inspect_gguf(str(model))
    assert first == again and first.name == "Tiny"
    assert header_cache.current().reads == 1


def test_two_threads_asking_at_once_read_the_header_once(
    cache_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two listings (the picker's and My models') reach a new file together: one reads, one waits."""
    from llamadesk.engine import gguf_info

    model = make_gguf(tmp_path / "Both-Q8_0.gguf")
    real_read = gguf_info._read_facts
    inside = threading.Event()
    release = threading.Event()
    calls: list[Path] = []

    def slow_read(path: Path, **kwargs: object) -> dict[str, object]:
        calls.append(path)
        inside.set()
        release.wait(10)
        return real_read(path, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(gguf_info, "_read_facts", slow_read)
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(inspect_gguf(model))) for _ in range(2)]
    threads[0].start()
    assert inside.wait(10)
    threads[1].start()  # asks while the first is still reading
    release.set()
    for thread in threads:
        thread.join(10)
    assert calls == [model] and len(results) == 2 and results[0] == results[1]


def test_facts_are_remembered_across_runs(
    cache_file: Path, starter_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = inspect_gguf(starter_model)
    later = next_run(monkeypatch, cache_file)
    remembered = inspect_gguf(starter_model)
    assert later.reads == 0
    assert dataclasses.astuple(remembered) == dataclasses.astuple(fresh)  # metadata included
    assert remembered.chat_template and remembered.eos_token == "<|im_end|>"
    assert "tokenizer.ggml.tokens" not in cache_file.read_text()  # facts, not the vocabulary


def test_problems_are_remembered_with_the_name_asked_for(
    cache_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = tmp_path / "page.gguf"
    page.write_bytes(b"<!DOCTYPE html><html>" + b" " * 100)
    for _ in range(2):
        with pytest.raises(ModelFileError, match=r"page\.gguf is not a GGUF model file"):
            inspect_gguf(page)
    assert header_cache.current().reads == 1
    later = next_run(monkeypatch, cache_file)
    link = tmp_path / "other-name.gguf"
    link.symlink_to(page)
    with pytest.raises(ModelFileError, match=r"other-name\.gguf is not a GGUF model file"):
        inspect_gguf(link)
    assert later.reads == 0


def test_a_changed_file_is_read_again(
    cache_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_gguf(tmp_path / "m.gguf", name="Before", data_bytes=1_000)
    assert inspect_gguf(model).name == "Before"
    make_gguf(model, name="After, and longer", data_bytes=2_000)
    assert inspect_gguf(model).name == "After, and longer"  # same process
    later = next_run(monkeypatch, cache_file)
    assert inspect_gguf(model).name == "After, and longer" and later.reads == 0


def test_a_file_replaced_by_another_of_the_same_size_and_time_is_read_again(
    cache_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_gguf(tmp_path / "m.gguf", name="Alpha", data_bytes=1_000)
    other = make_gguf(tmp_path / "other.gguf", name="Bravo", data_bytes=1_000)
    assert model.stat().st_size == other.stat().st_size
    assert inspect_gguf(model).name == "Alpha"
    before = model.stat()
    later = next_run(monkeypatch, cache_file)
    os.replace(other, model)
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (model.stat().st_size, model.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert inspect_gguf(model).name == "Bravo" and later.reads == 1


def test_a_file_rewritten_in_place_with_the_same_size_is_read_again(
    cache_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_gguf(tmp_path / "m.gguf", name="Alpha", data_bytes=1_000)
    other = make_gguf(tmp_path / "other.gguf", name="Bravo", data_bytes=1_000)
    assert inspect_gguf(model).name == "Alpha"
    before = model.stat()
    later = next_run(monkeypatch, cache_file)
    with model.open("r+b") as handle:  # same inode, same size, another mtime
        handle.write(other.read_bytes())
    os.utime(model, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert model.stat().st_ino == before.st_ino and model.stat().st_size == before.st_size
    assert inspect_gguf(model).name == "Bravo" and later.reads == 1


def test_a_removed_file_is_noticed_and_forgotten(
    cache_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = make_gguf(tmp_path / "gone.gguf")
    kept = make_gguf(tmp_path / "kept.gguf")
    inspect_gguf(gone)
    inspect_gguf(kept)
    next_run(monkeypatch, cache_file)
    assert set(entries(cache_file)) == {os.path.realpath(gone), os.path.realpath(kept)}
    gone.unlink()
    with pytest.raises(ModelFileError, match="not found"):
        inspect_gguf(gone)
    inspect_gguf(make_gguf(tmp_path / "new.gguf"))
    next_run(monkeypatch, cache_file)
    assert set(entries(cache_file)) == {os.path.realpath(kept), os.path.realpath(tmp_path / "new.gguf")}


@pytest.mark.parametrize(
    "damage",
    [b"{not json", b"[" * 100_000 + b"]" * 100_000, b'{"format": 1, "entries": 1e999}', b"\xff\xfe"],
    ids=["syntax", "deep", "infinite", "binary"],
)
def test_a_damaged_cache_file_is_rebuilt_with_one_log_line(
    cache_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    damage: bytes,
) -> None:
    model = make_gguf(tmp_path / "m.gguf", name="Fine")
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    cache_file.write_bytes(damage)
    caplog.set_level(logging.WARNING, logger="llamadesk.engine.header_cache")
    assert inspect_gguf(model).name == "Fine"
    assert inspect_gguf(model).name == "Fine"
    rebuilt = [r.getMessage() for r in caplog.records if "rebuilding" in r.getMessage()]
    assert len(rebuilt) == 1 and f"the model header cache {cache_file} is damaged (" in rebuilt[0]
    later = next_run(monkeypatch, cache_file)
    assert list(entries(cache_file)) == [os.path.realpath(model)]
    assert inspect_gguf(model).name == "Fine" and later.reads == 0


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX files")
def test_a_named_pipe_in_place_of_the_cache_file_is_replaced_not_opened(
    cache_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_file.parent.mkdir(parents=True)
    os.mkfifo(cache_file)
    opened: list[bool] = []

    def writer() -> None:  # would let a wrongly opened pipe end instead of blocking for ever
        fd = os.open(cache_file, os.O_WRONLY)
        opened.append(True)
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        model = make_gguf(tmp_path / "m.gguf", name="Fine")
        assert inspect_gguf(model).name == "Fine"
        assert not opened
    finally:
        release = os.open(cache_file, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer finish
        thread.join()
        os.close(release)
    next_run(monkeypatch, cache_file)
    assert cache_file.is_file() and list(entries(cache_file)) == [os.path.realpath(model)]


def test_hostile_entries_are_read_again_not_trusted(
    cache_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_gguf(tmp_path / "m.gguf", name="Real")
    inspect_gguf(model)
    next_run(monkeypatch, cache_file)
    data = json.loads(cache_file.read_text())
    entry = data["entries"][os.path.realpath(model)]
    entry["facts"]["info"].update(file_size="huge", name=["not", "a", "name"], metadata=7)
    cache_file.write_text(json.dumps(data))
    later = next_run(monkeypatch, cache_file)
    info = inspect_gguf(model)
    assert (info.name, info.file_size, later.reads) == ("Real", model.stat().st_size, 1)


def test_configure_keeps_what_was_read_and_writes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(header_cache, "_current", HeaderCache())
    model = make_gguf(tmp_path / "m.gguf")
    inspect_gguf(model)
    file = tmp_path / "data" / CACHE_FILE_NAME
    cache = header_cache.configure(file)
    assert header_cache.current() is cache and cache.reads == 1
    inspect_gguf(model)
    header_cache.flush()
    assert list(entries(file)) == [os.path.realpath(model)] and cache.reads == 1


CHILD = """
import sys
from pathlib import Path

from llamadesk.engine import header_cache, inspect_gguf

header_cache.configure(Path(sys.argv[1]))
sys.stdin.readline()  # start together
for name in sys.argv[2:]:
    inspect_gguf(name)
    header_cache.flush()
print("done", flush=True)
"""


def test_processes_writing_the_cache_at_once_lose_nothing(tmp_path: Path) -> None:
    model = make_gguf(tmp_path / "m.gguf", data_bytes=1_000)
    copies = [Path(shutil.copy(model, tmp_path / f"m{i}.gguf")) for i in range(60)]
    file = tmp_path / "cache" / CACHE_FILE_NAME
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(file), *map(str, copies[i::3])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    for child in children:
        out, _ = child.communicate(timeout=120)
        assert (child.returncode, out) == (0, "done\n")
    assert set(entries(file)) == {os.path.realpath(c) for c in copies}
    assert not [p.name for p in file.parent.iterdir() if p.name.endswith(".tmp")]
