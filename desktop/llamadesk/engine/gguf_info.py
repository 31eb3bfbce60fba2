"""Read a GGUF file's header and metadata without loading its weights.

A small reader of our own: it is fast on big vocabularies (it skips arrays it does not
need), checks that the tensor data really is all there, and turns every problem into a
specific ``ModelFileError`` before llama.cpp ever sees the file.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from .errors import ModelFileError

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)

# GGUF value types -> struct format (scalars only).
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9

MAX_STRING = 64 << 20  # one metadata string (chat templates are a few KB; vocabularies are arrays)

# ggml tensor types -> (block size, bytes per block), as in ggml.h; unknown types skip the
# completeness check rather than guessing.
_TYPE_SIZES: dict[int, tuple[int, int]] = {
    0: (1, 4),
    1: (1, 2),
    2: (32, 18),
    3: (32, 20),
    6: (32, 22),
    7: (32, 24),
    8: (32, 34),
    9: (32, 40),
    10: (256, 84),
    11: (256, 110),
    12: (256, 144),
    13: (256, 176),
    14: (256, 210),
    15: (256, 292),
    16: (256, 66),
    17: (256, 74),
    18: (256, 98),
    19: (256, 50),
    20: (32, 18),
    21: (256, 110),
    22: (256, 82),
    23: (256, 136),
    24: (1, 1),
    25: (1, 2),
    26: (1, 4),
    27: (1, 8),
    28: (1, 8),
    29: (256, 56),
    30: (1, 2),
    34: (256, 54),
    35: (256, 66),
    39: (32, 17),
    40: (64, 36),
    41: (128, 18),
}

# llama_ftype values (general.file_type) -> the names users see on the Hub.
FILE_TYPES = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
}

# Approximate bits per weight, as listed by llama.cpp's quantize tool (mixed K-quants
# include their higher-precision tensors).
BITS_PER_WEIGHT: dict[str, float] = {
    "F32": 32.0,
    "F16": 16.0,
    "BF16": 16.0,
    "Q8_0": 8.5,
    "Q6_K": 6.56,
    "Q5_1": 6.0,
    "Q5_0": 5.5,
    "Q5_K_M": 5.67,
    "Q5_K_S": 5.52,
    "Q5_K": 5.67,
    "Q4_1": 5.0,
    "Q4_0": 4.5,
    "Q4_K_M": 4.83,
    "Q4_K_S": 4.57,
    "Q4_K": 4.83,
    "IQ4_NL": 4.5,
    "IQ4_XS": 4.25,
    "Q3_K_L": 4.27,
    "Q3_K_M": 3.89,
    "Q3_K_S": 3.5,
    "Q3_K": 3.89,
    "IQ3_M": 3.66,
    "IQ3_S": 3.44,
    "IQ3_XS": 3.3,
    "IQ3_XXS": 3.06,
    "Q2_K": 3.35,
    "Q2_K_S": 2.96,
    "IQ2_M": 2.7,
    "IQ2_S": 2.5,
    "IQ2_XS": 2.31,
    "IQ2_XXS": 2.06,
    "IQ1_M": 1.75,
    "IQ1_S": 1.56,
    "TQ1_0": 1.69,
    "TQ2_0": 2.06,
    "Q4_0_4_4": 4.5,
    "Q4_0_4_8": 4.5,
    "Q4_0_8_8": 4.5,
    "MXFP4": 4.25,
}

_WANTED_ARRAYS = {"tokenizer.ggml.tokens"}


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF file says about its model."""

    path: Path
    file_size: int
    version: int
    architecture: str
    name: str | None
    parameter_count: int | None
    file_type: str
    context_length: int | None
    block_count: int | None
    embedding_length: int | None
    head_count: int | None
    head_count_kv: int | None
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    split_count: int = 1
    key_length: int | None = None
    value_length: int | None = None
    tensor_count: int = 0
    add_bos_token: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def bits_per_weight(self) -> float | None:
        if self.parameter_count:
            return self.file_size * 8 / self.parameter_count
        return BITS_PER_WEIGHT.get(self.file_type)

    @property
    def display_name(self) -> str:
        if self.name:
            return f"{self.name} {self.file_type}".strip()
        return self.path.stem

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    def as_dict(self) -> dict[str, Any]:
        """The facts as plain JSON-ready values (for ``inspect --json``)."""
        return {
            "path": str(self.path),
            "file_size": self.file_size,
            "gguf_version": self.version,
            "architecture": self.architecture,
            "name": self.name,
            "parameter_count": self.parameter_count,
            "quantization": self.file_type,
            "bits_per_weight": round(self.bits_per_weight, 2) if self.bits_per_weight else None,
            "context_length": self.context_length,
            "block_count": self.block_count,
            "embedding_length": self.embedding_length,
            "head_count": self.head_count,
            "head_count_kv": self.head_count_kv,
            "chat_template": bool(self.chat_template),
            "split_count": self.split_count,
        }


