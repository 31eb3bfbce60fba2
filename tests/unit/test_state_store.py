"""Saved conversation states on disk and in memory: keys, budget, damaged files (no model needed)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from llamadesk.engine.states import SUFFIX, StateKey, StateStore, state_key

CONTEXT = "model-a"


def key(
    name: str = "conversation:1", *, context: str = CONTEXT, system: str = "s", aliases: tuple[str, ...] = ()
) -> StateKey:
    return StateKey(name, context, system, aliases)


def state(n: int = 50, size: int = 4000, fill: int = 7) -> tuple[np.ndarray, bytearray]:
    return np.arange(n, dtype=np.int32), bytearray([fill % 256]) * size


def files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*" + SUFFIX))


def test_a_state_comes_back_from_memory_and_from_another_process(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    tokens, data = state()
    store.put(key(), tokens, data)
    found = store.get(key())
    assert found is not None and found.where == "memory"
    assert found.tokens.tolist() == tokens.tolist() and found.data == data
    fresh = StateStore(tmp_path)  # a new process: only the disk
    found = fresh.get(key())
    assert found is not None and found.where == "disk"
    assert found.tokens.tolist() == tokens.tolist() and found.data == data


@pytest.mark.parametrize(
    "other",
    [
        key(context="model-b"),  # another model file, template, context length or KV type
        key("conversation:2"),  # another conversation
    ],
)
def test_a_state_is_never_found_under_another_key(tmp_path: Path, other: StateKey) -> None:
    store = StateStore(tmp_path)
    store.put(key(), *state())
    assert store.get(other) is None
    assert StateStore(tmp_path).get(other) is None
    assert StateStore(tmp_path).get(key()) is not None


def test_a_changed_system_prompt_never_reuses_the_state_and_removes_it(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.put(key(system="old"), *state())
    assert StateStore(tmp_path).get(key(system="new")) is None
    assert files(tmp_path) == []
    store = StateStore(tmp_path)
    store.put(key(system="old"), *state())
    assert store.get(key(system="new")) is None  # from memory too
    assert store.get(key(system="old")) is None


def _corrupt_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 100])


def _garbage(path: Path) -> None:
    path.write_bytes(b"not a state at all")


def _bad_header(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[:18] + b"[" * 40 + raw[58:])


@pytest.mark.parametrize("damage", [_corrupt_last_byte, _truncate, _garbage, _bad_header])
def test_a_damaged_or_partial_file_is_ignored_and_deleted(tmp_path: Path, damage: object) -> None:
    StateStore(tmp_path).put(key(), *state())
    (path,) = files(tmp_path)
    damage(path)  # type: ignore[operator]
    assert StateStore(tmp_path).get(key()) is None
    assert not path.exists()


def test_a_file_written_for_another_key_under_this_name_is_refused(tmp_path: Path) -> None:
    StateStore(tmp_path).put(key("conversation:2"), *state())
    (other,) = files(tmp_path)
    os.replace(other, tmp_path / key().file_name())
    assert StateStore(tmp_path).get(key()) is None
    assert files(tmp_path) == []


def test_least_recently_used_states_leave_the_disk_first(tmp_path: Path) -> None:
    store = StateStore(tmp_path, disk_budget=10**9)
    for i in range(3):
        store.put(key(f"conversation:{i}"), *state(fill=i))
    size = files(tmp_path)[0].stat().st_size
    old = time.time() - 100
    for i, path in enumerate(tmp_path.glob("*" + SUFFIX)):
        os.utime(path, (old + i, old + i))
    assert StateStore(tmp_path).get(key("conversation:0")) is not None  # used: now the newest
    store = StateStore(tmp_path, disk_budget=int(size * 2.5))
    store.put(key("conversation:3"), *state(fill=3))
    fresh = StateStore(tmp_path)
    kept = {i for i in range(4) if fresh.get(key(f"conversation:{i}")) is not None}
    assert kept == {0, 3}
    store.disk_budget = size  # a smaller budget in Preferences: the oldest go at once
    assert len(files(tmp_path)) == 1


def test_budget_zero_keeps_states_in_memory_only(tmp_path: Path) -> None:
    store = StateStore(tmp_path, disk_budget=0)
    store.put(key(), *state())
    assert store.get(key()) is not None
    assert files(tmp_path) == []


def test_only_the_last_few_stay_in_memory(tmp_path: Path) -> None:
    store = StateStore(tmp_path, memory_slots=2)
    for i in range(3):
        store.put(key(f"conversation:{i}"), *state(fill=i))
    where = {i: store.get(key(f"conversation:{i}")).where for i in range(3)}  # type: ignore[union-attr]
    assert where == {0: "disk", 1: "memory", 2: "memory"}
    store.clear_memory()
    assert store.get(key("conversation:2")).where == "disk"  # type: ignore[union-attr]


def test_a_stale_part_file_is_cleaned_up(tmp_path: Path) -> None:
    part = tmp_path / ".abc.kvstate.123.part"
    part.write_bytes(b"x" * 10)
    old = time.time() - 3600
    os.utime(part, (old, old))
    fresh_part = tmp_path / ".def.kvstate.456.part"
    fresh_part.write_bytes(b"x")  # another process may be writing it now
    StateStore(tmp_path).put(key(), *state())
    assert not part.exists() and fresh_part.exists()


def test_an_unwritable_folder_costs_only_the_disk_copy(tmp_path: Path) -> None:
    blocker = tmp_path / "states"
    blocker.write_text("a file where the folder should be")
    store = StateStore(blocker)
    store.put(key(), *state())
    assert store.get(key()) is not None  # still in memory


def test_state_keys_from_messages() -> None:
    system = {"role": "system", "content": "Be brief."}
    first = {"role": "user", "content": "Hello"}
    reply = {"role": "assistant", "content": "Hi! How can I help?"}
    second = {"role": "user", "content": "Tell me a joke"}
    turn1 = state_key([system, first], context=CONTEXT)
    turn2 = state_key([system, first, reply, second], context=CONTEXT)
    # The same conversation in another front end or process gets the same key...
    assert state_key([dict(system), dict(first), dict(reply), dict(second)], context=CONTEXT) == turn2
    # ...and the key it had before its first reply is looked up too.
    assert turn1.name in turn2.aliases
    # Another opening, another first reply or another model is another conversation.
    other_reply = {"role": "assistant", "content": "Hello there."}
    assert state_key([system, first, other_reply, second], context=CONTEXT).name != turn2.name
    assert state_key([system, first, reply, second], context="model-b").context != turn2.context
    # A changed system prompt changes the key and its system hash.
    changed = state_key([{"role": "system", "content": "Be long."}, first, reply, second], context=CONTEXT)
    assert changed.name != turn2.name and changed.system != turn2.system
    # A conversation the front end names keeps its name whatever it says.
    named = state_key([system, first, reply, second], context=CONTEXT, conversation="42")
    assert named.name == "conversation:42" and named.system == turn2.system


def test_an_alias_state_is_found_and_replaced(tmp_path: Path) -> None:
    store = StateStore(tmp_path)
    store.put(key("auto:first"), *state(fill=1))
    later = key("auto:second", aliases=("auto:first",))
    found = StateStore(tmp_path).get(later)
    assert found is not None and found.data[0] == 1
    store.put(later, *state(fill=2))
    assert len(files(tmp_path)) == 1
    found = StateStore(tmp_path).get(later)
    assert found is not None and found.data[0] == 2
