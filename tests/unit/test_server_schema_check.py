"""What the JSON-schema grammar cannot enforce is checked on the parsed reply: number ranges, lengths
the converter skips, and the rest, each violation naming where it is."""

from __future__ import annotations

from typing import Any

import pytest

from llamadesk.engine.engine import GenerationStats, StopReason
from llamadesk.server.generate import Answer
from llamadesk.server.schema_check import violations

PERSON = {
    "type": "object",
    "properties": {
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "score": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
        "step": {"type": "number", "multipleOf": 0.5},
        "code": {"type": "string", "pattern": "^[A-Z]+$", "minLength": 2, "maxLength": 4},
        "tags": {"type": "array", "prefixItems": [{"type": "string"}], "minItems": 1, "maxItems": 2},
        "ids": {"type": "array", "items": {"$ref": "#/$defs/id"}, "uniqueItems": True},
        "extra": {"type": "object", "maxProperties": 1},
    },
    "$defs": {"id": {"type": "integer", "minimum": 1}},
}
VALID = {"age": 30, "score": 0.5, "step": 1.5, "code": "AB", "tags": ["x"], "ids": [1, 2], "extra": {}}


def test_a_reply_within_every_bound_has_no_violations() -> None:
    assert violations(VALID, PERSON) == []


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"age": 151}, "$.age", "above the maximum 150"),
        ({"age": -1}, "$.age", "below the minimum 0"),
        ({"score": 1}, "$.score", "not below the exclusive maximum 1"),
        ({"score": 0.0}, "$.score", "not above the exclusive minimum 0"),
        ({"step": 1.25}, "$.step", "not a multiple of 0.5"),
        ({"code": "ABCDE"}, "$.code", "more than maxLength 4"),
        ({"code": "A"}, "$.code", "fewer than minLength 2"),
        ({"tags": ["a", "b", "c"]}, "$.tags", "more than maxItems 2"),
        ({"tags": []}, "$.tags", "fewer than minItems 1"),
        ({"ids": [3, 3]}, "$.ids", "repeated items"),
        ({"ids": [1, 0]}, "$.ids[1]", "below the minimum 1"),
        ({"extra": {"a": 1, "b": 2}}, "$.extra", "more than maxProperties 1"),
    ],
)
def test_each_unenforced_keyword_is_checked(change: dict[str, Any], where: str, words: str) -> None:
    (found,) = violations({**VALID, **change}, PERSON)
    assert found.startswith(where + " ") and words in found


def test_any_of_passes_when_one_branch_fits_and_reports_when_none_does() -> None:
    schema = {"anyOf": [{"type": "integer", "maximum": 5}, {"type": "string", "maxLength": 2}]}
    assert violations(3, schema) == violations("ab", schema) == []
    assert violations(9, schema) == ["$ is 9, above the maximum 5"]


def test_a_schema_violation_is_an_error_unless_the_reply_was_cut_short() -> None:
    answer = Answer(chat=True, model="m", stream=False, schema={"type": "integer", "maximum": 5})
    done = GenerationStats(5, 0, 2, 0.01, 10.0, 0.1, StopReason.EOS)
    cut = GenerationStats(5, 0, 2, 0.01, 10.0, 0.1, StopReason.MAX_TOKENS)
    error = answer.schema_error("42", done)
    assert error is not None and error.status == 422 and error.code == "json_schema_violation"
    assert "above the maximum 5" in error.message and "42" in error.message
    assert answer.schema_error("4", done) is None
    assert answer.schema_error("42", cut) is None
    assert answer.schema_error("{not json", done) is None
    assert Answer(chat=True, model="m", stream=False).schema_error("42", done) is None
