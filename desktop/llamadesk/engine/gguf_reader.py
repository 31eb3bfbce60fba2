"""Walk a GGUF header quickly and safely: keep the facts, skip the vocabulary in bulk.

A model's header is mostly arrays nobody needs to show it in a list (tokens, merges,
scores, token types: hundreds of thousands of items). Fixed-size arrays are skipped with one
seek; arrays of strings are skipped by hopping from length to length over a buffer, which
stays close to the speed of ggml's own C reader. Every count and length is checked against
the bytes the file really has before anything is allocated, nested arrays are walked without
recursion, and only regular files are opened (a named pipe called ``x.gguf`` would block).
"""

from __future__ import annotations

import os
import stat
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ModelFileError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)

# GGUF value types -> struct format (scalars only).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_SCALAR_STRUCTS = {kind: struct.Struct("<" + fmt) for kind, fmt in _SCALARS.items()}
_STRING, _ARRAY = 8, 9

MAX_STRING = 64 << 20  # one metadata string (chat templates are a few KB; vocabularies are arrays)
MAX_ARRAY_DEPTH = 8  # arrays of arrays: real files use none; a hostile one may nest thousands deep
MAX_TENSORS = 10_000_000
MAX_KEYS = 1_000_000
MAX_DIMS = 8
KEEP_ARRAY_ITEMS = 1024  # small number arrays (per-layer head counts) are kept; bigger ones skipped
TOKENS_KEY = "tokenizer.ggml.tokens"
TOKEN_ID_KEYS = ("tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id")

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_ARRAY_HEAD = struct.Struct("<IQ")
_COUNTS = struct.Struct("<QQ")
_TYPE_OFFSET = struct.Struct("<IQ")
_CHUNK = 1 << 20  # bytes read at a time
_CHECKPOINT = 1024  # a vocabulary remembers where every 1024th token starts, to fetch a few later
_KINDS = {
    stat.S_IFIFO: "a named pipe",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
    stat.S_IFSOCK: "a socket",
}


def open_model_file(path: Path) -> tuple[BinaryIO, os.stat_result]:
    """Open a model file for reading, refusing anything but a regular file.

    The check runs before the open (a named pipe would block it) and again on the open file,
    in case the name was swapped in between; the open itself never waits.
    """
    try:
        before = os.stat(path)
    except (FileNotFoundError, ValueError):  # ValueError: a NUL in the name
        raise ModelFileError(f"Model file not found: {path}") from None
    except OSError as exc:
        raise ModelFileError(f"Can't read {path.name}: {exc.strerror or exc}") from exc
    require_regular(path, before.st_mode)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    flags |= getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise ModelFileError(f"Can't read {path.name}: {exc.strerror or exc}") from exc
    try:
        after = os.fstat(fd)
        require_regular(path, after.st_mode)
        handle: BinaryIO = os.fdopen(fd, "rb", buffering=0)
    except BaseException:
        os.close(fd)
        raise
    return handle, after


def require_regular(path: Path, mode: int) -> None:
    """Raise ``ModelFileError`` unless ``mode`` (from ``stat``) is a regular file's."""
    if stat.S_ISREG(mode):
        return
    if stat.S_ISDIR(mode):
        raise ModelFileError(f"{path} is a folder, not a model file. Choose the .gguf file inside it.")
    kind = _KINDS.get(stat.S_IFMT(mode), "not a regular file")
    raise ModelFileError(f"{path.name} is {kind}, not a model file.")


@dataclass
class RawHeader:
    """What the header says, before it is turned into ``GGUFInfo``."""

    version: int
    meta: dict[str, Any]
    tensor_count: int
    tensors: list[tuple[int, int, int]]  # (elements, ggml type, data offset) of each tensor
    header_end: int  # file offset where the tensor infos end
    tokens: dict[int, str] = field(default_factory=dict)  # text of the tokens named by TOKEN_ID_KEYS
    vocab_size: int | None = None


