"""Browse GGUF models on the Hugging Face Hub: search, a repo's files with fit verdicts, model cards.

Requests go through huggingface_hub's HTTP session, with LlamaDesk's own limits: redirects
only where ``refused_target`` allows, one overall deadline per call, bounded answers parsed
with ``safejson`` and every value checked before use. The endpoint is resolved when a catalog
is created (``HF_ENDPOINT`` is read then, not only when huggingface_hub was imported), and
the access token is sent only to that endpoint and never logged.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote, urljoin, urlsplit

from huggingface_hub import constants
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled
from huggingface_hub.hf_api import ExpandModelProperty_T, ModelInfo
from huggingface_hub.utils import build_hf_headers, get_session

from .. import safejson
from .errors import (
    HubError,
    check_repo_id,
    check_revision,
    refused_target,
    scrub,
    status_error,
    translate,
    unsafe_repo_path,
    valid_repo_id,
    valid_size,
)
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
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_SHA1_RE = re.compile(r"[0-9a-f]{40}")
_MAX_COUNT = 10**15  # downloads, likes, parameters: anything larger is not a real number of them
_MAX_CONTEXT = 2**31 - 1
_MAX_ANSWER = 32 * 1024 * 1024  # bytes in one API answer (a 1000-file tree page is about 300 KB)
_MAX_CARD = 8 * 1024 * 1024
_MAX_REDIRECTS = 10
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def resolve_endpoint(endpoint: str | None = None) -> str:
    """The Hub's base URL: ``endpoint``, else ``$HF_ENDPOINT`` now, else huggingface_hub's default."""
    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def hub_headers(token: str | None) -> dict[str, str]:
    """Request headers with our token only (never a token found elsewhere on the machine)."""
    return build_hf_headers(token=token or False, library_name="llamadesk")


def _count(value: object, limit: int = _MAX_COUNT) -> int | None:
    """A positive whole number (an int, or a finite float) no larger than ``limit``; else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return int(value) if 0 < value <= limit else None


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
        """The summary of a parsed answer; numbers out of range and values of the wrong type are dropped."""
        gguf: dict[str, Any] = info.gguf if isinstance(info.gguf, dict) else {}
        author = info.author if isinstance(info.author, str) and info.author else None
        architecture = gguf.get("architecture")
        gated = info.gated
        tags = info.tags if isinstance(info.tags, list) else []
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
class _Answer:
    """A complete HTTP answer read within the deadline."""

    status: int
    headers: Any  # the client's case-insensitive headers
    body: bytes
    next_url: str | None  # the Link header's rel="next", made absolute


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


