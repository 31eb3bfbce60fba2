"""Every model on this machine: the starter, downloads, imports and the Hugging Face cache.

Downloads live in ``models_dir/<owner>__<name>/``; imports (registered in place or copied
into ``models_dir/imported/``) are remembered in ``library.json``; models that other tools
fetched into the Hugging Face cache are listed too. Each entry carries its GGUF facts, or
why it can't be loaded ("broken") or that it is still downloading ("partial").

Finding the files costs ``stat`` calls only (``library_files``); their facts come from the
header cache, so a name lookup or a removal reads no model file, and only new or changed
files are read when listing. ``list_cached()`` answers at once (new files are "unchecked");
``scan()`` then reads those and reports each as it is done.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..engine import header_cache
from ..engine.errors import ModelFileError
from ..engine.gguf_info import GGUFInfo, inspect_gguf, inspect_gguf_cached
from ..paths import STARTER_MODEL_NAME, Paths, starter_model_path
from .download.files import PART_SUFFIX, sidecar_path
from .errors import HubError, valid_repo_id
from .library_copy import copy_in
from .library_files import (
    ImportRecord,
    hf_cache_files,
    is_inside,
    load_imports,
    mtime_of,
    origin,
    parse_date,
    parts_of,
    read_sidecar,
    real_path_in,
    regular_stat,
    split_glob,
    walk_models,
)
from .quant import display_name, file_kind, parse_quantization, split_part

if TYPE_CHECKING:
    from .download import FreeSpace

log = logging.getLogger(__name__)

LIBRARY_VERSION = 1
UNCHECKED = "unchecked"  # state of a file whose header has not been read yet (``list_cached``)


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
    state: str = "ok"  # "ok" | "broken" | "partial" | "unchecked" (not read yet: list_cached)
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
    def is_embedding(self) -> bool:
        """An embedding model (read from its header): loadable for document search, not offered for chat."""
        return self.kind == "model" and self.info is not None and self.info.is_embedding

    @property
    def is_chat_model(self) -> bool:
        """A model to offer in the chat model picker: loadable and not an embedding model."""
        return self.loadable and not self.is_embedding

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
            "is_embedding": self.is_embedding,
        }


def _hf_cache_dir() -> Path:
    """The Hugging Face cache folder, read from the environment now (not at import time)."""
    env = os.environ.get("HF_HUB_CACHE")
    if env:
        return Path(os.path.expandvars(env)).expanduser()
    home = os.environ.get("HF_HOME")
    if home:
        return Path(os.path.expandvars(home)).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _default_free_space(path: Path) -> int:
    from .download import default_free_space

    return default_free_space(path)


_Models = list[LibraryModel]
_Records = list[dict[str, Any]]


class ModelLibrary:
    """Lists, imports and removes local models. Cheap to create; listing ``stat``s the disk."""

    def __init__(
        self,
        paths: Paths,
        *,
        models_dir: Path | None = None,
        hf_cache_dir: Path | None = None,
        scan_hf_cache: bool = True,
        free_space: FreeSpace = _default_free_space,
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
        """Every model with its facts: the starter first, then the rest by name."""
        return self.scan()

    def list_cached(self) -> _Models:
        """Every model at once, from ``stat`` and remembered facts only: files not read yet are
        "unchecked" (``scan`` reads them)."""
        return [self._complete(model, read=False) for model in self._skeletons()]

    def scan(
        self,
        on_model: Callable[[LibraryModel], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> _Models:
        """Every model, reading the headers not known yet; ``on_model`` gets each one just read.

        ``should_stop`` is asked before each read: when it says True the rest stay "unchecked".
        """
        models = self.list_cached()
        try:
            for index, model in enumerate(models):
                if model.state != UNCHECKED:
                    continue
                if should_stop is not None and should_stop():
                    break
                models[index] = self._complete(model, read=True)
                if on_model is not None:
                    on_model(models[index])
        finally:
            header_cache.flush()
        return models

    def get(self, key: str) -> LibraryModel | None:
        found = next((m for m in self._skeletons() if m.key == key), None)
        return self._complete(found, read=True) if found is not None else None

    def loadable(self) -> _Models:
        return [e for e in self.list() if e.loadable]

    def find(self, name_or_path: str) -> LibraryModel | None:
        """Resolve a CLI ``-m`` value: a path, a key, or a name (case-insensitive); None if unknown.

        Only the models that match are read, so a lookup costs the same with 200 models as with one.
        """
        wanted = name_or_path.strip()
        entries = self._skeletons()
        for entry in entries:
            if entry.key == wanted:
                return self._complete(entry, read=True)
        candidate = Path(wanted).expanduser()
        if wanted and regular_stat(candidate) is not None:
            resolved = os.path.realpath(candidate)
            for entry in entries:
                if os.path.realpath(entry.path) == resolved:
                    return self._complete(entry, read=True)
            path = Path(resolved)
            loose = self._model(
                path, key=f"file:{path}", name=display_name(path.name), source="imported", in_place=True
            )
            return self._complete(loose, read=True)
        lowered = wanted.lower()
        for test in (
            lambda e: e.name.lower() == lowered,
            lambda e: e.path.name.lower() in (lowered, f"{lowered}.gguf"),
        ):
            hits = [e for e in entries if test(e)]
            if hits:
                return self._prefer([self._complete(e, read=True) for e in hits])
        hits = [e for e in entries if lowered and lowered in e.name.lower()]
        if len(hits) > 1:
            hits = [self._complete(e, read=True) for e in hits]
            loadable = [e for e in hits if e.loadable]
            if len(loadable) == 1:
                return loadable[0]
            names = ", ".join(e.name for e in hits[:5])
            raise HubError(f"“{wanted}” matches several models ({names}): use the full name.", kind="library")
        return self._complete(hits[0], read=True) if hits else None

    # -- changes ---------------------------------------------------------------------------

    def import_model(
        self,
        path: str | Path,
        *,
        copy: bool = False,
        progress: Callable[[int, int], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> LibraryModel:
        """Add a GGUF file from elsewhere: registered where it is, or copied into the models folder.

        Reads only the new file's header: the cost does not grow with the size of the library.
        """
        source = Path(path).expanduser()
        try:
            source = source.resolve()
            inspect_gguf(source)
        except ModelFileError as exc:
            raise HubError(f"Can't import {source.name}: {exc}", kind="library") from exc
        except (OSError, RuntimeError, ValueError) as exc:  # ValueError: a NUL or a lone surrogate
            raise HubError(f"Can't import {source!r}: {exc}", kind="library") from exc
        existing = self._already_listed(source)
        if existing is not None:
            return existing
        target = source
        if copy:
            target = copy_in(source, self.models_dir, self.free_space, progress, cancel)
        record = {
            "path": str(target),
            "copied": copy,
            "original": str(source),
            "added": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        with self._lock:
            imports, problem = load_imports(self.paths.library_file)
            self._save_imports([*(r.raw for r in imports), record], damaged=problem is not None)
        added = ImportRecord(target, copy, parse_date(record["added"]), record)
        model = self._complete(self._imported(added), read=True)
        header_cache.flush()
        return model

    def remove(self, key: str) -> LibraryModel:
        """Remove a model: delete downloaded or copied files, forget an in-place import.

        The starter can't be removed; an in-place import's file is never deleted, and nothing
        outside the models folder is, whatever ``library.json`` says.
        """
        found = next((m for m in self._skeletons() if m.key == key), None)
        if found is None:
            raise HubError(f"No model with key {key!r} in the library.", kind="library")
        entry = self._complete(found, read=False)  # facts if known; the file itself is not read
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
                imports, problem = load_imports(self.paths.library_file)
                if not entry.in_place:
                    self._delete_files(entry)
                kept = [r.raw for r in imports if r.path != entry.path]
                self._save_imports(kept, damaged=problem is not None)
            return entry
        self._delete_files(entry)
        return entry

    # -- finding files (stat only) ---------------------------------------------------------

    def _skeletons(self) -> _Models:
        """Every model as found on disk, facts not looked up yet: the starter first."""
        head: _Models = []
        starter = starter_model_path()
        if starter is not None:
            head.append(self._starter(starter))
        imports, problem = load_imports(self.paths.library_file)
        if problem:
            self.warning = problem
            log.warning("%s", problem)
        skip = {os.path.realpath(r.path) for r in imports}
        entries = self._downloaded(skip)
        entries.extend(self._imported(record) for record in imports)
        if self.scan_hf_cache:
            entries.extend(self._hf_cache())
        entries.sort(key=lambda e: (e.kind != "model", e.name.lower(), e.key))
        return head + entries

    def _model(
        self,
        path: Path,
        *,
        key: str,
        name: str,
        source: str,
        added: datetime | None = None,
        status: os.stat_result | None = None,
        **extra: Any,
    ) -> LibraryModel:
        """An entry for ``path`` whose header is not looked at yet."""
        size = 0
        for index, part in enumerate(parts_of(path)):
            part_status = status if index == 0 and status is not None else regular_stat(part)
            size += part_status.st_size if part_status is not None else 0
            if index == 0:
                status = part_status
        return LibraryModel(
            key=key,
            name=name,
            path=path,
            size=size,
            source=source,
            added=added or mtime_of(status),
            state=UNCHECKED,
            kind=file_kind(path.name),
            quantization=parse_quantization(path.name),
            **extra,
        )

    def _starter(self, path: Path) -> LibraryModel:
        return self._model(path, key="starter", name=STARTER_MODEL_NAME, source="starter")

    def _imported(self, record: ImportRecord) -> LibraryModel:
        # A copy is made inside the models folder only: a "copied" record pointing anywhere else
        # (a hand-edited library.json) is treated as the user's own file and never deleted.
        copied = record.copied and is_inside(record.path, self.models_dir)
        return self._model(
            record.path,
            key=f"imported:{record.path}",
            name=display_name(record.path.name),
            source="imported",
            added=record.added,
            in_place=not copied,
        )

    def _downloaded(self, skip: set[str]) -> _Models:
        root = self.models_dir
        if not root.is_dir():
            return []
        root_real = os.path.realpath(root)
        found: _Models = []
        for file in walk_models(root):
            path = file.path
            name = path.name
            lower = name.lower()
            if not (lower.endswith(".gguf") or lower.endswith(".gguf" + PART_SUFFIX)):
                continue
            if real_path_in(root_real, root, file) in skip:
                continue
            key = f"downloaded:{path.relative_to(root).as_posix()}"
            if lower.endswith(".gguf"):
                part = split_part(name)
                if part is not None and part.index != 1:
                    continue
                sidecar = read_sidecar(path)
                repo = sidecar.get("repo_id")
                entry = self._model(
                    path,
                    key=key,
                    name=display_name(name),
                    source="downloaded",
                    added=parse_date(sidecar.get("downloaded_at")),
                    status=file.status,
                    repo_id=repo if valid_repo_id(repo) else None,
                )
                found.append(replace(entry, **origin(sidecar)))
                continue
            final = path.with_name(name[: -len(PART_SUFFIX)])
            part = split_part(final.name)
            if (
                part is not None
                and part.index != 1
                and final.with_name(f"{part.stem}-00001-of-{part.count:05d}.gguf{PART_SUFFIX}").exists()
            ):
                continue  # one entry per split download
            size = 0
            for piece in path.parent.glob(f"{split_glob(final)}{PART_SUFFIX}"):
                with contextlib.suppress(OSError):
                    size += piece.stat().st_size
            repo_dir = path.relative_to(root).parts[0]
            folder_repo = repo_dir.replace("__", "/", 1)
            entry = LibraryModel(
                key=key,
                name=display_name(final.name),
                path=path,
                size=size,
                source="downloaded",
                repo_id=folder_repo if "__" in repo_dir and valid_repo_id(folder_repo) else None,
                added=mtime_of(file.status),
                state="partial",
                message="The download is not finished: resume it to continue where it stopped.",
                kind=file_kind(final.name),
                quantization=parse_quantization(final.name),
            )
            found.append(replace(entry, **origin(read_sidecar(path))))
        return found

    def _hf_cache(self) -> _Models:
        cache = self.hf_cache_dir
        if not cache.is_dir():
            return []
        return [
            self._model(
                file.path,
                key=f"hf-cache:{file.repo_id}/{file.relative}@{file.commit[:12]}",
                name=display_name(file.relative),
                source="hf-cache",
                repo_id=file.repo_id,
                added=datetime.fromtimestamp(file.modified, tz=timezone.utc),
            )
            for file in hf_cache_files(cache)
        ]

    def _already_listed(self, source: Path) -> LibraryModel | None:
        """The library's entry for the file ``source`` (resolved), found without listing everything."""
        real = os.path.realpath(source)
        starter = starter_model_path()
        if starter is not None and os.path.realpath(starter) == real:
            return self._complete(
                self._model(starter, key="starter", name=STARTER_MODEL_NAME, source="starter")
            )
        imports, _ = load_imports(self.paths.library_file)
        for record in imports:
            if record.path == source or os.path.realpath(record.path) == real:
                return self._complete(self._imported(record))
        if is_inside(source, self.models_dir) or (
            self.scan_hf_cache and is_inside(source, self.hf_cache_dir)
        ):
            for entry in self._skeletons():  # a file LlamaDesk (or another tool) downloaded
                if entry.source != "imported" and os.path.realpath(entry.path) == real:
                    return self._complete(entry)
        return None

    # -- facts -----------------------------------------------------------------------------

    def _complete(self, model: LibraryModel, *, read: bool = True) -> LibraryModel:
        """``model`` with its GGUF facts, or why it can't be used; unchanged if not read and unknown."""
        if model.state != UNCHECKED:
            return model
        try:
            info = inspect_gguf(model.path) if read else inspect_gguf_cached(model.path)
        except ModelFileError as exc:
            return replace(model, state="broken", message=str(exc))
        except Exception as exc:  # one bad file must never take the whole list down
            log.exception("reading %s failed", model.path)
            return replace(model, state="broken", message=f"{model.path.name} can't be read ({exc}).")
        if info is None:
            return model
        quant = info.file_type if not info.file_type.startswith(("type", "unknown")) else None
        return replace(model, state="ok", info=info, quantization=quant or model.quantization)

    @staticmethod
    def _prefer(hits: _Models) -> LibraryModel:
        return next((e for e in hits if e.loadable), hits[0])

    # -- files -------------------------------------------------------------------------------

    def _delete_files(self, entry: LibraryModel) -> None:
        """Delete a model's files, refusing any that lie outside the models folder."""
        if entry.state == "partial":
            targets = list(entry.path.parent.glob(f"{split_glob(entry.path.with_suffix(''))}{PART_SUFFIX}"))
            targets = targets or [entry.path]
        else:
            targets = parts_of(entry.path)
        targets += [sidecar_path(p) for p in targets]
        outside = [t for t in targets if not is_inside(t, self.models_dir)]
        if outside:
            raise HubError(
                f"{outside[0]} is outside the models folder ({self.models_dir}); LlamaDesk only deletes "
                "files it downloaded or copied there.",
                kind="library",
            )
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

    def _save_imports(self, imports: _Records, *, damaged: bool = False) -> None:
        """Write ``library.json``; a file that could not be read is kept beside it, not overwritten."""
        import json

        from ..files import atomic_write_text

        file = self.paths.library_file
        text = json.dumps({"version": LIBRARY_VERSION, "imports": imports}, indent=2) + "\n"
        try:
            if damaged and regular_stat(file) is not None:
                os.replace(file, file.with_name(file.name + ".damaged"))
            atomic_write_text(file, text)
        except OSError as exc:
            raise HubError(
                f"Can't save the model library to {file}: {exc.strerror or exc}", kind="library"
            ) from exc
