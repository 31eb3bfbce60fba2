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
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from . import safejson
from .errors import LlamaDeskError
from .files import atomic_write_text, read_regular_bytes
from .limits import MIN_CONTEXT

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
MAX_FILE_BYTES = 16 << 20  # far above any real settings file (templates included); a larger one is refused
_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable(text: str) -> str:
    """``text`` with lone surrogates (JSON allows "\\ud800") as U+FFFD, so the file can be saved as UTF-8."""
    return _SURROGATE.sub("\ufffd", text)


Text = Annotated[str, AfterValidator(_storable)]
"""A setting's text: lone surrogates become U+FFFD when it is read or set, never an error at saving."""


class SettingsError(LlamaDeskError):
    """A setting value was refused; the message names the field."""


class _Model(BaseModel):
    # inf and NaN pass no range check a user would expect (NaN >= 0 is false, not an error)
    model_config = ConfigDict(extra="ignore", validate_assignment=True, allow_inf_nan=False)


class GenerationSettings(_Model):
    """How a reply is sampled. Applies to the next reply, no reload needed."""

    temperature: float = Field(
        0.7,
        ge=0.0,
        le=2.0,
        title="Temperature",
        description="How adventurous the word choice is. Low (0.1) gives focused, repeatable answers; "
        "0.7 is balanced; 1.0 and above gives varied, creative and sometimes rambling text. "
        "0 always picks the most likely token (greedy).",
        json_schema_extra={"widget": "slider", "step": 0.05},
    )
    top_p: float = Field(
        0.95,
        ge=0.0,
        le=1.0,
        title="Top-p",
        description="Nucleus sampling: only tokens within the top p of cumulative probability are "
        "considered. Lower (0.5) keeps answers safe and on topic; 1.0 turns the filter off.",
        json_schema_extra={"step": 0.01},
    )
    top_k: int = Field(
        40,
        ge=0,
        le=1000,
        title="Top-k",
        description="Only the k most likely next tokens are candidates. Smaller (10) is more "
        "predictable, larger (100) more diverse; 0 turns the filter off.",
    )
    min_p: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        title="Min-p",
        description="Drops tokens less likely than this fraction of the most likely one. 0.05 removes "
        "nonsense while keeping variety; higher is stricter; 0 turns it off.",
        json_schema_extra={"step": 0.01},
    )
    repeat_penalty: float = Field(
        1.1,
        ge=0.5,
        le=2.0,
        title="Repeat penalty",
        description="Discourages repeating recent tokens. 1.0 is off; 1.1 stops most loops; "
        "much higher can make the model avoid words it needs; below 1.0 encourages repetition.",
        json_schema_extra={"step": 0.05},
    )
    max_tokens: int = Field(
        1024,
        ge=1,
        le=131072,
        title="Max tokens",
        description="Longest reply in tokens (a token is roughly three quarters of an English word). "
        "The reply stops here even mid-sentence. Room for it is kept free in the context, up to "
        "half of it, so a long history is shortened sooner when this is high.",
        json_schema_extra={"step": 64},
    )
    seed: int = Field(
        -1,
        ge=-1,
        le=2**31 - 1,
        title="Seed",
        description="Random seed for sampling. The same seed, settings and conversation give the same "
        "reply; -1 picks a new random seed each time.",
        json_schema_extra={"special": {"-1": "Random"}},
    )
    stop: list[Text] = Field(
        default_factory=list,
        title="Stop strings",
        description="The reply ends as soon as one of these strings appears (the string itself is not "
        "shown). The model's own end-of-turn markers are always used.",
        json_schema_extra={"widget": "lines", "object_name": "stopStringsEdit"},
    )


