"""A fake Hugging Face Hub on 127.0.0.1 that speaks the endpoints huggingface_hub calls.

Serves search (``/api/models`` with filter, sort, expand and Link pagination), model info,
recursive trees, and ``HEAD``/``GET`` on ``/{repo}/resolve/{rev}/{file}`` with the Hub's
headers (``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag``, ``X-Linked-Size``, Range/206,
``X-Error-Code``). LFS files redirect to a "CDN" on another origin (a second port of
``127.0.0.1``), as the real Hub does. ``faults`` injects failures; ``route`` lets a test answer
requests itself (a hostile server); ``requests`` records every request (never the token itself).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

import numpy as np

CHUNK = 64 * 1024


# -- data -------------------------------------------------------------------------------------


@dataclass
class HubFile:
    """A file in a fake repo: bytes in memory or a file on disk (for big ones)."""

    path: str
    source: bytes | Path
    lfs: bool = True
    sha256: str = ""
    size: int = 0
    git_oid: str = ""

    def __post_init__(self) -> None:
        # The git object id is the blob's SHA-1: of the bytes for a plain file, of the LFS
        # pointer for an LFS file (as on the real Hub).
        self.size = self.source.stat().st_size if isinstance(self.source, Path) else len(self.source)
        digest = hashlib.sha256()
        blob = hashlib.sha1(f"blob {self.size}\0".encode())
        for chunk in self._chunks():
            digest.update(chunk)
            blob.update(chunk)
        self.sha256 = digest.hexdigest()
        if self.lfs:
            spec = "version https://git-lfs.github.com/spec/v1"
            pointer = f"{spec}\noid sha256:{self.sha256}\nsize {self.size}\n"
            blob = hashlib.sha1(f"blob {len(pointer)}\0{pointer}".encode())
        self.git_oid = blob.hexdigest()

    def _chunks(self) -> Iterator[bytes]:
        if isinstance(self.source, bytes):
            yield self.source
            return
        with self.source.open("rb") as handle:
            while chunk := handle.read(4 << 20):
                yield chunk

    def read(self, offset: int, length: int) -> bytes:
        if isinstance(self.source, Path):
            with self.source.open("rb") as handle:
                handle.seek(offset)
                return handle.read(length)
        return self.source[offset : offset + length]


@dataclass
class HubRepo:
    repo_id: str
    gated: bool | str = False
    downloads: int = 0
    likes: int = 0
    trending: int = 0
    last_modified: str = "2024-06-01T12:00:00.000Z"
    created_at: str = "2024-01-01T12:00:00.000Z"
    tags: list[str] = field(default_factory=lambda: ["gguf", "text-generation"])
    gguf: dict[str, Any] | None = None
    sha: str = ""
    files: dict[str, HubFile] = field(default_factory=dict)
    granted: set[str] = field(default_factory=set)  # tokens that accepted the gated license

    def __post_init__(self) -> None:
        if not self.sha:
            self.sha = hashlib.sha1(self.repo_id.encode()).hexdigest()


@dataclass
class Faults:
    """Failures to inject. Byte offsets are positions in the served file."""

    drop_after: int | None = None  # close the connection when the body reaches this offset
    drop_times: int = 1
    ignore_range: bool = False  # answer 200 with the whole file even when asked for a range
    corrupt: bool = False  # serve one wrong byte (SHA-256 mismatch)
    status: int | None = None  # answer this HTTP status ...
    status_path: str = ""  # ... to requests whose path starts with this
    status_times: int | None = None  # ... this many times (None: always)
    retry_after: int | str | None = None  # the Retry-After header sent with ``status``
    throttle: float | None = None  # bytes per second for file bodies
    hold_after: int | None = None  # stop sending at this offset until ``release`` is set
    release: threading.Event = field(default_factory=threading.Event)
    stall_path: str | None = None  # requests whose path starts with this get no answer until ``release``


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    range: str | None
    authorized: bool  # an Authorization header was sent (its value is never kept)
    host: str


# -- GGUF files -------------------------------------------------------------------------------


def _peer_closed(conn: socket.socket) -> bool:
    """True once the client has closed its end (readable with nothing to read)."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def make_gguf(
    path: Path,
    *,
    name: str = "Tiny Test",
    arch: str = "llama",
    file_type: int = 15,
    context_length: int = 2048,
    data_bytes: int = 64 * 1024,
    split: tuple[int, int] | None = None,
    seed: int = 0,
) -> Path:
    """Write a small valid GGUF (not loadable by llama.cpp) with about ``data_bytes`` of tensors."""
    from gguf import GGUFWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = GGUFWriter(str(path), arch)
    writer.add_name(name)
    writer.add_file_type(file_type)
    writer.add_context_length(context_length)
    writer.add_block_count(1)
    writer.add_embedding_length(64)
    writer.add_head_count(4)
    if split is not None:
        writer.add_uint16("split.no", split[0] - 1)
        writer.add_uint16("split.count", split[1])
    rng = np.random.default_rng(seed)
    count = max(16, data_bytes // 4)
    writer.add_tensor("token_embd.weight", rng.standard_normal(count, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


# -- server -----------------------------------------------------------------------------------


class Exchange:
    """One request that a test answers itself (see ``FakeHub.route``): a hostile or broken server."""

    def __init__(self, hub: FakeHub, handler: _Handler, method: str, path: str, token: str | None) -> None:
        self.hub = hub
        self.handler = handler
        self.method = method
        self.path = path  # decoded, without the query
        self.token = token

    def reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """A complete answer with a Content-Length."""
        self.hub._send(self.handler, status, body, headers or {}, "application/json")

    def stream(
        self,
        chunks: Iterable[bytes],
        *,
        status: int = 200,
        headers: dict[str, str] | None = None,
        length: int | None = None,
        interval: float = 0.0,
    ) -> None:
        """Send ``chunks`` (endless if the iterable is), ``interval`` seconds apart.

        Without ``length`` there is no Content-Length: the body ends when the connection closes.
        Stops when the client goes away or the hub closes.
        """
        h = self.handler
        h.send_response(status)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        if length is not None:
            h.send_header("Content-Length", str(length))
        else:
            h.close_connection = True
        h.end_headers()
        if self.method == "HEAD":
            return
        for chunk in chunks:
            h.wfile.write(chunk)
            h.wfile.flush()
            if interval and self.hub._closing.wait(interval):
                return
            if self.hub._closing.is_set():
                return

    def trickle_headers(self, status_line: bytes, headers: bytes, interval: float) -> None:
        """Send the status line at once, then the header block one byte every ``interval`` seconds."""
        h = self.handler
        h.close_connection = True
        h.wfile.write(status_line)
        h.wfile.flush()
        for byte in headers:
            if self.hub._closing.wait(interval):
                return
            h.wfile.write(bytes([byte]))
            h.wfile.flush()

    def default(self) -> None:
        """Answer as the fake Hub normally would."""
        self.hub._answer(self.handler, self.method, self.handler.path, self.token)


Route = Callable[[Exchange], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    hub: FakeHub


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        self.server.hub._connections.add(self.connection)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.hub._connections.discard(self.connection)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        try:
            self.server.hub._handle(self, method)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, OSError):
            self.close_connection = True


class FakeHub:
    """The fake Hub: ``with FakeHub() as hub: ... hub.url``; close() stops every thread."""

    def __init__(
        self, *, page_size: int | None = None, tree_page_size: int = 1000, redirect_lfs: bool = True
    ):
        self.repos: dict[str, HubRepo] = {}
        self.valid_tokens: set[str] = set()
        self.faults = Faults()
        self.requests: list[RecordedRequest] = []
        self.stalled = 0  # requests held by ``faults.stall_path`` right now, their client still waiting
        self.routes: dict[str, Route] = {}  # path prefix -> a test's own answer
        self.page_size = page_size
        self.tree_page_size = tree_page_size
        self.redirect_lfs = redirect_lfs
        self._connections: set[socket.socket] = set()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hub = self
        self._cdn_server = _Server(("127.0.0.1", 0), _Handler)  # another origin on the same host
        self._cdn_server.hub = self
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.cdn_url = f"http://127.0.0.1:{self._cdn_server.server_address[1]}"
        self._threads = [
            threading.Thread(target=server.serve_forever, args=(0.05,), name=f"fake-hub-{n}", daemon=True)
            for n, server in enumerate((self._server, self._cdn_server))
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> FakeHub:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closing.set()
        self.faults.release.set()
        for server in (self._server, self._cdn_server):
            server.shutdown()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for server in (self._server, self._cdn_server):
            server.server_close()
        for thread in self._threads:
            thread.join(5)
        deadline = time.monotonic() + 5
        while self._connections and time.monotonic() < deadline:
            time.sleep(0.01)

    # -- content ----------------------------------------------------------------------------

    def add_repo(self, repo_id: str, **kwargs: Any) -> HubRepo:
        repo = HubRepo(repo_id, **kwargs)
        self.repos[repo_id] = repo
        return repo

    def add_file(self, repo_id: str, path: str, source: bytes | Path, *, lfs: bool | None = None) -> HubFile:
        repo = self.repos.get(repo_id) or self.add_repo(repo_id)
        is_lfs = lfs if lfs is not None else path.endswith(".gguf")
        file = HubFile(path, source, lfs=is_lfs)
        repo.files[path] = file
        return file

    def route(self, prefix: str, answer: Route) -> None:
        """Let ``answer`` handle every request whose path starts with ``prefix`` (it may call ``default``)."""
        self.routes[prefix] = answer

    def grant(self, token: str, repo_id: str) -> None:
        """Make ``token`` valid and let it download the gated ``repo_id``."""
        self.valid_tokens.add(token)
        self.repos[repo_id].granted.add(token)

    # -- inspection ---------------------------------------------------------------------------

    def file_requests(self, filename: str, method: str = "GET") -> list[RecordedRequest]:
        """Requests that asked for this file's bytes (resolve URL or CDN)."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == method
                and r.path.endswith("/" + filename)
                and ("/resolve/" in r.path or "/__cdn/" in r.path)
            ]

    def byte_requests(self, filename: str) -> list[RecordedRequest]:
        """GET requests that were answered with the file's bytes (the CDN ones for LFS files)."""
        gets = self.file_requests(filename)
        cdn = [r for r in gets if "/__cdn/" in r.path]
        return cdn if cdn else gets

    def clear_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    # -- request handling -----------------------------------------------------------------------

    def _handle(self, h: _Handler, method: str) -> None:
        parts = urlsplit(h.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        auth = h.headers.get("Authorization") or ""
        record = RecordedRequest(
            method, path, query, h.headers.get("Range"), bool(auth), h.headers.get("Host") or ""
        )
        with self._lock:
            self.requests.append(record)
        if method == "POST":
            length = int(h.headers.get("Content-Length") or 0)
            h.rfile.read(length)
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        for prefix, answer in self.routes.items():
            if path.startswith(prefix):
                answer(Exchange(self, h, method, path, token))
                return
        self._answer(h, method, h.path, token)

    def _answer(self, h: _Handler, method: str, raw_path: str, token: str | None) -> None:
        parts = urlsplit(raw_path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        if token is not None and token not in self.valid_tokens and not path.startswith("/__cdn/"):
            self._error(h, 401, None, "Invalid credentials in Authorization header")
            return
        faults = self.faults
        if faults.stall_path is not None and path.startswith(faults.stall_path):
            with self._lock:
                self.stalled += 1
            try:
                while not faults.release.wait(0.05) and not self._closing.is_set():
                    if _peer_closed(h.connection):
                        return  # the client gave up (its timeout) or went away
            finally:
                with self._lock:
                    self.stalled -= 1
        fail_now = faults.status_times is None or faults.status_times > 0
        if faults.status is not None and path.startswith(faults.status_path or "/") and fail_now:
            if faults.status_times is not None:
                faults.status_times -= 1
            extra = {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {}
            self._error(h, faults.status, None, "Injected failure", extra)
            return
        if path == "/api/whoami-v2":
            if token is None:
                self._error(h, 401, None, "Invalid credentials in Authorization header")
            else:
                self._json(h, {"type": "user", "name": "test-user", "auth": {"type": "access_token"}})
        elif path == "/api/models":
            self._search(h, query)
        elif path.startswith("/api/models/"):
            self._repo_api(h, path[len("/api/models/") :], query)
        elif path.startswith("/__cdn/"):
            self._cdn(h, method, path[len("/__cdn/") :])
        elif "/resolve/" in path:
            self._resolve(h, method, path, token)
        else:
            self._error(h, 404, None, "Not found")

    # JSON API

    def _model_json(self, repo: HubRepo, expand: Sequence[str] | None, *, full: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            "_id": repo.sha[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": repo.sha,
            "lastModified": repo.last_modified,
            "createdAt": repo.created_at,
            "private": False,
            "gated": repo.gated,
            "disabled": False,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "trendingScore": repo.trending,
            "tags": repo.tags,
            "library_name": "gguf",
            "pipeline_tag": "text-generation",
        }
        if repo.gguf is not None:
            data["gguf"] = repo.gguf
        if full:
            data["siblings"] = [{"rfilename": p} for p in sorted(repo.files)]
        if expand:
            keep = set(expand) | {"_id", "id"}
            data = {k: v for k, v in data.items() if k in keep}
        return data

    def _search(self, h: _Handler, query: dict[str, list[str]]) -> None:
        results = list(self.repos.values())
        for tag in query.get("filter", []):
            results = [r for r in results if tag in r.tags]
        search = (query.get("search") or [""])[0].lower()
        if search:
            results = [r for r in results if search in r.repo_id.lower()]
        if query.get("author"):
            results = [r for r in results if r.repo_id.split("/")[0] == query["author"][0]]
        sort = (query.get("sort") or ["downloads"])[0]
        keys = {
            "downloads": lambda r: r.downloads,
            "likes": lambda r: r.likes,
            "trendingScore": lambda r: r.trending,
            "lastModified": lambda r: r.last_modified,
            "createdAt": lambda r: r.created_at,
        }
        if sort not in keys:
            self._error(h, 400, None, f"Invalid sort: {sort}")
            return
        results.sort(key=keys[sort], reverse=True)
        limit = int((query.get("limit") or [str(self.page_size or 1000)])[0])
        if self.page_size:
            limit = min(limit, self.page_size)
        start = int((query.get("cursor") or ["0"])[0])
        page = results[start : start + limit]
        expand = query.get("expand") or query.get("expand[]")
        body = [self._model_json(r, expand, full=False) for r in page]
        headers = {}
        if start + limit < len(results):
            params = [(k, v) for k, values in query.items() if k != "cursor" for v in values]
            params.append(("cursor", str(start + limit)))
            headers["Link"] = f'<{self.url}/api/models?{urlencode(params)}>; rel="next"'
        self._json(h, body, headers)

    def _repo_api(self, h: _Handler, rest: str, query: dict[str, list[str]]) -> None:
        segments = rest.split("/")
        repo = self.repos.get("/".join(segments[:2]))
        if repo is None:
            self._error(h, 404, "RepoNotFound", "Repository not found")
            return
        tail = segments[2:]
        if not tail or tail[0] == "revision":
            revision = tail[1] if len(tail) > 1 else "main"
            if revision not in ("main", repo.sha):
                self._error(h, 404, "RevisionNotFound", "Invalid rev id")
                return
            expand = query.get("expand") or query.get("expand[]")
            self._json(h, self._model_json(repo, expand, full=True))
            return
        if tail[0] == "tree" and len(tail) >= 2:
            if tail[1] not in ("main", repo.sha):
                self._error(h, 404, "RevisionNotFound", "Invalid rev id")
                return
            self._tree(h, repo, "/".join(tail[2:]), query)
            return
        self._error(h, 404, None, "Not found")

    def _tree(self, h: _Handler, repo: HubRepo, folder: str, query: dict[str, list[str]]) -> None:
        recursive = (query.get("recursive") or ["false"])[0].lower() in ("true", "1")
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for path in sorted(repo.files):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            dirs = rest.split("/")[:-1]
            for depth in range(1, len(dirs) + 1):
                sub = prefix + "/".join(dirs[:depth])
                if (recursive or depth == 1) and sub not in folders:
                    folders.add(sub)
                    entries.append(
                        {
                            "type": "directory",
                            "oid": hashlib.sha1(sub.encode()).hexdigest(),
                            "size": 0,
                            "path": sub,
                        }
                    )
            if dirs and not recursive:
                continue
            file = repo.files[path]
            entry: dict[str, Any] = {"type": "file", "oid": file.git_oid, "size": file.size, "path": path}
            if file.lfs:
                entry["lfs"] = {"oid": file.sha256, "size": file.size, "pointerSize": 134}
            entries.append(entry)
        if prefix and not entries:
            self._error(h, 404, "EntryNotFound", "Entry not found")
            return
        start = int((query.get("cursor") or ["0"])[0])
        page = entries[start : start + self.tree_page_size]
        headers = {}
        if start + self.tree_page_size < len(entries):
            params = [(k, v) for k, values in query.items() if k != "cursor" for v in values]
            params.append(("cursor", str(start + self.tree_page_size)))
            url = f"{self.url}/api/models/{repo.repo_id}/tree/main/{quote(folder)}".rstrip("/")
            headers["Link"] = f'<{url}?{urlencode(params)}>; rel="next"'
        self._json(h, page, headers)

    # files

    def _resolve(self, h: _Handler, method: str, path: str, token: str | None) -> None:
        match = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
        if not match:
            self._error(h, 404, None, "Not found")
            return
        repo = self.repos.get(match[1])
        if repo is None:
            self._error(h, 404, "RepoNotFound", "Repository not found")
            return
        if match[2] not in ("main", repo.sha):
            self._error(h, 404, "RevisionNotFound", "Invalid rev id")
            return
        if repo.gated and token not in repo.granted:
            if token is None:
                self._error(
                    h,
                    401,
                    "GatedRepo",
                    f"Access to model {repo.repo_id} is restricted. You must have "
                    "access to it and be authenticated to access it. Please log in.",
                )
            else:
                self._error(
                    h,
                    403,
                    "GatedRepo",
                    f"Access to model {repo.repo_id} is restricted and you are "
                    "not in the authorized list. Visit the model page to ask for access.",
                )
            return
        file = repo.files.get(match[3])
        if file is None:
            self._error(h, 404, "EntryNotFound", "Entry not found")
            return
        headers = {
            "X-Repo-Commit": repo.sha,
            "ETag": f'"{file.sha256 if file.lfs else file.git_oid}"',
            "Accept-Ranges": "bytes",
        }
        if file.lfs:
            headers["X-Linked-Etag"] = f'"{file.sha256}"'
            headers["X-Linked-Size"] = str(file.size)
        if file.lfs and self.redirect_lfs:
            location = f"{self.cdn_url}/__cdn/{repo.repo_id}/{file.sha256}/{quote(file.path)}?sig=test"
            headers["Location"] = location
            self._send(h, 302, b"", headers, "text/plain")
            return
        self._serve_bytes(h, method, file, headers)

    def _cdn(self, h: _Handler, method: str, rest: str) -> None:
        owner, name, sha, *path = rest.split("/")
        repo = self.repos.get(f"{owner}/{name}")
        file = repo.files.get("/".join(path)) if repo else None
        if repo is None or file is None or file.sha256 != sha:
            self._error(h, 404, None, "Not found")
            return
        self._serve_bytes(h, method, file, {"ETag": f'"{file.sha256}"', "Accept-Ranges": "bytes"})

    def _serve_bytes(self, h: _Handler, method: str, file: HubFile, headers: dict[str, str]) -> None:
        faults = self.faults
        start, end = 0, file.size - 1
        status = 200
        wanted = h.headers.get("Range")
        if wanted and not faults.ignore_range:
            match = re.match(r"bytes=(\d+)-(\d*)$", wanted.strip())
            if match:
                start = int(match[1])
                end = min(int(match[2]), file.size - 1) if match[2] else file.size - 1
                if start >= file.size:
                    self._send(h, 416, b"", {"Content-Range": f"bytes */{file.size}"}, "text/plain")
                    return
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{file.size}"
        length = end - start + 1
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(length))
        h.end_headers()
        if method == "HEAD":
            return
        self._send_body(h, file, start, end + 1)

    def _send_body(self, h: _Handler, file: HubFile, start: int, stop: int) -> None:
        faults = self.faults
        drop_at = None
        if faults.drop_after is not None and faults.drop_times > 0 and start < faults.drop_after < stop:
            faults.drop_times -= 1
            drop_at = faults.drop_after
        hold_at = (
            faults.hold_after if faults.hold_after is not None and start <= faults.hold_after < stop else None
        )
        plain = drop_at is None and hold_at is None and not faults.corrupt and faults.throttle is None
        if plain and isinstance(file.source, Path):
            with file.source.open("rb") as handle:
                h.connection.sendfile(handle, start, stop - start)
            return
        bad_byte = file.size // 2
        position = start
        began = time.monotonic()
        while position < stop:
            limit = stop
            if drop_at is not None and position < drop_at:
                limit = min(limit, drop_at)
            if hold_at is not None and position < hold_at:
                limit = min(limit, hold_at)
            if hold_at is not None and position == hold_at:
                while not faults.release.wait(0.05):
                    if self._closing.is_set():
                        break
                hold_at = None
                continue
            if drop_at is not None and position == drop_at:
                h.wfile.flush()
                h.close_connection = True
                with contextlib.suppress(OSError):
                    h.connection.shutdown(socket.SHUT_RDWR)
                return
            chunk = file.read(position, min(CHUNK, limit - position))
            if faults.corrupt and position <= bad_byte < position + len(chunk):
                mutable = bytearray(chunk)
                mutable[bad_byte - position] ^= 0xFF
                chunk = bytes(mutable)
            h.wfile.write(chunk)
            position += len(chunk)
            if faults.throttle:
                ahead = (position - start) / faults.throttle - (time.monotonic() - began)
                if ahead > 0 and self._closing.wait(ahead):
                    return

    # responses

    def _json(self, h: _Handler, body: Any, headers: dict[str, str] | None = None) -> None:
        self._send(h, 200, json.dumps(body).encode(), headers or {}, "application/json")

    def _error(
        self, h: _Handler, status: int, code: str | None, message: str, extra: dict[str, str] | None = None
    ) -> None:
        headers = dict(extra or {})
        if code:
            headers["X-Error-Code"] = code
        headers["X-Error-Message"] = message
        self._send(h, status, json.dumps({"error": message}).encode(), headers, "application/json")

    @staticmethod
    def _send(h: _Handler, status: int, body: bytes, headers: dict[str, str], content_type: str) -> None:
        h.send_response(status)
        for key, value in headers.items():
            h.send_header(key, value)
        h.send_header("Content-Type", content_type)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)


@contextlib.contextmanager
def running_hub(**kwargs: Any) -> Iterator[FakeHub]:
    hub = FakeHub(**kwargs)
    try:
        yield hub
    finally:
        hub.close()
