"""What a download reports: its state, bytes done of total, speed and time left."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum


class DownloadState(str, Enum):
    """Where a download stands; ``finished`` states have no thread working on them."""

    QUEUED = "queued"
    STARTING = "starting"  # asking the Hub for sizes and hashes
    HASHING = "hashing"  # re-reading the bytes a previous attempt left on disk
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        """True when no thread works on the task (it may be resumed if paused or failed)."""
        return self in _FINISHED


_FINISHED = frozenset(
    {DownloadState.PAUSED, DownloadState.CANCELLED, DownloadState.DONE, DownloadState.FAILED}
)


@dataclass(frozen=True)
class DownloadProgress:
    """A snapshot of one download: bytes done of total (all parts), speed and time left."""

    task_id: str
    state: DownloadState
    done: int
    total: int
    speed: float = 0.0  # bytes per second over the last few seconds
    eta: float | None = None  # seconds left at that speed
    part: int = 1  # 1-based index of the file in progress
    parts: int = 1
    filename: str = ""
    message: str | None = None  # the error, when state is FAILED

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total > 0 else 0.0


ProgressCallback = Callable[[DownloadProgress], None]


class Speed:
    """Bytes per second over a sliding window of a few seconds."""

    def __init__(self, window: float = 3.0) -> None:
        self.window = window
        self.samples: deque[tuple[float, int]] = deque()
        self.total = 0

    def add(self, count: int) -> None:
        self.total += count

    def rate(self) -> float:
        now = time.monotonic()
        self.samples.append((now, self.total))
        while len(self.samples) > 2 and now - self.samples[0][0] > self.window:
            self.samples.popleft()
        first_t, first_b = self.samples[0]
        elapsed = now - first_t
        return (self.total - first_b) / elapsed if elapsed > 0.05 else 0.0
