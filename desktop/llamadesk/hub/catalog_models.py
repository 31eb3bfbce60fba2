"""What the Hub says about models: search results, a repository's files, and split-model grouping.

Every value from the Hub's answer is checked before use; numbers out of range and values of the
wrong type are dropped. A repository is an embedding model (text to vectors, not chat) when its
pipeline tag or tags say so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from huggingface_hub.hf_api import ModelInfo

from ..engine.gguf_info import EMBEDDING_TIP
from .errors import valid_repo_id
from .quant import display_name, split_part

if TYPE_CHECKING:
    from ..engine import FitPlan

_MAX_COUNT = 10**15  # downloads, likes, parameters: anything larger is not a real number of them
_MAX_CONTEXT = 2**31 - 1
__all__ = [
    "EMBEDDING_TIP",
    "FilePart",
    "ModelFile",
    "RepoFiles",
    "RepoSummary",
    "SearchPage",
    "group_model_files",
    "is_embedding_repo",
]
EMBEDDING_PIPELINES = frozenset({"feature-extraction", "sentence-similarity"})
EMBEDDING_TAGS = frozenset({"sentence-transformers", "embeddings"})


def is_embedding_repo(pipeline_tag: str | None, tags: Iterable[str]) -> bool:
    """True when the Hub's pipeline tag or tags mark a repository as an embedding model."""
    return pipeline_tag in EMBEDDING_PIPELINES or any(t.lower() in EMBEDDING_TAGS for t in tags)


def _count(value: object, limit: int = _MAX_COUNT) -> int | None:
    """A positive whole number (an int, or a finite float) no larger than ``limit``; else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value) if 0 < value <= limit else None


@dataclass(frozen=True)
class RepoSummary:
    """One search result: a model repository and what the Hub knows about it."""

    repo_id: str
    author: str | None = None
    downloads: int = 0
    likes: int = 0
    last_modified: datetime | None = None
    gated: bool | str = False  # False, "auto" or "manual"
    architecture: str | None = None
    parameter_count: int | None = None
    context_length: int | None = None
    tags: tuple[str, ...] = ()
    pipeline_tag: str | None = None

    @property
    def name(self) -> str:
        return self.repo_id.rsplit("/", 1)[-1]

    @property
    def is_embedding(self) -> bool:
        """An embedding model (text to vectors for document search), not a chat model."""
        return is_embedding_repo(self.pipeline_tag, self.tags)

    @classmethod
    def from_info(cls, info: ModelInfo) -> RepoSummary:
        """The summary of a parsed answer; numbers out of range and values of the wrong type are dropped."""
        gguf: dict[str, Any] = info.gguf if isinstance(info.gguf, dict) else {}
        author = info.author if isinstance(info.author, str) and info.author else None
        architecture = gguf.get("architecture")
        gated = info.gated
        tags = info.tags if isinstance(info.tags, list) else []
        pipeline = info.pipeline_tag
        return cls(
            repo_id=info.id,
            author=author or (info.id.split("/", 1)[0] if "/" in info.id else None),
            downloads=_count(info.downloads) or 0,
            likes=_count(info.likes) or 0,
            last_modified=info.last_modified if isinstance(info.last_modified, datetime) else None,
            gated=gated if gated in ("auto", "manual") else gated is True,
            architecture=architecture[:100] if isinstance(architecture, str) and architecture else None,
            parameter_count=_count(gguf.get("total")),
            context_length=_count(gguf.get("context_length"), _MAX_CONTEXT),
            tags=tuple(t for t in tags if isinstance(t, str)),
            pipeline_tag=pipeline[:100] if isinstance(pipeline, str) and pipeline else None,
        )


def _parse_model(data: object) -> ModelInfo:
    """A ``ModelInfo`` from one JSON object of the Hub's answer; ValueError when it is not one."""
    if not isinstance(data, dict) or not isinstance(data.get("id"), str):
        raise ValueError("the answer does not describe a model")
    if not valid_repo_id(data["id"]):
        raise ValueError("the answer names no valid model")
    try:
        return ModelInfo(**data)
    except Exception as exc:  # huggingface_hub trusts the answer's shape: a hostile one breaks it many ways
        raise ValueError(f"unexpected model description ({type(exc).__name__})") from None


@dataclass(frozen=True)
class SearchPage:
    """One page of search results; pass ``next_cursor`` back to ``search`` to load more."""

    results: list[RepoSummary]
    next_cursor: str | None

    @property
    def has_more(self) -> bool:
        return self.next_cursor is not None


@dataclass(frozen=True)
class FilePart:
    """One file in the repository (a whole model, or one part of a split model)."""

    path: str
    size: int
    sha256: str | None = None
    git_sha1: str | None = None  # the git blob hash the Hub lists for a file kept outside LFS


@dataclass(frozen=True)
class ModelFile:
    """A downloadable model: one ``.gguf`` file, or all the parts of a split one."""

    name: str
    parts: tuple[FilePart, ...]
    quantization: str | None
    bits_per_weight: float | None
    kind: str  # "model" | "mmproj" | "imatrix"
    complete: bool = True  # False when parts of a split model are missing from the repo
    fit: FitPlan | None = field(default=None, compare=False)

    @property
    def path(self) -> str:
        """The file to download (the first part of a split model)."""
        return self.parts[0].path

    @property
    def paths(self) -> list[str]:
        return [part.path for part in self.parts]

    @property
    def size(self) -> int:
        return sum(part.size for part in self.parts)

    @property
    def is_split(self) -> bool:
        return len(self.parts) > 1

    @property
    def verdict(self) -> str | None:
        """The planner's verdict: "gpu", "hybrid", "cpu" or "too_large" (None when unknown)."""
        return self.fit.verdict if self.fit is not None else None


@dataclass(frozen=True)
class RepoFiles:
    """The GGUF files of one repository at one revision, with the one we recommend."""

    repo_id: str
    revision: str
    commit: str | None
    gated: bool | str
    files: list[ModelFile]
    recommended: ModelFile | None
    architecture: str | None = None
    parameter_count: int | None = None
    context_length: int | None = None

    @property
    def models(self) -> list[ModelFile]:
        return [f for f in self.files if f.kind == "model"]

    def find(self, name_or_path: str) -> ModelFile | None:
        """The model file with this path (any part), file name or display name."""
        wanted = name_or_path.strip().lower()
        for file in self.files:
            candidates = {file.name.lower()}
            for part in file.paths:
                candidates |= {part.lower(), part.rsplit("/", 1)[-1].lower()}
            if wanted in candidates:
                return file
        return None


def group_model_files(
    entries: Iterable[FilePart],
) -> list[tuple[str, tuple[FilePart, ...], bool]]:
    """Group ``.gguf`` entries into models: split parts become one (name, parts, complete) entry."""
    singles: list[tuple[str, tuple[FilePart, ...], bool]] = []
    splits: dict[tuple[str, str, int], dict[int, FilePart]] = {}
    for entry in entries:
        if not entry.path.lower().endswith(".gguf"):
            continue
        part = split_part(entry.path)
        if part is None:
            singles.append((display_name(entry.path), (entry,), True))
            continue
        folder = entry.path.rsplit("/", 1)[0] if "/" in entry.path else ""
        splits.setdefault((folder, part.stem, part.count), {})[part.index] = entry
    for (_folder, stem, count), found in splits.items():
        ordered = tuple(found[i] for i in sorted(found))
        singles.append((stem, ordered, sorted(found) == list(range(1, count + 1))))
    return singles
