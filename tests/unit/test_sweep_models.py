"""Numbers and names in model files, the header cache, the library index and sidecars that no real
model has: they count as unknown, never as a loop of 2**63 steps, a division by zero or a crash."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gguf import GGUFWriter

from hub_server import make_gguf
from llamadesk.engine import Hardware, ModelFileError, header_cache, inspect_gguf
from llamadesk.engine.hardware import GiB, GPUInfo, parse_nvidia_smi
from llamadesk.engine.header_cache import CACHE_FILE_NAME, HeaderCache
from llamadesk.engine.planner import gpu_layers_for_context, plan_fit
from llamadesk.hub import HubError, ModelLibrary
from llamadesk.paths import Paths

GPU = Hardware(64 * GiB, 32 * GiB, 8, "CUDA", True, [GPUInfo("Test GPU", 24 * GiB, 24 * GiB)])


def odd_model(path: Path, fields: dict[str, tuple[str, Any]]) -> Path:
    """A small valid GGUF whose ``llama.<key>`` entries are ``fields`` (``{key: (gguf type, value)}``)."""
    writer = GGUFWriter(str(path), "llama")
    writer.add_name("Odd")
    writer.add_file_type(15)
    for key, (kind, value) in fields.items():
        getattr(writer, f"add_{kind}")(f"llama.{key}", value)
    writer.add_tensor("token_embd.weight", np.zeros(4096, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(autouse=True)
def own_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(header_cache, "_current", HeaderCache())


@pytest.mark.parametrize(
    "fields",
    [
        {"block_count": ("uint64", 2**63), "attention.head_count": ("uint64", 2**64 - 1)},
        {"block_count": ("int32", -1), "attention.head_count": ("int32", -8)},
        {"block_count": ("uint32", 0), "context_length": ("uint64", 2**40)},
        {"block_count": ("float32", float("inf")), "context_length": ("float64", float("nan"))},
        {"embedding_length": ("int64", -(2**63)), "attention.key_length": ("uint64", 2**63)},
    ],
    ids=["huge", "negative", "zero-and-past-32-bits", "not-finite", "key-length"],
)
def test_counts_no_model_has_are_unknown_and_the_plan_still_fits(
    tmp_path: Path, fields: dict[str, Any]
) -> None:
    info = inspect_gguf(odd_model(tmp_path / "odd.gguf", fields))
    shape = (info.block_count, info.head_count, info.context_length, info.embedding_length, info.key_length)
    assert shape == (None, None, None, None, None)
    plan = plan_fit(info, GPU)
    assert plan.verdict == "gpu" and plan.n_gpu_layers == -1  # a 16 KB model fits anywhere
    assert gpu_layers_for_context(info, GPU, 4096) == -1


def test_a_plausible_model_keeps_its_counts(tmp_path: Path) -> None:
    fields = {
        "block_count": ("uint32", 30),
        "attention.head_count": ("uint32", 9),
        "attention.head_count_kv": ("uint32", 3),
        "context_length": ("uint32", 8192),
        "embedding_length": ("uint32", 576),
    }
    info = inspect_gguf(odd_model(tmp_path / "fine.gguf", fields))
    assert (info.block_count, info.head_count, info.head_count_kv) == (30, 9, 3)
    assert (info.context_length, info.embedding_length) == (8192, 576)


def test_counts_in_a_tampered_header_cache_are_read_again_from_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_file = tmp_path / "cache" / CACHE_FILE_NAME
    monkeypatch.setattr(header_cache, "_current", HeaderCache(cache_file))
    model = make_gguf(tmp_path / "m.gguf", name="Real")
    real = inspect_gguf(model)
    header_cache.flush()
    data = json.loads(cache_file.read_text())
    facts = data["entries"][os.path.realpath(model)]["facts"]["info"]
    facts.update(block_count=2**63, head_count=-1, context_length=0, parameter_count=10**30)
    cache_file.write_text(json.dumps(data))
    later = HeaderCache(cache_file)
    monkeypatch.setattr(header_cache, "_current", later)
    again = inspect_gguf(model)
    assert (again.block_count, again.head_count, again.context_length) == (1, 4, 2048)
    assert again.parameter_count == real.parameter_count and later.reads == 1


def test_gpu_memory_is_read_from_ascii_digits_only() -> None:
    out = "NVIDIA H200, 143771, 140000\nOdd GPU, ²³, 100\nOther, 1_000, 10\nNegative, -5, 3\n"
    assert [(g.name, g.vram_total) for g in parse_nvidia_smi(out)] == [("NVIDIA H200", 143771 * 1024**2)]


# -- the library index and sidecars ---------------------------------------------------------------


def test_a_lone_surrogate_in_library_json_hides_that_entry_only(paths: Paths, tmp_path: Path) -> None:
    mine = make_gguf(tmp_path / "elsewhere" / "Mine-Q4_0.gguf", data_bytes=2_000)
    records = [
        {"path": str(tmp_path / "elsewhere" / "Evil\ud800.gguf"), "copied": False},
        {"path": str(mine), "copied": False, "added": "2024-07-01T10:00:00+00:00"},
    ]
    paths.library_file.write_text(json.dumps({"version": 1, "imports": records}))  # escaped as \ud800
    library = ModelLibrary(paths, hf_cache_dir=tmp_path / "no-hf-cache")
    imported = [e for e in library.list() if e.source == "imported"]
    assert [(e.path, e.state) for e in imported] == [(mine, "ok")]
    assert library.find("Mine-Q4_0") is not None
    library.remove(imported[0].key)
    assert mine.exists() and [e for e in library.list() if e.source == "imported"] == []


def test_a_sidecar_with_lone_surrogates_gives_no_repository(paths: Paths, tmp_path: Path) -> None:
    model = make_gguf(paths.models_dir / "acme__Tiny-GGUF" / "Tiny-Q4_0.gguf", data_bytes=2_000)
    record = '{"repo_id": "acme/\\ud800", "revision": "\\udc00", "parts": ["\\ud800.gguf"]}'
    model.with_name(model.name + ".source.json").write_text(record)
    entry = next(e for e in ModelLibrary(paths, hf_cache_dir=tmp_path / "none").list() if e.path == model)
    assert (entry.repo_id, entry.revision, entry.repo_files) == (None, None, ())
    json.dumps(entry.as_dict(), ensure_ascii=False).encode("utf-8")


def test_a_model_file_with_an_undecodable_name_is_listed_and_read(paths: Paths) -> None:
    folder = paths.models_dir / "acme__Tiny-GGUF"
    odd = make_gguf(folder / os.fsdecode(b"Tiny-\xff-Q4_0.gguf"), data_bytes=2_000)
    entry = next(e for e in ModelLibrary(paths, scan_hf_cache=False).list() if e.source == "downloaded")
    assert entry.path == odd and entry.state == "ok"
    with pytest.raises(ModelFileError, match="not found"):
        inspect_gguf(folder / "Tiny-\ud800-Q4_0.gguf")  # a name no file system can hold


@pytest.mark.parametrize("name", ["Evil-\ud800.gguf", "Evil\0.gguf"], ids=["lone-surrogate", "nul"])
def test_importing_a_name_no_file_can_have_is_a_hub_error(paths: Paths, tmp_path: Path, name: str) -> None:
    library = ModelLibrary(paths, scan_hf_cache=False)
    with pytest.raises(HubError, match="Can't import"):
        library.import_model(tmp_path / name)
    assert not paths.library_file.exists()