class _Source:
    """Reads a file through one buffer; ``tell()`` is the file offset of the next byte."""

    def __init__(self, handle: BinaryIO, path: Path, size: int) -> None:
        self.handle, self.path, self.size = handle, path, size
        self.buf = b""
        self.start = 0  # file offset of buf[0]
        self.pos = 0  # index of the next byte in buf

    def tell(self) -> int:
        return self.start + self.pos

    def remaining(self) -> int:
        return self.size - self.start - self.pos

    def truncated(self) -> ModelFileError:
        return ModelFileError(
            f"{self.path.name} is truncated: the file ends inside its header "
            f"({self.size:,} bytes). The download was probably interrupted; download it again."
        )

    def damaged(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.path.name} is damaged: {what}. Download it again.")

    def fill(self, need: int, want: int = _CHUNK) -> bool:
        """Make at least ``need`` bytes available from ``pos`` (reading ``want`` ahead); False at EOF."""
        have = len(self.buf) - self.pos
        if have >= need:
            return True
        wanted = min(max(need, want) - have, self.size - self.start - len(self.buf))
        parts = [self.buf[self.pos :]]
        got = 0
        while got < wanted:
            chunk = self.handle.read(wanted - got)
            if not chunk:  # the file shrank since it was measured
                break
            parts.append(chunk)
            got += len(chunk)
        self.start += self.pos
        self.buf = b"".join(parts)
        self.pos = 0
        return len(self.buf) >= need

    def read(self, count: int) -> bytes:
        if not self.fill(count):
            raise self.truncated()
        data = self.buf[self.pos : self.pos + count]
        self.pos += count
        return data

    def unpack(self, layout: struct.Struct) -> tuple[Any, ...]:
        if len(self.buf) - self.pos < layout.size and not self.fill(layout.size):
            raise self.truncated()
        values = layout.unpack_from(self.buf, self.pos)
        self.pos += layout.size
        return values

    def skip(self, count: int) -> None:
        if count > self.remaining():
            raise self.truncated()
        if self.pos + count <= len(self.buf):
            self.pos += count
            return
        target = self.tell() + count
        self.handle.seek(target)
        self.buf, self.start, self.pos = b"", target, 0

    def seek(self, offset: int) -> None:
        if self.start <= offset <= self.start + len(self.buf):
            self.pos = offset - self.start
            return
        self.handle.seek(offset)
        self.buf, self.start, self.pos = b"", offset, 0

    # -- GGUF values ---------------------------------------------------------------------------

    def length(self) -> int:
        (length,) = self.unpack(_U64)
        if length > min(self.remaining(), MAX_STRING):
            raise self.damaged(f"a metadata string claims {length:,} bytes")
        return int(length)

    def string(self) -> str:
        return self.read(self.length()).decode("utf-8", errors="replace")

    def skip_strings(self, count: int, checkpoints: list[int] | None = None) -> None:
        """Skip ``count`` strings, hopping over lengths in the buffer ``_CHECKPOINT`` at a time."""
        unpack_from = _U64.unpack_from
        done = 0
        while done < count:
            block = min(_CHECKPOINT, count - done)
            if checkpoints is not None:
                checkpoints.append(self.tell())
            buf, pos = self.buf, self.pos
            try:
                for _ in range(block):
                    pos += 8 + unpack_from(buf, pos)[0]
                fits = pos <= len(buf)
            except struct.error:  # a length lies past the end of the buffer
                fits = False
            if fits:
                self.pos = pos
                done += block
                continue
            # The block runs past the buffer: read as far as its first string that does not fit
            # (never holding more than MAX_STRING bytes, so a string found whole in the buffer is
            # within bounds), or go one string at a time, which checks each length.
            need = self._first_misfit(block)
            available = len(self.buf) - self.pos
            if 0 < need <= min(MAX_STRING, self.remaining()):
                self.fill(min(max(need, available * 2), MAX_STRING, self.remaining()))
                if len(self.buf) - self.pos > available:
                    if checkpoints is not None:
                        checkpoints.pop()
                    continue
            for _ in range(block):
                self.skip(self.length())
            done += block

    def _first_misfit(self, block: int) -> int:
        """Bytes from ``pos`` to the end of the first of ``block`` strings not wholly in the buffer;
        0 when that string's length is bad (too long for the file or for a string)."""
        buf, pos, end = self.buf, self.pos, len(self.buf)
        for _ in range(block):
            if pos + 8 > end:
                return pos + 8 - self.pos
            (length,) = _U64.unpack_from(buf, pos)
            if length > MAX_STRING or self.start + pos + 8 + length > self.size:
                return 0
            pos += 8 + length
            if pos > end:
                return pos - self.pos
        return 0

    def value(self, kind: int) -> Any:
        """A scalar or string value; arrays go through ``array``."""
        if kind == _STRING:
            return self.string()
        layout = _SCALAR_STRUCTS.get(kind)
        if layout is None:
            raise self.damaged(f"unknown metadata value type {kind}")
        return self.unpack(layout)[0]

    def array_head(self) -> tuple[int, int]:
        """An array's item type and count, refused when the rest of the file can't hold it."""
        item_kind, count = self.unpack(_ARRAY_HEAD)
        # Every item takes at least a few bytes, so a count the rest of the file can't hold is a
        # lie; checking before building anything keeps a damaged file from eating the memory.
        layout = _SCALAR_STRUCTS.get(item_kind)
        smallest = layout.size if layout else 8 if item_kind == _STRING else 12 if item_kind == _ARRAY else 1
        if count * smallest > self.remaining():
            raise self.damaged(f"an array claims {count:,} items")
        if layout is None and item_kind not in (_STRING, _ARRAY):
            raise self.damaged(f"unknown array type {item_kind}")
        return int(item_kind), int(count)

    def skip_array(self, item_kind: int, count: int) -> None:
        """Skip an array's items, nested arrays included, without recursion."""
        frames = [[item_kind, count]]
        while frames:
            frame = frames[-1]
            kind, left = frame
            if kind == _STRING:
                self.skip_strings(left)
            elif kind != _ARRAY:
                self.skip(_SCALAR_STRUCTS[kind].size * left)
            elif left:
                frame[1] = left - 1
                if len(frames) >= MAX_ARRAY_DEPTH:
                    raise self.damaged(f"its metadata nests arrays more than {MAX_ARRAY_DEPTH} levels deep")
                frames.append(list(self.array_head()))
                continue
            frames.pop()

    def number_array(self, item_kind: int, count: int) -> list[Any]:
        layout = _SCALAR_STRUCTS[item_kind]
        data = self.read(layout.size * count)
        return [item[0] for item in layout.iter_unpack(data)]

    def token_texts(self, checkpoints: list[int], ids: set[int]) -> dict[int, str]:
        """The text of a few tokens, found from the checkpoints left by ``skip_strings``."""
        found: dict[int, str] = {}
        for token_id in sorted(ids):
            block, index = divmod(token_id, _CHECKPOINT)
            if block >= len(checkpoints):
                continue
            self.seek(checkpoints[block])
            for _ in range(index):
                self.skip(self.length())
            found[token_id] = self.string()
        return found


