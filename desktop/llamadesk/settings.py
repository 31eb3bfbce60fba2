"""Typed settings, declared once: the preferences dialog is generated from these models.

Stored as one JSON file in the config dir, written atomically. A broken file is backed
up and replaced by defaults with a warning the app shows; a file with a few bad values (or
one from a newer version) keeps everything else, with a warning naming what was left out.
An out-of-range value is refused with the field's name. The file is parsed with the limits of
``safejson`` (nesting depth), except that a non-finite number (``1e999``, ``NaN``) only costs its
own setting.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from . import safejson
from .files import atomic_write_text, read_regular_bytes
from .limits import MIN_CONTEXT  # noqa: F401  (re-exported)
from .settings_sections import (  # noqa: F401  (re-exported)
    API_KEY_SECRET,
    AppSettings,
    ContextOverflow,
    FlashAttention,
    GenerationSettings,
    KVCacheType,
    ModelPreset,
    RemoteServer,
    RuntimeSettings,
    ServerSettings,
    SettingsError,
    Text,
    _Model,
    _storable,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
MAX_FILE_BYTES = 16 << 20  # far above any real settings file (templates included); a larger one is refused


class Settings(_Model):
    """Everything in settings.json."""

    schema_version: int = SCHEMA_VERSION
    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)
    app: AppSettings = Field(default_factory=AppSettings)
    presets: dict[Text, ModelPreset] = Field(default_factory=dict)
    template_overrides: dict[Text, Text] = Field(
        default_factory=dict,
        description="Chat templates set by the user per model (by model key), used instead of its own.",
    )
    thinking_defaults: dict[Text, Literal["on", "off", "low", "medium", "high"]] = Field(
        default_factory=dict,
        max_length=4096,
        description="The composer's Think switch as last set for each model without a preset (by model "
        "key); a model with a preset keeps it in the preset.",
    )
    server: ServerSettings = Field(default_factory=ServerSettings)
    remote_servers: list[RemoteServer] = Field(
        default_factory=list,
        max_length=64,
        description="Remote OpenAI-compatible servers whose models the picker lists (keys are secrets).",
    )

    def for_model(self, model_key: str) -> tuple[GenerationSettings, RuntimeSettings]:
        """The settings to use for a model: its preset if saved, else the global ones."""
        preset = self.presets.get(model_key)
        if preset is None:
            return self.generation, self.runtime
        return preset.generation, preset.runtime

    def thinking_for(self, model_key: str) -> str:
        """The Think choice a model loads with ("" = its template's default): its preset's when set,
        else the one last chosen for it in the composer."""
        preset = self.presets.get(model_key)
        if preset is not None and preset.thinking:
            return preset.thinking
        return self.thinking_defaults.get(model_key, "")

    def remember_thinking(self, model_key: str, choice: str) -> bool:
        """Make ``choice`` the model's Think default: in its preset if it has one (no preset is made
        for this alone), else in ``thinking_defaults``. True when something changed."""
        if not model_key or self.thinking_for(model_key) == choice:
            return False
        preset = self.presets.get(model_key)
        defaults = dict(self.thinking_defaults)
        defaults.pop(model_key, None)
        try:
            if preset is not None:
                preset.thinking = choice  # type: ignore[assignment]  # validated on assignment
            elif choice:
                defaults[model_key] = choice  # type: ignore[assignment]
            self.thinking_defaults = defaults
        except ValidationError as exc:
            raise SettingsError(describe_validation_error(exc)) from exc
        return True


def _migrate_1_to_2(data: dict[str, Any]) -> dict[str, Any]:
    # Version 1 used ``seed: null`` for random and ``n_gpu_layers: null`` for automatic.
    gen = data.get("generation") or {}
    rt = data.get("runtime") or {}
    for name, section in (("generation", gen), ("runtime", rt)):
        if not isinstance(section, dict):
            raise SettingsError(f"{name}: expected a group of settings, not {type(section).__name__}")
    if gen.get("seed") is None:
        gen["seed"] = -1
    if rt.get("n_gpu_layers") is None:
        rt["n_gpu_layers"] = -2
    if rt.get("n_ctx") is None:
        rt["n_ctx"] = 0
    data["generation"], data["runtime"] = gen, rt
    return data


MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {1: _migrate_1_to_2}


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """Bring settings written by an older version up to the current schema."""
    version = data.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise SettingsError(f"schema_version: expected a whole number from 1, not {version!r}")
    if version > SCHEMA_VERSION:
        raise SettingsError(
            f"settings were written by a newer LlamaDesk (schema {version}, this one reads {SCHEMA_VERSION})"
        )
    while version < SCHEMA_VERSION:
        data = MIGRATIONS[version](data)
        version += 1
        data["schema_version"] = version
    return data


def _salvage(data: dict[str, Any], error: ValidationError, attempts: int = 20) -> Settings | None:
    """Settings from ``data`` without the values ``error`` refused (they fall back to their
    defaults); None when that still does not validate."""
    data = copy.deepcopy(data)
    for _ in range(attempts):
        for item in error.errors():
            _drop(data, item["loc"])
        try:
            return Settings.model_validate(data)
        except ValidationError as exc:
            error = exc
    return None


def _drop(data: dict[str, Any], loc: tuple[int | str, ...]) -> None:
    """Remove the value at ``loc``: the innermost named setting on the way (a whole list when an
    item in it is wrong)."""
    container: Any = data
    target: tuple[dict[str, Any], str] | None = None
    for part in loc:
        if isinstance(container, dict) and isinstance(part, str) and part in container:
            target = (container, part)
            container = container[part]
        elif isinstance(container, list) and isinstance(part, int) and 0 <= part < len(container):
            container = container[part]
        else:
            break
    if target is not None:
        del target[0][target[1]]


def describe_validation_error(error: ValidationError) -> str:
    """One readable line per refused field, naming it by its dotted path."""
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "settings"
        lines.append(f"{where}: {item['msg']}")
    return "; ".join(lines)


def _parse(raw: str) -> Any:
    """The file's JSON, refused (``ValueError``) when it is not JSON or nested too deeply to read safely.

    Unlike ``safejson.loads`` a number that is not finite (``1e999``, ``NaN``) or has more digits than
    Python converts is kept, as inf or NaN, for validation to refuse on its own: one odd value must
    not cost every other setting.
    """
    try:
        return safejson.loads(raw)
    except ValueError:
        pass  # not JSON, too deep, or an odd number somewhere: reading it again tells which
    try:
        data = json.loads(raw, parse_int=_whole_number)
    except RecursionError:
        raise safejson.JSONLimitError(f"it is nested more than {safejson.MAX_DEPTH} levels deep") from None
    if safejson.depth(data) > safejson.MAX_DEPTH:
        raise safejson.JSONLimitError(f"it is nested more than {safejson.MAX_DEPTH} levels deep")
    return data


def _whole_number(text: str) -> int | float:
    try:
        return int(text)
    except ValueError:  # more digits than int() accepts: no setting can use it
        return math.inf


class SettingsStore:
    """Loads and saves ``Settings`` in one JSON file.

    ``load()`` never raises for a bad file: it backs the file up, falls back to defaults
    (only for the values it could not read, when the rest is fine) and puts a message in
    ``warning`` for the app to show.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.warning: str | None = None

    def load(self) -> Settings:
        self.warning = None
        newer: int | None = None
        try:
            try:
                content = read_regular_bytes(self.path, limit=MAX_FILE_BYTES)
            except FileNotFoundError:
                return Settings()
            except OSError as exc:  # a folder, a named pipe (reading it would wait for ever), too large
                raise ValueError(exc.strerror or str(exc)) from exc
            # utf-8-sig: Windows Notepad starts the files it saves with a byte-order mark.
            raw = content.decode("utf-8-sig")
            data = _parse(raw)
            if not isinstance(data, dict):
                raise ValueError("the file does not hold a JSON object")
            version = data.get("schema_version")
            if isinstance(version, int) and not isinstance(version, bool) and version > SCHEMA_VERSION:
                # Written by a newer LlamaDesk: use what this version knows rather than nothing.
                newer, data["schema_version"] = version, SCHEMA_VERSION
            else:
                data = migrate(data)
        except (OSError, UnicodeDecodeError, ValueError, SettingsError) as exc:
            return self._fall_back(str(exc))
        try:
            return self._keep_aside(Settings.model_validate(data), newer, "")
        except ValidationError as exc:
            reason = describe_validation_error(exc)
            settings = _salvage(data, exc)
            if settings is None:
                return self._fall_back(reason)
            return self._keep_aside(settings, newer, reason)

    def _fall_back(self, reason: str) -> Settings:
        """Defaults, with the unreadable file moved aside and a warning saying so."""
        backup = self._backup()
        where = f" It was saved as {backup.name}." if backup else ""
        self.warning = f"Your settings file could not be read ({reason}); defaults are in use.{where}"
        log.warning("%s", self.warning)
        return Settings()

    def _keep_aside(self, settings: Settings, newer: int | None, refused: str) -> Settings:
        """``settings`` as read; when part of the file was left out, copy the file aside first,
        then save what was kept, so the next start reads the same and the user's file is not lost."""
        if newer is None and not refused:
            return settings
        backup = self._backup(keep_original=True)
        where = f" The file as it was is saved as {backup.name}." if backup else ""
        if newer is not None:
            self.warning = (
                f"Your settings were written by a newer LlamaDesk (schema {newer}, this one reads "
                f"{SCHEMA_VERSION}): the settings this version knows are in use.{where}"
            )
        else:
            self.warning = (
                f"Some of your settings could not be read ({refused}); defaults are in use for those "
                f"and the others were kept.{where}"
            )
        log.warning("%s", self.warning)
        if backup is not None:
            try:
                self.save(settings)
            except SettingsError as exc:
                log.warning("%s", exc)
        return settings

    def save(self, settings: Settings) -> None:
        try:
            atomic_write_text(self.path, settings.model_dump_json(indent=2) + "\n")
        except OSError as exc:
            raise SettingsError(f"could not save settings to {self.path}: {exc.strerror or exc}") from exc

    def _backup(self, *, keep_original: bool = False) -> Path | None:
        """Move (or copy) the settings file to ``settings.json.broken-<time>``; None if that failed."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        backup = self.path.with_name(f"{self.path.name}.broken-{stamp}")
        counter = 1
        while os.path.lexists(backup):  # an earlier backup (the same second) is never overwritten
            backup = self.path.with_name(f"{self.path.name}.broken-{stamp}-{counter}")
            counter += 1
        try:
            if keep_original:
                shutil.copy2(self.path, backup)
            else:
                os.replace(self.path, backup)
        except OSError:
            return None
        return backup


def validated_update(model: _Model, **changes: Any) -> Any:
    """A copy of ``model`` with ``changes``, or ``SettingsError`` naming the refused field."""
    data = model.model_dump()
    data.update(changes)
    try:
        return type(model).model_validate(data)
    except ValidationError as exc:
        raise SettingsError(describe_validation_error(exc)) from exc
