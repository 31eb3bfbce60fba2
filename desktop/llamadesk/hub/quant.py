"""Recognise a GGUF file's quantization, kind and split part from its name on the Hub."""

from __future__ import annotations

import re
from dataclasses import dataclass

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

SPLIT_RE = re.compile(r"^(?P<stem>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.gguf$", re.IGNORECASE)

# Longest names first so "Q4_K_M" wins over "Q4_K" and "IQ2_XXS" over "IQ2_XS".
_NAMES = sorted(BITS_PER_WEIGHT, key=len, reverse=True)
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])(?P<name>" + "|".join(re.escape(n) for n in _NAMES) + r")(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_SEPARATORS = re.compile(r"[-_.\s]")


@dataclass(frozen=True)
class SplitPart:
    """Where a file sits in a split model: ``stem-00002-of-00003.gguf`` is (stem, 2, 3)."""

    stem: str
    index: int
    count: int


def parse_quantization(filename: str) -> str | None:
    """The quantization named in a file name (``Llama-3-8B.Q4_K_M.gguf`` -> ``"Q4_K_M"``)."""
    base = filename.rsplit("/", 1)[-1]
    if base.lower().endswith(".gguf"):
        base = base[: -len(".gguf")]
    match = SPLIT_RE.match(base + ".gguf")
    if match:
        base = match["stem"]
    found: str | None = None
    # Names are matched with "_" inside them, so scan the original spelling; the last one wins
    # (a repo name may contain an unrelated token earlier, e.g. "F16-finetune-Q4_0").
    for hit in _QUANT_RE.finditer(base):
        found = hit["name"].upper()
    return found


def bits_per_weight(quantization: str | None) -> float | None:
    """Approximate bits per weight of a quantization, or None when unknown."""
    if not quantization:
        return None
    return BITS_PER_WEIGHT.get(quantization.upper())


def file_kind(filename: str) -> str:
    """ "mmproj" (vision projector), "imatrix" (importance matrix) or "model"."""
    words = set(_SEPARATORS.split(filename.rsplit("/", 1)[-1].lower()))
    lower = filename.rsplit("/", 1)[-1].lower()
    if "mmproj" in lower or "projector" in words:
        return "mmproj"
    if "imatrix" in lower:
        return "imatrix"
    return "model"


def split_part(filename: str) -> SplitPart | None:
    """The split position of ``name-00001-of-00003.gguf``, or None for a single file."""
    base = filename.rsplit("/", 1)[-1]
    match = SPLIT_RE.match(base)
    if not match:
        return None
    return SplitPart(match["stem"], int(match["index"]), int(match["count"]))


def display_name(filename: str) -> str:
    """A file's name without folder, split suffix or extension."""
    base = filename.rsplit("/", 1)[-1]
    part = split_part(base)
    if part:
        return part.stem
    return base[: -len(".gguf")] if base.lower().endswith(".gguf") else base