class HubCatalog:
    """Search the Hub for GGUF models and list a repository's files with fit verdicts.

    ``timeout`` bounds each network wait; ``deadline`` bounds a whole call (every page and
    redirect of it), so a server that trickles its answer a byte at a time can't hold it.
    """

    def __init__(
        self,
        endpoint: str | None = None,
        token: str | None = None,
        *,
        hardware: Hardware | None = None,
        timeout: float = 20.0,
        deadline: float = 30.0,
    ) -> None:
        self.endpoint = resolve_endpoint(endpoint)
        self._token = token or None
        self._hardware = hardware
        self.timeout = timeout
        self.deadline = deadline

    def __repr__(self) -> str:  # never show the token
        return f"HubCatalog(endpoint={self.endpoint!r}, token={'set' if self._token else 'none'})"

    # -- search ----------------------------------------------------------------------------

    def search(
        self, query: str, *, sort: Sort = "downloads", limit: int = 20, page_cursor: str | None = None
    ) -> SearchPage:
        """One page of GGUF repositories matching ``query``; ``page_cursor`` loads the next page."""
        if sort not in _SORT_KEYS:
            raise HubError(f"Unknown sort order {sort!r}: use one of {', '.join(_SORT_KEYS)}.", kind="other")
        params: dict[str, Any] | None = None
        if page_cursor:
            url = self._followable(page_cursor)
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
        try:
            answer = self._get(url, params, self._deadline())
            self._check(answer)
            items = safejson.loads(answer.body)
            if not isinstance(items, list):
                raise ValueError("search answer is not a list")
        except HUB_EXCEPTIONS as exc:
            raise self._error(exc) from exc
        results: list[RepoSummary] = []
        for item in items:
            try:
                results.append(RepoSummary.from_info(_parse_model({"siblings": None, **item})))
            except (ValueError, TypeError) as exc:
                log.info("search: skipping a result the Hub described badly (%s)", exc)
        return SearchPage(results=results, next_cursor=answer.next_url)

    def _tree(self, repo_id: str, revision: str, deadline: float) -> list[FilePart]:
        """Every file of the repository at ``revision``, following the Hub's pages.

        One request per page and no retries: huggingface_hub's ``list_repo_tree`` retries a failing
        page five times with back-off, so the browser would spin for about 23 s before saying the
        Hub can't be reached. The user's click is the retry. Entries with an impossible size are
        left out (with a warning), like names that point outside the model's folder.
        """
        url: str | None = f"{self.endpoint}/api/models/{repo_id}/tree/{quote(revision, safe='')}"
        params: dict[str, Any] | None = {"recursive": "true"}
        parts: list[FilePart] = []
        pages = 0
        while url:
            pages += 1
            if pages > 1000:  # a server that keeps linking to more pages
                raise ValueError("the file list never ends")
            answer = self._get(self._followable(url), params, deadline)
            self._check(answer, repo_id=repo_id, revision=revision)
            items = safejson.loads(answer.body)
            if not isinstance(items, list):
                raise ValueError("the file list is not a list")
            for item in items:
                part = self._tree_entry(repo_id, item)
                if part is not None:
                    parts.append(part)
            url = answer.next_url
            params = None  # the next link carries them
        return parts

    @staticmethod
    def _tree_entry(repo_id: str, item: object) -> FilePart | None:
        """One file of a tree page, or None for folders, broken entries and impossible sizes."""
        if not isinstance(item, dict) or item.get("type") != "file" or not isinstance(item.get("path"), str):
            return None
        path: str = item["path"]
        size = valid_size(item.get("size"))
        if size is None:
            log.warning("%s: skipping %r, listed with an impossible size", repo_id, path)
            return None
        lfs = item.get("lfs")
        oid = lfs.get("oid") if isinstance(lfs, dict) else None
        sha256 = oid.lower() if isinstance(oid, str) and _SHA256_RE.fullmatch(oid.lower()) else None
        blob = item.get("oid") if lfs is None else None  # outside LFS, the oid is the git blob's SHA-1
        git_sha1 = blob.lower() if isinstance(blob, str) and _SHA1_RE.fullmatch(blob.lower()) else None
        return FilePart(path, size, sha256, git_sha1)

    # -- files -----------------------------------------------------------------------------

    def files(self, repo_id: str, revision: str = "main") -> RepoFiles:
        """Every GGUF file in the repository (split models grouped), with sizes, hashes and fit."""
        deadline = self._deadline()
        info = self._model_info(repo_id, revision, deadline)
        summary = RepoSummary.from_info(info)
        commit = info.sha if isinstance(info.sha, str) and _SHA1_RE.fullmatch(info.sha) else None
        try:
            tree = self._tree(repo_id, commit or revision, deadline)
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
            answer = self._get(f"{self.endpoint}/api/whoami-v2", None, self._deadline())
            self._check(answer)
            info = safejson.loads(answer.body)
        except HUB_EXCEPTIONS as exc:
            raise self._error(exc) from exc
        name = info.get("name") if isinstance(info, dict) else None
        return name[:200] if isinstance(name, str) and name.strip() else "an unnamed account"

    def model_card(self, repo_id: str, revision: str = "main", *, strip_metadata: bool = True) -> str:
        """The repository's README (markdown); empty when it has none."""
        check_repo_id(repo_id)
        url = f"{self.endpoint}/{repo_id}/resolve/{quote(check_revision(revision), safe='')}/README.md"
        try:
            answer = self._get(url, None, self._deadline(), limit=_MAX_CARD)
            code = answer.headers.get("X-Error-Code")
            if answer.status == 404 and code in (None, "EntryNotFound"):
                return ""
            self._check(answer, repo_id=repo_id, revision=revision)
            text = answer.body.decode("utf-8", errors="replace")
        except HUB_EXCEPTIONS as exc:
            raise self._error(exc, repo_id=repo_id, revision=revision) from exc
        if strip_metadata and text.startswith("---"):
            end = text.find("\n---", 3)
            if end != -1:
                text = text[end + 4 :].lstrip("\r\n")
        return text

    # -- HTTP ------------------------------------------------------------------------------

    def _deadline(self) -> float:
        return time.monotonic() + self.deadline

    def _followable(self, url: str) -> str:
        """``url`` (a link the Hub sent) if LlamaDesk may follow it; HubError naming it otherwise."""
        refused = refused_target(url, self.endpoint)
        if refused is not None:
            raise refused
        return url

    def _get(
        self, url: str, params: dict[str, Any] | None, deadline: float, *, limit: int = _MAX_ANSWER
    ) -> _Answer:
        """GET ``url`` and read the whole answer before ``deadline`` (a ``time.monotonic`` value).

        Redirects are followed here, one at a time, only where ``refused_target`` allows, and the
        token is sent to the endpoint's origin only. An answer larger than ``limit`` is refused.
        """
        client = get_session()
        for _hop in range(_MAX_REDIRECTS + 1):
            headers = hub_headers(self._token if _same_origin(url, self.endpoint) else None)
            wait = min(self.timeout, deadline - time.monotonic())
            if wait <= 0:
                raise self._too_slow()
            with client.stream(
                "GET", url, params=params, headers=headers, timeout=wait, follow_redirects=False
            ) as response:
                location = response.headers.get("Location")
                if response.status_code in _REDIRECT_STATUSES and location:
                    url, params = self._followable(urljoin(str(response.url), location)), None
                    continue
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > limit:
                        raise HubError(
                            f"The Hugging Face Hub sent an answer larger than {limit // 1024 // 1024} MB; "
                            "LlamaDesk stopped reading it. Try again later.",
                            kind="server",
                        )
                    if time.monotonic() > deadline:
                        raise self._too_slow()
                link = response.links.get("next", {}).get("url")
                next_url = urljoin(str(response.url), link) if isinstance(link, str) and link else None
                return _Answer(response.status_code, response.headers, bytes(body), next_url)
        raise HubError("The Hugging Face Hub redirected LlamaDesk too often; try again later.", kind="server")

    def _too_slow(self) -> HubError:
        seconds = f"{self.deadline:g} second" + ("" if self.deadline == 1 else "s")
        return HubError(
            f"The Hugging Face Hub took more than {seconds} to answer: check your connection and try again.",
            kind="offline",
        )

    def _check(self, answer: _Answer, *, repo_id: str | None = None, revision: str | None = None) -> None:
        """Raise the ``HubError`` for an error status (4xx, 5xx, or a redirect with nowhere to go)."""
        if answer.status < 300:
            return
        message = answer.headers.get("X-Error-Message") or ""
        if not message:
            try:
                data = safejson.loads(answer.body[:65536])
            except ValueError:
                data = None
            error = data.get("error") if isinstance(data, dict) else None
            message = error if isinstance(error, str) else ""
        if message == "Access to this resource is disabled.":
            raise HubError(f"{repo_id} has been disabled on the Hugging Face Hub.", kind="not_found")
        raise status_error(
            answer.status,
            repo_id=repo_id,
            endpoint=self.endpoint,
            token=self._token,
            error_code=answer.headers.get("X-Error-Code"),
            server_message=scrub(message, self._token),
            headers=answer.headers,
            revision=revision,
        )

    # -- helpers ---------------------------------------------------------------------------

    def _model_info(self, repo_id: str, revision: str | None, deadline: float) -> ModelInfo:
        check_repo_id(repo_id)
        url = f"{self.endpoint}/api/models/{repo_id}"
        if revision is not None:
            url += f"/revision/{quote(check_revision(revision), safe='')}"
        try:
            answer = self._get(url, {"expand": _INFO_FIELDS}, deadline)
            self._check(answer, repo_id=repo_id, revision=revision)
            return _parse_model(safejson.loads(answer.body))
        except HUB_EXCEPTIONS as exc:
            raise self._error(exc, repo_id=repo_id, revision=revision) from exc

    def _error(
        self, exc: BaseException, *, repo_id: str | None = None, revision: str | None = None
    ) -> HubError:
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
