"""Browse GGUF models on the Hugging Face Hub: search, a repo's files with fit verdicts, model cards.

Built on huggingface_hub's client. The endpoint is resolved when a catalog is created
(``HF_ENDPOINT`` is read then, not only when huggingface_hub was imported), and the
access token is sent only to that endpoint and never logged.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urlsplit

from huggingface_hub import HfApi, constants
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled
from huggingface_hub.hf_api import ExpandModelProperty_T, ModelInfo
from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

from .errors import HubError, translate
from .quant import bits_per_weight, display_name, file_kind, parse_quantization, split_part

try:  # huggingface_hub >= 2 ships its HTTP client as httpx2
    import httpx2 as httpx
except ImportError:  # pragma: no cover - older releases
    import httpx  # type: ignore[no-redef]

if TYPE_CHECKING:
    from ..engine import FitPlan, Hardware

log = logging.getLogger(__name__)

_FULL_PRECISION = frozenset({"F32", "F16", "BF16"})

DEFAULT_N_CTX = 4096
Sort = Literal["downloads", "likes", "trending", "recent"]
_SORT_KEYS: dict[str, str] = {
    "downloads": "downloads",
    "likes": "likes",
    "trending": "trendingScore",
    "recent": "lastModified",
}
_SEARCH_FIELDS = ["author", "downloads", "likes", "lastModified", "gated", "gguf", "tags"]
_INFO_FIELDS: list[ExpandModelProperty_T] = [
    "author",
    "downloads",
    "likes",
    "lastModified",
    "gated",
    "gguf",
    "tags",
    "sha",
]
# Errors the HTTP stack and huggingface_hub raise for a failed or garbled request.
HUB_EXCEPTIONS: tuple[type[BaseException], ...] = (
    HfHubHTTPError,
    OfflineModeIsEnabled,
    httpx.HTTPError,
    OSError,
    ValueError,
    KeyError,
    TypeError,
)
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The Hub's base URL: ``endpoint``, else ``$HF_ENDPOINT`` now, else huggingface_hub's default."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_headers(token: str | None) -> dict[str, str]:
    """Request headers with our token only (never a token found elsewhere on the machine)."""
    return build_hf_headers(token=token or False, library_name="llamadesk")


def unsafe_repo_path(path: str) -> bool:
    """True for a file name from the Hub that could land outside the model's folder.

    Names are POSIX paths relative to the repo: ``..``, absolute paths, backslashes and
    drive letters (which Windows treats as separators or roots) are refused.
    """
    if not path or path.startswith("/") or any(c in path for c in "\\:\0"):
        return True
    parts = [p for p in path.split("/") if p not in ("", ".")]
    return not parts or ".." in parts


def _same_origin(url: str, endpoint: str) -> bool:
    a, b = urlsplit(url), urlsplit(endpoint)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


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

    @property
    def name(self) -> str:
        return self.repo_id.rsplit("/", 1)[-1]

    @classmethod
    def from_info(cls, info: ModelInfo) -> RepoSummary:
        gguf: dict[str, Any] = info.gguf if isinstance(info.gguf, dict) else {}
        total = gguf.get("total")
        ctx = gguf.get("context_length")
        return cls(
            repo_id=info.id,
            author=info.author or (info.id.split("/", 1)[0] if "/" in info.id else None),
            downloads=int(info.downloads or 0),
            likes=int(info.likes or 0),
            last_modified=info.last_modified,
            gated=info.gated if isinstance(info.gated, str) else bool(info.gated),
            architecture=str(gguf["architecture"]) if gguf.get("architecture") else None,
            parameter_count=int(total) if isinstance(total, (int, float)) and total > 0 else None,
            context_length=int(ctx) if isinstance(ctx, (int, float)) and ctx > 0 else None,
            tags=tuple(info.tags or ()),
        )


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


class HubCatalog:
    """Search the Hub for GGUF models and list a repository's files with fit verdicts."""

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        hardware: Hardware | None = None,
        timeout: float = 20.0,
    ) -> None:
        self.endpoint = resolve_endpoint(endpoint)
        self._token = token or None
        self._hardware = hardware
        self.timeout = timeout
        self._api = HfApi(endpoint=self.endpoint, token=self._token or False, library_name="llamadesk")

    def __repr__(self) -> str:  # never show the token
        return f"HubCatalog(endpoint={self.endpoint!r}, token={'set' if self._token else 'none'})"

    @property
    def has_token(self) -> bool:
        return self._token is not None

    def repo_url(self, repo_id: str) -> str:
        return f"{self.endpoint}/{repo_id}"

    # -- search ----------------------------------------------------------------------------

    def search(
        self, query: str, *, sort: Sort = "downloads", limit: int = 20, page_cursor: str | None = None
    ) -> SearchPage:
        """One page of GGUF repositories matching ``query``; ``page_cursor`` loads the next page."""
        if sort not in _SORT_KEYS:
            raise HubError(f"Unknown sort order {sort!r}: use one of {', '.join(_SORT_KEYS)}.", kind="other")
        params: dict[str, Any] | None = None
        if page_cursor:
            url = page_cursor
            headers = hub_headers(self._token if _same_origin(url, self.endpoint) else None)
        else:
            url = f"{self.endpoint}/api/models"
            params = {
                "filter": "gguf",
                "sort": _SORT_KEYS[sort],
                "limit": max(1, min(int(limit), 1000)),
                "expand": _SEARCH_FIELDS,
            }
            if query.strip():
                params["search"] = query.strip()
            headers = hub_headers(self._token)
        try:
            response = get_session().get(url, params=params, headers=headers, timeout=self.timeout)
            hf_raise_for_status(response)
            items = response.json()
            if not isinstance(items, list):
                raise ValueError("search answer is not a list")
            results = [RepoSummary.from_info(ModelInfo(**{"siblings": None, **item})) for item in items]
        except HUB_EXCEPTIONS as exc:
            raise self._error(exc) from exc
        next_url = response.links.get("next", {}).get("url")
        return SearchPage(results=results, next_cursor=next_url or None)

    def _tree(self, repo_id: str, revision: str) -> list[FilePart]:
        """Every file of the repository at ``revision``, following the Hub's pages.

        One request per page and no retries: huggingface_hub's ``list_repo_tree`` retries a failing
        page five times with back-off, so the browser would spin for about 23 s before saying the
        Hub can't be reached. The user's click is the retry.
        """
        url: str | None = f"{self.endpoint}/api/models/{repo_id}/tree/{quote(revision, safe='')}"
        params: dict[str, Any] | None = {"recursive": "true"}
        parts: list[FilePart] = []
        pages = 0
        while url:
            pages += 1
            if pages > 1000:  # a server that keeps linking to more pages
                raise ValueError("the file list never ends")
            headers = hub_headers(self._token if _same_origin(url, self.endpoint) else None)
            response = get_session().get(url, params=params, headers=headers, timeout=self.timeout)
            hf_raise_for_status(response)
            items = response.json()
            if not isinstance(items, list):
                raise ValueError("the file list is not a list")
            for item in items:
                if (
                    not isinstance(item, dict)
                    or item.get("type") != "file"
                    or not isinstance(item.get("path"), str)
                ):
                    continue
                lfs = item.get("lfs")
                sha256 = lfs.get("oid") if isinstance(lfs, dict) and isinstance(lfs.get("oid"), str) else None
                size = item.get("size")
                parts.append(FilePart(item["path"], int(size) if isinstance(size, int) else 0, sha256))
            url = response.links.get("next", {}).get("url") or None
            params = None  # the next link carries them
        return parts

    def repo_info(self, repo_id: str, revision: str | None = None) -> RepoSummary:
        """What the Hub says about one repository."""
        return RepoSummary.from_info(self._model_info(repo_id, revision))

    # -- files -----------------------------------------------------------------------------

    def files(self, repo_id: str, revision: str = "main") -> RepoFiles:
        """Every GGUF file in the repository (split models grouped), with sizes, hashes and fit."""
        info = self._model_info(repo_id, revision)
        summary = RepoSummary.from_info(info)
        commit = info.sha
        try:
            tree = self._tree(repo_id, commit or revision)
        except HUB_EXCEPTIONS as exc:
            raise self._error(exc, repo_id=repo_id, revision=revision) from exc
        entries = []
        for item in tree:
            if unsafe_repo_path(item.path):
                log.warning(
                    "%s: skipping %r, a name that points outside the model's folder", repo_id, item.path
                )
                continue
            entries.append(item)
        files: list[ModelFile] = []
        for name, parts, complete in group_model_files(entries):
            kind = file_kind(parts[0].path)
            quant = parse_quantization(parts[0].path)
            size = sum(p.size for p in parts)
            fit = self._fit(size, summary.parameter_count) if kind == "model" and complete else None
            bits = bits_per_weight(quant)
            if bits is None and kind == "model" and complete and summary.parameter_count:
                bits = round(size * 8 / summary.parameter_count, 2)  # what this file actually spends
            files.append(ModelFile(name, parts, quant, bits, kind, complete, fit))
        order = {"model": 0, "mmproj": 1, "imatrix": 2}
        files.sort(key=lambda f: (order.get(f.kind, 3), f.size, f.name.lower()))
        return RepoFiles(
            repo_id=repo_id,
            revision=revision,
            commit=commit,
            gated=summary.gated,
            files=files,
            recommended=self._recommend(files, summary.context_length),
            architecture=summary.architecture,
            parameter_count=summary.parameter_count,
            context_length=summary.context_length,
        )

    def whoami(self) -> str:
        """The Hub user name the token belongs to; HubError when it is missing or refused."""
        if not self._token:
            raise HubError("No access token: paste one from your Hugging Face settings first.", kind="auth")
        try:
            info = self._api.whoami(token=self._token)
        except Exception as exc:
            raise self._error(exc) from exc
        return str(info.get("name") or "an unnamed account")

    def model_card(self, repo_id: str, revision: str = "main", *, strip_metadata: bool = True) -> str:
        """The repository's README (markdown); empty when it has none."""
        url = f"{self.endpoint}/{repo_id}/resolve/{quote(revision, safe='')}/README.md"
        try:
            response = get_session().get(url, headers=hub_headers(self._token), timeout=self.timeout)
            code = response.headers.get("X-Error-Code")
            if response.status_code == 404 and code in (None, "EntryNotFound"):
                return ""
            hf_raise_for_status(response)
            text = response.content.decode("utf-8", errors="replace")
        except HUB_EXCEPTIONS as exc:
            raise self._error(exc, repo_id=repo_id, revision=revision) from exc
        if strip_metadata and text.startswith("---"):
            end = text.find("\n---", 3)
            if end != -1:
                text = text[end + 4 :].lstrip("\r\n")
        return text

    # -- helpers ---------------------------------------------------------------------------

    def _model_info(self, repo_id: str, revision: str | None) -> ModelInfo:
        if not _REPO_ID_RE.match(repo_id or ""):
            raise HubError(
                f"“{repo_id}” is not a model name: use owner/name, "
                "e.g. bartowski/Llama-3.2-1B-Instruct-GGUF.",
                kind="not_found",
            )
        try:
            return self._api.model_info(repo_id, revision=revision, timeout=self.timeout, expand=_INFO_FIELDS)
        except HUB_EXCEPTIONS as exc:
            raise self._error(exc, repo_id=repo_id, revision=revision) from exc

    def _error(
        self, exc: BaseException, *, repo_id: str | None = None, revision: str | None = None
    ) -> HubError:
        if isinstance(exc, HFValidationError):
            return HubError(f"“{repo_id}” is not a valid model name: use owner/name.", kind="not_found")
        return translate(exc, repo_id=repo_id, endpoint=self.endpoint, token=self._token, revision=revision)

    def _fit(self, size: int, parameter_count: int | None) -> FitPlan | None:
        try:
            from ..engine import detect_hardware, estimate_for_size

            if self._hardware is None:
                self._hardware = detect_hardware()
            return estimate_for_size(
                size, self._hardware, n_ctx=DEFAULT_N_CTX, parameter_count=parameter_count
            )
        except Exception:  # the verdict is advice: a planner failure must not hide the file list
            log.warning("could not estimate the memory needed for a %d-byte model", size, exc_info=True)
            return None

    @staticmethod
    def _recommend(files: list[ModelFile], context_length: int | None) -> ModelFile | None:
        """The largest model that fits with room for the default context, in the best place.

        All on the GPU beats split between GPU and RAM, which beats RAM alone (a bigger quant
        that spills out of VRAM runs several times slower); unquantized F32/F16/BF16 files are
        only recommended when no quantized one fits, as they double the memory for little gain.
        """
        needed = min(DEFAULT_N_CTX, context_length or DEFAULT_N_CTX)
        fitting = [
            f
            for f in files
            if f.kind == "model"
            and f.complete
            and f.fit is not None
            and f.fit.verdict != "too_large"
            and (f.fit.max_ctx <= 0 or f.fit.max_ctx >= needed)
        ]
        tiers = {"gpu": 3, "hybrid": 2, "cpu": 1}

        def rank(f: ModelFile) -> tuple[int, bool, int]:
            assert f.fit is not None
            return tiers.get(f.fit.verdict, 0), (f.quantization or "").upper() not in _FULL_PRECISION, f.size

        return max(fitting, key=rank, default=None)
