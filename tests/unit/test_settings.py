"""Settings: defaults, range errors naming the field, atomic round trip, broken files, migration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamadesk.paths import get_paths
from llamadesk.settings import (
    MIN_CONTEXT,
    GenerationSettings,
    RuntimeSettings,
    Settings,
    SettingsError,
    SettingsStore,
    validated_update,
)


def test_round_trip(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "settings.json")
    settings = Settings()
    settings.generation.temperature = 0.2
    settings.runtime.n_ctx = 4096
    settings.app.theme = "dark"
    store.save(settings)
    loaded = SettingsStore(tmp_path / "settings.json").load()
    assert loaded == settings
    assert loaded.generation.temperature == 0.2


def test_out_of_range_is_refused_with_the_field_name() -> None:
    with pytest.raises(SettingsError, match="temperature"):
        validated_update(GenerationSettings(), temperature=3.5)
    with pytest.raises(SettingsError, match="top_k"):
        validated_update(GenerationSettings(), top_k=-4)
    with pytest.raises(ValueError, match="max_tokens"):
        GenerationSettings().max_tokens = 0


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b"[1, 2, 3]",
        b"\xff\xfe\x00garbage",
        # Wrong types where the schema expects numbers and groups.
        b'{"schema_version": null}',
        b'{"schema_version": 0}',
        b'{"schema_version": "2"}',
        b'{"generation": "x"}',
        b'{"schema_version": 1, "runtime": [1]}',
    ],
)
def test_broken_file_is_backed_up_and_defaults_used(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(content)
    store = SettingsStore(path)
    settings = store.load()
    assert settings == Settings()
    assert store.warning is not None and "defaults are in use" in store.warning
    backups = list(tmp_path.glob("settings.json.broken-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == content
    assert not path.exists()  # the next save writes a fresh file; the user's file is kept aside


def test_range_error_in_file_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 2, "generation": {"temperature": 9}}))
    store = SettingsStore(path)
    store.load()
    assert store.warning is not None and "generation.temperature" in store.warning


def test_migration_from_version_1(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(
        json.dumps({"generation": {"seed": None, "temperature": 0.3}, "runtime": {"n_gpu_layers": None}})
    )
    store = SettingsStore(path)
    settings = store.load()
    assert store.warning is None
    assert settings.generation.seed == -1
    assert settings.generation.temperature == 0.3
    assert settings.runtime.n_gpu_layers == -2
    assert settings.schema_version == 2


def test_newer_schema_is_not_silently_downgraded(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 99}))
    store = SettingsStore(path)
    assert store.load() == Settings()
    assert store.warning is not None and "newer LlamaDesk" in store.warning


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    folder = tmp_path / "config"
    path = folder / "settings.json"
    store = SettingsStore(path)
    for value in (0.1, 0.5, 0.9):
        settings = Settings()
        settings.generation.temperature = value
        store.save(settings)
    assert [p.name for p in folder.iterdir()] == ["settings.json"]
    assert json.loads(path.read_text())["generation"]["temperature"] == 0.9


def test_home_puts_every_folder_under_one_dir(tmp_path: Path) -> None:
    paths = get_paths(tmp_path).ensure()
    for folder in (paths.config_dir, paths.data_dir, paths.models_dir, paths.log_dir):
        assert folder.is_dir() and tmp_path in folder.parents


def test_env_home_is_used(llamadesk_home: Path) -> None:
    assert get_paths().config_dir == llamadesk_home.resolve() / "config"


def test_byte_order_mark_from_notepad_is_read(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"schema_version": 2, "app": {"theme": "dark"}}).encode())
    store = SettingsStore(path)
    assert store.load().app.theme == "dark"
    assert store.warning is None and path.exists()


@pytest.mark.parametrize(
    ("bad", "refused"),
    [
        ({"generation": {"temperature": 9, "top_k": 12}}, "generation.temperature"),
        ({"app": 5}, "app"),
        (
            {"presets": {"m.gguf": {"generation": {"seed": "lucky", "min_p": 0.2}}}},
            "presets.m.gguf.generation.seed",
        ),
        ({"generation": {"stop": ["END", 3]}}, "generation.stop"),
    ],
)
def test_a_bad_value_costs_only_that_value(tmp_path: Path, bad: dict[str, object], refused: str) -> None:
    path = tmp_path / "settings.json"
    content: dict[str, object] = {
        "schema_version": 2,
        "runtime": {"n_ctx": 4096},
        "app": {"theme": "dark", "default_system_prompt": "Answer in French."},
        "presets": {"other.gguf": {"generation": {"temperature": 0.2}}},
        "template_overrides": {"other.gguf": "{{ messages }}"},
    }
    for section, values in bad.items():
        if isinstance(values, dict) and isinstance(content.get(section), dict):
            content[section] = {**content[section], **values}  # type: ignore[dict-item]
        else:
            content[section] = values
    original = json.dumps(content)
    path.write_text(original)
    store = SettingsStore(path)
    settings = store.load()
    assert store.warning is not None and refused in store.warning and "others were kept" in store.warning
    assert settings.runtime.n_ctx == 4096
    assert settings.presets["other.gguf"].generation.temperature == 0.2
    assert settings.template_overrides == {"other.gguf": "{{ messages }}"}
    if refused != "app":
        assert settings.app.theme == "dark" and settings.app.default_system_prompt == "Answer in French."
    if refused == "generation.temperature":
        assert settings.generation.temperature == 0.7 and settings.generation.top_k == 12
    if refused.startswith("presets"):
        assert settings.presets["m.gguf"].generation.min_p == 0.2
    backups = list(tmp_path.glob("settings.json.broken-*"))
    assert len(backups) == 1 and backups[0].read_text() == original  # the user's file, as it was
    again = SettingsStore(path)
    assert again.load() == settings and again.warning is None  # what was kept is saved


def test_newer_schema_keeps_the_settings_this_version_knows(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    original = json.dumps(
        {
            "schema_version": 3,
            "generation": {"temperature": 0.4, "dry_multiplier": 0.8},
            "app": {"theme": "light"},
            "sync": {"enabled": True},
        }
    )
    path.write_text(original)
    store = SettingsStore(path)
    settings = store.load()
    assert store.warning is not None and "newer LlamaDesk" in store.warning and "schema 3" in store.warning
    assert settings.generation.temperature == 0.4 and settings.app.theme == "light"
    assert settings.schema_version == 2
    backups = list(tmp_path.glob("settings.json.broken-*"))
    assert len(backups) == 1 and backups[0].read_text() == original
    assert backups[0].name in store.warning


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "content",
    [
        nested(100_000),  # the parser itself would run out of stack
        '{"schema_version": 2, "generation": {"temperature": ' + nested(600) + "}}",  # in a refused value
        '{"schema_version": 2, "app": {"theme": "dark"}, "plugins": '
        + nested(100)
        + "}",  # in an unknown key
    ],
)
def test_deeply_nested_file_is_backed_up_and_defaults_used(tmp_path: Path, content: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text(content)
    store = SettingsStore(path)
    assert store.load() == Settings()
    assert store.warning is not None and "nested more than" in store.warning
    assert "defaults are in use" in store.warning
    backups = list(tmp_path.glob("settings.json.broken-*"))
    assert len(backups) == 1 and backups[0].read_text() == content


@pytest.mark.parametrize(
    ("bad", "refused"),
    [
        ('"generation": {"temperature": 1e999, "top_k": 12}', "generation.temperature"),
        ('"generation": {"min_p": NaN, "top_k": 12}', "generation.min_p"),
        ('"generation": {"seed": -Infinity, "top_k": 12}', "generation.seed"),
        ('"generation": {"max_tokens": ' + "9" * 5000 + ', "top_k": 12}', "generation.max_tokens"),
        (
            '"generation": {"top_k": 12}, "presets": {"m.gguf": {"generation": {"top_p": NaN}}}',
            "presets.m.gguf",
        ),
    ],
)
def test_a_number_that_is_not_finite_costs_only_that_value(tmp_path: Path, bad: str, refused: str) -> None:
    path = tmp_path / "settings.json"
    path.write_text('{"schema_version": 2, "app": {"theme": "dark"}, ' + bad + "}")
    store = SettingsStore(path)
    settings = store.load()
    assert store.warning is not None and refused in store.warning and "others were kept" in store.warning
    assert "finite number" in store.warning
    assert settings.app.theme == "dark" and settings.generation.top_k == 12
    again = SettingsStore(path)
    assert again.load() == settings and again.warning is None  # what was kept is saved as plain JSON


def test_non_finite_values_are_refused_by_name() -> None:
    for value in (float("nan"), float("inf")):
        with pytest.raises(SettingsError, match="temperature: Input should be a finite number"):
            validated_update(GenerationSettings(), temperature=value)
    with pytest.raises(ValueError, match="finite"):
        GenerationSettings().top_p = float("nan")


def test_context_length_has_a_floor_but_auto_stays() -> None:
    assert MIN_CONTEXT == 256
    assert validated_update(RuntimeSettings(), n_ctx=0).n_ctx == 0
    assert validated_update(RuntimeSettings(), n_ctx=MIN_CONTEXT).n_ctx == MIN_CONTEXT
    for too_short in (1, 16, MIN_CONTEXT - 1):
        with pytest.raises(
            SettingsError, match=r"n_ctx: Context length must be Auto \(0\) or at least 256 tokens"
        ):
            validated_update(RuntimeSettings(), n_ctx=too_short)
    description = RuntimeSettings.model_fields["n_ctx"].description or ""
    assert f"At least {MIN_CONTEXT}" in description  # shown in Preferences next to the field


def test_a_too_short_context_in_the_file_costs_only_that_value(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 2, "runtime": {"n_ctx": 16, "n_batch": 256}}))
    store = SettingsStore(path)
    settings = store.load()
    assert store.warning is not None and "runtime.n_ctx" in store.warning and "256" in store.warning
    assert settings.runtime.n_ctx == 0 and settings.runtime.n_batch == 256


@pytest.mark.parametrize(
    ("model", "field", "value"),
    [
        (GenerationSettings, "seed", 2**31),
        (GenerationSettings, "seed", -2),
        (GenerationSettings, "max_tokens", 131073),
        (RuntimeSettings, "n_batch", 0),
        (RuntimeSettings, "n_batch", 8193),
        (RuntimeSettings, "n_threads", 513),
        (RuntimeSettings, "n_threads", -1),
        (RuntimeSettings, "n_gpu_layers", 1001),
        (RuntimeSettings, "n_gpu_layers", -3),
        (RuntimeSettings, "n_ctx", 1_048_577),
    ],
)
def test_absurd_numbers_are_refused_by_name(
    model: type[GenerationSettings | RuntimeSettings], field: str, value: int
) -> None:
    with pytest.raises(SettingsError, match=field):
        validated_update(model(), **{field: value})
