"""Browse GGUF models on the Hugging Face Hub: search, a repo's files with fit verdicts, model cards.

Requests go through huggingface_hub's HTTP session, with LlamaDesk's own limits: redirects
only where ``refused_target`` allows, one overall deadline per call, bounded answers parsed
with ``safejson`` and every value checked before use. The endpoint is resolved when a catalog
is created (``HF_ENDPOINT`` is read then, not only when huggingface_hub was imported), and
the access token is sent only to that endpoint and never logged.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from huggingface_hub.hf_api import ExpandModelProperty_T, ModelInfo

from .. import safejson
from .catalog_models import (
    EMBEDDING_TIP,
    FilePart,
    ModelFile,
    RepoFiles,
    RepoSummary,
    SearchPage,
    _parse_model,
    group_model_files,
    is_embedding_repo,
)
from .errors import HubError, check_repo_id, check_revision, unsafe_repo_path, valid_size
from .hub_http import _MAX_CARD, HUB_EXCEPTIONS, HubHTTP, hub_headers, resolve_endpoint
from .quant import bits_per_weight, file_kind, parse_quantization

if TYPE_CHECKING:
    from ..engine import FitPlan, Hardware

__all__ = [
    "DEFAULT_N_CTX",
    "EMBEDDING_TIP",
    "HUB_EXCEPTIONS",
    "FilePart",
    "HubCatalog",
    "ModelFile",
    "RepoFiles",
    "RepoSummary",
    "SearchPage",
    "Sort",
    "group_model_files",
    "hub_headers",
    "is_embedding_repo",
    "resolve_endpoint",
]

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
_SEARCH_FIELDS = ["author", "downloads", "likes", "lastModified", "gated", "gguf", "tags", "pipeline_tag"]
_INFO_FIELDS: list[ExpandModelProperty_T] = [
    "author",
    "downloads",
    "likes",
    "lastModified",
    "gated",
    "gguf",
    "tags",
    "pipeline_tag",
    "sha",
]
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_SHA1_RE = re.compile(r"[0-9a-f]{40}")


class HubCatalog(HubHTTP):
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