class _Reader:
    def __init__(self, handle: BinaryIO, path: Path, size: int) -> None:
        self.handle, self.path, self.size = handle, path, size

    def read(self, count: int) -> bytes:
        data = self.handle.read(count)
        if len(data) != count:
            raise ModelFileError(
                f"{self.path.name} is truncated: the file ends inside its header "
                f"({self.size:,} bytes). The download was probably interrupted; download it again."
            )
        return data

    def scalar(self, kind: int) -> Any:
        fmt = _SCALARS.get(kind)
        if fmt is None:
            raise ModelFileError(f"{self.path.name} is damaged: unknown metadata value type {kind}.")
        return struct.unpack("<" + fmt, self.read(struct.calcsize(fmt)))[0]

    def remaining(self) -> int:
        return self.size - self.handle.tell()

    def damaged(self, what: str) -> ModelFileError:
        return ModelFileError(f"{self.path.name} is damaged: {what}. Download it again.")

    def _length(self) -> int:
        (length,) = struct.unpack("<Q", self.read(8))
        if length > min(self.remaining(), MAX_STRING):
            raise self.damaged(f"a metadata string claims {length:,} bytes")
        return int(length)

    def string(self) -> str:
        return self.read(self._length()).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        self.handle.seek(self._length(), 1)

    def value(self, kind: int, keep: bool) -> Any:
        if kind == _STRING:
            return self.string()
        if kind != _ARRAY:
            return self.scalar(kind)
        item_kind, count = struct.unpack("<IQ", self.read(12))
        # Every item takes at least a few bytes, so a count the rest of the file can't hold is a lie;
        # checking before building lists keeps a damaged file from eating the machine's memory.
        smallest = 8 if item_kind == _STRING else 12 if item_kind == _ARRAY else 1
        fmt = _SCALARS.get(item_kind)
        if fmt is not None:
            smallest = struct.calcsize(fmt)
        if count * smallest > self.remaining():
            raise self.damaged(f"an array claims {count:,} items")
        if item_kind == _STRING:
            if keep:
                return [self.string() for _ in range(count)]
            for _ in range(count):
                self.skip_string()
            return None
        if item_kind == _ARRAY:
            items = [self.value(_ARRAY, keep) for _ in range(count)]
            return items if keep else None
        if fmt is None:
            raise self.damaged(f"unknown array type {item_kind}")
        if not keep:
            self.handle.seek(smallest * count, 1)
            return None
        return list(struct.unpack(f"<{count}{fmt}", self.read(smallest * count)))


def split_parts(path: Path) -> tuple[int, int] | None:
    """(index, count) for a split model part such as ``x-00001-of-00003.gguf``."""
    match = SPLIT_RE.match(path.name)
    if not match:
        return None
    return int(match["index"]), int(match["count"])


