"""Server addresses and names a user (or a pasted link) may give: refused with a short message that
never shows a password, and never shown in a way that hides or reorders text."""

from __future__ import annotations

import pytest

from llamadesk.remote.errors import RemoteError
from llamadesk.remote.registry import add_server
from llamadesk.remote.urls import normalize_url, shown_url


@pytest.mark.parametrize(
    "name", ["evil\u202etxt.exe", "zero\u200bwidth", "bell\x07", "nul\x00name", "esc\x1b[31mred"]
)
def test_a_server_name_that_hides_or_reorders_text_is_refused(name: str) -> None:
    with pytest.raises(RemoteError, match="only visible characters"):
        add_server([], "http://127.0.0.1:8080", name)


def test_a_server_name_in_any_script_is_kept() -> None:
    servers = add_server([], "http://127.0.0.1:8080", "Сервер  в офисе")
    assert servers[0].name == "Сервер в офисе"


@pytest.mark.parametrize(
    "url",
    [
        "http://alice:hunter2secret@127.0.0.1:8080",
        "https://:hunter2secret@llm.example.com",
        "alice:hunter2secret@127.0.0.1:8080",
    ],
)
def test_a_password_in_an_address_is_refused_without_showing_it(url: str) -> None:
    with pytest.raises(RemoteError) as caught:
        normalize_url(url)
    assert "hunter2secret" not in str(caught.value) and caught.value.kind == "bad_url"


@pytest.mark.parametrize(
    "url",
    [
        "http://" + "a" * 10_000 + ".example.com",
        "http://host/" + "p" * 10_000,
        "ftp://x/" + "\u202e" * 50,
        "http://[::1",
        "http://h:99999",
        "http://alice:hunter2secret@h:99999/x?token=hunter2secret",
    ],
)
def test_a_refused_address_gives_a_short_message(url: str) -> None:
    with pytest.raises(RemoteError) as caught:
        normalize_url(url)
    message = str(caught.value)
    assert len(message) < 400 and "\u202e" not in message and "hunter2secret" not in message


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://alice:pw@h:8/v1?key=pw#f", "http://h:8/v1"),
        ("https://h", "https://h"),
        ("file:///etc/passwd", "file:///etc/passwd"),
        ("http://h/\x1b[2J", "http://h/\ufffd[2J"),
        ("", ""),
    ],
)
def test_an_address_is_shown_without_credentials_query_or_control_characters(url: str, shown: str) -> None:
    assert shown_url(url) == shown
