"""Hostile and odd GGUF headers: each gets a specific ModelFileError, never a crash or a hang.

The files are built byte by byte here, so every count and length can lie.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
import threading
from pathlib import Path

import pytest

from llamadesk.engine import ModelFileError, inspect_gguf
from llamadesk.engine.gguf_reader import MAX_ARRAY_DEPTH

STRING, ARRAY, UINT32, INT32, FLOAT32 = 8, 9, 4, 5, 6


def text(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return struct.pack("<Q", len(raw)) + raw


def kv_string(key: str, value: str) -> bytes:
    return text(key) + struct.pack("<I", STRING) + text(value)


def kv_u32(key: str, value: int) -> bytes:
    return text(key) + struct.pack("<II", UINT32, value)


def kv_strings(key: str, values: list[bytes]) -> bytes:
    return text(key) + struct.pack("<IIQ", ARRAY, STRING, len(values)) + b"".join(map(text, values))


def gguf(*kvs: bytes, tensors: int = 0, kv_count: int | None = None, body: bytes = b"") -> bytes:
    count = len(kvs) if kv_count is None else kv_count
    return b"GGUF" + struct.pack("<IQQ", 3, tensors, count) + b"".join(kvs) + body


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_arrays_nested_thousands_deep_are_refused(tmp_path: Path) -> None:
    nested = struct.pack("<IQ", ARRAY, 1) * 5_000 + struct.pack("<IQ", UINT32, 0)
    path = write(tmp_path / "deep.gguf", gguf(text("x") + struct.pack("<I", ARRAY) + nested))
    with pytest.raises(ModelFileError, match=f"nests arrays more than {MAX_ARRAY_DEPTH} levels deep"):
        inspect_gguf(path)


def test_shallow_nested_arrays_are_skipped_and_reading_goes_on(tmp_path: Path) -> None:
    inner = struct.pack("<IQ", INT32, 2) + struct.pack("<ii", 1, 2)
    strings = struct.pack("<IQ", STRING, 2) + text("a") + text("bc")
    nested = struct.pack("<IQ", ARRAY, 1) + struct.pack("<IQ", ARRAY, 2) + inner + strings  # [[ints, strs]]
    path = write(
        tmp_path / "nested.gguf",
        gguf(
            text("odd.nested") + struct.pack("<I", ARRAY) + nested,
            kv_string("general.architecture", "llama"),
            kv_string("general.name", "After The Arrays"),
        ),
    )
    info = inspect_gguf(path)
    assert (info.architecture, info.name) == ("llama", "After The Arrays")


def test_an_absurd_key_count_is_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path / "keys.gguf", gguf(kv_count=1 << 62))
    with pytest.raises(ModelFileError, match="claims 4,611,686,018,427,387,904 metadata entries"):
        inspect_gguf(path)


def test_an_absurd_tensor_count_is_named_as_such(tmp_path: Path) -> None:
    path = write(tmp_path / "tensors.gguf", gguf(tensors=20_000_000))
    with pytest.raises(ModelFileError, match="claims 20,000,000 tensors"):
        inspect_gguf(path)


def test_big_vocabulary_is_skipped_but_its_special_tokens_are_found(tmp_path: Path) -> None:
    # 150,000 tokens (the last ones 2 MB long, longer than one read of the buffer), the
    # end-of-text token in the last block, and metadata after the vocabulary.
    tokens = [f"tok{i}".encode() for i in range(150_000)]
    tokens[1] = b"<s>"
    tokens[149_990] = b"</s>"
    tokens[149_995:149_999] = [bytes([65 + i]) * (2 << 20) for i in range(4)]
    path = write(
        tmp_path / "vocab.gguf",
        gguf(
            kv_string("general.architecture", "llama"),
            kv_strings("tokenizer.ggml.tokens", tokens),
            kv_u32("tokenizer.ggml.bos_token_id", 1),
            kv_u32("tokenizer.ggml.eos_token_id", 149_990),
            kv_string("general.name", "Big Vocab"),
        ),
    )
    info = inspect_gguf(path)
    assert (info.bos_token, info.eos_token, info.name) == ("<s>", "</s>", "Big Vocab")


def test_a_token_id_outside_the_vocabulary_gives_no_token(tmp_path: Path) -> None:
    path = write(
        tmp_path / "ids.gguf",
        gguf(
            kv_strings("tokenizer.ggml.tokens", [b"a", b"b"]),
            kv_u32("tokenizer.ggml.bos_token_id", 0),
            kv_u32("tokenizer.ggml.eos_token_id", 7),
        ),
    )
    info = inspect_gguf(path)
    assert (info.bos_token, info.eos_token) == ("a", None)


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        # A token deep in the vocabulary claims 1 TB.
        (
            "token-length.gguf",
            gguf(
                text("tokenizer.ggml.tokens")
                + struct.pack("<IIQ", ARRAY, STRING, 3000)
                + b"".join(text(b"t") for _ in range(2500))
                + struct.pack("<Q", 1 << 40),
                body=b"\0" * 10_000,
            ),
            "a metadata string claims 1,099,511,627,776 bytes",
        ),
        # The file ends inside the vocabulary.
        (
            "cut-vocab.gguf",
            gguf(kv_strings("tokenizer.ggml.tokens", [b"token"] * 3000))[:-5000],
            "truncated",
        ),
        (
            "array-type.gguf",
            gguf(text("x") + struct.pack("<IIQ", ARRAY, 77, 1) + b"\0" * 16),
            "array type 77",
        ),
        ("value-type.gguf", gguf(text("x") + struct.pack("<I", 99) + b"\0" * 16), "value type 99"),
        (
            "dims.gguf",
            gguf(tensors=1, body=text("w") + struct.pack("<I", 9) + b"\0" * 100),
            "a tensor claims 9 dimensions",
        ),
    ],
)
def test_damaged_headers_get_specific_messages(tmp_path: Path, name: str, data: bytes, expected: str) -> None:
    with pytest.raises(ModelFileError, match=expected):
        inspect_gguf(write(tmp_path / name, data))


def test_a_huge_string_inside_a_skipped_array_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "sparse.gguf"
    with path.open("wb") as handle:
        handle.write(gguf(text("tokenizer.ggml.merges") + struct.pack("<IIQ", ARRAY, STRING, 2)))
        handle.write(struct.pack("<Q", 100 << 20))
        handle.truncate(210 << 20)  # sparse: big on paper, nothing on disk
    with pytest.raises(ModelFileError, match="a metadata string claims 104,857,600 bytes"):
        inspect_gguf(path)


posix_only = pytest.mark.skipif(sys.platform == "win32", reason="named pipes and sockets are POSIX files")


@posix_only
def test_a_named_pipe_is_refused_without_opening_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.gguf"
    os.mkfifo(fifo)
    opened: list[bool] = []

    def writer() -> None:  # blocks until someone opens the pipe for reading
        fd = os.open(fifo, os.O_WRONLY)
        opened.append(True)
        os.write(fd, b"GGUF")
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    try:
        with pytest.raises(ModelFileError, match=r"pipe\.gguf is a named pipe, not a model file"):
            inspect_gguf(fifo)
        assert not opened
    finally:
        release = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the writer finish
        thread.join()
        os.close(release)


@posix_only
def test_a_socket_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.gguf"
    server = socket.socket(socket.AF_UNIX)
    try:
        server.bind(str(path))
        with pytest.raises(ModelFileError, match=r"s\.gguf is a socket, not a model file"):
            inspect_gguf(path)
    finally:
        server.close()


@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="needs /dev/null")
def test_a_device_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "null.gguf"
    link.symlink_to("/dev/null")
    with pytest.raises(ModelFileError, match=r"null\.gguf is a device, not a model file"):
        inspect_gguf(link)
