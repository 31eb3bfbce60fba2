"""Which model file a command means: a path, the starter, or a name from the library.

A path or the starter is answered without looking at the library; a name is looked up in
the library of the models folder the user chose in Preferences (as the window does), from
``stat`` calls and remembered header facts, so the lookup costs the same with 200 models as
with none. Nothing here imports llama.cpp or the settings until a name needs the library.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from ..paths import STARTER_MODEL_NAME, Paths, get_paths, starter_model_path
from .common import CliError

if TYPE_CHECKING:
    from ..hub.library import ModelLibrary
    from ..settings import Settings

STARTER_KEY = "starter"  # the library's key for the starter model


class ResolvedModel(NamedTuple):
    """The file to load and, when known without another lookup, its library key."""

    path: Path
    key: str | None


def models_folder(settings: Settings, where: Paths) -> Path:
    """The models folder set in Preferences, else the default one."""
    configured = settings.app.models_dir
    return Path(configured).expanduser() if configured else where.models_dir


def configured_models_folder(where: Paths) -> Path:
    """:func:`models_folder` for a command that has not read the settings."""
    from ..settings import SettingsStore

    return models_folder(SettingsStore(where.settings_file).load(), where)


def library(models_dir: Path | None = None) -> ModelLibrary:
    """The library of ``models_dir`` (default: the configured models folder)."""
    from ..hub.library import ModelLibrary

    where = get_paths().ensure()
    folder = models_dir if models_dir is not None else configured_models_folder(where)
    return ModelLibrary(where, models_dir=folder)


def resolve(name: str, *, models_dir: Path | None = None) -> ResolvedModel:
    """A model given as a path, ``starter``, a library key or a library name."""
    candidate = Path(name).expanduser()
    if candidate.exists():
        return ResolvedModel(candidate, None)
    lowered = name.strip().lower()
    starter = starter_model_path()
    if starter and lowered in {"starter", STARTER_MODEL_NAME.lower(), starter.stem.lower()}:
        return ResolvedModel(starter, STARTER_KEY)
    found = library(models_dir).find(name)
    if found is not None:
        return ResolvedModel(Path(found.path), str(found.key))
    if any(sep in name for sep in ("/", "\\")) or name.endswith(".gguf"):
        raise CliError(f"model file not found: {name}")
    raise CliError(f"no model named {name!r} in the library (see `llamadesk models list`)")


def resolve_model(name: str, *, models_dir: Path | None = None) -> Path:
    """The file :func:`resolve` finds for ``name``."""
    return resolve(name, models_dir=models_dir).path


def library_key(resolved: ResolvedModel, models_dir: Path) -> str:
    """The key the window files per-model choices under (e.g. a chat template) for this model."""
    if resolved.key is not None:
        return resolved.key
    found = library(models_dir).find(str(resolved.path))
    return str(found.key) if found is not None else str(resolved.path)
