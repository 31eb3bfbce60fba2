"""The library against bad and hostile files: one bad file never takes down the rest.

Hostile headers, tampered ``library.json`` and sidecars, named pipes where models are
expected, and removals that must never reach outside the models folder.
"""

from __future__ import annotations

import json
import os
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hub_server import make_gguf
from llamadesk.hub import ModelLibrary
from llamadesk.paths import Paths

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="named pipes are POSIX files")


def downloaded(paths: Paths, repo: str, filename: str) -> Path:
    """A file as the downloader leaves it: in the repo's folder with its source record."""
    path = make_gguf(paths.models_dir / repo.replace("/", "__") / filename, data_bytes=2_000)
    record = {"repo_id": repo, "revision": "main", "downloaded_at": "2024-07-01T10:00:00+00:00"}
    path.with_name(filename + ".source.json").write_text(json.dumps(record))
    return path


def deeply_nested_gguf(path: Path) -> Path:
    """A header whose metadata nests arrays 5,000 deep."""
    nested = struct.pack("<IQ", 9, 1) * 5_000 + struct.pack("<IQ", 4, 0)
    key = struct.pack("<Q", 1) + b"x" + struct.pack("<I", 9)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + key + nested)
    return path


@contextmanager
def pipe(path: Path) -> Iterator[list[bool]]:
    """A named pipe at ``path``; the list says whether anything opened it for reading.

    A writer waits on the other end, so a reader that opens it gets a few bytes and an end of
    file instead of blocking for ever.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    opened: list[bool] = []

    def writer() -> None:
        fd = os.open(path, os.O_WRONLY)
        opened.append(True)
        os.write(fd, b"GGUF")
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        yield opened
    finally:
        release = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        thread.join()
        os.close(release)


@pytest.fixture
def library(paths: Paths, tmp_path: Path) -> ModelLibrary:
    return ModelLibrary(paths, hf_cache_dir=tmp_path / "no-hf-cache")


def test_a_hostile_header_is_broken_and_the_rest_are_listed(library: ModelLibrary, paths: Paths) -> None:
    good = downloaded(paths, "acme/Good-GGUF", "Good-Q4_0.gguf")
    deeply_nested_gguf(paths.models_dir / "acme__Evil-GGUF" / "Evil-Q4_0.gguf")
    by_name = {e.name: e for e in library.list()}
    assert by_name["Good-Q4_0"].state == "ok" and by_name["Good-Q4_0"].path == good
    evil = by_name["Evil-Q4_0"]
    assert evil.state == "broken" and "nests arrays" in (evil.message or "")
    assert library.find("good-q4_0").path == good  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "content",
    [
        '{"imports": ' + "[" * 50_000 + "]" * 50_000 + "}",
        '{"imports": [{"path": "/m.gguf", "added": 1e999}]}',
    ],
    ids=["deep", "infinite"],
)
def test_a_hostile_library_file_is_reported_not_fatal(
    library: ModelLibrary, paths: Paths, content: str
) -> None:
    paths.library_file.write_text(content)
    assert library.list()[0].key == "starter"
    assert library.warning and "could not be read" in library.warning


def test_odd_values_in_the_library_file_are_passed_over(
    library: ModelLibrary, paths: Paths, tmp_path: Path
) -> None:
    mine = make_gguf(tmp_path / "mine" / "Mine-Q4_0.gguf")
    items: list[object] = [
        "junk",
        {"path": 5},
        {"path": ""},
        {"path": "relative/Model.gguf"},
        {"path": "/tmp/nul\0byte.gguf"},
        {"path": str(mine), "added": {"not": "a date"}, "copied": "yes"},
    ]
    paths.library_file.write_text(json.dumps({"version": 1, "imports": items}))
    imported = [e for e in library.list() if e.source == "imported"]
    assert [(e.path, e.state, e.in_place) for e in imported] == [(mine, "ok", True)]
    assert imported[0].added is not None and library.warning is None


def test_a_tampered_import_never_deletes_a_file_outside_the_models_folder(
    library: ModelLibrary, paths: Paths, tmp_path: Path
) -> None:
    precious = make_gguf(tmp_path / "elsewhere" / "Precious-Q4_0.gguf")
    record = {"path": str(precious), "copied": True, "added": "2024-07-01T10:00:00+00:00"}
    paths.library_file.write_text(json.dumps({"version": 1, "imports": [record]}))
    entry = library.find("Precious-Q4_0")
    assert entry is not None and not entry.deletable
    library.remove(entry.key)
    assert precious.exists() and precious.with_name(precious.name + ".source.json").exists() is False
    assert library.find("Precious-Q4_0") is None  # forgotten, not deleted


def test_removing_a_linked_download_deletes_the_link_only(
    library: ModelLibrary, paths: Paths, tmp_path: Path
) -> None:
    target = make_gguf(tmp_path / "elsewhere" / "Linked-Q4_0.gguf")
    link = paths.models_dir / "acme__Linked-GGUF" / "Linked-Q4_0.gguf"
    link.parent.mkdir(parents=True)
    link.symlink_to(target)
    entry = library.find("Linked-Q4_0")
    assert entry is not None and entry.source == "downloaded"
    library.remove(entry.key)
    assert target.exists() and not link.is_symlink()


def test_a_damaged_sidecar_is_passed_over(library: ModelLibrary, paths: Paths) -> None:
    path = downloaded(paths, "acme/Tiny-GGUF", "Tiny-Q4_0.gguf")
    path.with_name(path.name + ".source.json").write_text('{"repo_id": ' + "[" * 50_000 + "]" * 50_000 + "}")
    entry = library.find("Tiny-Q4_0")
    assert entry is not None and entry.state == "ok" and entry.repo_id is None


@posix_only
def test_named_pipes_in_the_models_folder_are_skipped(library: ModelLibrary, paths: Paths) -> None:
    downloaded(paths, "acme/Tiny-GGUF", "Tiny-Q4_0.gguf")
    folder = paths.models_dir / "acme__Tiny-GGUF"
    make_gguf(folder / "Other-Q4_0.gguf")
    with (
        pipe(folder / "Pipe-Q4_0.gguf") as model_opened,
        pipe(folder / "Other-Q4_0.gguf.source.json") as sidecar,
    ):
        names = [e.name for e in library.list() if e.source == "downloaded"]
        assert names == ["Other-Q4_0", "Tiny-Q4_0"]
        assert not model_opened and not sidecar


@posix_only
def test_a_named_pipe_in_the_hugging_face_cache_is_skipped(paths: Paths, tmp_path: Path) -> None:
    cache = tmp_path / "hf-cache"
    repo = cache / "models--acme--Piped-GGUF"
    snapshot = repo / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    blob = make_gguf(repo / "blobs" / ("b" * 64), name="Real")
    os.symlink(os.path.relpath(blob, snapshot), snapshot / "Real-Q4_0.gguf")
    with pipe(repo / "blobs" / ("c" * 64)) as opened:
        os.symlink(os.path.relpath(repo / "blobs" / ("c" * 64), snapshot), snapshot / "Piped-Q4_0.gguf")
        library = ModelLibrary(paths, hf_cache_dir=cache)
        cached = [(e.name, e.state) for e in library.list() if e.source == "hf-cache"]
        assert cached == [("Real-Q4_0", "ok")] and not opened
