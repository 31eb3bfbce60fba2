"""Errors as OpenAI's API shapes them: ``{"error": {"message", "type", "param", "code"}}``.

Every refusal a client can cause is an :class:`APIError` with an HTTP status and a message that
says what to change; the app turns it into JSON, never a traceback.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

__all__ = ["APIError", "error_body", "from_validation"]


class APIError(Exception):
    """A request the server refuses or could not answer, with the HTTP status to answer it with."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code, self.param)


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> bytes:
    """The JSON bytes of an OpenAI error object."""
    payload = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return json.dumps(payload, ensure_ascii=False).encode("utf-8")


def _where(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("str", "list[...]", "int", "function-after[...]") or str(part).startswith(
            ("list[", "tagged-union[", "literal[", "function-")
        ):
            continue  # pydantic names union members in the location; the client's field is enough
        else:
            out += f".{part}" if out else str(part)
    return out


def from_validation(error: ValidationError) -> APIError:
    """A 400 naming the first field pydantic refused and why."""
    items = error.errors(include_url=False)
    # An unknown field is the most telling problem; otherwise the shortest path is the field itself
    # rather than one member of a union that did not match.
    items.sort(key=lambda e: (e["type"] != "extra_forbidden", len(e["loc"])))
    first = items[0]
    where = _where(tuple(first["loc"])) or "body"
    if first["type"] == "extra_forbidden":
        message = f"Unrecognized request argument supplied: {where}"
        code = "unknown_parameter"
    elif first["type"] == "missing":
        message = f"Missing required parameter: '{where}'."
        code = "missing_required_parameter"
    else:
        message = f"Invalid value for '{where}': {first['msg']}."
        code = "invalid_value"
    return APIError(400, message, code=code, param=where)
