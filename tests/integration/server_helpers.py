"""Helpers for the API server tests: a server over a service, and raw HTTP where the client hides things."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from llamadesk.engine.service import InferenceService
from llamadesk.server.config import ServerConfig
from llamadesk.server.runner import LocalServer


@contextmanager
def running_server(service: InferenceService, **options: Any) -> Iterator[LocalServer]:
    """A server on a free port of 127.0.0.1 over ``service``, stopped afterwards."""
    library = options.pop("library", None)
    history = options.pop("history", None)
    server = LocalServer(service, ServerConfig(port=0, **options), library=library, history=history)
    server.start()
    try:
        yield server
    finally:
        assert server.stop(timeout=20)


def raw(
    server: LocalServer,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client: status, headers (lower-case names) and body."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        sent = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        data = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data
    finally:
        connection.close()


def error_of(body: bytes) -> dict[str, Any]:
    """The OpenAI error object in ``body`` (fails the test when the body is not one)."""
    data = json.loads(body)
    error = data["error"]
    assert set(error) >= {"message", "type", "code"}, data
    assert isinstance(error["message"], str) and error["message"]
    return dict(error)
