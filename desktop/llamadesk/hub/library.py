"""Every model on this machine: the starter, downloads, imports and the Hugging Face cache.

Downloads live in ``models_dir/<owner>__<name>/``; imports (registered in place or copied
into ``models_dir/imported/``) are remembered in ``library.json``; models that other tools
fetched into the Hugging Face cache are listed too. Each entry carries its GGUF facts, or
why it can't be loaded ("broken") or that it is still downloading ("partial").
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..paths import STARTER_MODEL_NAME, Paths, starter_model_path
from ..settings import atomic_write_text
from .download import (
    PART_SUFFIX,
    FreeSpace,
    default_free_space,
    format_size,
    read_sidecar,
    sidecar_path,
)
from .errors import HubError
from .quant import SPLIT_RE, display_name, file_kind, parse_quantization, split_part

if TYPE_CHECKING:
    from ..engine import GGUFInfo

log = logging.getLogger(__name__)

LIBRARY_VERSION = 1
IMPORTED_FOLDER = "imported"

# GGUF facts by (path, size, mtime) of every part: reading a header is cheap, but not free.
_FACTS: dict[tuple[tuple[str, int, int], ...], tuple[GGUFInfo | None, str | None]] = {}
_FACTS_LOCK = threading.Lock()


@dataclass(frozen=True)
class LibraryModel:
    """One model file (or split model) on disk, and whether it can be loaded."""

    key: str  # stable id: "starter", "downloaded:<relative path>", "imported:<path>", "hf-cache:..."
    name: str
    path: Path  # the file to open (first part of a split model)
    size: int  # bytes on disk, all parts
    source: str  # "starter" | "downloaded" | "imported" | "hf-cache"
    repo_id: str | None = None
    added: datetime | None = None
    state: str = "ok"  # "ok" | "broken" | "partial"
    message: str | None = None  # why it is broken or partial
    kind: str = "model"  # "model" | "mmproj" | "imatrix"
    quantization: str | None = None
    in_place: bool = False  # an import that points at the user's own file
    revision: str | None = None  # for downloads: the revision asked for ...
    repo_files: tuple[str, ...] = ()  # ... and the files in the repo (to resume a partial download)
    info: GGUFInfo | None = field(default=None, compare=False, repr=False)

    @property
    def loadable(self) -> bool:
        return self.state == "ok" and self.kind == "model"

    @property
    def deletable(self) -> bool:
        """True if removing it frees disk space (false for the starter, in-place imports, the HF cache)."""
        return self.source == "downloaded" or (self.source == "imported" and not self.in_place)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "path": str(self.path),
            "size": self.size,
            "source": self.source,
            "repo_id": self.repo_id,
            "added": self.added.isoformat() if self.added else None,
            "state": self.state,
            "message": self.message,
            "kind": self.kind,
            "quantization": self.quantization,
            "in_place": self.in_place,
            "revision": self.revision,
            "repo_files": list(self.repo_files),
            "architecture": self.info.architecture if self.info else None,
            "parameter_count": self.info.parameter_count if self.info else None,
            "context_length": self.info.context_length if self.info else None,
        }


def _hf_cache_dir() -> Path:
    """The Hugging Face cache folder, read from the environment now (not at import time)."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_CACHE")
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def _parts_of(path: Path) -> list[Path]:
    """All files of the model whose first file is ``path`` (just ``path`` unless split)."""
    part = split_part(path.name)
    if part is None:
        return [path]
    return [path.with_name(f"{part.stem}-{i:05d}-of-{part.count:05d}.gguf") for i in range(1, part.count + 1)]


def _mtime(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, tz=timezone.utc)
    except OSError:
        return None


_Models = list[LibraryModel]
_Records = list[dict[str, Any]]


