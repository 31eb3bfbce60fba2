"""The transfer half of a download: ask the Hub what the file is, then fetch it with HTTP Range.

Bytes go to ``<file>.part`` as they arrive and are hashed alongside; a broken connection
resumes from the bytes on disk, a server that ignores Range restarts cleanly, and nothing
past the size the Hub gave is ever written.
"""

from __future__ import annotations

import functools
import http.client
import logging
import time
import urllib.error
import urllib.request

from ..catalog import hub_headers
from ..errors import HeaderLookup, HubError, status_error
from .base import TaskCore
from .files import CHUNK_SIZE, flush_to_disk, sidecar_path
from .part import HashThread, Part, check_part
from .progress import DownloadState
from .transport import FileMetadata, Retry, network_error, origin, parse_metadata, start_offset

log = logging.getLogger(__name__)


class Transfer(TaskCore):
    """Resolve sizes and hashes, then bring each .part file to the complete, verified file."""

    def _request(self, part: Part, method: str) -> urllib.request.Request:
        request = urllib.request.Request(self._url(part), method=method)
        for key, value in hub_headers(None).items():
            request.add_header(key, value)
        request.add_header("Accept-Encoding", "identity")
        authorization = self.downloader._authorization()
        if authorization:  # never forwarded on a redirect, except back to the Hub itself
            request.add_unredirected_header("Authorization", authorization)
        return request

    def _resolve(self, opener: urllib.request.OpenerDirector) -> None:
        """Ask the Hub for each file's size, hash and the commit, pinning later requests to it.

        A file whose size the Hub won't give is refused: its bytes could not be bounded or checked.
        """
        for part in self._parts:
            self._check_stop()
            meta = self._head(opener, part)
            self.commit = self.commit or meta.commit
            if meta.size is not None:
                part.size = meta.size
            if meta.sha256 is not None:
                if part.sha256 is not None and part.sha256 != meta.sha256:
                    # The file list the user picked from is older than the repo: the file was
                    # replaced since. Verify against what will actually be downloaded.
                    log.info(
                        "%s: %s changed on the Hub since its file list was read", self.repo_id, part.path
                    )
                part.sha256 = meta.sha256
            elif meta.git_sha1 is not None and part.sha256 is None:
                part.git_sha1 = meta.git_sha1
            if part.size is None:
                raise HubError(
                    f"The Hugging Face Hub did not say how large {part.name} is, so the download could not "
                    "be checked; nothing was downloaded.",
                    kind="server",
                )
        self._emit(force=True)

    def _head(self, opener: urllib.request.OpenerDirector, part: Part) -> FileMetadata:
        """HEAD on the file's URL, within the downloader's deadline; errors become ``HubError``."""
        deadline = time.monotonic() + self.downloader.deadline
        call = functools.partial(opener.open, self._request(part, "HEAD"), timeout=self.downloader.timeout)
        try:
            response = self._interruptible(call, deadline)
        except urllib.error.HTTPError as exc:
            with exc:
                if 300 <= exc.code < 400:  # the Hub's redirect to its file server: read it as the answer
                    return parse_metadata(exc.headers, redirected=True, name=part.name)
                error = self._http_error(exc.code, exc.headers, part)
                if isinstance(error, Retry):
                    error = error.error or HubError(str(error), kind="server")
                raise error from None
        except (OSError, http.client.HTTPException) as exc:
            self._check_stop()
            raise network_error(exc) from None
        with response:
            return parse_metadata(response.headers, redirected=False, name=part.name)

    def _fetch(self, opener: urllib.request.OpenerDirector, part: Part) -> None:
        """Bring ``part.part_file`` to the full verified file, resuming from what is on disk."""
        part.reset_hash()
        part.done = self._hash_existing(part)
        if part.size == 0 and not part.part_file.exists():  # an empty file: nothing to fetch
            self.downloader.open_part(part.part_file, 0).close()
        failures = 0
        while part.done < self._size(part):  # a complete .part needs no request
            self._check_stop()
            before = part.done
            try:
                if self._transfer(opener, part):
                    break
            except Retry as retry:
                if part.done > before:
                    failures = 0  # progress was made: this is a new problem, not the same one
                failures += 1
                if failures > self.downloader.retries:
                    if retry.error is not None:
                        raise retry.error from None
                    raise HubError(
                        f"The connection to the Hugging Face Hub kept breaking ({retry}). The part already "
                        "downloaded is kept: resume the download when your connection is back.",
                        kind="offline",
                    ) from None
                delay = retry.delay
                if delay is None:
                    delay = self.downloader.backoff[min(failures - 1, len(self.downloader.backoff) - 1)]
                log.info("download of %s interrupted (%s); retrying in %.1fs", part.path, retry, delay)
                if self._stop.wait(delay):
                    self._check_stop()
        self._check_stop()
        self._set_state(DownloadState.VERIFYING)
        error = check_part(part)
        if error is not None:
            part.part_file.unlink(missing_ok=True)
            sidecar_path(part.part_file).unlink(missing_ok=True)
            part.done = 0
            raise error
        flush_to_disk(part.part_file)
        part.verified = True

    @staticmethod
    def _size(part: Part) -> int:
        if part.size is None:  # _resolve refuses such files: this is a bug, not a server's doing
            raise HubError(f"The size of {part.name} is unknown.", kind="other")
        return part.size

    def _hash_existing(self, part: Part) -> int:
        """Hash the bytes an earlier attempt left in the .part file; return how many there are."""
        path = part.part_file
        try:
            size = path.stat().st_size
        except OSError:
            return 0
        if part.size is not None and size > part.size:
            path.unlink()
            return 0
        if size == 0:
            return 0
        self._set_state(DownloadState.HASHING)
        done = 0
        with path.open("rb") as handle:
            while chunk := handle.read(4 << 20):
                self._check_stop()
                part.hasher.update(chunk)
                done += len(chunk)
                part.done = done
                self._emit()
        return done

    def _match_disk(self, part: Part) -> None:
        """Make ``part.done`` and the hash describe the bytes really in the .part file.

        They can differ after a failed write or close; resuming from a count the disk does not
        hold would leave a gap of zeros in a file whose streamed checksum still matches.
        """
        try:
            on_disk = part.part_file.stat().st_size
        except FileNotFoundError:
            on_disk = 0
        except OSError as exc:
            raise self._write_error(exc, part) from None
        if on_disk != part.done:
            log.info(
                "%s: %s holds %d bytes, not %d; checking them again",
                self.repo_id,
                part.path,
                on_disk,
                part.done,
            )
            part.reset_hash()
            part.done = self._hash_existing(part)

    def _restart(self, part: Part, reason: str) -> None:
        """Start this file again from byte 0 (the server will not resume it)."""
        log.info("%s: %s; starting %s again from the beginning", self.repo_id, reason, part.path)
        part.done = 0
        part.reset_hash()
        part.part_file.unlink(missing_ok=True)

    def _transfer(self, opener: urllib.request.OpenerDirector, part: Part) -> bool:
        """One HTTP request; True when the file is complete, ``Retry`` when it broke off."""
        self._match_disk(part)
        size = self._size(part)
        offset = part.done
        request = self._request(part, "GET")
        if offset > 0:
            request.add_header("Range", f"bytes={offset}-")
        deadline = time.monotonic() + self.downloader.deadline  # for the answer's headers, not the body
        try:
            response = self._interruptible(
                functools.partial(opener.open, request, timeout=self.downloader.timeout), deadline
            )
        except urllib.error.HTTPError as exc:
            with exc:
                if exc.code == 416 and offset > 0:
                    if offset == size:
                        return True
                    self._restart(part, "the server refused to resume")
                    raise Retry("range not satisfiable", delay=0) from None
                if exc.code in (401, 403) and origin(exc.url) != origin(self.downloader.endpoint):
                    # The file server the Hub redirected to refused its signed link (it expired,
                    # typically on a resume): the next request asks the Hub for a fresh one.
                    raise Retry(
                        f"HTTP {exc.code} from the file server",
                        HubError(
                            "The Hugging Face Hub's file server refused the download link "
                            f"(HTTP {exc.code}): try again later. The part already downloaded is kept.",
                            kind="server",
                        ),
                        delay=0 if offset > 0 else None,
                    ) from None
                raise self._http_error(exc.code, exc.headers, part) from None
        except (OSError, http.client.HTTPException) as exc:
            self._check_stop()
            raise Retry(type(exc).__name__, network_error(exc)) from None
        with response:
            self._watch_socket(response)
            try:
                start = start_offset(response.status, response.headers.get("Content-Range"), offset)
                if start != offset:
                    self._restart(part, "the server does not support resuming")
                    if start != 0:
                        raise Retry("the server sent an unexpected range", delay=0)
                self._set_state(DownloadState.DOWNLOADING)
                self._receive(response, part, size)
            except (OSError, http.client.HTTPException) as exc:
                self._check_stop()
                raise Retry(type(exc).__name__) from None
            finally:
                self._watch_socket(None)
        self._check_stop()
        if part.done < size:
            raise Retry(f"connection closed at {part.done:,} of {size:,} bytes")
        return True

    def _http_error(self, status: int, headers: HeaderLookup, part: Part) -> HubError | Retry:
        error = status_error(
            status,
            repo_id=self.repo_id,
            endpoint=self.downloader.endpoint,
            token=self.downloader._token,
            error_code=headers.get("X-Error-Code"),
            server_message=headers.get("X-Error-Message"),
            headers=headers,
            filename=part.path,
            revision=self.revision,
        )
        if status == 429 or status >= 500:
            delay = float(error.retry_after) if error.retry_after is not None else None
            return Retry(f"HTTP {status}", error, delay=None if delay is None else min(delay, 60.0))
        return error

    def _receive(self, response: http.client.HTTPResponse, part: Part, size: int) -> None:
        """Write the body to the .part file, never past ``size``; checksums run on a helper thread."""
        try:
            handle = self.downloader.open_part(part.part_file, part.done)
        except OSError as exc:
            raise self._write_error(exc, part) from None
        hasher = HashThread(part.hasher)
        flush = getattr(handle, "flush", None)  # what progress reports as done is on disk, not in a buffer
        received = False
        try:
            with handle:
                try:
                    while not self._stop.is_set():
                        chunk = response.read1(CHUNK_SIZE)
                        if not chunk:
                            break
                        if part.done + len(chunk) > size:
                            raise HubError(
                                f"The server sent more than the {size:,} bytes the Hub lists for "
                                f"{part.name}, so the download was stopped. Try again later.",
                                kind="server",
                            )
                        try:
                            handle.write(chunk)
                            if flush is not None:
                                flush()
                        except OSError as exc:
                            raise self._write_error(exc, part) from None
                        hasher.update(chunk)
                        part.done += len(chunk)
                        self._speed.add(len(chunk))
                        self._emit()
                finally:
                    hasher.close()
                received = True
        except OSError as exc:
            if not received:
                raise  # the network broke: retried
            # Closing flushes the last buffered bytes: they may not be on disk.
            raise self._write_error(exc, part) from None
