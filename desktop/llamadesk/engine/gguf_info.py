"""Read a GGUF file's header and metadata without loading its weights.

``inspect_gguf`` checks the file with our own reader (``gguf_reader``: fast on big
vocabularies, every count checked against the bytes the file has), checks that the tensor
data really is all there, and turns every problem into a specific ``ModelFileError`` before
llama.cpp ever sees the file. Each header is read at most once per process and remembered
across runs by ``header_cache``.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from . import header_cache
from .errors import ModelFileError
from .gguf_reader import RawHeader, open_model_file, read_header, require_regular

SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)
MAX_META_STRING = 1024  # longer strings (licences, descriptions) stay out of ``GGUFInfo.metadata``
MAX_SHAPE = 2**32 - 1  # llama.cpp keeps layer, head and context counts in 32 bits
MAX_PARAMETERS = 10**15  # a thousand times the largest models: anything larger is not a count
# Encoder (BERT-family) architectures as llama.cpp names them: they turn text into vectors and can't chat.
BERT_FAMILY = frozenset(
    {
        "bert",
        "nomic-bert",
        "nomic-bert-moe",
        "jina-bert-v2",
        "jina-bert-v3",
        "new",  # GTE ("NewModel" in transformers)
        "gte",
        "modern-bert",
        "neo-bert",
        "eurobert",
        "roberta",
        "xlm-roberta",
    }
)
ENCODER_ARCHITECTURES = BERT_FAMILY | {"t5encoder"}
EMBEDDING_TIP = "Turns text into vectors for document search; not a chat model"

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

    @property
    def is_embedding(self) -> bool:
        """An embedding model (text to vectors for document search), not a chat model.

        A BERT-family architecture, a ``<arch>.pooling_type`` key (llama.cpp writes it for embedding
        models only; "none" with a chat template is a chat model), or an encoder without a chat template.
        """
        arch = self.architecture.lower()
        if arch in BERT_FAMILY:
            return True
        pooling = self.metadata.get(f"{self.architecture}.pooling_type")
        if pooling is not None and not (pooling == 0 and self.chat_template):
            return True
        return arch in ENCODER_ARCHITECTURES and not self.chat_template

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
            "is_embedding": self.is_embedding,
        }


def split_parts(path: Path) -> tuple[int, int] | None:
    """(index, count) for a split model part such as ``x-00001-of-00003.gguf``."""
    match = SPLIT_RE.match(path.name)
    if not match:
        return None
    return int(match["index"]), int(match["count"])


def inspect_gguf(path: str | Path) -> GGUFInfo:
    """Read a GGUF file's facts; raise ``ModelFileError`` with a specific reason.

    The header is read once per process and, when ``header_cache.configure`` was called,
    remembered across runs until the file changes.
    """
    info = _inspect(Path(path).expanduser(), read=True)
    if info is None:  # pragma: no cover - a read always gives facts or an error
        raise ModelFileError(f"Can't read {Path(path).name}.")
    return info


def inspect_gguf_cached(path: str | Path) -> GGUFInfo | None:
    """Like ``inspect_gguf`` but never reads a header: None when the facts aren't known yet.

    Only ``stat`` calls: for listing every model at once and reading the new ones later.
    """
    return _inspect(Path(path).expanduser(), read=False)


def _inspect(path: Path, *, read: bool) -> GGUFInfo | None:
    try:
        status = os.stat(path)
    except (FileNotFoundError, ValueError):  # ValueError: a NUL in the name
        raise ModelFileError(f"Model file not found: {path}") from None
    except OSError as exc:
        raise ModelFileError(f"Can't read {path.name}: {exc.strerror or exc}") from exc
    require_regular(path, status.st_mode)  # a folder, named pipe, device or socket is explained
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
    part_sizes = [status.st_size]
    if split:
        missing = []
        for index in range(2, split[1] + 1):
            part = part_name(index, split[1])
            try:
                part_status = os.stat(part)
            except OSError:
                missing.append(part)
                continue
            require_regular(part, part_status.st_mode)  # llama.cpp opens it: a pipe would block it
            part_sizes.append(part_status.st_size)
        if missing:
            raise ModelFileError(
                f"{path.name} is split into {split[1]} files but {len(missing)} are missing "
                f"(first: {missing[0].name}). Download all parts into the same folder."
            )
    facts = header_cache.current().get(path, status)
    found = _from_facts(facts, path) if facts is not None else None
    if found is None:
        if not read:
            return None
        with _one_reader(path):  # two threads asking at once (two listings): one reads, one waits
            facts = header_cache.current().get(path, status)
            found = _from_facts(facts, path) if facts is not None else None
            if found is None:
                found = _from_facts(_read_facts(path), path)
    if not isinstance(found, GGUFInfo):
        raise found or ModelFileError(f"Can't read {path.name}.")
    info = found
    if split:
        info = replace(info, split_count=split[1], file_size=sum(part_sizes))
    return info


_readers: dict[Path, threading.Lock] = {}
_readers_guard = threading.Lock()


@contextmanager
def _one_reader(path: Path) -> Iterator[None]:
    """Hold the lock of ``path`` while its header is read, so it is read once per process."""
    with _readers_guard:
        lock = _readers.setdefault(path, threading.Lock())
    with lock:
        yield


def read_gguf(path: str | Path) -> GGUFInfo:
    """Read one file's header now, bypassing the header cache (benchmarks); no split handling."""
    path = Path(path).expanduser()
    found = _from_facts(_read_facts(path, remember=False), path)
    if not isinstance(found, GGUFInfo):
        raise found or ModelFileError(f"Can't read {path.name}.")
    return found