class ModelLibrary:
    """Lists, imports and removes local models. Cheap to create; ``list()`` reads the disk."""

    def __init__(
        self,
        paths: Paths,
        *,
        models_dir: Path | None = None,
        hf_cache_dir: Path | None = None,
        scan_hf_cache: bool = True,
        free_space: FreeSpace = default_free_space,
    ) -> None:
        self.paths = paths
        self.models_dir = Path(models_dir) if models_dir else paths.models_dir
        self._hf_cache_dir = hf_cache_dir
        self.scan_hf_cache = scan_hf_cache
        self.free_space = free_space
        self.warning: str | None = None  # set when library.json could not be read
        self._lock = threading.Lock()

    @property
    def hf_cache_dir(self) -> Path:
        return self._hf_cache_dir if self._hf_cache_dir is not None else _hf_cache_dir()

    # -- listing ---------------------------------------------------------------------------

    def list(self) -> _Models:
        """Every model: the starter first, then the rest by name."""
        head: _Models = []
        starter = starter_model_path()
        if starter is not None:
            head.append(self._entry(starter, key="starter", name=STARTER_MODEL_NAME, source="starter"))
        entries: _Models = []
        imports = self._load_imports()
        imported_paths = {Path(item["path"]) for item in imports}
        entries.extend(self._downloaded(imported_paths))
        for item in imports:
            path = Path(item["path"])
            entries.append(
                self._entry(
                    path,
                    key=f"imported:{path}",
                    name=display_name(path.name),
                    source="imported",
                    added=_parse_date(item.get("added")),
                    in_place=not item.get("copied", False),
                )
            )
        if self.scan_hf_cache:
            entries.extend(self._hf_cache())
        entries.sort(key=lambda e: (e.kind != "model", e.name.lower(), e.key))
        return head + entries

    def get(self, key: str) -> LibraryModel | None:
        return next((e for e in self.list() if e.key == key), None)

    def loadable(self) -> _Models:
        return [e for e in self.list() if e.loadable]

    def find(self, name_or_path: str) -> LibraryModel | None:
        """Resolve a CLI ``-m`` value: a path, a key, or a name (case-insensitive); None if unknown."""
        wanted = name_or_path.strip()
        entries = self.list()
        for entry in entries:
            if entry.key == wanted:
                return entry
        candidate = Path(wanted).expanduser()
        if candidate.is_file():
            resolved = candidate.resolve()
            for entry in entries:
                with contextlib.suppress(OSError):
                    if entry.path.resolve() == resolved:
                        return entry
            return self._entry(
                resolved,
                key=f"file:{resolved}",
                name=display_name(resolved.name),
                source="imported",
                in_place=True,
            )
        lowered = wanted.lower()
        for test in (
            lambda e: e.name.lower() == lowered,
            lambda e: e.path.name.lower() in (lowered, f"{lowered}.gguf"),
        ):
            hits = [e for e in entries if test(e)]
            if hits:
                return self._prefer(hits)
        hits = [e for e in entries if lowered and lowered in e.name.lower()]
        if len(hits) > 1:
            loadable = [e for e in hits if e.loadable]
            if len(loadable) == 1:
                return loadable[0]
            names = ", ".join(e.name for e in hits[:5])
            raise HubError(f"“{wanted}” matches several models ({names}): use the full name.", kind="library")
        return hits[0] if hits else None

    # -- changes ---------------------------------------------------------------------------

    def import_model(
        self,
        path: str | Path,
        *,
        copy: bool = False,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> LibraryModel:
        """Add a GGUF file from elsewhere: registered where it is, or copied into the models folder."""
        from ..engine import ModelFileError, inspect_gguf

        source = Path(path).expanduser()
        try:
            source = source.resolve()
            inspect_gguf(source)
        except ModelFileError as exc:
            raise HubError(f"Can't import {source.name}: {exc}", kind="library") from exc
        except OSError as exc:
            raise HubError(f"Can't import {source}: {exc.strerror or exc}", kind="library") from exc
        for entry in self.list():
            with contextlib.suppress(OSError):
                if entry.path.resolve() == source:
                    return entry  # already in the library
        target = source
        if copy:
            target = self._copy_in(source, progress, cancel)
        with self._lock:
            imports = self._load_imports()
            imports.append(
                {
                    "path": str(target),
                    "copied": copy,
                    "original": str(source),
                    "added": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                }
            )
            self._save_imports(imports)
        added = self.get(f"imported:{target}")
        if added is None:  # pragma: no cover - the file vanished between the copy and the listing
            raise HubError(f"{target.name} disappeared while it was being imported.", kind="library")
        return added

    def remove(self, key: str) -> LibraryModel:
        """Remove a model: delete downloaded or copied files, forget an in-place import.

        The starter can't be removed; an in-place import's file is never deleted.
        """
        entry = self.get(key)
        if entry is None:
            raise HubError(f"No model with key {key!r} in the library.", kind="library")
        if entry.source == "starter":
            raise HubError("The starter model comes with LlamaDesk and can't be removed.", kind="library")
        if entry.source == "hf-cache":
            raise HubError(
                f"{entry.name} is in the Hugging Face cache ({self.hf_cache_dir}), shared with other tools: "
                "remove it with `hf cache delete`.",
                kind="library",
            )
        if entry.source == "imported":
            with self._lock:
                imports = [i for i in self._load_imports() if Path(i["path"]) != entry.path]
                if not entry.in_place:
                    self._delete_files(entry)
                self._save_imports(imports)
            return entry
        self._delete_files(entry)
        return entry

    # -- internals -------------------------------------------------------------------------

    def _downloaded(self, skip: set[Path]) -> _Models:
        root = self.models_dir
        if not root.is_dir():
            return []
        found: _Models = []
        for path in sorted(root.rglob("*")):
            name = path.name
            if not path.is_file() or path.resolve() in skip:
                continue
            lower = name.lower()
            if lower.endswith(".gguf"):
                part = split_part(name)
                if part is not None and part.index != 1:
                    continue
                sidecar = read_sidecar(path) or {}
                repo = sidecar.get("repo_id")
                entry = self._entry(
                    path,
                    key=f"downloaded:{path.relative_to(root).as_posix()}",
                    name=display_name(name),
                    source="downloaded",
                    repo_id=str(repo) if repo else None,
                    added=_parse_date(sidecar.get("downloaded_at")) or _mtime(path),
                )
                found.append(replace(entry, **_origin(sidecar)))
            elif lower.endswith(".gguf" + PART_SUFFIX):
                final = path.with_name(name[: -len(PART_SUFFIX)])
                part = split_part(final.name)
                if (
                    part is not None
                    and part.index != 1
                    and final.with_name(f"{part.stem}-00001-of-{part.count:05d}.gguf{PART_SUFFIX}").exists()
                ):
                    continue  # one entry per split download
                size = sum(p.stat().st_size for p in path.parent.glob(f"{_split_glob(final)}{PART_SUFFIX}"))
                repo_dir = path.relative_to(root).parts[0]
                sidecar = read_sidecar(path) or {}
                entry = LibraryModel(
                    key=f"downloaded:{path.relative_to(root).as_posix()}",
                    name=display_name(final.name),
                    path=path,
                    size=size,
                    source="downloaded",
                    repo_id=repo_dir.replace("__", "/", 1) if "__" in repo_dir else None,
                    added=_mtime(path),
                    state="partial",
                    message="The download is not finished: resume it to continue where it stopped.",
                    kind=file_kind(final.name),
                    quantization=parse_quantization(final.name),
                )
                found.append(replace(entry, **_origin(sidecar)))
        return found

    def _hf_cache(self) -> _Models:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound

        cache = self.hf_cache_dir
        if not cache.is_dir():
            return []
        try:
            info = scan_cache_dir(cache)
        except (CacheNotFound, OSError, ValueError) as exc:
            log.info("could not scan the Hugging Face cache %s: %s", cache, exc)
            return []
        newest: dict[tuple[str, str], tuple[float, str, Path, int]] = {}
        for repo in info.repos:
            if repo.repo_type != "model":
                continue
            for revision in repo.revisions:
                for file in revision.files:
                    if not file.file_name.lower().endswith(".gguf"):
                        continue
                    relative = file.file_path.relative_to(revision.snapshot_path).as_posix()
                    part = split_part(file.file_name)
                    if part is not None and part.index != 1:
                        continue
                    key = (repo.repo_id, relative)
                    if key not in newest or newest[key][0] < revision.last_modified:
                        newest[key] = (
                            revision.last_modified,
                            revision.commit_hash,
                            file.file_path,
                            file.size_on_disk,
                        )
        entries = []
        for (repo_id, relative), (modified, commit, path, _size) in sorted(newest.items()):
            entries.append(
                self._entry(
                    path,
                    key=f"hf-cache:{repo_id}/{relative}@{commit[:12]}",
                    name=display_name(relative),
                    source="hf-cache",
                    repo_id=repo_id,
                    added=datetime.fromtimestamp(modified, tz=timezone.utc),
                )
            )
        return entries

    def _entry(
        self,
        path: Path,
        *,
        key: str,
        name: str,
        source: str,
        repo_id: str | None = None,
        added: datetime | None = None,
        in_place: bool = False,
    ) -> LibraryModel:
        parts = _parts_of(path)
        size = 0
        for part in parts:
            with contextlib.suppress(OSError):
                size += part.stat().st_size
        info, problem = self._inspect(path)
        kind = file_kind(path.name)
        quant = (
            info.file_type
            if info is not None and not info.file_type.startswith(("type", "unknown"))
            else None
        )
        return LibraryModel(
            key=key,
            name=name,
            path=path,
            size=size,
            source=source,
            repo_id=repo_id,
            added=added or _mtime(path),
            state="ok" if problem is None else "broken",
            message=problem,
            kind=kind,
            quantization=quant or parse_quantization(path.name),
            in_place=in_place,
            info=info,
        )

    def _inspect(self, path: Path) -> tuple[GGUFInfo | None, str | None]:
        """GGUF facts or the reason the file can't be used; cached until any part changes."""
        from ..engine import ModelFileError, inspect_gguf

        stamps: list[tuple[str, int, int]] = []
        for part in _parts_of(path):
            try:
                stat = part.stat()
                stamps.append((str(part), stat.st_size, stat.st_mtime_ns))
            except OSError:
                stamps.append((str(part), -1, -1))
        cache_key = tuple(stamps)
        with _FACTS_LOCK:
            cached = _FACTS.get(cache_key)
        if cached is not None:
            return cached
        try:
            result: tuple[GGUFInfo | None, str | None] = (inspect_gguf(path), None)
        except ModelFileError as exc:
            result = (None, str(exc))
        with _FACTS_LOCK:
            if len(_FACTS) > 512:
                _FACTS.clear()
            _FACTS[cache_key] = result
        return result

    def _copy_in(
        self, source: Path, progress: Callable[[int, int], None] | None, cancel: threading.Event | None
    ) -> Path:
        parts = _parts_of(source)
        missing = [p for p in parts if not p.exists()]
        if missing:
            raise HubError(f"Can't import {source.name}: {missing[0].name} is missing.", kind="library")
        sizes = {p: p.stat().st_size for p in parts}
        total = sum(sizes.values())
        folder = self.models_dir / IMPORTED_FOLDER / display_name(source.name)
        suffix = 2
        while folder.exists():
            folder = folder.with_name(f"{display_name(source.name)}-{suffix}")
            suffix += 1
        free = self.free_space(folder)
        if total > free:
            raise HubError(
                f"Not enough space: needs {format_size(total)}, have {format_size(free)} free in "
                f"{self.models_dir}. Free some space, or import the file in place instead of copying it.",
                kind="disk",
            )
        folder.mkdir(parents=True)
        done = 0
        try:
            for part in parts:
                target = folder / part.name
                temp = target.with_name(target.name + PART_SUFFIX)
                with part.open("rb") as src, temp.open("wb") as dst:
                    while chunk := src.read(8 << 20):
                        if cancel is not None and cancel.is_set():
                            raise HubError("Import cancelled.", kind="cancelled")
                        dst.write(chunk)
                        done += len(chunk)
                        if progress is not None:
                            progress(done, total)
                    dst.flush()
                    os.fsync(dst.fileno())
                if not temp.stat().st_size == part.stat().st_size == sizes[part]:  # changed while copied
                    raise HubError(
                        f"Can't import {source.name}: the file changed while it was being copied. Try again.",
                        kind="library",
                    )
                os.replace(temp, target)
        except (HubError, OSError) as exc:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(exc, HubError):
                raise
            raise HubError(f"Can't copy {source.name}: {exc.strerror or exc}", kind="disk") from exc
        return folder / source.name

    def _delete_files(self, entry: LibraryModel) -> None:
        if entry.state == "partial":
            targets = list(entry.path.parent.glob(f"{_split_glob(entry.path.with_suffix(''))}{PART_SUFFIX}"))
            targets = targets or [entry.path]
            targets += [sidecar_path(p) for p in targets]
        else:
            targets = [p for p in _parts_of(entry.path)]
            targets += [sidecar_path(p) for p in targets]
        try:
            for target in targets:
                target.unlink(missing_ok=True)
        except OSError as exc:
            raise HubError(f"Can't delete {entry.path.name}: {exc.strerror or exc}", kind="library") from exc
        # Tidy empty folders up to the models folder.
        folder = entry.path.parent
        root = self.models_dir.resolve()
        while folder.resolve() != root and root in folder.resolve().parents:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent

    @staticmethod
    def _prefer(hits: _Models) -> LibraryModel:
        return next((e for e in hits if e.loadable), hits[0])

    def _load_imports(self) -> _Records:
        path = self.paths.library_file
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            self.warning = (
                f"The model library file {path} could not be read ({exc}); imported models are hidden."
            )
            log.warning("%s", self.warning)
            return []
        items = data.get("imports") if isinstance(data, dict) else None
        if not isinstance(items, list):
            return []
        return [i for i in items if isinstance(i, dict) and isinstance(i.get("path"), str)]

    def _save_imports(self, imports: _Records) -> None:
        text = json.dumps({"version": LIBRARY_VERSION, "imports": imports}, indent=2) + "\n"
        try:
            atomic_write_text(self.paths.library_file, text)
        except OSError as exc:
            raise HubError(
                f"Can't save the model library to {self.paths.library_file}: {exc.strerror or exc}",
                kind="library",
            ) from exc


def _split_glob(final: Path) -> str:
    """A glob for every part of the split model ``final`` belongs to (or just its name)."""
    match = SPLIT_RE.match(final.name if final.name.endswith(".gguf") else final.name + ".gguf")
    if not match:
        return glob.escape(final.name)
    return f"{glob.escape(match['stem'])}-?????-of-{match['count']}.gguf"


def _origin(record: dict[str, object]) -> dict[str, Any]:
    """LibraryModel fields from a download's sidecar record (nothing when there is none)."""
    fields: dict[str, Any] = {}
    if isinstance(record.get("repo_id"), str):
        fields["repo_id"] = record["repo_id"]
    if isinstance(record.get("revision"), str):
        fields["revision"] = record["revision"]
    parts = record.get("parts")
    if isinstance(parts, list) and all(isinstance(p, str) for p in parts):
        fields["repo_files"] = tuple(parts)
    return fields


def _parse_date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
