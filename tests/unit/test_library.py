"""The local model library: what is on disk, imports, removal, and resolving ``-m`` names."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from hub_server import make_gguf
from llamadesk.hub import HubError, ModelLibrary
from llamadesk.paths import STARTER_MODEL_NAME, Paths


def downloaded(paths: Paths, repo: str, filename: str, **kwargs: Any) -> Path:
    """A file as the downloader leaves it: in the repo's folder with its source record."""
    kwargs.setdefault("data_bytes", 20_000)
    path = make_gguf(paths.models_dir / repo.replace("/", "__") / filename, **kwargs)
    record = {"repo_id": repo, "revision": "main", "downloaded_at": "2024-07-01T10:00:00+00:00"}
    path.with_name(filename + ".source.json").write_text(json.dumps(record))
    return path


@pytest.fixture
def library(paths: Paths, tmp_path: Path) -> ModelLibrary:
    return ModelLibrary(paths, hf_cache_dir=tmp_path / "no-hf-cache")


def test_starter_comes_first_and_cannot_be_removed(library: ModelLibrary, starter_model: Path) -> None:
    entries = library.list()
    starter = entries[0]
    assert (starter.key, starter.name, starter.source, starter.path) == (
        "starter",
        STARTER_MODEL_NAME,
        "starter",
        starter_model,
    )
    assert starter.loadable and starter.info is not None and starter.info.architecture == "llama"
    assert starter.quantization == "Q4_1" and not starter.deletable
    with pytest.raises(HubError, match="can't be removed"):
        library.remove("starter")
    assert starter_model.exists()


def test_downloaded_models_are_listed_with_their_source(library: ModelLibrary, paths: Paths) -> None:
    path = downloaded(paths, "acme/Tiny-GGUF", "Tiny-Q4_K_M.gguf", name="Tiny", file_type=15)
    entry = library.get("downloaded:acme__Tiny-GGUF/Tiny-Q4_K_M.gguf")
    assert entry is not None
    assert (entry.name, entry.path, entry.repo_id, entry.source, entry.state) == (
        "Tiny-Q4_K_M",
        path,
        "acme/Tiny-GGUF",
        "downloaded",
        "ok",
    )
    assert entry.size == path.stat().st_size and entry.quantization == "Q4_K_M"
    assert entry.added is not None and entry.added.year == 2024
    assert entry.as_dict()["architecture"] == "llama"


def test_remove_deletes_a_download_and_its_folder(library: ModelLibrary, paths: Paths) -> None:
    path = downloaded(paths, "acme/Tiny-GGUF", "Tiny-Q4_K_M.gguf")
    removed = library.remove("downloaded:acme__Tiny-GGUF/Tiny-Q4_K_M.gguf")
    assert removed.deletable and not path.exists() and not path.parent.exists()
    assert paths.models_dir.exists()
    assert all(e.source != "downloaded" for e in library.list())


def test_broken_partial_and_companion_files(library: ModelLibrary, paths: Paths) -> None:
    folder = paths.models_dir / "acme__Odd-GGUF"
    folder.mkdir(parents=True)
    (folder / "Broken-Q4_0.gguf").write_bytes(b"<!DOCTYPE html><html>not a model</html>" + b" " * 64)
    (folder / "Later-Q8_0.gguf.part").write_bytes(b"GGUF" + b"\0" * 1000)
    make_gguf(folder / "mmproj-Odd-f16.gguf", data_bytes=1_000)
    by_name = {e.name: e for e in library.list()}
    broken = by_name["Broken-Q4_0"]
    assert broken.state == "broken" and "web page" in (broken.message or "") and not broken.loadable
    partial = by_name["Later-Q8_0"]
    assert partial.state == "partial" and partial.size == 1004 and not partial.loadable
    assert partial.repo_id == "acme/Odd-GGUF"
    mmproj = by_name["mmproj-Odd-f16"]
    assert mmproj.kind == "mmproj" and mmproj.state == "ok" and not mmproj.loadable
    library.remove(partial.key)  # frees the space of an abandoned download
    assert not (folder / "Later-Q8_0.gguf.part").exists()