def read_header(handle: BinaryIO, path: Path, size: int) -> RawHeader:
    """Parse the header of the open GGUF file ``handle`` (``size`` bytes); ``ModelFileError`` if bad."""
    source = _Source(handle, path, size)
    source.fill(min(size, _CHUNK))
    magic = source.buf[:4]
    if magic != GGUF_MAGIC:
        if len(magic) < 4:
            raise ModelFileError(f"{path.name} is too small to be a model ({size} bytes).")
        hint = ""
        if magic.startswith(b"ggjt") or magic.startswith(b"ggml") or magic in (b"tjgg", b"lmgg"):
            hint = " It is an old GGML file: download the GGUF version of this model instead."
        elif magic[:2] == b"PK" or magic.startswith(b"{") or magic.startswith(b"<"):
            hint = " It looks like an archive or a web page, not model weights."
        raise ModelFileError(f"{path.name} is not a GGUF model file (it starts with {magic!r}).{hint}")
    source.pos = 4
    (version,) = source.unpack(_U32)
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(
            f"{path.name} uses GGUF version {version}, which this version of LlamaDesk can't read "
            f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})."
        )
    tensor_count, kv_count = source.unpack(_COUNTS)
    if tensor_count > MAX_TENSORS:
        raise source.damaged(f"its header claims {tensor_count:,} tensors")
    if kv_count > MAX_KEYS:
        raise source.damaged(f"its header claims {kv_count:,} metadata entries")
    meta: dict[str, Any] = {}
    tokens_at: tuple[list[int], int] | None = None
    for _ in range(kv_count):
        key = source.string()
        (kind,) = source.unpack(_U32)
        if kind != _ARRAY:
            meta[key] = source.value(kind)
            continue
        item_kind, count = source.array_head()
        if key == TOKENS_KEY and item_kind == _STRING:
            checkpoints: list[int] = []
            tokens_at = (checkpoints, count)
            source.skip_strings(count, checkpoints)
            meta[key] = None
        elif item_kind in _SCALARS and count <= KEEP_ARRAY_ITEMS and not key.startswith("tokenizer."):
            meta[key] = source.number_array(item_kind, count)
        else:
            source.skip_array(item_kind, count)
            meta[key] = None
    tensors: list[tuple[int, int, int]] = []
    for _ in range(tensor_count):
        source.skip(source.length())
        (n_dims,) = source.unpack(_U32)
        if n_dims > MAX_DIMS:
            raise ModelFileError(f"{path.name} is damaged: a tensor claims {n_dims} dimensions.")
        elements = 1
        for dim in struct.unpack(f"<{n_dims}Q", source.read(8 * n_dims)):
            elements *= dim
        ggml_type, offset = source.unpack(_TYPE_OFFSET)
        tensors.append((elements, ggml_type, offset))
    header = RawHeader(version, meta, int(tensor_count), tensors, source.tell())
    if tokens_at is not None:
        checkpoints, count = tokens_at
        header.vocab_size = count
        ids = {v for k in TOKEN_ID_KEYS if isinstance(v := meta.get(k), int) and 0 <= v < count}
        header.tokens = source.token_texts(checkpoints, ids) if ids else {}
    return header
