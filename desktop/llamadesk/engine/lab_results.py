"""Measurements kept between runs: speed and perplexity per model file, settings, backend and version.

Kept in ``lab_results.json`` in the data folder, so My models and the Hub browser can show
"measured here: 41 tok/s" for a file. A damaged file is set aside (``.damaged``), never silently
overwritten. Qt-free; also the home of :class:`LabProgress`, what every long lab run reports.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import safejson
from ..files import atomic_write_text, read_regular_bytes

log = logging.getLogger(__name__)

RESULTS_FILE = "lab_results.json"
RESULTS_VERSION = 1
MAX_RECORDS = 500  # the oldest go first; a record is a few hundred bytes
MAX_FILE_BYTES = 16 << 20


@dataclass(frozen=True)
class LabProgress:
    """How far a long run is: ``fraction`` 0..1, seconds left (None until it can be estimated) and a line."""

    fraction: float
    seconds_left: float | None
    text: str


class ProgressClock:
    """Turns "done of total" into a :class:`LabProgress` with time left, from the pace so far."""

    def __init__(self) -> None:
        self.started = time.perf_counter()

    def progress(self, done: float, total: float, text: str) -> LabProgress:
        fraction = min(max(done / total, 0.0), 1.0) if total > 0 else 0.0
        elapsed = time.perf_counter() - self.started
        left = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        return LabProgress(fraction, left, text)


def current_version() -> str:
    """LlamaDesk's version, for the record (a result from another version may differ)."""
    from .. import __version__

    return str(__version__)


@dataclass(frozen=True)
class LabRecord:
    """One measurement: ``kind`` "speed" or "perplexity", the file measured and its figures."""

    kind: str
    model_path: str
    model_name: str
    model_size: int
    settings: dict[str, Any]
    backend: str
    version: str
    measured_at: float
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> LabRecord | None:
        """A record read back from the file; None when it is not one (hand-edited or damaged)."""
        if not isinstance(data, dict):
            return None
        try:
            record = cls(
                kind=str(data["kind"]),
                model_path=str(data["model_path"]),
                model_name=str(data["model_name"]),
                model_size=int(data["model_size"]),
                settings=dict(data.get("settings") or {}),
                backend=str(data.get("backend", "")),
                version=str(data.get("version", "")),
                measured_at=float(data.get("measured_at", 0.0)),
                figures=dict(data.get("figures") or {}),
            )
        except (KeyError, TypeError, ValueError):
            return None
        return record

    def same_run(self, other: LabRecord) -> bool:
        """True when ``other`` measured the same thing (a newer one replaces it)."""
        return (self.kind, self.model_path, self.model_size, self.settings, self.backend, self.version) == (
            other.kind,
            other.model_path,
            other.model_size,
            other.settings,
            other.backend,
            other.version,
        )

    @property
    def summary(self) -> str:
        """One short line: "41.2 tok/s" or "perplexity 18.32 ± 0.41"."""
        f = self.figures
        if self.kind == "speed":
            return f"{float(f.get('tg_tps', 0.0)):.1f} tok/s"
        return f"perplexity {float(f.get('perplexity', 0.0)):.2f} ± {float(f.get('stderr', 0.0)):.2f}"


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class LabResults:
    """The kept measurements in one JSON file; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.warning: str | None = None
        self._lock = threading.Lock()

    @classmethod
    def default(cls) -> LabResults:
        """The results in the configured data folder."""
        from ..paths import get_paths

        return cls(get_paths().ensure().data_dir / RESULTS_FILE)

    def records(self) -> list[LabRecord]:
        """Every kept record, oldest first."""
        with self._lock:
            return self._read()

    def add(self, record: LabRecord) -> None:
        """Keep ``record``; an older record of the same run is replaced."""
        with self._lock:
            kept = [r for r in self._read() if not r.same_run(record)]
            kept.append(record)
            kept = kept[-MAX_RECORDS:]
            data = {"version": RESULTS_VERSION, "records": [r.as_dict() for r in kept]}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps(data, indent=1, ensure_ascii=False))

    def for_model(self, path: Path | str, kind: str | None = None) -> list[LabRecord]:
        """The records of the file at ``path``, newest first (all kinds unless ``kind``)."""
        key = str(path)
        found = [r for r in self.records() if r.model_path == key and (kind is None or r.kind == kind)]
        return sorted(found, key=lambda r: r.measured_at, reverse=True)

    def latest(self, path: Path | str, kind: str) -> LabRecord | None:
        found = self.for_model(path, kind)
        return found[0] if found else None

    def latest_for_file(self, name: str, size: int | None = None, kind: str = "speed") -> LabRecord | None:
        """The newest record of a file called ``name`` (of ``size`` bytes when given), wherever it is:
        the Hub browser knows a file by its name in the repository."""
        base = Path(name).name
        found = [
            r
            for r in self.records()
            if r.kind == kind
            and Path(r.model_path).name == base
            and (size is None or not r.model_size or r.model_size == size)
        ]
        return max(found, key=lambda r: r.measured_at) if found else None

    def _read(self) -> list[LabRecord]:
        try:
            raw = read_regular_bytes(self.path, limit=MAX_FILE_BYTES)
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.warning = f"The kept measurements could not be read: {exc.strerror or exc}"
            return []
        try:
            data = safejson.loads(raw)
            items = data["records"] if isinstance(data, dict) else None
            if not isinstance(items, list):
                raise ValueError("no list of records")
        except (ValueError, KeyError, TypeError) as exc:
            self._set_aside(exc)
            return []
        return [r for r in (LabRecord.from_dict(item) for item in items) if r is not None]

    def _set_aside(self, exc: Exception) -> None:
        damaged = self.path.with_name(self.path.name + ".damaged")
        try:
            self.path.replace(damaged)
        except OSError:
            log.warning("could not set aside the damaged %s", self.path, exc_info=True)
        self.warning = f"The kept measurements were damaged ({exc}); they were moved to {damaged.name}."
        log.warning("%s", self.warning)
