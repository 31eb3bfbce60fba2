"""The Think switch as a per-model default: kept in the model's preset when it has one, else in
``thinking_defaults``, and read back (preset first) by the load path after a restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamadesk.settings import GenerationSettings, ModelPreset, Settings, SettingsError, SettingsStore


def test_a_choice_without_a_preset_is_kept_apart_and_survives_a_restart(tmp_path: Path) -> None:
    store = SettingsStore(tmp_path / "settings.json")
    settings = store.load()
    assert settings.thinking_for("starter") == ""  # nothing chosen: the template's own default
    assert settings.remember_thinking("starter", "off")
    assert settings.presets == {}  # no preset is made for the Think switch alone
    store.save(settings)

    again = SettingsStore(tmp_path / "settings.json").load()
    assert again.thinking_for("starter") == "off"
    assert again.thinking_for("file:/other.gguf") == ""
    assert json.loads((tmp_path / "settings.json").read_text())["thinking_defaults"] == {"starter": "off"}


def test_a_choice_for_a_model_with_a_preset_goes_into_the_preset() -> None:
    generation = GenerationSettings(temperature=0.3)
    settings = Settings(presets={"qwen": ModelPreset(generation=generation)})
    settings.thinking_defaults = {"qwen": "off"}  # chosen before the preset was made
    assert settings.thinking_for("qwen") == "off"  # an unset preset Think falls back to it

    assert settings.remember_thinking("qwen", "high")
    assert settings.presets["qwen"].thinking == "high"
    assert settings.presets["qwen"].generation.temperature == 0.3  # the rest of the preset is untouched
    assert settings.thinking_defaults == {}  # one place holds it
    assert settings.thinking_for("qwen") == "high"
    assert not settings.remember_thinking("qwen", "high")  # no change, nothing to save


def test_the_preset_wins_over_the_choice_kept_apart() -> None:
    settings = Settings(presets={"m": ModelPreset(thinking="on")})
    settings.thinking_defaults = {"m": "off"}
    assert settings.thinking_for("m") == "on"


def test_choosing_the_template_default_forgets_the_choice() -> None:
    settings = Settings()
    settings.remember_thinking("m", "low")
    assert settings.remember_thinking("m", "")
    assert settings.thinking_defaults == {} and settings.thinking_for("m") == ""
    assert not settings.remember_thinking("", "on")  # no model: nothing to remember


def test_a_value_the_switch_never_offers_is_refused() -> None:
    settings = Settings(presets={"m": ModelPreset()})
    with pytest.raises(SettingsError, match="thinking"):
        settings.remember_thinking("m", "maybe")
    with pytest.raises(SettingsError, match="thinking_defaults"):
        settings.remember_thinking("other", "maybe")
    assert settings.presets["m"].thinking == "" and settings.thinking_defaults == {}


def test_a_bad_entry_in_the_file_costs_only_itself(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    data = {"schema_version": 2, "thinking_defaults": {"a": "off", "b": "maybe"}, "app": {"font_size": 14}}
    path.write_text(json.dumps(data))
    store = SettingsStore(path)
    settings = store.load()
    assert settings.thinking_defaults == {"a": "off"}
    assert settings.app.font_size == 14
    assert store.warning is not None and "thinking_defaults" in store.warning
