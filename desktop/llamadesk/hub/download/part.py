"""One file of a download and the checks its bytes must pass before it is installed.

What can be verified is verified: the size always; the SHA-256 for files the Hub keeps in
LFS; the git blob SHA-1 (``sha1(b"blob <size>\\0" + content)``) the Hub gives for the others;
and the GGUF magic for ``.gguf`` files, so a web page can never be installed as a model.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import HubError
from .files import PART_SUFFIX

GGUF_MAGIC = b"GGUF"


class Digests:
    """The SHA-256 of a file's bytes, plus its git blob SHA-1 when that is what the Hub can check."""

    def __init__(self, size: int | None = None, git: bool = False) -> None:
        self.sha256 = hashlib.sha256()
        self.sha1 = None
        if git and size is not None:
            self.sha1 = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)

    def update(self, data: bytes) -> None:
        self.sha256.update(data)
        if self.sha1 is not None:
            self.sha1.update(data)


@dataclass
class Part:
    """One file being downloaded: where it goes, what the Hub says it is, and how far it got."""

    path: str  # path in the repo
    dest: Path
    size: int | None
    sha256: str | None
    git_sha1: str | None = None
    done: int = 0
    verified: bool = False
    hasher: Digests = field(default_factory=Digests)

    @property
    def part_file(self) -> Path:
        return self.dest.with_name(self.dest.name + PART_SUFFIX)

    @property
    def name(self) -> str:
        return PurePosixPath(self.path).name

    def reset_hash(self) -> None:
        """Start the checksums again (from byte 0); the size must be known for the git SHA-1."""
        self.hasher = Digests(self.size, git=self.sha256 is None and self.git_sha1 is not None)


class HashThread:
    """Checksums on a helper thread, so hashing overlaps the network and the disk."""

    def __init__(self, hasher: Digests) -> None:
        self.hasher = hasher
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self.thread = threading.Thread(target=self._run, name="download-sha256", daemon=True)
        self.thread.start()

    def update(self, data: bytes) -> None:
        self.queue.put(data)

    def close(self) -> None:
        """Wait until every queued byte is hashed."""
        self.queue.put(None)
        self.thread.join()

    def _run(self) -> None:
        while (data := self.queue.get()) is not None:
            self.hasher.update(data)


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with path.open("rb") as handle:
            return handle.read(len(magic)) == magic
    except OSError:
        return False


def check_part(part: Part) -> HubError | None:
    """Why the complete ``part.part_file`` must not be installed, or None when every check passes."""
    name = part.name
    try:
        on_disk = part.part_file.stat().st_size
    except OSError:
        on_disk = -1
    if part.size is not None and (part.done != part.size or on_disk != part.size):
        return HubError(
            f"{name} arrived incomplete ({max(on_disk, 0):,} of {part.size:,} bytes). "
            "It was deleted; download it again.",
            kind="checksum",
        )
    if part.sha256 is not None and part.hasher.sha256.hexdigest() != part.sha256:
        return HubError(
            f"{name} arrived damaged: its SHA-256 checksum does not match the Hub's. "
            "The damaged file was deleted; download it again.",
            kind="checksum",
        )
    git = part.hasher.sha1  # set only when the SHA-256 is unknown and the git SHA-1 is
    if git is not None and git.hexdigest() != part.git_sha1:
        return HubError(
            f"{name} arrived damaged: its checksum (git SHA-1) does not match the Hub's. "
            "The damaged file was deleted; download it again.",
            kind="checksum",
        )
    if name.lower().endswith(".gguf") and not _starts_with(part.part_file, GGUF_MAGIC):
        return HubError(
            f"{name} is not a GGUF model file: the server sent something else (a web page, perhaps). "
            "It was deleted and nothing was installed.",
            kind="checksum",
        )
    return None
