"""Figures read back from stored replies: whatever the database holds, showing them never raises."""

from __future__ import annotations

import math

from llamadesk.chat.records import stat_number


def test_stat_number_takes_only_finite_numbers() -> None:
    stats = {
        "completion_tokens": 12,
        "tokens_per_s": 41.5,
        "ttft_s": "fast",
        "prompt_tokens": None,
        "total_s": math.inf,
        "cached_tokens": True,
        "nan": math.nan,
    }
    assert stat_number(stats, "completion_tokens") == 12.0
    assert stat_number(stats, "tokens_per_s") == 41.5
    for key in ("ttft_s", "prompt_tokens", "total_s", "cached_tokens", "nan", "missing"):
        assert stat_number(stats, key) is None, key
    assert stat_number(None, "completion_tokens") is None
