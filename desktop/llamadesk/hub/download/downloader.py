"""The settings downloads share: where files go, the Hub, the token, timeouts and the I/O hooks."""

from __future__ import annotations

import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ..catalog import resolve_endpoint
from ..errors import check_repo_id
from .base import Files
from .files import FreeSpace, OpenPart, default_free_space, open_part_file, repo_folder_name
from .progress import ProgressCallback
from .task import DownloadTask
from .transport import HubRedirects, ssl_context


class Downloader:
    """Settings shared by downloads: where files go, the Hub, the token and the I/O hooks.

    ``free_space`` and ``open_part`` are replaceable so tests can simulate a full disk.
    ``timeout`` bounds each network wait; ``deadline`` bounds each request to the Hub until
    its answer's headers are in (the file's bytes may take as long as they take).
    """

    def __init__(
        self,
        models_dir: Path,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        free_space: FreeSpace = default_free_space,
        open_part: OpenPart = open_part_file,
        retries: int = 5,
        backoff: Sequence[float] = (0.5, 1.0, 2.0, 4.0, 8.0),
        progress_interval: float = 0.2,
        timeout: float = 30.0,
        deadline: float = 30.0,
    ) -> None:
        self.models_dir = Path(models_dir)
        self.endpoint = resolve_endpoint(endpoint)
        self._token = token or None
        self.free_space = free_space
        self.open_part = open_part
        self.retries = retries
        self.backoff = tuple(backoff) or (1.0,)
        self.progress_interval = progress_interval
        self.timeout = timeout
        self.deadline = deadline

    def __repr__(self) -> str:  # never show the token
        return f"Downloader(models_dir={str(self.models_dir)!r}, endpoint={self.endpoint!r})"

    def repo_dir(self, repo_id: str) -> Path:
        """The repository's folder under the models folder; ``HubError`` for a name that is not a model's."""
        return self.models_dir / repo_folder_name(check_repo_id(repo_id))

    def _authorization(self) -> str | None:
        return f"Bearer {self._token}" if self._token else None

    def _opener(self) -> urllib.request.OpenerDirector:
        """urllib with env proxies, certifi's CAs, checked redirects, and a token that stays on the Hub."""
        return urllib.request.build_opener(
            HubRedirects(self.endpoint, self._authorization()),
            urllib.request.HTTPSHandler(context=ssl_context()),
        )

    def task(
        self,
        repo_id: str,
        files: Files,
        *,
        revision: str = "main",
        dest_dir: Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> DownloadTask:
        """A download of one file, a list of files, or every part of a ``ModelFile``."""
        return DownloadTask(self, repo_id, files, revision=revision, dest_dir=dest_dir, progress=progress)

    def download(
        self,
        repo_id: str,
        files: Files,
        *,
        revision: str = "main",
        dest_dir: Path | None = None,
        progress: ProgressCallback | None = None,
    ) -> Path:
        """Download on this thread and return the installed (first) file; raise ``HubError``."""
        return self.task(repo_id, files, revision=revision, dest_dir=dest_dir, progress=progress).run()
