"""GGUF inspection: facts of the real starter model and a specific message for each bad file."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from llamadesk.engine import ModelFileError, inspect_gguf


def test_starter_model_facts(starter_model: Path) -> None:
    info = inspect_gguf(starter_model)
    assert info.architecture == "llama"
    assert info.file_type == "Q4_1"
    assert info.context_length == 8192
    assert info.block_count == 30
    assert info.embedding_length == 576
    assert (info.head_count, info.head_count_kv) == (9, 3)
    assert info.parameter_count is not None and 130e6 < info.parameter_count < 140e6
    assert info.chat_template and "<|im_start|>" in info.chat_template
    assert info.bos_token == "<|im_start|>" and info.eos_token == "<|im_end|>"
    assert info.file_size == starter_model.stat().st_size
    assert info.bits_per_weight is not None and 5 < info.bits_per_weight < 6.5


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("missing.gguf", None, "not found"),
        ("empty.gguf", b"", r"empty \(0 bytes\)"),
        ("tiny.gguf", b"GG", "too small"),
        ("model.bin.gguf", b"PK\x03\x04" + b"\0" * 100, "not a GGUF model file"),
        ("old.gguf", b"ggjt" + b"\0" * 100, "old GGML file"),
        ("page.gguf", b"<!DOCTYPE html><html>" + b" " * 100, "web page"),
        ("future.gguf", b"GGUF" + struct.pack("<I", 9) + b"\0" * 100, "GGUF version 9"),
        ("header.gguf", b"GGUF" + struct.pack("<IQQ", 3, 10, 5), "truncated"),
    ],
)
def test_bad_files_get_specific_messages(
    tmp_path: Path, name: str, make: bytes | None, expected: str
) -> None:
    path = tmp_path / name
    if make is not None:
        _write(path, make)
    with pytest.raises(ModelFileError, match=expected):
        inspect_gguf(path)


def test_directory_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="is a folder"):
        inspect_gguf(tmp_path)


def test_truncated_weights_detected(tmp_path: Path, starter_model: Path) -> None:
    data = starter_model.read_bytes()
    cut = _write(tmp_path / "cut.gguf", data[: len(data) // 2])
    with pytest.raises(ModelFileError, match=r"truncated: [\d,]+ bytes of model weights are missing"):
        inspect_gguf(cut)


def test_split_parts(tmp_path: Path, starter_model: Path) -> None:
    second = _write(tmp_path / "big-00002-of-00003.gguf", b"GGUF")
    with pytest.raises(
        ModelFileError, match=r"part 2 of a model split into 3 files.*big-00001-of-00003\.gguf"
    ):
        inspect_gguf(second)
    first = tmp_path / "big-00001-of-00003.gguf"
    first.write_bytes(starter_model.read_bytes())
    with pytest.raises(ModelFileError, match="1 are missing"):
        inspect_gguf(first)
    _write(tmp_path / "big-00003-of-00003.gguf", b"GGUF")
    info = inspect_gguf(first)
    assert info.split_count == 3
    assert info.file_size == sum(p.stat().st_size for p in tmp_path.glob("big-*.gguf"))


def test_block_sizes_match_ggml() -> None:
    """The completeness check's bytes-per-block table agrees with ggml's (via the gguf package)."""
    from gguf.constants import GGML_QUANT_SIZES

    from llamadesk.engine.gguf_info import _TYPE_SIZES

    for kind, sizes in GGML_QUANT_SIZES.items():
        if kind.value in _TYPE_SIZES:
            assert _TYPE_SIZES[kind.value] == sizes, kind.name
    assert {19, 21, 22, 23} <= set(_TYPE_SIZES)  # IQ1_S, IQ3_S, IQ2_S, IQ4_XS


def _gguf_string(text: bytes) -> bytes:
    return struct.pack("<Q", len(text)) + text


@pytest.mark.parametrize(
    ("name", "body", "expected"),
    [
        # A key claiming 200 MB (the sparse file is that big): refused, not read into memory.
        ("long-string.gguf", struct.pack("<Q", 200 << 20), "a metadata string claims 209,715,200 bytes"),
        # An array of 2^40 integers in a small file.
        (
            "big-array.gguf",
            _gguf_string(b"tokenizer.ggml.token_type") + struct.pack("<IIQ", 9, 5, 1 << 40),
            "an array claims 1,099,511,627,776 items",
        ),
        # Nested arrays claiming more items than bytes left.
        (
            "nested.gguf",
            _gguf_string(b"x") + struct.pack("<IIQ", 9, 9, 50_000_000),
            "an array claims 50,000,000 items",
        ),
        # general.alignment as a string.
        (
            "alignment.gguf",
            _gguf_string(b"general.alignment") + struct.pack("<I", 8) + _gguf_string(b"32"),
            "alignment is '32'",
        ),
    ],
)
def test_damaged_metadata_is_refused_without_huge_allocations(
    tmp_path: Path, name: str, body: bytes, expected: str
) -> None:
    path = tmp_path / name
    with path.open("wb") as handle:
        handle.write(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body)
        handle.truncate(210 << 20)  # sparse: big on paper, nothing on disk
    with pytest.raises(ModelFileError, match=expected):
        inspect_gguf(path)