def _read_facts(path: Path, *, remember: bool = True) -> dict[str, Any]:
    """Read one file's header (no split handling) into cacheable facts, problems included."""
    try:
        handle, status = open_model_file(path)
    except ModelFileError as exc:  # not a regular file, or unreadable: not worth remembering
        return {"error": str(exc), "name": path.name}
    with handle:
        try:
            info = _read_open(handle, path, status.st_size)
            facts: dict[str, Any] = {"info": _to_facts(info)}
        except ModelFileError as exc:
            facts = {"error": str(exc), "name": path.name}
        except (ValueError, OverflowError, MemoryError) as exc:
            facts = {"error": f"{path.name} is damaged: its header can't be read ({exc}).", "name": path.name}
        except OSError as exc:
            return {"error": f"Can't read {path.name}: {exc.strerror or exc}", "name": path.name}
    if remember:
        header_cache.current().put(path, status, facts)
    return facts


def _read_open(handle: Any, path: Path, size: int) -> GGUFInfo:
    if size == 0:
        raise ModelFileError(f"{path.name} is empty (0 bytes). The download failed; download it again.")
    header = read_header(handle, path, size)
    params = 0
    data_end = 0
    known_sizes = True
    for count, ggml_type, offset in header.tensors:
        params += count
        block = _TYPE_SIZES.get(ggml_type)
        if block is None:
            known_sizes = False
            continue
        data_end = max(data_end, offset + count // block[0] * block[1])
    alignment = header.meta.get("general.alignment", 32)
    if not isinstance(alignment, int) or not 1 <= alignment <= 1 << 20 or alignment & (alignment - 1):
        raise ModelFileError(
            f"{path.name} is damaged: its data alignment is {alignment!r}. Download it again."
        )
    data_start = (header.header_end + alignment - 1) // alignment * alignment
    if known_sizes and header.tensor_count and data_start + data_end > size:
        missing = data_start + data_end - size
        raise ModelFileError(
            f"{path.name} is truncated: {missing:,} bytes of model weights are missing "
            f"({size:,} of {data_start + data_end:,} bytes). The download was probably interrupted."
        )
    return _info_from_header(path, size, header, params)


# -- facts as JSON (header_cache) -------------------------------------------------------------

_OPTIONAL_INTS = (
    "parameter_count",
    "context_length",
    "block_count",
    "embedding_length",
    "head_count",
    "head_count_kv",
    "key_length",
    "value_length",
)
_OPTIONAL_STRINGS = ("name", "chat_template", "bos_token", "eos_token")


_LIMITS = {"parameter_count": MAX_PARAMETERS}


def count_in(value: object, limit: int) -> int | None:
    """``value`` when it is a whole number from 1 to ``limit``; else None (unknown).

    Header numbers are whatever the file says: a negative, zero, huge, infinite or fractional
    layer or head count would send the planner into a loop of 2**64 steps, a division by zero or
    ``int(inf)``, so such a value counts as missing and the planner's defaults apply.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= limit else None


def _to_facts(info: GGUFInfo) -> dict[str, Any]:
    facts = {f.name: getattr(info, f.name) for f in fields(info)}
    facts["path"] = str(info.path)
    facts["metadata"] = dict(info.metadata)
    return facts


def _from_facts(facts: dict[str, Any], path: Path) -> GGUFInfo | ModelFileError | None:
    """``GGUFInfo`` for ``path`` from remembered facts, or the error they record.

    None when the facts don't add up (a hand-edited or damaged cache): the file is read again.
    """
    error, name = facts.get("error"), facts.get("name")
    if isinstance(error, str) and isinstance(name, str) and name:
        return ModelFileError(error.replace(name, path.name) if name != path.name else error)
    data = facts.get("info")
    if not isinstance(data, dict):
        return None

    def is_int(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    checks = [
        is_int(data.get("file_size")),
        is_int(data.get("version")),
        is_int(data.get("tensor_count")),
        is_int(data.get("split_count")),
        isinstance(data.get("architecture"), str),
        isinstance(data.get("file_type"), str),
        data.get("add_bos_token") is None or isinstance(data.get("add_bos_token"), bool),
        isinstance(data.get("metadata"), dict),
        *(data.get(k) is None or count_in(data.get(k), _LIMITS.get(k, MAX_SHAPE)) for k in _OPTIONAL_INTS),
        *(data.get(k) is None or isinstance(data.get(k), str) for k in _OPTIONAL_STRINGS),
    ]
    if not all(checks):
        return None
    metadata = {
        str(k): v
        for k, v in data["metadata"].items()
        if isinstance(v, (bool, int, str)) or (isinstance(v, float) and math.isfinite(v))
    }
    values: dict[str, Any] = {f.name: data.get(f.name) for f in fields(GGUFInfo)}
    values.update(path=path, metadata=metadata)
    return GGUFInfo(**values)


def _info_from_header(path: Path, size: int, header: RawHeader, params: int) -> GGUFInfo:
    meta = header.meta
    arch = str(meta.get("general.architecture") or "unknown")

    def arch_int(key: str) -> int | None:
        value = meta.get(f"{arch}.{key}")
        if isinstance(value, list):  # per-layer head counts in some architectures
            value = max((v for v in value if isinstance(v, int)), default=None)
        return count_in(value, MAX_SHAPE)

    def token(key: str) -> str | None:
        token_id = meta.get(key)
        return header.tokens.get(token_id) if isinstance(token_id, int) else None

    ftype_raw = meta.get("general.file_type")
    file_type = FILE_TYPES.get(ftype_raw, f"type {ftype_raw}") if isinstance(ftype_raw, int) else "unknown"
    param_meta = meta.get("general.parameter_count")
    template = meta.get("tokenizer.chat_template")
    add_bos = meta.get("tokenizer.ggml.add_bos_token")
    light_meta = {
        k: v
        for k, v in meta.items()
        if v is not None
        and not isinstance(v, list)
        and k != "tokenizer.chat_template"
        and not (isinstance(v, str) and len(v) > MAX_META_STRING)
        and not (isinstance(v, float) and not math.isfinite(v))
    }
    return GGUFInfo(
        path=path,
        file_size=size,
        version=header.version,
        architecture=arch,
        name=str(meta["general.name"]) if meta.get("general.name") else None,
        parameter_count=count_in(param_meta, MAX_PARAMETERS) or count_in(params, MAX_PARAMETERS),
        file_type=file_type,
        context_length=arch_int("context_length"),
        block_count=arch_int("block_count"),
        embedding_length=arch_int("embedding_length"),
        head_count=arch_int("attention.head_count"),
        head_count_kv=arch_int("attention.head_count_kv") or arch_int("attention.head_count"),
        chat_template=str(template) if template else None,
        bos_token=token("tokenizer.ggml.bos_token_id"),
        eos_token=token("tokenizer.ggml.eos_token_id"),
        split_count=1,
        key_length=arch_int("attention.key_length"),
        value_length=arch_int("attention.value_length"),
        tensor_count=header.tensor_count,
        add_bos_token=bool(add_bos) if isinstance(add_bos, bool) else None,
        metadata=light_meta,
    )
