"""Tool calls out of a reply, in the forms models write them; held back from a stream until they end.

No model needed: these are the parser and the stream splitter on their own.
"""

from __future__ import annotations

import json

import pytest

from llamadesk.server.tools import ToolStream, parse_tool_calls, tool_style

NAMES = ["get_weather", "search"]


def calls(text: str) -> list[tuple[str, dict[str, object]]]:
    parsed = parse_tool_calls(text, NAMES)
    return [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in parsed.tool_calls]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
            [("get_weather", {"city": "Paris"})],
        ),
        (
            '<tool_call>{"name": "search", "arguments": {"q": "a"}}</tool_call>\n'
            '<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>',
            [("search", {"q": "a"}), ("get_weather", {"city": "Oslo"})],
        ),
        ('<tool_call>{"name": "search", "arguments": {"q": "cut short"}}', [("search", {"q": "cut short"})]),
        ('{"name": "get_weather", "parameters": {"city": "Rome"}}', [("get_weather", {"city": "Rome"})]),
        ('<|python_tag|>{"name": "search", "parameters": {"q": "x"}}', [("search", {"q": "x"})]),
        ('{"name": "search", "arguments": "{\\"q\\": \\"encoded\\"}"}', [("search", {"q": "encoded"})]),
    ],
)
def test_tool_calls_in_each_form_are_found(text: str, expected: list[tuple[str, dict[str, object]]]) -> None:
    assert calls(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The weather in Paris is mild.",
        '{"name": "not_a_tool", "arguments": {}}',  # JSON, but no tool of that name: an answer
        '{"answer": 42}',
        "<tool_call>not json</tool_call>",
    ],
)
def test_text_that_is_not_a_call_stays_content(text: str) -> None:
    parsed = parse_tool_calls(text, NAMES)
    assert parsed.tool_calls == [] and parsed.content == text


def test_text_before_a_hermes_call_is_kept_as_content_and_ids_are_unique() -> None:
    call = '<tool_call>{"name": "search", "arguments": {}}</tool_call>'
    text = f"Let me look.\n{call}{call}"
    parsed = parse_tool_calls(text, NAMES)
    assert parsed.content == "Let me look."
    assert len({c["id"] for c in parsed.tool_calls}) == 2


def feed(pieces: list[str]) -> tuple[str, str, list[dict[str, object]]]:
    stream = ToolStream()
    sent = "".join(stream.feed(piece) for piece in pieces)
    rest, found = stream.finish(NAMES)
    return sent, rest, found


def test_a_stream_sends_plain_text_at_once_and_holds_a_call_back() -> None:
    sent, rest, found = feed(
        ["Hello ", "there, <tool", '_call>{"name": "search", ', '"arguments": {}}</tool_call>']
    )
    assert sent == "Hello there, " and rest == "" and [c["function"]["name"] for c in found] == ["search"]  # type: ignore[index]
    sent, rest, found = feed([" {", '"name": "get_weather", "parameters": {"city": "Oslo"}}'])
    assert sent == "" and rest == "" and len(found) == 1
    sent, rest, found = feed(["a < b", " and <b>bold</b>"])
    assert sent + rest == "a < b and <b>bold</b>" and found == []
    sent, rest, found = feed(['{"answer": ', "42}"])  # held back as a possible call, then sent as text
    assert sent == "" and rest == '{"answer": 42}' and found == []


def test_the_call_format_follows_the_template() -> None:
    assert tool_style("{% for t in tools %}<tool_call>{% endfor %}") == "hermes"
    assert tool_style("<|python_tag|>{{ x }}<|eot_id|>") == "llama3"
    assert tool_style("{{ messages }}") == "hermes"
