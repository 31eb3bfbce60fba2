"""Remote servers without the network: addresses, the list in the settings, keys, request fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llamadesk.paths import Paths
from llamadesk.remote.client import request_fields
from llamadesk.remote.errors import RemoteError
from llamadesk.remote.registry import add_server, find_server, remove_server, secret_name
from llamadesk.remote.urls import api_base, default_name, normalize_url
from llamadesk.secrets import SecretStore
from llamadesk.settings import GenerationSettings, RemoteServer, Settings, SettingsStore


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("http://192.168.1.20:8080/", "http://192.168.1.20:8080"),
        ("localhost:11434", "http://localhost:11434"),
        ("HTTPS://llm.example.com/v1", "https://llm.example.com/v1"),
        ("  http://[::1]:8642  ", "http://[::1]:8642"),
    ],
)
def test_addresses_are_tidied(typed: str, stored: str) -> None:
    assert normalize_url(typed) == stored


@pytest.mark.parametrize(
    "typed",
    ["", "ftp://host", "http://", "not a url at all", "http://host:99999", "http://h/?q=1", "http://h/#x"],
)
def test_what_is_not_an_address_is_refused_with_a_reason(typed: str) -> None:
    with pytest.raises(RemoteError) as caught:
        normalize_url(typed)
    assert caught.value.kind == "bad_url" and str(caught.value)


def test_the_api_base_gets_v1_once() -> None:
    assert api_base("http://h:8080") == "http://h:8080/v1"
    assert api_base("http://h:8080/v1") == "http://h:8080/v1"
    assert api_base("https://h/openai") == "https://h/openai/v1"
    assert default_name("http://user@h:8080/v1") == "h:8080"


def test_servers_are_added_found_and_removed_by_name_or_address() -> None:
    servers = add_server([], "http://a:1", "Big box")
    servers = add_server(servers, "b:2")
    assert [(s.name, s.url) for s in servers] == [("Big box", "http://a:1"), ("b:2", "http://b:2")]
    with pytest.raises(RemoteError, match="already listed"):
        add_server(servers, "http://c:3", "Big box")
    with pytest.raises(RemoteError, match="already listed"):
        add_server(servers, "http://a:1/", "Other")
    assert find_server(servers, "http://a:1/") is servers[0]
    left, removed = remove_server(servers, "Big box")
    assert removed.name == "Big box" and [s.name for s in left] == ["b:2"]
    with pytest.raises(RemoteError) as caught:
        remove_server(left, "nope")
    assert caught.value.kind == "unknown_server"


def test_each_server_has_its_own_key_and_none_is_in_the_settings_file(paths: Paths) -> None:
    secrets = SecretStore(paths.config_dir, use_keyring=False)
    names = ["Big box", "big box", "Ünïcode / server"]
    for index, name in enumerate(names):
        secrets.set(secret_name(name), f"key-{index}")
    assert [secrets.get(secret_name(name)) for name in names] == ["key-0", "key-1", "key-2"]
    store = SettingsStore(paths.settings_file)
    store.save(
        Settings(remote_servers=[RemoteServer(name=n, url=f"http://h{i}:1") for i, n in enumerate(names)])
    )
    text = paths.settings_file.read_text(encoding="utf-8")
    assert "key-" not in text
    assert [s["name"] for s in json.loads(text)["remote_servers"]] == names
    assert [s.name for s in store.load().remote_servers] == names


def test_generation_settings_become_request_fields() -> None:
    settings = GenerationSettings(
        temperature=0.3,
        top_p=0.8,
        top_k=12,
        min_p=0.1,
        repeat_penalty=1.2,
        max_tokens=77,
        seed=9,
        stop=["##"],
    )
    fields, extra = request_fields(settings)
    assert fields == {"temperature": 0.3, "top_p": 0.8, "max_tokens": 77, "seed": 9, "stop": ["##"]}
    assert extra == {"top_k": 12, "min_p": 0.1, "repeat_penalty": 1.2}
    fields, _ = request_fields(GenerationSettings(seed=-1))
    assert "seed" not in fields and "stop" not in fields  # random seed, no stop strings: left to the server


def test_a_settings_file_without_remote_servers_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"schema_version": 2}), encoding="utf-8")
    assert SettingsStore(path).load().remote_servers == []
