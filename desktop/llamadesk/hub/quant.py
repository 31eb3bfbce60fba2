"""Recognise a GGUF file's quantization, kind and split part from its name on the Hub."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..engine.gguf_info import BITS_PER_WEIGHT, SPLIT_RE

# Longest names first so "Q4_K_M" wins over "Q4_K" and "IQ2_XXS" over "IQ2_XS". "Q8_K" has no
# file type of its own but names Unsloth's "Q8_K_XL".
_NAMES = sorted([*BITS_PER_WEIGHT, "Q8_K"], key=len, reverse=True)
# Publishers' own mixes are named after the type most tensors use, plus a suffix: bartowski's
# "Q4_K_L" (Q8_0 embeddings), Unsloth's dynamic "UD-Q4_K_XL". They are shown as published.
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])(?P<ud>UD[-_])?(?P<name>"
    + "|".join(re.escape(n) for n in _NAMES)
    + r")(?P<variant>_(?:XXL|XL|L))?(?![A-Za-z0-9])",
    re.IGNORECASE,
)
_MIX_RE = re.compile(r"^(?:UD[-_])?(?P<base>.+?)(?:_(?:XXL|XL|L))?$")
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
        name = hit["name"].upper()
        if hit["variant"] and name + hit["variant"].upper() not in BITS_PER_WEIGHT:
            name += hit["variant"].upper()
        if name not in BITS_PER_WEIGHT and not hit["variant"] and not hit["ud"]:
            continue  # "Q8_K" alone is not a file type
        found = ("UD-" if hit["ud"] else "") + name
    return found


def bits_per_weight(quantization: str | None) -> float | None:
    """Approximate bits per weight of a quantization, or None when unknown.

    A publisher's mix ("UD-Q4_K_XL", "Q5_K_L") counts as the type it is built on: its real
    size is a little larger, which the file size shows.
    """
    if not quantization:
        return None
    name = quantization.upper()
    if name in BITS_PER_WEIGHT:
        return BITS_PER_WEIGHT[name]
    match = _MIX_RE.match(name)
    return BITS_PER_WEIGHT.get(match["base"]) if match else None


def describe_quantization(quantization: str | None) -> str:
    """What a quantization means for the user, in plain words (tooltips in Discover and My models).

    Quantization stores each weight in fewer bits: 8-bit takes about half the memory of the
    original 16-bit weights, 4-bit about a quarter, at some cost in quality that grows as the
    bits shrink.
    """
    if not quantization:
        return ""
    name = quantization.upper()
    match = _MIX_RE.match(name)
    base = name if name in BITS_PER_WEIGHT else (match["base"] if match else name)
    bits = bits_per_weight(name)
    head = f"{quantization}: about {bits:g} bits per weight." if bits else f"{quantization}."
    if base in ("F32", "F16", "BF16"):
        body = (
            "Not quantized: the original precision. It needs two to four times the memory of Q8_0 "
            "for a difference you will hardly notice in a chat."
        )
    elif base.startswith("Q8"):
        body = "Practically the original quality at about half the memory of the 16-bit original."
    elif base.startswith("Q6"):
        body = "Near the original quality at about 40% of the 16-bit size."
    elif base.startswith("Q5"):
        body = "Very close to the original; a good choice when it fits."
    elif base.startswith(("Q4", "IQ4", "MXFP4")):
        body = (
            "The usual balance: about a quarter of the 16-bit size with a small loss in quality. "
            "Start here when unsure."
        )
    elif base.startswith(("Q3", "IQ3")):
        body = "Noticeably weaker answers; worth it to fit a larger model in limited memory."
    elif base.startswith(("Q2", "IQ2", "IQ1", "TQ")):
        body = (
            "A large loss in quality: only worth it for very large models, where a 2-bit big model can "
            "still beat a smaller one."
        )
    else:
        body = ""
    notes = []
    if "_K" in base:
        notes.append("K-quant: blocks of weights share scales, and the most sensitive tensors keep more bits")
    if base.startswith("IQ"):
        notes.append(
            "I-quant: built with an importance matrix, better quality for its size but slower on CPU"
        )
    if name.startswith("UD-"):
        notes.append(
            "Unsloth Dynamic: each layer gets the bits it needs, usually better than a plain quant "
            "of its size"
        )
    elif name != base and base in BITS_PER_WEIGHT:
        notes.append(
            f"a publisher's mix of {base}, with embedding and output weights kept at higher precision"
        )
    extra = "".join(f" {note[0].upper()}{note[1:]}." for note in notes)
    return f"{head} {body}{extra}".replace("  ", " ").strip()


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