class RuntimeSettings(_Model):
    """How a model is loaded. Changes take effect on the next load."""

    n_ctx: int = Field(
        0,
        ge=0,
        le=1_048_576,
        title="Context length",
        description="How many tokens the model sees at once: system prompt, history and reply together. "
        "Longer remembers more of the chat but uses more memory. 0 = automatic: the model's trained "
        f"length, capped at what fits in memory and at 8192. At least {MIN_CONTEXT}: llama.cpp makes "
        "no smaller context, and a chat template with a short reply needs about that much.",
        json_schema_extra={"object_name": "contextLengthSpin", "special": {"0": "Auto"}, "step": 1024},
    )
    n_gpu_layers: int = Field(
        -2,
        ge=-2,
        le=1000,
        title="GPU layers",
        description="How many of the model's layers run on the GPU. More is faster while they fit in "
        "video memory. -2 = automatic (planned for this machine), -1 = all, 0 = CPU only. A number above "
        "the model's layer count means all of them.",
        json_schema_extra={"object_name": "gpuLayersSpin", "special": {"-2": "Auto", "-1": "All"}},
    )
    n_threads: int = Field(
        0,
        ge=0,
        le=512,
        title="CPU threads",
        description="Threads used for generation on the CPU. 0 = automatic (physical cores). More than "
        "your physical cores usually makes it slower; 512 is llama.cpp's limit.",
        json_schema_extra={"object_name": "threadsSpin", "special": {"0": "Auto"}},
    )
    n_batch: int = Field(
        512,
        ge=1,
        le=8192,
        title="Batch size",
        description="Prompt tokens processed per step. Larger reads long prompts faster but needs more "
        "memory; 512 suits most machines. Up to 8192: the working memory grows with batch size times "
        "context length, and speed stops improving well before that.",
        json_schema_extra={"object_name": "batchSizeSpin", "step": 64},
    )
    flash_attn: bool = Field(
        False,
        title="Flash attention",
        description="A faster, leaner attention kernel. Helps most on GPUs; some models or backends "
        "don't support it.",
    )
    use_mmap: bool = Field(
        True,
        title="Memory-map the model",
        description="Reads the model file on demand instead of copying it into memory first: faster "
        "loads, and memory is shared with the system file cache.",
    )
    use_mlock: bool = Field(
        False,
        title="Lock the model in memory",
        description="Keeps the model in RAM so the system never swaps it out. Needs enough free memory "
        "(and sometimes permission); otherwise loading fails.",
    )

    @field_validator("n_ctx")
    @classmethod
    def _long_enough(cls, value: int) -> int:
        if 0 < value < MIN_CONTEXT:
            raise PydanticCustomError(
                "context_too_short",
                "Context length must be Auto (0) or at least {minimum} tokens: llama.cpp makes no smaller "
                "context, and a chat template with a short reply needs about that much.",
                {"minimum": MIN_CONTEXT},
            )
        return value


Theme = Literal["system", "light", "dark"]


class AppSettings(_Model):
    """How the app looks and where it keeps things."""

    theme: Theme = Field(
        "system",
        title="Theme",
        description="Light, dark, or follow the system.",
        json_schema_extra={
            "tab": "appearance",
            "labels": {"system": "Follow system", "light": "Light", "dark": "Dark"},
        },
    )
    font_size: int = Field(
        11,
        ge=6,
        le=32,
        title="Font size",
        description="Size of the chat text in points.",
        json_schema_extra={"tab": "appearance", "suffix": " pt"},
    )
    code_font: Text = Field(
        "monospace",
        title="Code font",
        description="Font family used for code blocks and inline code.",
        json_schema_extra={"tab": "appearance", "required": True},
    )
    default_system_prompt: Text = Field(
        "You are a helpful assistant.",
        title="Default system prompt",
        description="Instructions every new conversation starts with; each conversation can change its own.",
        json_schema_extra={"tab": "generation", "widget": "multiline"},
    )
    models_dir: Text = Field(
        "",
        title="Models folder",
        description="Where downloaded models are stored. Empty = the default folder in the data directory.",
        json_schema_extra={"tab": "model", "widget": "folder"},
    )
    max_parallel_downloads: int = Field(
        1,
        ge=1,
        le=4,
        title="Parallel downloads",
        description="How many downloads run at the same time.",
        json_schema_extra={"tab": "hub"},
    )
    last_model: Text = Field(
        "",
        title="Last model",
        description="The model loaded at the last session.",
        json_schema_extra={"hidden": True},
    )


class ModelPreset(_Model):
    """Generation and runtime settings saved for one model, applied when it loads."""

    generation: GenerationSettings = Field(default_factory=GenerationSettings)
    runtime: RuntimeSettings = Field(default_factory=RuntimeSettings)


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

    def for_model(self, model_key: str) -> tuple[GenerationSettings, RuntimeSettings]:
        """The settings to use for a model: its preset if saved, else the global ones."""
        preset = self.presets.get(model_key)
        if preset is None:
            return self.generation, self.runtime
        return preset.generation, preset.runtime


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


def load_token(path: Path) -> str:
    """The access token kept in the file ``path``, or empty (kept until callers use ``SecretStore``)."""
    from .secrets import SecretStore

    return SecretStore(path.parent, use_keyring=False).get(path.name) or ""


def save_token(path: Path, token: str) -> None:
    """Keep the access token in the file ``path``, readable by this user only (see ``load_token``)."""
    from .secrets import SecretStore

    SecretStore(path.parent, use_keyring=False).set(path.name, token)
