"""What the library reads: names resolve from ``stat`` and remembered facts, only new files are read.

Each test starts with an empty header cache, as a fresh start of LlamaDesk would, and counts
the model headers read from disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hub_server import make_gguf
from llamadesk.engine import header_cache
from llamadesk.engine.header_cache import CACHE_FILE_NAME, HeaderCache
from llamadesk.hub import ModelLibrary
from llamadesk.hub.library import UNCHECKED, LibraryModel
from llamadesk.paths import Paths


def downloaded(paths: Paths, repo: str, filename: str, seed: int) -> Path:
    """A file as the downloader leaves it: in the repo's folder with its source record."""
    path = make_gguf(paths.models_dir / repo.replace("/", "__") / filename, data_bytes=2_000, seed=seed)
    record = {"repo_id": repo, "revision": "main", "downloaded_at": "2024-07-01T10:00:00+00:00"}
    path.with_name(filename + ".source.json").write_text(json.dumps(record))
    return path


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch) -> HeaderCache:
    """A fresh process-wide header cache (in memory only) whose ``reads`` the tests count."""
    fresh = HeaderCache()
    monkeypatch.setattr(header_cache, "_current", fresh)
    return fresh


@pytest.fixture
def library(paths: Paths, tmp_path: Path) -> ModelLibrary:
    return ModelLibrary(paths, hf_cache_dir=tmp_path / "no-hf-cache")


@pytest.fixture
def models(paths: Paths) -> list[Path]:
    return [downloaded(paths, "acme/Many-GGUF", f"Model{i}-Q4_0.gguf", seed=i) for i in range(6)]


def test_finding_one_model_reads_only_that_model(
    library: ModelLibrary, models: list[Path], cache: HeaderCache
) -> None:
    found = library.find("model3-q4_0")
    assert found is not None and found.path == models[3] and found.loadable
    assert cache.reads == 1
    assert library.find(str(models[4])).path == models[4]  # type: ignore[union-attr]
    assert library.get("downloaded:acme__Many-GGUF/Model5-Q4_0.gguf").loadable  # type: ignore[union-attr]
    assert cache.reads == 3


def test_removing_a_model_reads_no_model(
    library: ModelLibrary, models: list[Path], cache: HeaderCache
) -> None:
    removed = library.remove("downloaded:acme__Many-GGUF/Model2-Q4_0.gguf")
    assert removed.path == models[2] and not models[2].exists()
    assert cache.reads == 0


def test_importing_reads_only_the_new_file(
    paths: Paths, models: list[Path], tmp_path: Path, cache: HeaderCache
) -> None:
    library = ModelLibrary(paths, scan_hf_cache=False)
    mine = [make_gguf(tmp_path / "mine" / f"Mine{i}-Q5_K_M.gguf", seed=i) for i in range(5)]
    for count, path in enumerate(mine, start=1):
        entry = library.import_model(path)
        assert (entry.path, entry.state, entry.source) == (path, "ok", "imported")
        assert cache.reads == count
    assert library.import_model(mine[0]).key == f"imported:{mine[0]}"  # already there: nothing read
    assert library.import_model(models[0]).key == "downloaded:acme__Many-GGUF/Model0-Q4_0.gguf"
    assert cache.reads == 6
    assert [i["path"] for i in json.loads(paths.library_file.read_text())["imports"]] == list(map(str, mine))


def test_cached_listing_reads_nothing_and_scan_reports_each_new_model(
    library: ModelLibrary, models: list[Path], cache: HeaderCache
) -> None:
    library.find("Model1-Q4_0")
    at_once = [e for e in library.list_cached() if e.source == "downloaded"]
    assert cache.reads == 1
    assert [e.state for e in at_once] == [UNCHECKED, "ok", *[UNCHECKED] * 4]  # Model0, Model1, ...
    assert [e.loadable for e in at_once] == [False, True, *[False] * 4]
    seen: list[LibraryModel] = []
    listed = library.scan(on_model=seen.append)
    assert [e.path for e in seen] == [e.path for e in listed if e.path != models[1]]  # the starter too
    assert {e.state for e in seen} == {e.state for e in listed} == {"ok"} and cache.reads == 7
    again: list[LibraryModel] = []
    assert library.scan(on_model=again.append) == listed and again == []


def test_scan_stops_when_asked(library: ModelLibrary, models: list[Path], cache: HeaderCache) -> None:
    listed = library.scan(should_stop=lambda: cache.reads >= 2)
    assert [e.state for e in listed].count(UNCHECKED) == len(listed) - 2 and cache.reads == 2


def test_a_later_start_lists_every_model_without_reading_one(
    library: ModelLibrary,
    models: list[Path],
    cache: HeaderCache,
    paths: Paths,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    file = paths.data_dir / CACHE_FILE_NAME
    header_cache.configure(file)
    first = library.list()
    later = HeaderCache(file)
    monkeypatch.setattr(header_cache, "_current", later)
    assert library.list_cached() == first and later.reads == 0
    make_gguf(models[0], name="Changed", data_bytes=3_000)
    changed = library.list()
    assert later.reads == 1
    assert next(e for e in changed if e.path == models[0]).info.name == "Changed"  # type: ignore[union-attr]