def inspect_gguf(path: str | Path) -> GGUFInfo:
    """Read a GGUF file's facts; raise ``ModelFileError`` with a specific reason."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"Model file not found: {path}")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file. Choose the .gguf file inside it.")
    split = split_parts(path)
    stem = SPLIT_RE.sub(r"\g<stem>", path.name)

    def part_name(index: int, count: int) -> Path:
        return path.with_name(f"{stem}-{index:05d}-of-{count:05d}.gguf")

    if split and split[0] != 1:
        first = part_name(1, split[1])
        raise ModelFileError(
            f"{path.name} is part {split[0]} of a model split into {split[1]} files. "
            f"Open the first part ({first.name}); llama.cpp reads the others from the same folder."
        )
    part_paths = [path]
    if split:
        part_paths = [part_name(i, split[1]) for i in range(1, split[1] + 1)]
        missing = [part for part in part_paths[1:] if not part.exists()]
        if missing:
            raise ModelFileError(
                f"{path.name} is split into {split[1]} files but {len(missing)} are missing "
                f"(first: {missing[0].name}). Download all parts into the same folder."
            )
    try:
        size = path.stat().st_size
        handle = path.open("rb")
    except OSError as exc:
        raise ModelFileError(f"Can't read {path.name}: {exc.strerror or exc}") from exc
    if size == 0:
        handle.close()
        raise ModelFileError(f"{path.name} is empty (0 bytes). The download failed; download it again.")
    with handle:
        try:
            info = _parse(_Reader(handle, path, size), split[1] if split else 1)
        except (struct.error, ValueError, OverflowError, MemoryError) as exc:
            raise ModelFileError(f"{path.name} is damaged: its header can't be read ({exc}).") from exc
    if len(part_paths) > 1:
        total = sum(part.stat().st_size for part in part_paths)
        info = replace(info, file_size=total)
    return info


def _parse(reader: _Reader, split_count: int) -> GGUFInfo:
    path, size = reader.path, reader.size
    magic = reader.handle.read(4)
    if magic != GGUF_MAGIC:
        if len(magic) < 4:
            raise ModelFileError(f"{path.name} is too small to be a model ({size} bytes).")
        hint = ""
        if magic.startswith(b"ggjt") or magic.startswith(b"ggml") or magic in (b"tjgg", b"lmgg"):
            hint = " It is an old GGML file: download the GGUF version of this model instead."
        elif magic[:2] == b"PK" or magic.startswith(b"{") or magic.startswith(b"<"):
            hint = " It looks like an archive or a web page, not model weights."
        raise ModelFileError(f"{path.name} is not a GGUF model file (it starts with {magic!r}).{hint}")
    (version,) = struct.unpack("<I", reader.read(4))
    if version not in SUPPORTED_VERSIONS:
        raise ModelFileError(
            f"{path.name} uses GGUF version {version}, which this version of LlamaDesk can't read "
            f"(supported: {', '.join(map(str, SUPPORTED_VERSIONS))})."
        )
    tensor_count, kv_count = struct.unpack("<QQ", reader.read(16))
    if tensor_count > 10_000_000 or kv_count > 1_000_000:
        raise ModelFileError(f"{path.name} is damaged: its header claims {tensor_count:,} tensors.")
    meta: dict[str, Any] = {}
    for _ in range(kv_count):
        key = reader.string()
        (kind,) = struct.unpack("<I", reader.read(4))
        meta[key] = reader.value(kind, keep=key in _WANTED_ARRAYS)
    params = 0
    data_end = 0
    known_sizes = True
    for _ in range(tensor_count):
        reader.skip_string()
        (n_dims,) = struct.unpack("<I", reader.read(4))
        if n_dims > 8:
            raise ModelFileError(f"{path.name} is damaged: a tensor claims {n_dims} dimensions.")
        dims = struct.unpack(f"<{n_dims}Q", reader.read(8 * n_dims))
        ggml_type, offset = struct.unpack("<IQ", reader.read(12))
        count = 1
        for dim in dims:
            count *= dim
        params += count
        block = _TYPE_SIZES.get(ggml_type)
        if block is None:
            known_sizes = False
            continue
        data_end = max(data_end, offset + count // block[0] * block[1])
    alignment = meta.get("general.alignment", 32)
    if not isinstance(alignment, int) or not 1 <= alignment <= 1 << 20 or alignment & (alignment - 1):
        raise reader.damaged(f"its data alignment is {alignment!r}")
    header_end = reader.handle.tell()
    data_start = (header_end + alignment - 1) // alignment * alignment
    if known_sizes and tensor_count and data_start + data_end > size:
        missing = data_start + data_end - size
        raise ModelFileError(
            f"{path.name} is truncated: {missing:,} bytes of model weights are missing "
            f"({size:,} of {data_start + data_end:,} bytes). The download was probably interrupted."
        )
    return _info_from_meta(path, size, version, meta, params, int(tensor_count), split_count)


def _info_from_meta(
    path: Path, size: int, version: int, meta: dict[str, Any], params: int, tensors: int, split_count: int
) -> GGUFInfo:
    arch = str(meta.get("general.architecture") or "unknown")

    def arch_int(key: str) -> int | None:
        value = meta.get(f"{arch}.{key}")
        if isinstance(value, list):  # per-layer head counts in some architectures
            value = max(value) if value else None
        return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    tokens = meta.get("tokenizer.ggml.tokens")

    def token(key: str) -> str | None:
        token_id = meta.get(key)
        if isinstance(token_id, int) and isinstance(tokens, list) and 0 <= token_id < len(tokens):
            return str(tokens[token_id])
        return None

    ftype_raw = meta.get("general.file_type")
    file_type = FILE_TYPES.get(ftype_raw, f"type {ftype_raw}") if isinstance(ftype_raw, int) else "unknown"
    param_meta = meta.get("general.parameter_count")
    template = meta.get("tokenizer.chat_template")
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    light_meta = {k: v for k, v in meta.items() if not isinstance(v, list) and k != "tokenizer.chat_template"}
    return GGUFInfo(
        path=path,
        file_size=size,
        version=version,
        architecture=arch,
        name=str(meta["general.name"]) if meta.get("general.name") else None,
        parameter_count=int(param_meta) if isinstance(param_meta, int) else (params or None),
        file_type=file_type,
        context_length=arch_int("context_length"),
        block_count=arch_int("block_count"),
        embedding_length=arch_int("embedding_length"),
        head_count=arch_int("attention.head_count"),
        head_count_kv=arch_int("attention.head_count_kv") or arch_int("attention.head_count"),
        chat_template=str(template) if template else None,
        bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=token("tokenizer.ggml.eos_token_id"),
        split_count=split_count,
        key_length=arch_int("attention.key_length"),
        value_length=arch_int("attention.value_length"),
        tensor_count=tensors,
        add_bos_token=bool(add_bos) if isinstance(add_bos, bool) else None,
        metadata=light_meta,
    )