def test_split_model_is_one_entry(library: ModelLibrary, paths: Paths) -> None:
    first = downloaded(paths, "acme/Big-GGUF", "Big-Q4_K_M-00001-of-00002.gguf", split=(1, 2))
    second = downloaded(paths, "acme/Big-GGUF", "Big-Q4_K_M-00002-of-00002.gguf", split=(2, 2), seed=3)
    entries = [e for e in library.list() if e.source == "downloaded"]
    assert [(e.name, e.path, e.size, e.state) for e in entries] == [
        ("Big-Q4_K_M", first, first.stat().st_size + second.stat().st_size, "ok")
    ]
    second.unlink()
    entry = library.list()[-1]
    assert entry.state == "broken" and "missing" in (entry.message or "")
    library.remove(entry.key)
    assert not first.exists()


def test_import_in_place_is_remembered_and_never_deletes_the_file(paths: Paths, tmp_path: Path) -> None:
    mine = make_gguf(tmp_path / "my models" / "Mine-Q5_K_M.gguf", name="Mine")
    library = ModelLibrary(paths, scan_hf_cache=False)
    entry = library.import_model(mine)
    assert (entry.source, entry.path, entry.in_place, entry.deletable) == ("imported", mine, True, False)
    assert library.import_model(mine).key == entry.key  # importing twice changes nothing
    saved = json.loads(paths.library_file.read_text())
    assert [i["path"] for i in saved["imports"]] == [str(mine)]
    reopened = ModelLibrary(paths, scan_hf_cache=False)  # e.g. after a restart
    assert reopened.get(entry.key) is not None
    reopened.remove(entry.key)
    assert mine.exists() and reopened.get(entry.key) is None


def test_import_copy_and_remove_frees_the_copy(paths: Paths, tmp_path: Path) -> None:
    mine = make_gguf(tmp_path / "Mine-Q5_K_M.gguf", data_bytes=100_000)
    library = ModelLibrary(paths, scan_hf_cache=False)
    seen: list[tuple[int, int]] = []
    entry = library.import_model(mine, copy=True, progress=lambda done, total: seen.append((done, total)))
    assert entry.path.parent.parent == paths.models_dir / "imported"
    assert entry.path.read_bytes() == mine.read_bytes() and not entry.in_place and entry.deletable
    assert seen[-1] == (mine.stat().st_size, mine.stat().st_size)
    assert [e.source for e in library.list() if e.path == entry.path] == ["imported"]  # not twice
    library.remove(entry.key)
    assert not entry.path.exists() and mine.exists()


def test_a_file_that_changes_while_it_is_copied_is_not_imported(paths: Paths, tmp_path: Path) -> None:
    mine = make_gguf(tmp_path / "Mine-Q5_K_M.gguf", data_bytes=100_000)
    library = ModelLibrary(paths, scan_hf_cache=False)

    def cut_short(done: int, total: int) -> None:  # another program rewrites the file meanwhile
        with mine.open("r+b") as handle:
            handle.truncate(total // 2)

    with pytest.raises(HubError, match="changed while it was being copied"):
        library.import_model(mine, copy=True, progress=cut_short)
    assert not (paths.models_dir / "imported").exists() or not any((paths.models_dir / "imported").rglob("*"))
    assert [e.source for e in library.list()].count("imported") == 0


def test_import_refuses_bad_files_and_missing_space(paths: Paths, tmp_path: Path) -> None:
    library = ModelLibrary(paths, scan_hf_cache=False, free_space=lambda path: 1_000)
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(HubError, match="not a GGUF model file"):
        library.import_model(junk)
    with pytest.raises(HubError, match="Can't import"):
        library.import_model(tmp_path / "missing.gguf")
    mine = make_gguf(tmp_path / "Mine-Q4_0.gguf", data_bytes=50_000)
    with pytest.raises(HubError, match=r"Not enough space: needs .*, have 1\.0 KB") as caught:
        library.import_model(mine, copy=True)
    assert caught.value.kind == "disk"
    assert not paths.library_file.exists()


def test_corrupt_library_file_is_reported_not_fatal(paths: Paths, library: ModelLibrary) -> None:
    paths.library_file.write_text("{not json")
    assert library.list()[0].key == "starter"
    assert library.warning and "could not be read" in library.warning


def test_hugging_face_cache_models_are_listed(paths: Paths, tmp_path: Path) -> None:
    cache = tmp_path / "hf-cache"
    repo = cache / "models--bartowski--Cached-GGUF"
    commit = "a" * 40
    blob = make_gguf(repo / "blobs" / ("b" * 64), name="Cached")
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    os.symlink(os.path.relpath(blob, snapshot), snapshot / "Cached-Q4_K_M.gguf")
    (repo / "blobs" / ("c" * 64)).write_text("{}")
    os.symlink(os.path.relpath(repo / "blobs" / ("c" * 64), snapshot), snapshot / "config.json")
    library = ModelLibrary(paths, hf_cache_dir=cache)
    cached = [e for e in library.list() if e.source == "hf-cache"]
    assert [(e.name, e.repo_id, e.state) for e in cached] == [
        ("Cached-Q4_K_M", "bartowski/Cached-GGUF", "ok")
    ]
    with pytest.raises(HubError, match="hf cache delete"):
        library.remove(cached[0].key)
    assert blob.exists()


def test_hf_cache_folder_is_read_from_the_environment(
    paths: Paths, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert ModelLibrary(paths).hf_cache_dir == tmp_path / "elsewhere"


def test_find_resolves_paths_keys_and_names(library: ModelLibrary, paths: Paths, tmp_path: Path) -> None:
    path = downloaded(paths, "acme/Tiny-GGUF", "Tiny-Q4_K_M.gguf")
    downloaded(paths, "acme/Tiny-GGUF", "Tiny-Q8_0.gguf", seed=2)
    key = "downloaded:acme__Tiny-GGUF/Tiny-Q4_K_M.gguf"
    assert library.find(key).key == key  # type: ignore[union-attr]
    assert library.find(str(path)).key == key  # type: ignore[union-attr]
    assert library.find("tiny-q4_k_m").key == key  # type: ignore[union-attr]
    assert library.find("Tiny-Q4_K_M.gguf").key == key  # type: ignore[union-attr]
    assert library.find("q8_0").name == "Tiny-Q8_0"  # type: ignore[union-attr]
    assert library.find("starter").key == "starter"  # type: ignore[union-attr]
    assert library.find(STARTER_MODEL_NAME.upper()).key == "starter"  # type: ignore[union-attr]
    assert library.find("no such model") is None
    with pytest.raises(HubError, match="matches several models"):
        library.find("tiny")
    loose = make_gguf(tmp_path / "Loose-Q4_0.gguf")
    found = library.find(str(loose))
    assert found is not None and found.path == loose and found.loadable


def test_partial_downloads_with_glob_characters_in_their_names(library: ModelLibrary, paths: Paths) -> None:
    folder = paths.models_dir / "acme__Odd-GGUF"
    folder.mkdir(parents=True)
    single = folder / "Odd [v2]-Q4_0.gguf.part"
    single.write_bytes(b"GGUF" + b"\0" * 996)
    split = [folder / f"Big [x]*-Q8_0-0000{i}-of-00002.gguf.part" for i in (1, 2)]
    split[0].write_bytes(b"\0" * 3000)
    split[1].write_bytes(b"\0" * 2000)
    by_name = {e.name: e for e in library.list() if e.source == "downloaded"}
    assert set(by_name) == {"Odd [v2]-Q4_0", "Big [x]*-Q8_0"}
    assert (by_name["Odd [v2]-Q4_0"].state, by_name["Odd [v2]-Q4_0"].size) == ("partial", 1000)
    assert (by_name["Big [x]*-Q8_0"].state, by_name["Big [x]*-Q8_0"].size) == ("partial", 5000)
    library.remove(by_name["Big [x]*-Q8_0"].key)  # frees every part, not just the first
    assert not any(p.exists() for p in split) and single.exists()
